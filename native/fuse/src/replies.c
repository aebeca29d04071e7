// The replies: JavaScript answers a request by its slot, once. Each function
// reads all its arguments before answering, so that one that throws (a bad
// argument, a slot answered already) leaves the request as it was; each
// returns what libfuse returned: 0, or -errno if the kernel did not take the
// reply (-ENOENT: the request was interrupted and the kernel gave up on it).
#include "kdfs_fuse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

// The reply went out: the slot (and the receive buffer a write held) is free.
static napi_value answered(napi_env env, ll_req *r, int res) {
  r->req = NULL;
  slot_release(env, r);
  return int_value(env, res);
}

// attributes as a Float64Array: ino mode nlink uid gid rdev size blksize blocks
// atime(s, ns) mtime(s, ns) ctime(s, ns)
static int attr_arg(napi_env env, napi_value value, struct stat *st) {
  double *a;
  size_t length;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, value, &type, &length, (void **) &a, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < 15) {
    napi_throw_type_error(env, NULL, "attributes must be a Float64Array(15)");
    return -1;
  }
  memset(st, 0, sizeof(*st));
  st->st_ino = (ino_t) a[0];
  st->st_mode = (mode_t) a[1];
  st->st_nlink = (nlink_t) a[2];
  st->st_uid = (uid_t) a[3];
  st->st_gid = (gid_t) a[4];
  st->st_rdev = (dev_t) a[5];
  st->st_size = (off_t) a[6];
  st->st_blksize = (blksize_t) a[7];
  st->st_blocks = (blkcnt_t) a[8];
  st->st_atim.tv_sec = (time_t) a[9];
  st->st_atim.tv_nsec = (long) a[10];
  st->st_mtim.tv_sec = (time_t) a[11];
  st->st_mtim.tv_nsec = (long) a[12];
  st->st_ctim.tv_sec = (time_t) a[13];
  st->st_ctim.tv_nsec = (long) a[14];
  return 0;
}

static int entry_arg(napi_env env, napi_value *argv, struct fuse_entry_param *e) {
  memset(e, 0, sizeof(*e));
  if (attr_arg(env, argv[0], &e->attr) != 0) return -1;
  if (number_arg(env, argv[1], &e->entry_timeout) != 0) return -1;
  if (number_arg(env, argv[2], &e->attr_timeout) != 0) return -1;
  e->ino = e->attr.st_ino;
  e->generation = 1;
  return 0;
}

// flags: 1 direct_io, 2 keep_cache, 4 nonseekable
static int open_arg(napi_env env, napi_value *argv, struct fuse_file_info *fi) {
  double fh;
  double flags;
  if (number_arg(env, argv[0], &fh) != 0 || number_arg(env, argv[1], &flags) != 0) return -1;
  memset(fi, 0, sizeof(*fi));
  fi->fh = (uint64_t) fh;
  uint32_t bits = (uint32_t) flags;
  fi->direct_io = (bits & 1) ? 1 : 0;
  fi->keep_cache = (bits & 2) ? 1 : 0;
  fi->nonseekable = (bits & 4) ? 1 : 0;
  return 0;
}

// ll_reply_err(slot, errno): errno 0 answers success for operations without data.
napi_value ll_reply_err(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  double err;
  if (r == NULL || number_arg(env, argv[1], &err) != 0) return NULL;
  return answered(env, r, fuse_reply_err(r->req, (int) err));
}

// ll_reply_entry(slot, attr, entryTimeoutS, attrTimeoutS)
napi_value ll_reply_entry(napi_env env, napi_callback_info info) {
  ARGS(4)
  ll_req *r = slot_arg(env, argv[0]);
  struct fuse_entry_param e;
  if (r == NULL || entry_arg(env, &argv[1], &e) != 0) return NULL;
  return answered(env, r, fuse_reply_entry(r->req, &e));
}

// ll_reply_attr(slot, attr, attrTimeoutS)
napi_value ll_reply_attr(napi_env env, napi_callback_info info) {
  ARGS(3)
  ll_req *r = slot_arg(env, argv[0]);
  struct stat st;
  double timeout;
  if (r == NULL || attr_arg(env, argv[1], &st) != 0 || number_arg(env, argv[2], &timeout) != 0) return NULL;
  return answered(env, r, fuse_reply_attr(r->req, &st, timeout));
}

// ll_reply_open(slot, fh, flags): open and opendir
napi_value ll_reply_open(napi_env env, napi_callback_info info) {
  ARGS(3)
  ll_req *r = slot_arg(env, argv[0]);
  struct fuse_file_info fi;
  if (r == NULL || open_arg(env, &argv[1], &fi) != 0) return NULL;
  return answered(env, r, fuse_reply_open(r->req, &fi));
}

// ll_reply_create(slot, attr, entryTimeoutS, attrTimeoutS, fh, flags)
napi_value ll_reply_create(napi_env env, napi_callback_info info) {
  ARGS(6)
  ll_req *r = slot_arg(env, argv[0]);
  struct fuse_entry_param e;
  struct fuse_file_info fi;
  if (r == NULL || entry_arg(env, &argv[1], &e) != 0 || open_arg(env, &argv[4], &fi) != 0) return NULL;
  return answered(env, r, fuse_reply_create(r->req, &e, &fi));
}

// ll_reply_write(slot, count): bytes written, or copied by copy_file_range
napi_value ll_reply_write(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  double count;
  if (r == NULL || number_arg(env, argv[1], &count) != 0) return NULL;
  return answered(env, r, fuse_reply_write(r->req, (size_t) count));
}

// ll_reply_buf(slot, buffer | null[, length]): data of a read, a getxattr or
// a listxattr
napi_value ll_reply_buf(napi_env env, napi_callback_info info) {
  ARGS(3)
  ll_req *r = slot_arg(env, argv[0]);
  if (r == NULL) return NULL;
  void *data = NULL;
  size_t length = 0;
  napi_valuetype type;
  napi_typeof(env, argv[1], &type);
  if (type != napi_null && type != napi_undefined && napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok) {
    napi_throw_type_error(env, NULL, "the data must be a Buffer or null");
    return NULL;
  }
  napi_typeof(env, argv[2], &type);
  if (type == napi_number) {
    double wanted;
    number_arg(env, argv[2], &wanted);
    if (wanted >= 0 && wanted < (double) length) length = (size_t) wanted;
  }
  return answered(env, r, fuse_reply_buf(r->req, data, length));
}

// ll_reply_iov(slot, [buffers]): the data of a read in pieces, without joining them
napi_value ll_reply_iov(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  if (r == NULL) return NULL;
  uint32_t count = 0;
  if (napi_get_array_length(env, argv[1], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "the pieces must be an array of Buffers");
    return NULL;
  }
  if (count > LL_IOV_MAX) {
    napi_throw_range_error(env, NULL, "too many pieces");
    return NULL;
  }
  struct iovec iov[LL_IOV_MAX];
  for (uint32_t i = 0; i < count; i++) {
    napi_value piece;
    void *data = NULL;
    size_t length = 0;
    if (napi_get_element(env, argv[1], i, &piece) != napi_ok ||
        napi_get_buffer_info(env, piece, &data, &length) != napi_ok) {
      napi_throw_type_error(env, NULL, "the pieces must be an array of Buffers");
      return NULL;
    }
    iov[i].iov_base = data;
    iov[i].iov_len = length;
  }
  return answered(env, r, fuse_reply_iov(r->req, iov, (int) count));
}

// ll_reply_readlink(slot, target)
napi_value ll_reply_readlink(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  if (r == NULL) return NULL;
  char *target = string_arg(env, argv[1], NULL);
  if (target == NULL) return NULL;
  int res = fuse_reply_readlink(r->req, target);
  free(target);
  return answered(env, r, res);
}

// ll_reply_statfs(slot, Float64Array: bsize frsize blocks bfree bavail files ffree favail fsid flag namemax)
napi_value ll_reply_statfs(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  if (r == NULL) return NULL;
  double *a;
  size_t length;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[1], &type, &length, (void **) &a, NULL, NULL) != napi_ok ||
      type != napi_float64_array || length < 11) {
    napi_throw_type_error(env, NULL, "statfs must be a Float64Array(11)");
    return NULL;
  }
  struct statvfs st;
  memset(&st, 0, sizeof(st));
  st.f_bsize = (unsigned long) a[0];
  st.f_frsize = (unsigned long) a[1];
  st.f_blocks = (fsblkcnt_t) a[2];
  st.f_bfree = (fsblkcnt_t) a[3];
  st.f_bavail = (fsblkcnt_t) a[4];
  st.f_files = (fsfilcnt_t) a[5];
  st.f_ffree = (fsfilcnt_t) a[6];
  st.f_favail = (fsfilcnt_t) a[7];
  st.f_fsid = (unsigned long) a[8];
  st.f_flag = (unsigned long) a[9];
  st.f_namemax = (unsigned long) a[10];
  return answered(env, r, fuse_reply_statfs(r->req, &st));
}

// ll_reply_xattr(slot, size): the size of a value or list, when asked with size 0
napi_value ll_reply_xattr(napi_env env, napi_callback_info info) {
  ARGS(2)
  ll_req *r = slot_arg(env, argv[0]);
  double size;
  if (r == NULL || number_arg(env, argv[1], &size) != 0) return NULL;
  return answered(env, r, fuse_reply_xattr(r->req, (size_t) size));
}

// ll_reply_dir(slot, size, offset, names, inos (Float64Array), modes (Uint32Array)):
// packs entries from the first one on, numbering them from offset + 1, as many as
// fit in size bytes; returns how many it packed.
napi_value ll_reply_dir(napi_env env, napi_callback_info info) {
  ARGS(6)
  ll_req *r = slot_arg(env, argv[0]);
  double size_arg;
  double offset;
  if (r == NULL || number_arg(env, argv[1], &size_arg) != 0 || number_arg(env, argv[2], &offset) != 0) return NULL;
  size_t size = size_arg > 0 ? (size_t) size_arg : 0;
  uint32_t count = 0;
  double *inos;
  uint32_t *modes;
  size_t length;
  napi_typedarray_type type;
  if (napi_get_array_length(env, argv[3], &count) != napi_ok) {
    napi_throw_type_error(env, NULL, "names must be an array");
    return NULL;
  }
  if (napi_get_typedarray_info(env, argv[4], &type, &length, (void **) &inos, NULL, NULL) != napi_ok ||
      type != napi_float64_array) {
    napi_throw_type_error(env, NULL, "inos must be a Float64Array");
    return NULL;
  }
  if (length < count) count = (uint32_t) length;
  if (napi_get_typedarray_info(env, argv[5], &type, &length, (void **) &modes, NULL, NULL) != napi_ok ||
      type != napi_uint32_array) {
    napi_throw_type_error(env, NULL, "modes must be a Uint32Array");
    return NULL;
  }
  if (length < count) count = (uint32_t) length;
  char *buf = malloc(size > 0 ? size : 1);
  if (buf == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  size_t used = 0;
  uint32_t packed = 0;
  char name[1024];
  for (; packed < count; packed++) {
    napi_value value;
    size_t name_length = 0;
    if (napi_get_element(env, argv[3], packed, &value) != napi_ok ||
        napi_get_value_string_utf8(env, value, name, sizeof(name), &name_length) != napi_ok) {
      free(buf);
      napi_throw_type_error(env, NULL, "names must be strings");
      return NULL;
    }
    struct stat st;
    memset(&st, 0, sizeof(st));
    st.st_ino = (ino_t) inos[packed];
    st.st_mode = modes[packed];
    size_t need = fuse_add_direntry(r->req, NULL, 0, name, NULL, 0);
    if (used + need > size) break;
    fuse_add_direntry(r->req, buf + used, size - used, name, &st, (off_t) (offset + packed + 1));
    used += need;
  }
  fuse_reply_buf(r->req, buf, used);
  free(buf);
  r->req = NULL;
  slot_release(env, r);
  napi_value result;
  napi_create_uint32(env, packed, &result);
  return result;
}

// ll_reply_lock(slot, type, start, end, pid): the answer to getlk, a lock that
// conflicts with the one asked about ([start, end], end -1: to the end of the
// file; pid its holder), or type F_UNLCK: none does. libfuse's fuse_reply_lock
// turns l_len 0 into the kernel's end OFFSET_MAX, else end = l_start + l_len - 1.
napi_value ll_reply_lock(napi_env env, napi_callback_info info) {
  ARGS(5)
  ll_req *r = slot_arg(env, argv[0]);
  double type;
  double pid;
  int64_t start;
  int64_t end;
  if (r == NULL || number_arg(env, argv[1], &type) != 0 || offset_arg(env, argv[2], &start) != 0 ||
      offset_arg(env, argv[3], &end) != 0 || number_arg(env, argv[4], &pid) != 0) {
    return NULL;
  }
  struct flock lock;
  memset(&lock, 0, sizeof(lock));
  lock.l_whence = SEEK_SET;
  lock.l_pid = (pid_t) pid;
  if (type == F_UNLCK) {
    lock.l_type = F_UNLCK;
  } else if (type == F_RDLCK || type == F_WRLCK) {
    if (start < 0 || end < -1 || (end >= 0 && end < start)) {
      napi_throw_range_error(env, NULL, "a lock range is start >= 0 and end >= start, or -1");
      return NULL;
    }
    lock.l_type = (short) type;
    lock.l_start = start;
    // an end at the largest offset is the end of the file too
    lock.l_len = end < 0 || end == INT64_MAX ? 0 : end - start + 1;
  } else {
    napi_throw_range_error(env, NULL, "the lock type must be F_RDLCK, F_WRLCK or F_UNLCK");
    return NULL;
  }
  return answered(env, r, fuse_reply_lock(r->req, &lock));
}
