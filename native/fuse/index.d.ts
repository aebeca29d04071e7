// Types of kdfs-fuse, libfuse3's low-level API for Node (native/fuse/src/
// documents each call). `import ll from 'kdfs-fuse'`.
//
// One session per process. mount() hands every kernel request to the handler
// as (op, slot, str1, str2, data), with its numbers in `args` (read them before
// anything else runs: the next request overwrites them). The handler answers
// later, once, with one of the reply functions and the request's slot.
//
// Operations (OPS[op]) and their args; [0] uid [1] gid [2] pid [3] umask of the
// caller always, [4] the inode (or parent directory) unless said otherwise:
//   init, exit          nothing to answer; exit: the session ended (unmounted)
//   lookup              str1 name                                 -> replyEntry
//   forget              [5] nlookup; one per inode, also for batches; never answered
//   getattr             [5] fh or -1                              -> replyAttr
//   setattr             [5] valid (FUSE_SET_ATTR_*) [6] mode [7] uid [8] gid [9] size
//                       [10] atime s [11] atime ns [12] mtime s [13] mtime ns [14] fh or -1
//                                                                 -> replyAttr
//   readlink                                                      -> replyReadlink
//   mknod               [5] mode [6] rdev; str1 name              -> replyEntry
//   mkdir               [5] mode; str1 name                       -> replyEntry
//   unlink, rmdir       str1 name                                 -> replyErr
//   symlink             str1 target, str2 name                    -> replyEntry
//   rename              [5] newparent [6] flags; str1 name, str2 newname -> replyErr
//   link                [5] newparent; str1 newname               -> replyEntry
//   open                [5] open flags                            -> replyOpen
//   create              [5] mode [6] open flags; str1 name        -> replyCreate
//   read                [5] fh [6] size [7] offset                -> replyBuf, replyIov
//   write               [5] fh [6] size [7] offset [8] kill_suidgid (1: the kernel set
//                       FUSE_WRITE_KILL_SUIDGID, clear S_ISUID and S_ISGID; 0; -1: unknown);
//                       data: the bytes, valid until the reply    -> replyWrite
//   flush               [5] fh; str1 lock owner                   -> replyErr
//   release             [5] fh [6] flock_release; str1 lock owner or null -> replyErr
//   fsync, fsyncdir     [5] fh [6] datasync                       -> replyErr
//   opendir             [5] open flags                            -> replyOpen
//   readdir             [5] fh [6] size [7] offset                -> replyDir
//   releasedir          [5] fh                                    -> replyErr
//   statfs                                                        -> replyStatfs
//   setxattr            [5] flags; str1 name; data the value      -> replyErr
//   getxattr            [5] size; str1 name                       -> replyXattr, replyBuf
//   listxattr           [5] size                                  -> replyXattr, replyBuf
//   removexattr         str1 name                                 -> replyErr
//   fallocate           [5] fh [6] mode [7] offset [8] length     -> replyErr
//   getlk               [5] fh [6] type [7] start [8] end (-1: to the end of the file)
//                       [9] pid; str1 lock owner                  -> replyLock
//   setlk               [5] fh [6] type (F_RDLCK, F_WRLCK, F_UNLCK) [7] start [8] end
//                       [9] pid [10] sleep (1: F_SETLKW); str1 lock owner -> replyErr
//   flock               [5] fh [6] op (LOCK_SH, LOCK_EX, LOCK_UN, | LOCK_NB);
//                       str1 lock owner                           -> replyErr
//   copy_file_range     [4] ino_in [5] fh_in [6] off_in [7] ino_out [8] fh_out
//                       [9] off_out [10] len [11] flags           -> replyWrite
//   interrupt           slot: an unanswered request the kernel interrupted (its caller
//                       got a signal); args: that request's. Answer it (EINTR) or not.
// Lock owners are decimal strings (64-bit values). Every request but init, exit
// and forget may be interrupted.
declare namespace kdfsFuse {
  /** (op, slot, str1, str2, data): slot names the request for its reply (an
   *  opaque number, refused once answered); -1 for an exit with no slot free. */
  type Handler = (op: number, slot: number, str1: string | null, str2: string | null, data: Buffer | null) => void;
  /** Result of a notification: 0, or -errno from the kernel (-ENOENT: not cached),
   *  -ENOTCONN if the session ended before it was sent. */
  type NotifyDone = (result: number) => void;
}

declare const kdfsFuse: {
  /** Operation names, indexed by the op number handed to the handler. */
  readonly OPS: readonly string[];
  /** Requests that may be held unanswered at once (the device is not read beyond). */
  readonly SLOTS: number;
  /** Notifications that may be queued or in flight at once (beyond: -EAGAIN). */
  readonly NOTIFY_QUEUE: number;
  /** Numeric arguments of the request being dispatched: [0] uid [1] gid [2] pid [3] umask [4] ino, then per operation. */
  readonly args: Float64Array;
  /** Mounts (options as for libfuse3: "-o..."; libfuse mounts nosuid,nodev unless
   *  given suid, dev). Throws if it cannot, or if a session runs already. */
  mount(mountPoint: string, options: string, handler: kdfsFuse.Handler): void;
  /** Lazy unmount: the session ends (op exit) once nothing uses the mount. */
  unmount(): void;

  // Replies: each answers the request of `slot` and returns 0, or -errno if the
  // kernel did not take it (-ENOENT: interrupted and given up). A slot answered
  // already (or init's, exit's, forget's) throws a RangeError.
  /** errno 0: success, for operations that return no data. */
  replyErr(slot: number, errno: number): number;
  /** attr: Float64Array(15): ino mode nlink uid gid rdev size blksize blocks atime(s, ns) mtime(s, ns) ctime(s, ns). */
  replyEntry(slot: number, attr: Float64Array, entryTimeoutS: number, attrTimeoutS: number): number;
  replyAttr(slot: number, attr: Float64Array, attrTimeoutS: number): number;
  /** flags: 1 direct_io, 2 keep_cache, 4 nonseekable. */
  replyOpen(slot: number, fh: number, flags: number): number;
  replyCreate(slot: number, attr: Float64Array, entryTimeoutS: number, attrTimeoutS: number, fh: number, flags: number): number;
  /** Bytes written (write), or copied (copy_file_range). */
  replyWrite(slot: number, count: number): number;
  replyBuf(slot: number, data: Buffer | null, length?: number): number;
  /** At most 64 pieces. */
  replyIov(slot: number, pieces: Buffer[]): number;
  replyReadlink(slot: number, target: string): number;
  /** Float64Array(11): bsize frsize blocks bfree bavail files ffree favail fsid flag namemax. */
  replyStatfs(slot: number, statfs: Float64Array): number;
  /** The size of a value or list, when asked with size 0. */
  replyXattr(slot: number, size: number): number;
  /** Packs entries numbered from offset + 1 while they fit in size bytes; returns how many. */
  replyDir(slot: number, size: number, offset: number, names: string[], inos: Float64Array, modes: Uint32Array): number;
  /** getlk: the lock that conflicts ([start, end], end -1: to the end of the file;
   *  pid: its holder's), or type F_UNLCK (2): none does. */
  replyLock(slot: number, type: number, start: number, end: number, pid: number): number;

  // Notifications, sent by a thread of the binding: each returns 0 (queued),
  // -EAGAIN (NOTIFY_QUEUE in flight) or -ENOTCONN (no session), then calls
  // done(result) on the main thread.
  /** offset < 0: the attributes only; length 0: up to the end. */
  notifyInvalInode(ino: number, offset: number, length: number, done?: kdfsFuse.NotifyDone): number;
  notifyInvalEntry(parent: number, name: string, done?: kdfsFuse.NotifyDone): number;
  /** As notifyInvalEntry, and the child's dentry goes if it is that inode (inotify sees a deletion). */
  notifyDelete(parent: number, child: number, name: string, done?: kdfsFuse.NotifyDone): number;
  /** Drops the kernel's cached attributes of ino at once, from this thread (it
   *  takes no lock a request could hold): 0, -ENOENT (no such inode cached) or -errno. */
  notifyInvalAttrsNow(ino: number): number;
};

export = kdfsFuse;
