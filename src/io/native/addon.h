/* The addon's functions, one file each; addon.c registers them. */
#ifndef QZONED_ADDON_H
#define QZONED_ADDON_H
#include <node_api.h>

napi_value reserve_keep_size(napi_env env, napi_callback_info info);
napi_value tune_malloc(napi_env env, napi_callback_info info);
napi_value open_beneath_js(napi_env env, napi_callback_info info);
napi_value mkdir_beneath_js(napi_env env, napi_callback_info info);
napi_value unlink_beneath_js(napi_env env, napi_callback_info info);
napi_value list_directory_js(napi_env env, napi_callback_info info);
napi_value ofd_set_lock(napi_env env, napi_callback_info info);
napi_value ofd_test_lock(napi_env env, napi_callback_info info);
napi_value named_memfd(napi_env env, napi_callback_info info);
napi_value seek_data(napi_env env, napi_callback_info info);
napi_value punch_hole(napi_env env, napi_callback_info info);

#endif
