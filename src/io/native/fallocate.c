/*
 * The one system call Node lacks that the engine wants: fallocate(2) with FALLOC_FL_KEEP_SIZE,
 * to reserve blocks ahead of a growing image (src/io/preallocate.ts). Optional: when this
 * addon is not built, the engine simply does not reserve.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <node_api.h>
#include "addon.h"

/* reserveKeepSize(fd, offset, length): 0 on success, else the errno (never throws for I/O). */
napi_value reserve_keep_size(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 || length <= 0) {
    napi_throw_type_error(env, NULL, "reserveKeepSize(fd, offset, length) takes a descriptor and two positive integers");
    return NULL;
  }
  int rc;
  do {
    rc = fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
  } while (rc != 0 && errno == EINTR);
  napi_create_int32(env, rc == 0 ? 0 : errno, &result);
  return result;
}
