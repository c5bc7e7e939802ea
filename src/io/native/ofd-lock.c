/*
 * QEMU's image locks (src/io/lock.ts holds the protocol): open file description (OFD) byte-range
 * locks through fcntl, and the memfd a qzoned process keeps open to say who holds a lock.
 *
 * OFD locks belong to the open file description, not the process: two descriptors opened
 * separately exclude each other even inside one process (classic POSIX locks would not), they are
 * not dropped when some other descriptor of the file is closed, and they die with the last
 * descriptor of their description, so a killed holder never leaves one behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <node_api.h>
#include "addon.h"

/* Lock types as src/io/lock.ts passes them. */
#define TYPE_READ 0
#define TYPE_WRITE 1
#define TYPE_UNLOCK 2

static int get_lock_args(napi_env env, napi_callback_info info, int32_t *fd, int32_t *type, int64_t *start, int64_t *len) {
  size_t argc = 4;
  napi_value argv[4];
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == 4 &&
         napi_get_value_int32(env, argv[0], fd) == napi_ok && napi_get_value_int32(env, argv[1], type) == napi_ok &&
         napi_get_value_int64(env, argv[2], start) == napi_ok && napi_get_value_int64(env, argv[3], len) == napi_ok &&
         *fd >= 0 && *type >= TYPE_READ && *type <= TYPE_UNLOCK && *start >= 0 && *len > 0;
}

static void fill(struct flock *fl, int32_t type, int64_t start, int64_t len) {
  memset(fl, 0, sizeof *fl);
  fl->l_type = type == TYPE_READ ? F_RDLCK : type == TYPE_WRITE ? F_WRLCK : F_UNLCK;
  fl->l_whence = SEEK_SET;
  fl->l_start = (off_t)start;
  fl->l_len = (off_t)len;
  fl->l_pid = 0; /* F_OFD_* require 0 */
}

static napi_value int_result(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

/* ofdSetLock(fd, type, start, len): F_OFD_SETLK, never waiting. 0, or the errno (EAGAIN: another
 * description holds a conflicting lock). */
napi_value ofd_set_lock(napi_env env, napi_callback_info info) {
  int32_t fd, type;
  int64_t start, len;
  if (!get_lock_args(env, info, &fd, &type, &start, &len)) {
    napi_throw_type_error(env, NULL, "ofdSetLock(fd, type, start, len) takes a descriptor, 0-2 and a positive range");
    return NULL;
  }
  struct flock fl;
  fill(&fl, type, start, len);
  int rc;
  do {
    rc = fcntl(fd, F_OFD_SETLK, &fl);
  } while (rc != 0 && errno == EINTR);
  return int_result(env, rc == 0 ? 0 : errno);
}

/* ofdTestLock(fd, type, start, len): F_OFD_GETLK. 0 when a lock of `type` could be taken; 1 when
 * another description holds a read lock in the range, 2 a write lock; -errno on failure. Locks
 * of this description itself never count. */
napi_value ofd_test_lock(napi_env env, napi_callback_info info) {
  int32_t fd, type;
  int64_t start, len;
  if (!get_lock_args(env, info, &fd, &type, &start, &len) || type == TYPE_UNLOCK) {
    napi_throw_type_error(env, NULL, "ofdTestLock(fd, type, start, len) takes a descriptor, 0 or 1 and a positive range");
    return NULL;
  }
  struct flock fl;
  fill(&fl, type, start, len);
  int rc;
  do {
    rc = fcntl(fd, F_OFD_GETLK, &fl);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return int_result(env, -errno);
  return int_result(env, fl.l_type == F_UNLCK ? 0 : fl.l_type == F_RDLCK ? 1 : 2);
}

/* namedMemfd(name): an empty memfd whose /proc/PID/fd link reads "/memfd:NAME (deleted)", or -errno.
 * Only processes allowed to look at this one's descriptors (same user, or root) can read that link. */
napi_value named_memfd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  char name[250]; /* memfd_create takes at most 249 bytes */
  size_t len;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 ||
      napi_get_value_string_utf8(env, argv[0], name, sizeof name, &len) != napi_ok || len == 0 || strlen(name) != len) {
    napi_throw_type_error(env, NULL, "namedMemfd(name) takes a non-empty name without NUL bytes");
    return NULL;
  }
  int fd = memfd_create(name, MFD_CLOEXEC);
  return int_result(env, fd >= 0 ? fd : -errno);
}
