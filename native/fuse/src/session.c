// The session: mount and unmount, the FUSE device in Node's event loop, request
// slots and receive buffers, dispatch to JavaScript, the end of the session,
// and the module's exports.
//
// The FUSE device is polled by Node's event loop, like a socket: when it is
// readable, the requests waiting are read and handed, one by one, to a
// JavaScript handler, on the main thread, with no thread in between (a thread
// handing requests over costs two wake-ups a request). The handler answers when
// it likes, with one of the ll_reply_* functions: any number of requests may be
// in flight, up to LL_SLOTS. A write request keeps its receive buffer until it
// is answered (its data reaches JavaScript without a copy); when all buffers or
// slots are taken, the device is not read until one is free, so the kernel
// queues the rest: backpressure instead of unbounded memory.
#include "kdfs_fuse.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

ll_session *session = NULL;
double ll_args[LL_ARGS];

const char *const ll_op_names[LL_OPS] = {
  [LL_INIT] = "init", [LL_EXIT] = "exit", [LL_LOOKUP] = "lookup", [LL_GETATTR] = "getattr",
  [LL_SETATTR] = "setattr", [LL_READLINK] = "readlink", [LL_MKNOD] = "mknod", [LL_MKDIR] = "mkdir",
  [LL_UNLINK] = "unlink", [LL_RMDIR] = "rmdir", [LL_SYMLINK] = "symlink", [LL_RENAME] = "rename",
  [LL_LINK] = "link", [LL_OPEN] = "open", [LL_READ] = "read", [LL_WRITE] = "write", [LL_FLUSH] = "flush",
  [LL_RELEASE] = "release", [LL_FSYNC] = "fsync", [LL_OPENDIR] = "opendir", [LL_READDIR] = "readdir",
  [LL_RELEASEDIR] = "releasedir", [LL_FSYNCDIR] = "fsyncdir", [LL_STATFS] = "statfs",
  [LL_SETXATTR] = "setxattr", [LL_GETXATTR] = "getxattr", [LL_LISTXATTR] = "listxattr",
  [LL_REMOVEXATTR] = "removexattr", [LL_CREATE] = "create", [LL_FALLOCATE] = "fallocate",
  [LL_FORGET] = "forget", [LL_GETLK] = "getlk", [LL_SETLK] = "setlk", [LL_FLOCK] = "flock",
  [LL_INTERRUPT] = "interrupt", [LL_COPY_FILE_RANGE] = "copy_file_range",
};

static void session_resume(void);
static void session_end(void);
static void session_check_idle(void);

// ------------------------------------------------------------ slots and buffers

// Taken only while libfuse processes a request: the device is read only with a
// slot free, and a request takes one slot at most.
ll_req *slot_take(fuse_req_t req, int op) {
  assert(session->free_slot_count > 0);
  int index = session->free_slots[--session->free_slot_count];
  ll_req *r = &session->slots[index];
  uint32_t generation = r->generation + 1;
  memset(r, 0, sizeof(*r));
  r->generation = generation;
  r->in_use = 1;
  r->req = req;
  r->op = op;
  r->buffer = -1;
  if (req != NULL) {
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    r->args[0] = ctx->uid;
    r->args[1] = ctx->gid;
    r->args[2] = ctx->pid;
    r->args[3] = ctx->umask;
  }
  return r;
}

void slot_release(napi_env env, ll_req *r) {
  free(r->str1);
  free(r->str2);
  if (r->data_owned) free(r->data);
  if (r->data_ref != NULL) {
    // the Buffer JavaScript got may outlive the request: it must not see the
    // receive buffer once another request is read into it
    napi_value value;
    if (napi_get_reference_value(env, r->data_ref, &value) == napi_ok && value != NULL) {
      napi_value arraybuffer;
      if (napi_get_typedarray_info(env, value, NULL, NULL, NULL, &arraybuffer, NULL) == napi_ok) {
        napi_detach_arraybuffer(env, arraybuffer);
      }
    }
    napi_delete_reference(env, r->data_ref);
  }
  int buffer = r->buffer;
  uint32_t generation = r->generation;
  memset(r, 0, sizeof(*r));
  r->generation = generation;
  r->buffer = -1;
  if (buffer >= 0) session->free_buffers[session->free_buffer_count++] = buffer;
  session->free_slots[session->free_slot_count++] = (int) (r - session->slots);
  session_resume();
  session_check_idle();
}

// The slot id JavaScript knows a request by (see ll_req).
double slot_id(const ll_req *r) {
  return (double) (r - session->slots) + (double) r->generation * LL_SLOTS;
}

// ------------------------------------------------------------ dispatch to JavaScript

// Calls handler(op, slot, str1, str2, data) with ll.args = args; data only
// for a request's own dispatch. Returns the status of the call.
static napi_status call_handler(napi_env env, int op, double slot, ll_req *r, int payload) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  if (r != NULL) memcpy(ll_args, r->args, sizeof(ll_args));
  else memset(ll_args, 0, sizeof(ll_args));
  napi_value argv[5];
  napi_create_int32(env, op, &argv[0]);
  napi_create_double(env, slot, &argv[1]);
  napi_get_null(env, &argv[2]);
  napi_get_null(env, &argv[3]);
  napi_get_null(env, &argv[4]);
  if (payload) {
    if (r->str1) napi_create_string_utf8(env, r->str1, NAPI_AUTO_LENGTH, &argv[2]);
    if (r->str2) napi_create_string_utf8(env, r->str2, NAPI_AUTO_LENGTH, &argv[3]);
    if (r->data != NULL &&
        napi_create_external_buffer(env, r->data_len, r->data, NULL, NULL, &argv[4]) == napi_ok) {
      napi_create_reference(env, argv[4], 1, &r->data_ref);
    }
  }
  napi_value global;
  napi_value handler;
  napi_value result;
  napi_get_global(env, &global);
  napi_get_reference_value(env, session->handler, &handler);
  napi_status status = napi_call_function(env, global, handler, 5, argv, &result);
  if (status == napi_pending_exception) {
    napi_value exception;
    napi_get_and_clear_last_exception(env, &exception);
  }
  napi_close_handle_scope(env, scope);
  return status;
}

// Hands a request to JavaScript (within on_readable's callback scope). A
// request the handler threw on and left unanswered is answered EIO; init, exit
// and forget, which need no answer, give their slot back once dispatched.
void dispatch(ll_req *r) {
  napi_env env = session->env;
  uint32_t generation = r->generation;
  napi_status status = call_handler(env, r->op, slot_id(r), r, 1);
  if (!r->in_use || r->generation != generation) return; // answered
  if (status == napi_pending_exception && r->req != NULL) {
    fuse_reply_err(r->req, EIO);
    r->req = NULL;
  }
  if (r->req == NULL) slot_release(env, r);
}

// Hands over the interrupts libfuse reported while processing the last request
// (requests.c queues them): op 'interrupt' with the slot of the interrupted
// request, and its arguments in ll.args, if it is still unanswered.
void dispatch_interrupts(void) {
  for (int i = 0; i < session->interrupt_count; i++) {
    ll_req *r = &session->slots[session->interrupts[i].index];
    if (!r->in_use || r->generation != session->interrupts[i].generation) continue;
    r->interrupt_queued = 0;
    if (r->req != NULL) call_handler(session->env, LL_INTERRUPT, slot_id(r), r, 0);
  }
  session->interrupt_count = 0;
}

// ------------------------------------------------------------ the device in the event loop

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double) t.tv_sec * 1e6 + (double) t.tv_nsec / 1e3;
}

// Reads and hands over the requests waiting, in one callback scope: the replies
// that need no I/O go out when it closes.
static void process_batch(napi_env env, napi_value resource) {
  napi_callback_scope scope;
  napi_open_callback_scope(env, resource, session->async, &scope);
  while (!session->ended && session->free_slot_count > 0 && session->free_buffer_count > 0) {
    int index = session->free_buffers[--session->free_buffer_count];
    struct fuse_buf buf = { .size = session->bufsize, .flags = 0, .mem = session->buffers[index], .fd = -1, .pos = 0 };
    int res = fuse_session_receive_buf(session->se, &buf);
    if (res == -EAGAIN || res == -EINTR) {
      session->free_buffers[session->free_buffer_count++] = index;
      break;
    }
    if (res <= 0) {
      session->free_buffers[session->free_buffer_count++] = index;
      session_end();
      break;
    }
    session->current_buffer = index;
    session->current_taken = 0;
    fuse_session_process_buf(session->se, &buf);
    if (!session->current_taken) session->free_buffers[session->free_buffer_count++] = index;
    if (session->interrupt_count > 0) dispatch_interrupts();
  }
  napi_close_callback_scope(env, scope);
}

static void on_readable(uv_poll_t *handle, int status, int events) {
  (void) handle;
  (void) events;
  if (session == NULL || session->ended) return;
  if (status != 0) {
    session_end();
    return;
  }
  napi_env env = session->env;
  napi_handle_scope handles;
  napi_open_handle_scope(env, &handles);
  napi_value resource;
  napi_get_reference_value(env, session->resource, &resource);
  // After the replies, a caller that answers at once (the next system call of a
  // process working through files) sends its next request within microseconds:
  // looking for it a little while costs less than going to sleep and waking up.
  // Only with nothing in flight, though: a request waiting for I/O needs the
  // event loop, which must not be kept from its completion.
  struct pollfd pfd = { .fd = fuse_session_fd(session->se), .events = POLLIN, .revents = 0 };
  for (;;) {
    process_batch(env, resource);
    if (session->ended || session->free_slot_count != LL_SLOTS || session->free_buffer_count != LL_BUFFERS) break;
    double until = now_us() + LL_SPIN_US;
    int ready = 0;
    while (!ready && now_us() < until) ready = poll(&pfd, 1, 0) > 0;
    if (!ready) break;
  }
  // short of slots or buffers: stop reading until a reply frees one
  if (!session->ended && (session->free_slot_count == 0 || session->free_buffer_count == 0) && session->polling) {
    uv_poll_stop(&session->poll);
    session->polling = 0;
  }
  napi_close_handle_scope(env, handles);
}

static void session_resume(void) {
  if (session->ended || session->polling || session->free_slot_count == 0 || session->free_buffer_count == 0) return;
  uv_poll_start(&session->poll, UV_READABLE, on_readable);
  session->polling = 1;
}

// ------------------------------------------------------------ the end of the session

// The kernel ended the session (unmounted): tell JavaScript (op 'exit'); the
// session is torn down once every request in flight has been answered.
static void session_end(void) {
  session->ended = 1;
  if (session->polling) {
    uv_poll_stop(&session->poll);
    session->polling = 0;
  }
  if (session->free_slot_count > 0) {
    dispatch(slot_take(NULL, LL_EXIT));
  } else {
    // every slot held: exit has no slot (-1) rather than no dispatch
    call_handler(session->env, LL_EXIT, -1, NULL, 0);
    session_check_idle();
  }
}

// Ended and idle: stop the notification thread, which may be in the kernel
// still; notify.c calls session_teardown_done once it has joined it.
static void session_check_idle(void) {
  if (!session->ended || session->tearing_down || session->free_slot_count != LL_SLOTS) return;
  session->tearing_down = 1;
  notify_stop(session);
}

static void free_session(void) {
  for (int i = 0; i < LL_BUFFERS; i++) free(session->buffers[i]);
  free(session);
  session = NULL;
}

static void on_poll_closed(uv_handle_t *handle) {
  (void) handle;
  // the mount is gone already: this closes the device
  fuse_session_unmount(session->se);
  fuse_session_destroy(session->se);
  session->se = NULL;
  napi_env env = session->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_delete_reference(env, session->handler);
  napi_async_destroy(env, session->async);
  napi_delete_reference(env, session->resource);
  napi_close_handle_scope(env, scope);
  free_session();
}

// The notification thread is gone: nothing uses the libfuse session any more.
// The poll handle goes first, then the device it watched.
void session_teardown_done(void) {
  uv_close((uv_handle_t *) &session->poll, on_poll_closed);
}

// A process that exits with a notification in the kernel must not leave it
// there: the notification thread may wait for a directory lock held by a
// caller whose request only this process can answer, and a process whose
// thread cannot leave the kernel never exits, nor closes the device. Answering
// the requests still held (EIO) lets both go.
static void on_process_exit(void) {
  if (session == NULL || session->se == NULL || !notify_busy(session)) return;
  for (int i = 0; i < LL_SLOTS; i++) {
    ll_req *r = &session->slots[i];
    if (r->in_use && r->req != NULL) {
      fuse_reply_err(r->req, EIO);
      r->req = NULL;
    }
  }
}

// ------------------------------------------------------------ mount and unmount

// ll_mount(mountpoint, options, handler): options as for libfuse3 ("-o...").
// handler(op, slot, str1, str2, buffer) is called for every request; numbers are
// in ll.args. The mount keeps the process alive until it ends.
static napi_value ll_mount(napi_env env, napi_callback_info info) {
  ARGS(3)
  if (session != NULL) {
    napi_throw_error(env, NULL, "a low-level FUSE session is already running in this process");
    return NULL;
  }
  napi_valuetype type;
  if (napi_typeof(env, argv[2], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "the handler must be a function");
    return NULL;
  }
  char mountpoint[4096];
  char options[4096];
  size_t length = 0;
  if (napi_get_value_string_utf8(env, argv[0], mountpoint, sizeof(mountpoint), &length) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], options, sizeof(options), &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "the mount point and the options must be strings");
    return NULL;
  }

  char program[] = "kdfs";
  char *fuse_argv[] = { program, options, NULL };
  struct fuse_args args = FUSE_ARGS_INIT(length > 0 ? 2 : 1, fuse_argv);
  struct fuse_session *se = fuse_session_new(&args, &ll_ops, sizeof(ll_ops), NULL);
  fuse_opt_free_args(&args);
  if (se == NULL) {
    napi_throw_error(env, NULL, "fuse_session_new failed (bad options?)");
    return NULL;
  }
  if (fuse_session_mount(se, mountpoint) != 0) {
    fuse_session_destroy(se);
    napi_throw_error(env, NULL, "fuse_session_mount failed (see the messages of libfuse)");
    return NULL;
  }
  int fd = fuse_session_fd(se);
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

  ll_session *s = calloc(1, sizeof(ll_session));
  // what libfuse reads a request into at most: 256 pages and a header page
  size_t bufsize = (size_t) 256 * (size_t) getpagesize() + 4096;
  int buffers_ok = s != NULL;
  for (int i = 0; buffers_ok && i < LL_BUFFERS; i++) buffers_ok = (s->buffers[i] = malloc(bufsize)) != NULL;
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  if (!buffers_ok || notify_start(s, se, loop) != 0) {
    if (s != NULL) {
      for (int i = 0; i < LL_BUFFERS; i++) free(s->buffers[i]);
      free(s);
    }
    fuse_session_unmount(se);
    fuse_session_destroy(se);
    napi_throw_error(env, NULL, "out of memory or threads for the FUSE session");
    return NULL;
  }
  session = s;
  s->se = se;
  s->env = env;
  s->bufsize = bufsize;
  snprintf(s->mountpoint, sizeof(s->mountpoint), "%s", mountpoint);
  for (int i = 0; i < LL_BUFFERS; i++) s->free_buffers[i] = i;
  s->free_buffer_count = LL_BUFFERS;
  for (int i = 0; i < LL_SLOTS; i++) s->free_slots[i] = LL_SLOTS - 1 - i;
  s->free_slot_count = LL_SLOTS;
  napi_create_reference(env, argv[2], 1, &s->handler);
  napi_value resource;
  napi_value name;
  napi_create_object(env, &resource);
  napi_create_string_utf8(env, "kdfs-fuse", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, resource, 1, &s->resource);
  napi_async_init(env, resource, name, &s->async);
  uv_poll_init(loop, &s->poll, fd);
  s->polling = 0;
  session_resume();
  return NULL;
}

// ll_unmount(): lazily detaches the mount; the session ends (and the exit
// request follows) once nothing uses the file system any more.
static napi_value ll_unmount(napi_env env, napi_callback_info info) {
  (void) info;
  if (session != NULL && !session->ended && umount2(session->mountpoint, MNT_DETACH) != 0) {
    napi_throw_error(env, NULL, strerror(errno));
  }
  return NULL;
}

// ------------------------------------------------------------ exports

#define EXPORT(name) \
  { \
    napi_value fn; \
    napi_create_function(env, #name, NAPI_AUTO_LENGTH, name, NULL, &fn); \
    napi_set_named_property(env, exports, #name, fn); \
  }

static napi_value init_module(napi_env env, napi_value exports) {
  static int registered = 0;
  if (!registered) {
    registered = 1;
    atexit(on_process_exit);
  }
  EXPORT(ll_mount)
  EXPORT(ll_unmount)
  EXPORT(ll_reply_err)
  EXPORT(ll_reply_entry)
  EXPORT(ll_reply_attr)
  EXPORT(ll_reply_open)
  EXPORT(ll_reply_create)
  EXPORT(ll_reply_write)
  EXPORT(ll_reply_buf)
  EXPORT(ll_reply_iov)
  EXPORT(ll_reply_readlink)
  EXPORT(ll_reply_statfs)
  EXPORT(ll_reply_xattr)
  EXPORT(ll_reply_dir)
  EXPORT(ll_reply_lock)
  EXPORT(ll_notify_inval_inode)
  EXPORT(ll_notify_inval_entry)
  EXPORT(ll_notify_delete)
  EXPORT(ll_notify_inval_attrs_now)
  napi_value arraybuffer;
  napi_value array;
  napi_create_external_arraybuffer(env, ll_args, sizeof(ll_args), NULL, NULL, &arraybuffer);
  napi_create_typedarray(env, napi_float64_array, LL_ARGS, arraybuffer, 0, &array);
  napi_set_named_property(env, exports, "ll_args", array);
  napi_value ops;
  napi_create_array_with_length(env, LL_OPS, &ops);
  for (uint32_t i = 0; i < LL_OPS; i++) {
    napi_value op;
    napi_create_string_utf8(env, ll_op_names[i], NAPI_AUTO_LENGTH, &op);
    napi_set_element(env, ops, i, op);
  }
  napi_set_named_property(env, exports, "ll_ops", ops);
  napi_value constant;
  napi_create_int32(env, LL_SLOTS, &constant);
  napi_set_named_property(env, exports, "LL_SLOTS", constant);
  napi_create_int32(env, LL_NOTIFY_QUEUE, &constant);
  napi_set_named_property(env, exports, "LL_NOTIFY_QUEUE", constant);
  return exports;
}

// node_api.h defines this one without declaring it first
NAPI_MODULE_EXPORT int32_t NODE_API_MODULE_GET_API_VERSION(void);
NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
