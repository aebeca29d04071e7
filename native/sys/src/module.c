// The module's exports: the calls, and the constants of their flags.
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>

#include <node_api.h>

#include "kdfs_sys.h"

static napi_status export_int(napi_env env, napi_value exports, const char *name, int value) {
  napi_value number;
  napi_status status = napi_create_int32(env, value, &number);
  return status == napi_ok ? napi_set_named_property(env, exports, name, number) : status;
}

static napi_value init_module(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "fallocate", NAPI_AUTO_LENGTH, sys_fallocate, NULL, &fn) != napi_ok ||
      napi_set_named_property(env, exports, "fallocate", fn) != napi_ok ||
      export_int(env, exports, "FALLOC_FL_KEEP_SIZE", FALLOC_FL_KEEP_SIZE) != napi_ok ||
      export_int(env, exports, "FALLOC_FL_PUNCH_HOLE", FALLOC_FL_PUNCH_HOLE) != napi_ok ||
      export_int(env, exports, "FALLOC_FL_ZERO_RANGE", FALLOC_FL_ZERO_RANGE) != napi_ok) {
    napi_throw_error(env, NULL, "kdfs-sys: cannot make the exports");
    return NULL;
  }
  return exports;
}

// node_api.h defines this one without declaring it first
NAPI_MODULE_EXPORT int32_t NODE_API_MODULE_GET_API_VERSION(void);
NAPI_MODULE(NODE_GYP_MODULE_NAME, init_module)
