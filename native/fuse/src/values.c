// JavaScript values to C and back, for the replies and notifications. Each
// function that fails has thrown a JavaScript error: its caller returns at once.
#include "kdfs_fuse.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The request a slot id names (see ll_req), if it is still to be answered;
// else throws: a second reply, a reply to init, exit or forget, a made-up id.
ll_req *slot_arg(napi_env env, napi_value value) {
  double id;
  if (napi_get_value_double(env, value, &id) != napi_ok) {
    napi_throw_type_error(env, NULL, "the slot must be a number");
    return NULL;
  }
  if (session != NULL && id >= 0 && id < (double) LL_SLOTS * 4294967296.0 && (double) (uint64_t) id == id) {
    uint64_t n = (uint64_t) id;
    ll_req *r = &session->slots[n % LL_SLOTS];
    if (r->in_use && r->req != NULL && r->generation == (uint32_t) (n / LL_SLOTS)) return r;
  }
  napi_throw_range_error(env, NULL, "no such fuse request (answered already?)");
  return NULL;
}

int number_arg(napi_env env, napi_value value, double *n) {
  if (napi_get_value_double(env, value, n) != napi_ok) {
    napi_throw_type_error(env, NULL, "a number was expected");
    return -1;
  }
  return 0;
}

// A file offset: an integer in [-2^63, 2^63).
int offset_arg(napi_env env, napi_value value, int64_t *n) {
  double d;
  if (number_arg(env, value, &d) != 0) return -1;
  if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (double) (int64_t) d != d) {
    napi_throw_range_error(env, NULL, "an integer offset was expected");
    return -1;
  }
  *n = (int64_t) d;
  return 0;
}

// A copy of a string argument (malloc'd, NUL-terminated), its length in length.
char *string_arg(napi_env env, napi_value value, size_t *length) {
  size_t n = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &n) != napi_ok) {
    napi_throw_type_error(env, NULL, "a string was expected");
    return NULL;
  }
  char *s = malloc(n + 1);
  if (s == NULL) {
    napi_throw_error(env, NULL, "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, value, s, n + 1, &n);
  if (length != NULL) *length = n;
  return s;
}

napi_value int_value(napi_env env, int64_t n) {
  napi_value value;
  napi_create_int64(env, n, &value);
  return value;
}

// A 64-bit value as a decimal string (lock owners: a double would lose bits).
char *decimal(uint64_t n) {
  char s[24];
  snprintf(s, sizeof(s), "%" PRIu64, n);
  return strdup(s);
}

char *copy_string(const char *s) {
  return s == NULL ? NULL : strdup(s);
}
