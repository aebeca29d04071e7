// fallocate(2) for the agents' stripe objects: Node's fs module has no binding
// of it. Preallocation (the guarantee that later writes find room) and hole
// punching need the file system's own call: writing zeros would neither be
// metadata-only nor free anything. Runs in libuv's thread pool, as fs's calls do.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>

#include <node_api.h>

#include "kdfs_sys.h"

typedef struct {
  napi_async_work work;
  napi_ref callback;
  int fd;
  int mode;
  int64_t offset;
  int64_t length;
  int error;
} fallocate_call;

static void fallocate_execute(napi_env env, void *data) {
  (void) env;
  fallocate_call *call = data;
  int result;
  do {
    result = fallocate(call->fd, call->mode, call->offset, call->length);
  } while (result != 0 && errno == EINTR);
  call->error = result == 0 ? 0 : errno;
}

static void fallocate_complete(napi_env env, napi_status status, void *data) {
  fallocate_call *call = data;
  napi_value callback, global, errno_value;
  if (napi_get_reference_value(env, call->callback, &callback) == napi_ok &&
      napi_get_global(env, &global) == napi_ok &&
      napi_create_int32(env, status == napi_ok ? call->error : ECANCELED, &errno_value) == napi_ok) {
    napi_call_function(env, global, callback, 1, &errno_value, NULL);
  }
  napi_delete_reference(env, call->callback);
  napi_delete_async_work(env, call->work);
  free(call);
}

// A whole number of bytes, below 2^53 (past it a double is not exact; the file
// system refuses far below anyway): NaN and fractions are not.
static int whole_extent(double value, int zero_allowed) {
  if (!(zero_allowed ? value >= 0 : value > 0) || !(value <= SYS_OFFSET_MAX)) return 0;
  return (double) (int64_t) value == value;
}

// fallocate(fd, mode, offset, length, callback): callback(errno), 0 on success.
// Throws (TypeError/RangeError) on arguments that are not what the call takes.
napi_value sys_fallocate(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 5) {
    napi_throw_type_error(env, NULL, "fallocate(fd, mode, offset, length, callback)");
    return NULL;
  }
  int32_t fd, mode;
  double offset, length;
  napi_valuetype callback_type;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int32(env, argv[1], &mode) != napi_ok ||
      napi_get_value_double(env, argv[2], &offset) != napi_ok || napi_get_value_double(env, argv[3], &length) != napi_ok ||
      napi_typeof(env, argv[4], &callback_type) != napi_ok || callback_type != napi_function) {
    napi_throw_type_error(env, NULL, "fallocate(fd, mode, offset, length, callback): numbers and a function");
    return NULL;
  }
  if (fd < 0 || !whole_extent(offset, 1) || !whole_extent(length, 0) || offset + length > SYS_OFFSET_MAX) {
    napi_throw_range_error(env, NULL, "fallocate: fd, offset or length out of range");
    return NULL;
  }
  fallocate_call *call = calloc(1, sizeof(*call));
  if (call == NULL) {
    napi_throw_error(env, NULL, "fallocate: out of memory");
    return NULL;
  }
  call->fd = fd;
  call->mode = mode;
  call->offset = (int64_t) offset;
  call->length = (int64_t) length;
  napi_value name;
  if (napi_create_string_utf8(env, "kdfs:fallocate", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_reference(env, argv[4], 1, &call->callback) != napi_ok) {
    free(call);
    napi_throw_error(env, NULL, "fallocate: cannot hold the callback");
    return NULL;
  }
  if (napi_create_async_work(env, NULL, name, fallocate_execute, fallocate_complete, call, &call->work) != napi_ok) {
    napi_delete_reference(env, call->callback);
    free(call);
    napi_throw_error(env, NULL, "fallocate: cannot make the call");
    return NULL;
  }
  if (napi_queue_async_work(env, call->work) != napi_ok) {
    napi_delete_async_work(env, call->work);
    napi_delete_reference(env, call->callback);
    free(call);
    napi_throw_error(env, NULL, "fallocate: cannot queue the call");
    return NULL;
  }
  return NULL;
}
