/*
 * qzoned's native addon: the few calls Node lacks (src/io/native/addon.ts loads it). Each group of
 * functions lives in its own file; this one only registers them.
 */
#include <node_api.h>
#include "addon.h"

static int export_function(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &fn) != napi_ok) return 0;
  return napi_set_named_property(env, exports, name, fn) == napi_ok;
}

static napi_value init(napi_env env, napi_value exports) {
  if (!export_function(env, exports, "reserveKeepSize", reserve_keep_size)) return NULL;
  if (!export_function(env, exports, "tuneMalloc", tune_malloc)) return NULL;
  if (!export_function(env, exports, "openBeneath", open_beneath_js)) return NULL;
  if (!export_function(env, exports, "mkdirBeneath", mkdir_beneath_js)) return NULL;
  if (!export_function(env, exports, "unlinkBeneath", unlink_beneath_js)) return NULL;
  if (!export_function(env, exports, "listDirectory", list_directory_js)) return NULL;
  if (!export_function(env, exports, "ofdSetLock", ofd_set_lock)) return NULL;
  if (!export_function(env, exports, "ofdTestLock", ofd_test_lock)) return NULL;
  if (!export_function(env, exports, "namedMemfd", named_memfd)) return NULL;
  if (!export_function(env, exports, "seekData", seek_data)) return NULL;
  if (!export_function(env, exports, "punchHole", punch_hole)) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
