// kdfs-fuse: libfuse3's low-level API (fuse_lowlevel.h) for Node.
//
// What every part of the binding shares: the request slots, the session, and
// the functions one part calls in another.
//
//   session.c   the session: mount, unmount, the FUSE device polled in Node's
//               event loop, request slots and receive buffers, dispatch to
//               JavaScript, the end of the session, the module's exports
//   requests.c  libfuse's callbacks: each request into a slot, and interrupts
//   replies.c   the ll_reply_* functions JavaScript answers requests with
//   notify.c    notifications to the kernel, sent by a thread of their own
//   values.c    JavaScript values to C and back
//   names.c     names and link targets checked before JavaScript sees them
//
// Everything runs on Node's main thread except the notification thread, which
// only calls libfuse's fuse_lowlevel_notify_* functions and touches nothing of
// this file but the notification queue (see notify.c).
#ifndef KDFS_FUSE_H
#define KDFS_FUSE_H

#define FUSE_USE_VERSION 34

#include <node_api.h>
#include <uv.h>
#include <fuse_lowlevel.h>

#include <stddef.h>
#include <stdint.h>

// Requests JavaScript may hold unanswered at once.
#define LL_SLOTS 4096
// Receive buffers: a request is read into one; a write keeps its buffer until
// it is answered (its data reaches JavaScript without a copy).
#define LL_BUFFERS 16
// Requests of up to 1 MiB (the most the kernel sends: 256 pages).
#define LL_MAX_WRITE (1 << 20)
// Numeric arguments of a request (ll.args).
#define LL_ARGS 16
// How long to look for the next request before going back to the event loop.
#ifndef LL_SPIN_US
#define LL_SPIN_US 50
#endif
// Pieces of one read reply (ll_reply_iov).
#define LL_IOV_MAX 64
// Notifications queued or in flight at once (notify.c); more are refused with
// -EAGAIN until the kernel has taken some.
#define LL_NOTIFY_QUEUE 4096

// Operation numbers handed to JavaScript: the index of each name in ll_op_names
// (session.c), exported as OPS. New ones go at the end.
enum {
  LL_INIT = 0, LL_EXIT, LL_LOOKUP, LL_GETATTR, LL_SETATTR, LL_READLINK, LL_MKNOD, LL_MKDIR, LL_UNLINK,
  LL_RMDIR, LL_SYMLINK, LL_RENAME, LL_LINK, LL_OPEN, LL_READ, LL_WRITE, LL_FLUSH, LL_RELEASE, LL_FSYNC,
  LL_OPENDIR, LL_READDIR, LL_RELEASEDIR, LL_FSYNCDIR, LL_STATFS, LL_SETXATTR, LL_GETXATTR, LL_LISTXATTR,
  LL_REMOVEXATTR, LL_CREATE, LL_FALLOCATE, LL_FORGET, LL_GETLK, LL_SETLK, LL_FLOCK, LL_INTERRUPT,
  LL_COPY_FILE_RANGE, LL_OPS
};

extern const char *const ll_op_names[LL_OPS];

// One request, from its arrival to its reply. JavaScript knows it by its slot
// id: the slot's index plus LL_SLOTS times its generation, so that an id stays
// tied to one request and a late or second reply is refused, never taken for
// the reply to whatever request uses the slot next.
typedef struct {
  fuse_req_t req;          // to answer; NULL once answered, or for init, exit and forget
  int op;
  int in_use;
  uint32_t generation;     // counts the uses of the slot
  int interrupt_queued;    // in the session's list of interrupts to hand over
  double args[LL_ARGS];
  char *str1;
  char *str2;
  char *data;              // write data (in a held receive buffer) or an xattr value (owned)
  size_t data_len;
  int data_owned;
  int buffer;              // receive buffer held until the reply, or -1
  napi_ref data_ref;       // the Buffer handed to JavaScript, detached at the reply
} ll_req;

typedef struct ll_notify ll_notify;

typedef struct {
  struct fuse_session *se;
  char mountpoint[4096];
  napi_env env;
  napi_ref handler;
  napi_ref resource;
  napi_async_context async;
  uv_poll_t poll;
  int polling;
  int initialized;         // the kernel's init request has been processed
  int ended;               // the kernel ended the session (unmounted)
  int tearing_down;        // ended and idle: the notification thread is stopping
  int closing_handles;     // uv handles whose close callbacks are awaited
  size_t bufsize;
  char *buffers[LL_BUFFERS];
  int free_buffers[LL_BUFFERS];
  int free_buffer_count;
  int current_buffer;      // the buffer libfuse is processing
  int current_taken;       // a write request kept it
  ll_req slots[LL_SLOTS];
  int free_slots[LL_SLOTS];
  int free_slot_count;
  // interrupts of requests, handed to JavaScript once libfuse has returned
  struct { int index; uint32_t generation; } interrupts[LL_SLOTS];
  int interrupt_count;
  ll_notify *notify;
} ll_session;

// The one session of the process (a mount), or NULL.
extern ll_session *session;
// ll.args: the numeric arguments of the request being dispatched.
extern double ll_args[LL_ARGS];

// session.c
ll_req *slot_take(fuse_req_t req, int op);
void slot_release(napi_env env, ll_req *r);
double slot_id(const ll_req *r);
void dispatch(ll_req *r);
void dispatch_interrupts(void);
void session_teardown_done(void);

// requests.c
extern const struct fuse_lowlevel_ops ll_ops;

// replies.c
napi_value ll_reply_err(napi_env env, napi_callback_info info);
napi_value ll_reply_entry(napi_env env, napi_callback_info info);
napi_value ll_reply_attr(napi_env env, napi_callback_info info);
napi_value ll_reply_open(napi_env env, napi_callback_info info);
napi_value ll_reply_create(napi_env env, napi_callback_info info);
napi_value ll_reply_write(napi_env env, napi_callback_info info);
napi_value ll_reply_buf(napi_env env, napi_callback_info info);
napi_value ll_reply_iov(napi_env env, napi_callback_info info);
napi_value ll_reply_readlink(napi_env env, napi_callback_info info);
napi_value ll_reply_statfs(napi_env env, napi_callback_info info);
napi_value ll_reply_xattr(napi_env env, napi_callback_info info);
napi_value ll_reply_dir(napi_env env, napi_callback_info info);
napi_value ll_reply_lock(napi_env env, napi_callback_info info);

// notify.c
int notify_start(ll_session *s, struct fuse_session *se, uv_loop_t *loop);
void notify_stop(ll_session *s);
int notify_busy(const ll_session *s);
napi_value ll_notify_inval_inode(napi_env env, napi_callback_info info);
napi_value ll_notify_inval_entry(napi_env env, napi_callback_info info);
napi_value ll_notify_delete(napi_env env, napi_callback_info info);
napi_value ll_notify_inval_attrs_now(napi_env env, napi_callback_info info);

// values.c
#define ARGS(n) \
  size_t argc = n; \
  napi_value argv[n]; \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;

ll_req *slot_arg(napi_env env, napi_value value);
int number_arg(napi_env env, napi_value value, double *n);
int offset_arg(napi_env env, napi_value value, int64_t *n);
char *string_arg(napi_env env, napi_value value, size_t *length);
napi_value int_value(napi_env env, int64_t n);
char *decimal(uint64_t n);
char *copy_string(const char *s);

// names.c: 0, or the errno a request naming `name` is answered with (making:
// the request makes the name, else it looks it up); target_errno: a link's target.
int name_errno(const char *name, int making);
int target_errno(const char *target);

#endif
