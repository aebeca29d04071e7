// Notifications to the kernel (inval_inode, inval_entry, delete), sent by a
// thread of their own.
//
// Sending one may block: to invalidate an entry the kernel takes the directory's
// lock, which a request in that directory (a lookup, a create...) holds until
// it is answered. Requests are answered by JavaScript, on the main thread; were
// notifications sent from there, one could wait for a reply that only the main
// thread can send: a deadlock. So JavaScript queues them and goes on; the
// notification thread sends them in order, and each one's result reaches
// JavaScript later, on the main thread (a uv_async), through its done callback.
//
// The queue is a ring of LL_NOTIFY_QUEUE entries and three counters, which only
// grow: [head, work) have been sent and await delivery of their result to
// JavaScript, [work, tail) wait for the thread. The main thread fills entries
// at tail and delivers from head; the thread sends from work. An entry belongs
// to one side at a time, so only the counters need the mutex.
#include "kdfs_fuse.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

enum { NOTIFY_INVAL_INODE, NOTIFY_INVAL_ENTRY, NOTIFY_DELETE };

typedef struct {
  int kind;
  fuse_ino_t ino;          // inval_inode: the inode; inval_entry, delete: the parent
  fuse_ino_t child;        // delete
  off_t offset;            // inval_inode
  off_t length;            // inval_inode
  char *name;              // inval_entry, delete
  size_t name_length;
  napi_ref done;           // or NULL
  int result;              // 0 or -errno, once sent
} notice;

struct ll_notify {
  struct fuse_session *se;
  uv_thread_t thread;
  uv_mutex_t lock;
  uv_cond_t wake;
  uv_async_t async;
  uint64_t head, work, tail;
  int stopping;            // the session is over: the thread is to return
  int stopped;             // it has returned (or is about to)
  int referenced;          // async keeps the event loop alive (results to deliver)
  notice queue[LL_NOTIFY_QUEUE];
};

// ------------------------------------------------------------ the thread

static int send_notice(struct fuse_session *se, const notice *n) {
  switch (n->kind) {
  case NOTIFY_INVAL_INODE:
    return fuse_lowlevel_notify_inval_inode(se, n->ino, n->offset, n->length);
  case NOTIFY_INVAL_ENTRY:
    return fuse_lowlevel_notify_inval_entry(se, n->ino, n->name, n->name_length);
  case NOTIFY_DELETE:
    return fuse_lowlevel_notify_delete(se, n->ino, n->child, n->name, n->name_length);
  default:
    return -EINVAL;
  }
}

static void notify_thread(void *arg) {
  ll_notify *q = arg;
  uv_mutex_lock(&q->lock);
  for (;;) {
    while (q->work == q->tail && !q->stopping) uv_cond_wait(&q->wake, &q->lock);
    if (q->stopping) break;
    notice *n = &q->queue[q->work % LL_NOTIFY_QUEUE];
    uv_mutex_unlock(&q->lock);
    int result = send_notice(q->se, n);
    uv_mutex_lock(&q->lock);
    n->result = result;
    q->work++;
    uv_async_send(&q->async);
  }
  q->stopped = 1;
  uv_mutex_unlock(&q->lock);
  uv_async_send(&q->async);
}

// ------------------------------------------------------------ results, on the main thread

static void release_notice(napi_env env, notice *n) {
  if (n->done != NULL) napi_delete_reference(env, n->done);
  free(n->name);
  memset(n, 0, sizeof(*n));
}

// Calls n's done(result) (an exception in it is the process's uncaught exception).
static void deliver(napi_env env, napi_value resource, notice *n) {
  if (n->done != NULL) {
    napi_handle_scope scope;
    napi_open_handle_scope(env, &scope);
    napi_value done;
    napi_value argv[1];
    napi_value result;
    napi_get_reference_value(env, n->done, &done);
    napi_create_int32(env, n->result, &argv[0]);
    if (done != NULL &&
        napi_make_callback(env, session->async, resource, done, 1, argv, &result) == napi_pending_exception) {
      napi_value exception;
      napi_get_and_clear_last_exception(env, &exception);
      napi_fatal_exception(env, exception);
    }
    napi_close_handle_scope(env, scope);
  }
  release_notice(env, n);
}

static void on_async_closed(uv_handle_t *handle) {
  ll_notify *q = handle->data;
  uv_cond_destroy(&q->wake);
  uv_mutex_destroy(&q->lock);
  free(q);
  session->notify = NULL;
  session_teardown_done();
}

static void on_results(uv_async_t *handle) {
  ll_notify *q = handle->data;
  napi_env env = session->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value resource;
  napi_get_reference_value(env, session->resource, &resource);
  uv_mutex_lock(&q->lock);
  uint64_t sent = q->work;
  int stopped = q->stopped;
  uv_mutex_unlock(&q->lock);
  if (stopped) {
    // nothing more will be sent: what is left fails
    uv_thread_join(&q->thread);
    for (uint64_t i = sent; i < q->tail; i++) q->queue[i % LL_NOTIFY_QUEUE].result = -ENOTCONN;
    sent = q->tail;
  }
  // head moves past each entry before its callback runs: a callback that
  // queues another notification sees the room it left
  while (q->head < sent) {
    notice n = q->queue[q->head % LL_NOTIFY_QUEUE];
    memset(&q->queue[q->head % LL_NOTIFY_QUEUE], 0, sizeof(notice));
    uv_mutex_lock(&q->lock);
    q->head++;
    uv_mutex_unlock(&q->lock);
    deliver(env, resource, &n);
  }
  if (q->referenced && q->head == q->tail && !session->tearing_down) {
    uv_unref((uv_handle_t *) &q->async);
    q->referenced = 0;
  }
  napi_close_handle_scope(env, scope);
  if (stopped) uv_close((uv_handle_t *) &q->async, on_async_closed);
}

// ------------------------------------------------------------ start and stop

static void on_abandoned(uv_handle_t *handle) {
  ll_notify *q = handle->data;
  uv_cond_destroy(&q->wake);
  uv_mutex_destroy(&q->lock);
  free(q);
}

// Starts the thread of a session being mounted. Returns 0, or -1 (nothing started).
int notify_start(ll_session *s, struct fuse_session *se, uv_loop_t *loop) {
  ll_notify *q = calloc(1, sizeof(ll_notify));
  if (q == NULL) return -1;
  q->se = se;
  if (uv_mutex_init(&q->lock) != 0) {
    free(q);
    return -1;
  }
  if (uv_cond_init(&q->wake) != 0) {
    uv_mutex_destroy(&q->lock);
    free(q);
    return -1;
  }
  if (uv_async_init(loop, &q->async, on_results) != 0) {
    uv_cond_destroy(&q->wake);
    uv_mutex_destroy(&q->lock);
    free(q);
    return -1;
  }
  q->async.data = q;
  uv_unref((uv_handle_t *) &q->async);
  // signals are for the main thread (Node's handlers): the thread blocks them all
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int res = uv_thread_create(&q->thread, notify_thread, q);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (res != 0) {
    uv_close((uv_handle_t *) &q->async, on_abandoned);
    return -1;
  }
  s->notify = q;
  return 0;
}

// The session is over and idle: the thread returns once out of the kernel, then
// on_results joins it, fails what it did not send, and calls
// session_teardown_done.
void notify_stop(ll_session *s) {
  ll_notify *q = s->notify;
  // the event loop must run until the teardown is over: were it left to end,
  // Node would close the handles itself, in its own teardown, when the
  // callbacks of this binding may no longer call into JavaScript
  if (!q->referenced) {
    uv_ref((uv_handle_t *) &q->async);
    q->referenced = 1;
  }
  uv_mutex_lock(&q->lock);
  q->stopping = 1;
  uv_cond_signal(&q->wake);
  uv_mutex_unlock(&q->lock);
}

// Whether the thread has notifications to send or is sending one.
int notify_busy(const ll_session *s) {
  ll_notify *q = s->notify;
  if (q == NULL) return 0;
  uv_mutex_lock(&q->lock);
  int busy = q->work < q->tail && !q->stopped;
  uv_mutex_unlock(&q->lock);
  return busy;
}

// ------------------------------------------------------------ the calls

// Queues n (its fields set, done not yet): 0, or -errno (and n is released).
static int enqueue(napi_env env, napi_value done, notice *n) {
  ll_notify *q = session != NULL ? session->notify : NULL;
  if (session == NULL || q == NULL || session->ended || !session->initialized) {
    free(n->name);
    return -ENOTCONN;
  }
  if (q->tail - q->head >= LL_NOTIFY_QUEUE) {
    free(n->name);
    return -EAGAIN;
  }
  napi_valuetype type = napi_undefined;
  napi_typeof(env, done, &type);
  n->done = NULL;
  if (type == napi_function) napi_create_reference(env, done, 1, &n->done);
  n->result = 0;
  q->queue[q->tail % LL_NOTIFY_QUEUE] = *n;
  uv_mutex_lock(&q->lock);
  q->tail++;
  uv_cond_signal(&q->wake);
  uv_mutex_unlock(&q->lock);
  if (!q->referenced) {
    uv_ref((uv_handle_t *) &q->async);
    q->referenced = 1;
  }
  return 0;
}

// ll_notify_inval_inode(ino, offset, length, done?): offset < 0 drops the
// cached attributes only; length 0 means up to the end. Returns 0 (queued),
// -EAGAIN (LL_NOTIFY_QUEUE notifications in flight already) or -ENOTCONN (no
// session); done(result) follows, result 0 or -errno from the kernel
// (-ENOENT: it did not have the inode).
napi_value ll_notify_inval_inode(napi_env env, napi_callback_info info) {
  ARGS(4)
  double ino;
  int64_t offset;
  int64_t length;
  if (number_arg(env, argv[0], &ino) != 0 || offset_arg(env, argv[1], &offset) != 0 ||
      offset_arg(env, argv[2], &length) != 0) {
    return NULL;
  }
  notice n = { .kind = NOTIFY_INVAL_INODE, .ino = (fuse_ino_t) ino, .offset = offset, .length = length };
  return int_value(env, enqueue(env, argv[3], &n));
}

// ll_notify_inval_entry(parent, name, done?): as above.
napi_value ll_notify_inval_entry(napi_env env, napi_callback_info info) {
  ARGS(3)
  double parent;
  if (number_arg(env, argv[0], &parent) != 0) return NULL;
  notice n = { .kind = NOTIFY_INVAL_ENTRY, .ino = (fuse_ino_t) parent };
  if ((n.name = string_arg(env, argv[1], &n.name_length)) == NULL) return NULL;
  return int_value(env, enqueue(env, argv[2], &n));
}

// ll_notify_delete(parent, child, name, done?): as inval_entry, and the kernel
// also drops the child's dentry if it is that inode (and tells inotify).
napi_value ll_notify_delete(napi_env env, napi_callback_info info) {
  ARGS(4)
  double parent;
  double child;
  if (number_arg(env, argv[0], &parent) != 0 || number_arg(env, argv[1], &child) != 0) return NULL;
  notice n = { .kind = NOTIFY_DELETE, .ino = (fuse_ino_t) parent, .child = (fuse_ino_t) child };
  if ((n.name = string_arg(env, argv[2], &n.name_length)) == NULL) return NULL;
  return int_value(env, enqueue(env, argv[3], &n));
}

// ll_notify_inval_attrs_now(ino): drops the kernel's cached attributes of ino,
// sent at once from the calling (main) thread rather than queued. It takes no
// lock a request of this session could be holding (no directory lock as for an
// entry, no page lock as for data; only the mount's killsb, for reading), so it
// cannot wait for a reply of the main thread, and it does not wait behind
// queued notifications that may. (The kernel's reference to the inode is
// dropped at the end; it would evict the inode, and wait for its pages, only
// as the last one, and pages locked or under writeback come with an open file
// or a mapping, which hold references of their own.) Returns 0, -ENOENT (the
// kernel does not have the inode), -EINVAL (ino < 1) or -errno.
napi_value ll_notify_inval_attrs_now(napi_env env, napi_callback_info info) {
  ARGS(1)
  double ino;
  if (number_arg(env, argv[0], &ino) != 0) return NULL;
  // (0 would ask the kernel to drop every inode's)
  if (!(ino >= 1)) return int_value(env, -EINVAL);
  if (session == NULL || session->notify == NULL || session->ended || !session->initialized) return int_value(env, -ENOTCONN);
  return int_value(env, fuse_lowlevel_notify_inval_inode(session->se, (fuse_ino_t) ino, -1, 0));
}
