/*
 * seekData(fd, offset, hole): lseek(2) with SEEK_DATA (hole false) or SEEK_HOLE (hole true), the
 * calls file systems answer "which bytes are stored" with. qemu-img map and measure report holes
 * of raw files, and of preallocated qcow2 clusters, from them. Returns the offset found, or the
 * negated errno (-ENXIO: no data at or after offset). Never throws for I/O.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>
#include <node_api.h>
#include "addon.h"

napi_value seek_data(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t offset;
  bool hole;
  napi_value result;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &offset) != napi_ok ||
      napi_get_value_bool(env, argv[2], &hole) != napi_ok || fd < 0 || offset < 0) {
    napi_throw_type_error(env, NULL, "seekData(fd, offset, hole) takes a descriptor, a non-negative integer and a boolean");
    return NULL;
  }
  off_t found = lseek(fd, (off_t)offset, hole ? SEEK_HOLE : SEEK_DATA);
  napi_create_int64(env, found < 0 ? -(int64_t)errno : (int64_t)found, &result);
  return result;
}
