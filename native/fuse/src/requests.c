// libfuse's callbacks, called as it processes a request (on the main thread,
// within session.c's process_batch): each request takes a slot, gets its
// arguments in the slot's args (ll.args for JavaScript: [0] uid [1] gid [2] pid
// [3] umask [4] ino or parent, and from [5] on what each operation has, below)
// and strings, and is handed to JavaScript, which answers it by its slot.
//
// Interrupts: every request JavaScript is to answer registers an interrupt
// callback (fuse_req_interrupt_func), so any of them may be interrupted: the
// kernel sends an INTERRUPT when the caller gets a signal while waiting for the
// answer (a blocked F_SETLKW or flock, a slow read...). JavaScript then gets op
// 'interrupt' with the slot of that request (session.c, dispatch_interrupts),
// once libfuse has returned, and only if the request is still unanswered; it
// may answer it EINTR at once, or go on and answer it as usual.
#include "kdfs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/fuse.h>

#ifndef FUSE_WRITE_KILL_SUIDGID
#define FUSE_WRITE_KILL_SUIDGID (1 << 2) // FUSE_WRITE_KILL_PRIV before Linux 5.11
#endif

// Called by libfuse (with its locks held) when the kernel interrupts req, or
// at once from fuse_req_interrupt_func if it was interrupted already. Only
// notes it: JavaScript hears of it after libfuse has returned.
static void on_interrupt(fuse_req_t req, void *data) {
  ll_req *r = data;
  if (session == NULL || !r->in_use || r->req != req || r->interrupt_queued) return;
  if (session->interrupt_count >= LL_SLOTS) return;
  r->interrupt_queued = 1;
  session->interrupts[session->interrupt_count].index = (int) (r - session->slots);
  session->interrupts[session->interrupt_count].generation = r->generation;
  session->interrupt_count++;
}

// A slot for a request JavaScript is to answer.
static ll_req *take(fuse_req_t req, int op) {
  ll_req *r = slot_take(req, op);
  fuse_req_interrupt_func(req, on_interrupt, r);
  return r;
}

// Answers req at once if a name it carries cannot be (see names.c): true then.
static int refused(fuse_req_t req, int err) {
  if (err == 0) return 0;
  fuse_reply_err(req, err);
  return 1;
}

static double fh_of(const struct fuse_file_info *fi) {
  return fi != NULL ? (double) fi->fh : -1;
}

// ------------------------------------------------------------ init, forget

static void ll_init(void *userdata, struct fuse_conn_info *conn) {
  (void) userdata;
  conn->max_write = LL_MAX_WRITE;
  conn->max_readahead = LL_MAX_WRITE;
  // requests are read into buffers JavaScript can see, not spliced through pipes
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  // O_TRUNC comes as a truncation (setattr) before the open, not as an open flag
  conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
  // locks are the file system's (libfuse wants these already, since ll_ops has
  // getlk, setlk and flock; said here too, so that it stays so)
  conn->want |= conn->capable & (FUSE_CAP_POSIX_LOCKS | FUSE_CAP_FLOCK_LOCKS);
  session->initialized = 1;
  dispatch(slot_take(NULL, LL_INIT));
}

// forget and forget_multi: one 'forget' per inode, args [4] ino [5] nlookup.
// Answered here (fuse_reply_none): JavaScript never answers them.
static void forget_one(fuse_ino_t ino, uint64_t nlookup) {
  ll_req *r = slot_take(NULL, LL_FORGET);
  r->args[4] = (double) ino;
  r->args[5] = (double) nlookup;
  dispatch(r);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  fuse_reply_none(req);
  forget_one(ino, nlookup);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets) {
  // forgets lies in the receive buffer, which stays as it is until libfuse returns
  for (size_t i = 0; i < count; i++) forget_one(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

// ------------------------------------------------------------ names and attributes

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (refused(req, name_errno(name, 0))) return;
  ll_req *r = take(req, LL_LOOKUP);
  r->args[4] = (double) parent;
  r->str1 = copy_string(name);
  dispatch(r);
}

// args: [5] fh, or -1 without one
static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_GETATTR);
  r->args[4] = (double) ino;
  r->args[5] = fh_of(fi);
  dispatch(r);
}

// args: [5] valid (FUSE_SET_ATTR_*) [6] mode [7] uid [8] gid [9] size
// [10] atime s [11] atime ns [12] mtime s [13] mtime ns [14] fh or -1
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int valid, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_SETATTR);
  r->args[4] = (double) ino;
  r->args[5] = valid;
  r->args[6] = attr->st_mode;
  r->args[7] = attr->st_uid;
  r->args[8] = attr->st_gid;
  r->args[9] = (double) attr->st_size;
  r->args[10] = (double) attr->st_atim.tv_sec;
  r->args[11] = (double) attr->st_atim.tv_nsec;
  r->args[12] = (double) attr->st_mtim.tv_sec;
  r->args[13] = (double) attr->st_mtim.tv_nsec;
  r->args[14] = fh_of(fi);
  dispatch(r);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino) {
  ll_req *r = take(req, LL_READLINK);
  r->args[4] = (double) ino;
  dispatch(r);
}

// args: [5] mode [6] rdev; str1 name
static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev) {
  if (refused(req, name_errno(name, 1))) return;
  ll_req *r = take(req, LL_MKNOD);
  r->args[4] = (double) parent;
  r->args[5] = mode;
  r->args[6] = (double) rdev;
  r->str1 = copy_string(name);
  dispatch(r);
}

// args: [5] mode; str1 name
static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
  if (refused(req, name_errno(name, 1))) return;
  ll_req *r = take(req, LL_MKDIR);
  r->args[4] = (double) parent;
  r->args[5] = mode;
  r->str1 = copy_string(name);
  dispatch(r);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (refused(req, name_errno(name, 0))) return;
  ll_req *r = take(req, LL_UNLINK);
  r->args[4] = (double) parent;
  r->str1 = copy_string(name);
  dispatch(r);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (refused(req, name_errno(name, 0))) return;
  ll_req *r = take(req, LL_RMDIR);
  r->args[4] = (double) parent;
  r->str1 = copy_string(name);
  dispatch(r);
}

// str1: the link's target, str2: its name in parent
static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name) {
  if (refused(req, name_errno(name, 1)) || refused(req, target_errno(link))) return;
  ll_req *r = take(req, LL_SYMLINK);
  r->args[4] = (double) parent;
  r->str1 = copy_string(link);
  r->str2 = copy_string(name);
  dispatch(r);
}

// args: [5] newparent [6] flags (RENAME_NOREPLACE, RENAME_EXCHANGE); str1 name, str2 newname
static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent, const char *newname, unsigned int flags) {
  if (refused(req, name_errno(name, 0)) || refused(req, name_errno(newname, 1))) return;
  ll_req *r = take(req, LL_RENAME);
  r->args[4] = (double) parent;
  r->args[5] = (double) newparent;
  r->args[6] = flags;
  r->str1 = copy_string(name);
  r->str2 = copy_string(newname);
  dispatch(r);
}

// args: [4] ino [5] newparent; str1 newname
static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname) {
  if (refused(req, name_errno(newname, 1))) return;
  ll_req *r = take(req, LL_LINK);
  r->args[4] = (double) ino;
  r->args[5] = (double) newparent;
  r->str1 = copy_string(newname);
  dispatch(r);
}

// ------------------------------------------------------------ files

// args: [5] open flags
static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_OPEN);
  r->args[4] = (double) ino;
  r->args[5] = fi->flags;
  dispatch(r);
}

// args: [5] mode [6] open flags; str1 name
static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
  if (refused(req, name_errno(name, 1))) return;
  ll_req *r = take(req, LL_CREATE);
  r->args[4] = (double) parent;
  r->args[5] = mode;
  r->args[6] = fi->flags;
  r->str1 = copy_string(name);
  dispatch(r);
}

// args: [5] fh [6] size [7] offset
static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_READ);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = (double) size;
  r->args[7] = (double) off;
  dispatch(r);
}

// Whether the kernel set FUSE_WRITE_KILL_SUIDGID in the write's write_flags: 1
// or 0, or -1 if they cannot be found (then JavaScript had better clear the
// bits: -1 is true). The kernel sets it on writes through direct-I/O handles by
// a caller without CAP_FSETID, and expects the file system to clear S_ISUID
// and S_ISGID.
//
// libfuse 3 does not pass write_flags to .write: its do_write (lib/
// fuse_lowlevel.c, checked in 3.10 to 3.14) hands .write the data at PARAM(arg),
// the bytes right after the request's struct fuse_write_in, itself right after
// the struct fuse_in_header at the start of the buffer the request was read
// into (ours: splice is off, see ll_init). So the header and the fuse_write_in
// are found from the buffer, and trusted only if the data pointer is exactly
// where they put it and they describe this very write (opcode, size, offset,
// fh); any other libfuse gets -1 rather than a guess.
#if FUSE_MAJOR_VERSION != 3 || FUSE_MINOR_VERSION < 10
#error "write_flags: check how this libfuse's do_write passes write data (see write_kill_suidgid)"
#endif
static int write_kill_suidgid(const char *buf, size_t size, off_t off, const struct fuse_file_info *fi) {
  const char *base = session->buffers[session->current_buffer];
  const size_t headers = sizeof(struct fuse_in_header) + sizeof(struct fuse_write_in);
  if (buf != base + headers) return -1;
  const struct fuse_in_header *in = (const struct fuse_in_header *) base;
  const struct fuse_write_in *arg = (const struct fuse_write_in *) (base + sizeof(struct fuse_in_header));
  if (in->opcode != FUSE_WRITE || in->len < headers + size || arg->size != size ||
      arg->offset != (uint64_t) off || arg->fh != fi->fh) {
    return -1;
  }
  return (arg->write_flags & FUSE_WRITE_KILL_SUIDGID) != 0;
}

// args: [5] fh [6] size [7] offset [8] kill_suidgid (1, 0, or -1: unknown);
// the data is the buffer argument, valid until the reply
static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_WRITE);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = (double) size;
  r->args[7] = (double) off;
  r->args[8] = write_kill_suidgid(buf, size, off, fi);
  r->data_len = size;
  // buf lies in our receive buffer (libfuse hands it over as const): the
  // request keeps the buffer until its reply, and JavaScript sees the data
  // there. Were it anywhere else, it would be copied.
  char *base = session->buffers[session->current_buffer];
  uintptr_t at = (uintptr_t) buf;
  if (at >= (uintptr_t) base && at + size <= (uintptr_t) base + session->bufsize) {
    r->data = base + (at - (uintptr_t) base);
    r->buffer = session->current_buffer;
    session->current_taken = 1;
  } else if ((r->data = malloc(size > 0 ? size : 1)) != NULL) {
    memcpy(r->data, buf, size);
    r->data_owned = 1;
  } else {
    r->data_len = 0;
    fuse_reply_err(req, ENOMEM);
    r->req = NULL;
    slot_release(session->env, r);
    return;
  }
  dispatch(r);
}

// args: [5] fh; str1 lock owner (decimal): its POSIX locks go with this flush
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_FLUSH);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->str1 = decimal(fi->lock_owner);
  dispatch(r);
}

// args: [5] fh [6] flock_release (1: release the flock locks of str1);
// str1 lock owner (decimal) when the kernel sent one, else null
static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_RELEASE);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = fi->flock_release ? 1 : 0;
  if (fi->flock_release || fi->lock_owner != 0) r->str1 = decimal(fi->lock_owner);
  dispatch(r);
}

// args: [5] fh [6] datasync
static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_FSYNC);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = datasync;
  dispatch(r);
}

// args: [5] fh [6] mode [7] offset [8] length
static void ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_FALLOCATE);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = mode;
  r->args[7] = (double) offset;
  r->args[8] = (double) length;
  dispatch(r);
}

// args: [4] ino_in [5] fh_in [6] off_in [7] ino_out [8] fh_out [9] off_out
// [10] len [11] flags; answered with ll_reply_write (bytes copied) or an error
static void ll_copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, struct fuse_file_info *fi_in,
                               fuse_ino_t ino_out, off_t off_out, struct fuse_file_info *fi_out, size_t len,
                               int flags) {
  ll_req *r = take(req, LL_COPY_FILE_RANGE);
  r->args[4] = (double) ino_in;
  r->args[5] = (double) fi_in->fh;
  r->args[6] = (double) off_in;
  r->args[7] = (double) ino_out;
  r->args[8] = (double) fi_out->fh;
  r->args[9] = (double) off_out;
  r->args[10] = (double) len;
  r->args[11] = flags;
  dispatch(r);
}

// ------------------------------------------------------------ locks

// libfuse hands the kernel's lock range [start, end] (end OFFSET_MAX: up to
// the end of the file) over as a struct flock: l_start = start, l_len = 0 for
// up to the end, else end - start + 1 (convert_fuse_file_lock). JavaScript
// gets [start, end] back, end -1 for up to the end of the file.
static void lock_args(ll_req *r, const struct flock *lock) {
  r->args[6] = lock->l_type;
  r->args[7] = (double) lock->l_start;
  r->args[8] = lock->l_len == 0 ? -1 : (double) (lock->l_start + lock->l_len - 1);
  r->args[9] = lock->l_pid;
}

// args: [5] fh [6] type (F_RDLCK, F_WRLCK) [7] start [8] end (-1: to the end
// of the file) [9] pid; str1 lock owner (decimal). Answered with ll_reply_lock.
static void ll_getlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock) {
  ll_req *r = take(req, LL_GETLK);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  lock_args(r, lock);
  r->str1 = decimal(fi->lock_owner);
  dispatch(r);
}

// args: [5] fh [6] type (F_RDLCK, F_WRLCK, F_UNLCK) [7] start [8] end (-1: to
// the end of the file) [9] pid [10] sleep (1: F_SETLKW, wait for the lock);
// str1 lock owner (decimal). Answered with ll_reply_err (0 or an errno).
static void ll_setlk(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, struct flock *lock, int sleep) {
  ll_req *r = take(req, LL_SETLK);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  lock_args(r, lock);
  r->args[10] = sleep ? 1 : 0;
  r->str1 = decimal(fi->lock_owner);
  dispatch(r);
}

// args: [5] fh [6] op (LOCK_SH, LOCK_EX or LOCK_UN, maybe | LOCK_NB); str1 lock
// owner (decimal, one per open file). Answered with ll_reply_err.
static void ll_flock(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi, int op) {
  ll_req *r = take(req, LL_FLOCK);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = op;
  r->str1 = decimal(fi->lock_owner);
  dispatch(r);
}

// ------------------------------------------------------------ directories

// args: [5] open flags
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_OPENDIR);
  r->args[4] = (double) ino;
  r->args[5] = fi->flags;
  dispatch(r);
}

// args: [5] fh [6] size [7] offset (the number of entries already returned)
static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_READDIR);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = (double) size;
  r->args[7] = (double) off;
  dispatch(r);
}

// args: [5] fh
static void ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_RELEASEDIR);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  dispatch(r);
}

// args: [5] fh [6] datasync
static void ll_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  ll_req *r = take(req, LL_FSYNCDIR);
  r->args[4] = (double) ino;
  r->args[5] = (double) fi->fh;
  r->args[6] = datasync;
  dispatch(r);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino) {
  ll_req *r = take(req, LL_STATFS);
  r->args[4] = (double) ino;
  dispatch(r);
}

// ------------------------------------------------------------ extended attributes

// str1: name; data: value (a copy); args [5] flags
static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size, int flags) {
  char *copy = malloc(size > 0 ? size : 1);
  if (copy == NULL) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  if (size > 0) memcpy(copy, value, size);
  ll_req *r = take(req, LL_SETXATTR);
  r->args[4] = (double) ino;
  r->args[5] = flags;
  r->str1 = copy_string(name);
  r->data = copy;
  r->data_len = size;
  r->data_owned = 1;
  dispatch(r);
}

// args [5] size (0: the caller asks how large the value is); str1 name
static void ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size) {
  ll_req *r = take(req, LL_GETXATTR);
  r->args[4] = (double) ino;
  r->args[5] = (double) size;
  r->str1 = copy_string(name);
  dispatch(r);
}

// args [5] size (0: the caller asks how large the list is)
static void ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  ll_req *r = take(req, LL_LISTXATTR);
  r->args[4] = (double) ino;
  r->args[5] = (double) size;
  dispatch(r);
}

static void ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name) {
  ll_req *r = take(req, LL_REMOVEXATTR);
  r->args[4] = (double) ino;
  r->str1 = copy_string(name);
  dispatch(r);
}

const struct fuse_lowlevel_ops ll_ops = {
  .init = ll_init,
  .lookup = ll_lookup,
  .forget = ll_forget,
  .forget_multi = ll_forget_multi,
  .getattr = ll_getattr,
  .setattr = ll_setattr,
  .readlink = ll_readlink,
  .mknod = ll_mknod,
  .mkdir = ll_mkdir,
  .unlink = ll_unlink,
  .rmdir = ll_rmdir,
  .symlink = ll_symlink,
  .rename = ll_rename,
  .link = ll_link,
  .open = ll_open,
  .read = ll_read,
  .write = ll_write,
  .flush = ll_flush,
  .release = ll_release,
  .fsync = ll_fsync,
  .opendir = ll_opendir,
  .readdir = ll_readdir,
  .releasedir = ll_releasedir,
  .fsyncdir = ll_fsyncdir,
  .statfs = ll_statfs,
  .setxattr = ll_setxattr,
  .getxattr = ll_getxattr,
  .listxattr = ll_listxattr,
  .removexattr = ll_removexattr,
  .getlk = ll_getlk,
  .setlk = ll_setlk,
  .flock = ll_flock,
  .create = ll_create,
  .fallocate = ll_fallocate,
  .copy_file_range = ll_copy_file_range,
};
