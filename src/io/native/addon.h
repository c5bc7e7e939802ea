/* The addon's functions, one file each; addon.c registers them. */
#ifndef QZONED_ADDON_H
#define QZONED_ADDON_H
#include <node_api.h>

napi_value reserve_keep_size(napi_env env, napi_callback_info info);
napi_value tune_malloc(napi_env env, napi_callback_info info);

#endif
