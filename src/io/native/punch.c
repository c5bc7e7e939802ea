/*
 * punchHole(fd, offset, length): fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, the
 * discard of a raw file (qemu-io's discard on a raw image does the same). The range reads as
 * zeros afterwards. Returns 0, or the errno (EOPNOTSUPP where the file system cannot); never
 * throws for I/O.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <node_api.h>
#include "addon.h"

napi_value punch_hole(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset, length;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_int64(env, argv[2], &length) != napi_ok || fd < 0 || offset < 0 || length <= 0) {
    napi_throw_type_error(env, NULL, "punchHole(fd, offset, length) takes a descriptor and two positive integers");
    return NULL;
  }
  int rc;
  do {
    rc = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length);
  } while (rc != 0 && errno == EINTR);
  napi_create_int32(env, rc == 0 ? 0 : errno, &result);
  return result;
}
