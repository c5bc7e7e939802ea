/*
 * tuneMalloc(mmapThreshold, trimThreshold): glibc's mallopt for the daemon's process. Node's
 * Buffers are malloc'ed; with glibc's defaults a large one gets a fresh mapping, or heap that the
 * last free trimmed away, so its first touch faults page by page. On these machines a fault costs
 * ~9 us: the 128 KiB a data append decodes cost ~300 us in faults, ~30 faults a request. Fixed
 * thresholds keep freed memory for the next request instead. Returns 1 when both were taken, 0 when
 * glibc refused one, -1 where the C library is not glibc.
 */
#include <node_api.h>
#include "addon.h"
#ifdef __GLIBC__
#include <malloc.h>
#endif

napi_value tune_malloc(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t mmap_threshold, trim_threshold;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2 ||
      napi_get_value_int32(env, argv[0], &mmap_threshold) != napi_ok ||
      napi_get_value_int32(env, argv[1], &trim_threshold) != napi_ok || mmap_threshold <= 0 || trim_threshold <= 0) {
    napi_throw_type_error(env, NULL, "tuneMalloc(mmapThreshold, trimThreshold) takes two positive integers");
    return NULL;
  }
#ifdef __GLIBC__
  int ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 && mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1;
  napi_create_int32(env, ok ? 1 : 0, &result);
#else
  (void)mmap_threshold;
  (void)trim_threshold;
  napi_create_int32(env, -1, &result);
#endif
  return result;
}
