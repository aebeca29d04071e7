// kdfs-sys: system calls the agents need that Node's fs module lacks.
#ifndef KDFS_SYS_H
#define KDFS_SYS_H

#include <node_api.h>

// Largest offset or length taken: 2^53, past which a double is not exact.
#define SYS_OFFSET_MAX 9007199254740992.0

napi_value sys_fallocate(napi_env env, napi_callback_info info);

#endif
