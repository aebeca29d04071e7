// kdfs-fuse: libfuse3's low-level API for Node (src/ documents every call).
// Requests by inode number, answered asynchronously by slot; built by kDFS's
// npm run setup (node-gyp, against the system's libfuse3).
'use strict'

const binding = require('./build/Release/kdfs_fuse.node')

module.exports = {
  /** Operation names, indexed by the op number the handler gets. */
  OPS: binding.ll_ops,
  /** Requests that may be held unanswered at once. */
  SLOTS: binding.LL_SLOTS,
  /** Notifications that may be queued or in flight at once. */
  NOTIFY_QUEUE: binding.LL_NOTIFY_QUEUE,
  /** Numeric arguments of the request being dispatched: [0] uid [1] gid [2] pid [3] umask [4] ino... */
  args: binding.ll_args,
  mount: binding.ll_mount,
  unmount: binding.ll_unmount,
  replyErr: binding.ll_reply_err,
  replyEntry: binding.ll_reply_entry,
  replyAttr: binding.ll_reply_attr,
  replyOpen: binding.ll_reply_open,
  replyCreate: binding.ll_reply_create,
  replyWrite: binding.ll_reply_write,
  replyBuf: binding.ll_reply_buf,
  replyIov: binding.ll_reply_iov,
  replyReadlink: binding.ll_reply_readlink,
  replyStatfs: binding.ll_reply_statfs,
  replyXattr: binding.ll_reply_xattr,
  replyDir: binding.ll_reply_dir,
  replyLock: binding.ll_reply_lock,
  notifyInvalInode: binding.ll_notify_inval_inode,
  notifyInvalEntry: binding.ll_notify_inval_entry,
  notifyDelete: binding.ll_notify_delete,
  notifyInvalAttrsNow: binding.ll_notify_inval_attrs_now
}
