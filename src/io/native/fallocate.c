/*
 * fallocate(2), which Node lacks, in the two modes the engine wants:
 * - reserveKeepSize(fd, offset, length): FALLOC_FL_KEEP_SIZE, to reserve blocks ahead of a growing
 *   image (src/io/preallocate.ts). Optional: when this addon is not built, the engine simply does
 *   not reserve.
 * - punchHole(fd, offset, length): FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, the discard of a raw
 *   file (qemu-io's discard on a raw image does the same). The range reads as zeros afterwards.
 * Both return 0, or the errno (EOPNOTSUPP where the file system cannot); neither throws for I/O.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <node_api.h>
#include "addon.h"

/* The call with the arguments (fd, offset, length) checked; `usage` is the type error's text. */
static napi_value fallocate_call(napi_env env, napi_callback_info info, int mode, const char *usage) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 || length <= 0) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  int rc;
  do {
    rc = fallocate(fd, mode, (off_t)offset, (off_t)length);
  } while (rc != 0 && errno == EINTR);
  napi_create_int32(env, rc == 0 ? 0 : errno, &result);
  return result;
}

napi_value reserve_keep_size(napi_env env, napi_callback_info info) {
  return fallocate_call(env, info, FALLOC_FL_KEEP_SIZE,
    "reserveKeepSize(fd, offset, length) takes a descriptor and two positive integers");
}

napi_value punch_hole(napi_env env, napi_callback_info info) {
  return fallocate_call(env, info, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
    "punchHole(fd, offset, length) takes a descriptor and two positive integers");
}
