/*
 * Opening beneath a directory descriptor (src/io/confined-open.ts says what uses it and why).
 *
 * Every name is resolved by openat2(2) relative to a directory descriptor with RESOLVE_BENEATH
 * (no "..", no absolute path or symlink may leave the directory), RESOLVE_NO_SYMLINKS (no symlink
 * in any component, the last one included) and RESOLVE_NO_MAGICLINKS (no /proc-style links).
 * The kernel checks each component as it walks, against the directory it is in at that moment,
 * so a rename or a symlink swapped in by another process between two calls cannot redirect the
 * walk: it fails instead. Files are always opened O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW,
 * so a FIFO or a device can never block the caller in open().
 *
 * Every function returns a descriptor or 0 on success and -errno on failure; none throws for a
 * system error (only for bad arguments), so the caller words every failure itself.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <node_api.h>
#include "addon.h"

/* openat2 came with Linux 5.6; its number is the same on every architecture. Older C headers
 * lack it and its struct, so both are spelled out here rather than taken from <linux/openat2.h>. */
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
struct qzoned_open_how {
  uint64_t flags;
  uint64_t mode;
  uint64_t resolve;
};
#define QZ_RESOLVE_NO_MAGICLINKS 0x02
#define QZ_RESOLVE_NO_SYMLINKS 0x04
#define QZ_RESOLVE_BENEATH 0x08

/* What the caller asks for (the `how` argument of openBeneath); src/io/confined-open.ts mirrors these. */
#define HOW_WRITE 1     /* O_RDWR instead of O_RDONLY */
#define HOW_CREATE 2    /* O_CREAT | O_EXCL: a new file, never an existing one */
#define HOW_DIRECTORY 4 /* O_DIRECTORY */
#define HOW_PATH 8      /* O_PATH: a handle to look at (fstat) without opening the thing itself */

/* openat2 fails with EAGAIN when a concurrent rename made it unable to vouch for a ".." step; the
 * man page's advice is to retry. A few times is plenty: it takes a rename race on every try. */
#define EAGAIN_RETRIES 8

static int open_beneath(int dirfd, const char *path, int how, mode_t mode) {
  struct qzoned_open_how oh;
  memset(&oh, 0, sizeof oh);
  int flags = O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW;
  if (how & HOW_PATH) {
    flags = O_PATH | O_CLOEXEC | O_NOFOLLOW;
  } else {
    flags |= (how & HOW_WRITE) ? O_RDWR : O_RDONLY;
    if (how & HOW_CREATE) {
      flags |= O_CREAT | O_EXCL;
      oh.mode = mode;
    }
  }
  if (how & HOW_DIRECTORY) flags |= O_DIRECTORY;
  oh.flags = (uint64_t)flags;
  oh.resolve = QZ_RESOLVE_BENEATH | QZ_RESOLVE_NO_SYMLINKS | QZ_RESOLVE_NO_MAGICLINKS;
  long fd = -1;
  for (int attempt = 0; attempt < EAGAIN_RETRIES; attempt++) {
    fd = syscall(SYS_openat2, dirfd, path, &oh, sizeof oh);
    if (fd >= 0) return (int)fd;
    if (errno != EAGAIN && errno != EINTR) break;
  }
  return -errno;
}

/* Splits "a/b/c" into the parent "a/b" (or "." for a bare name) and the last component "c".
 * The last component must be a plain name: not empty, ".", ".." or ending in "/". */
static int split_parent(const char *path, char *parent, size_t parent_size, const char **last) {
  const char *slash = strrchr(path, '/');
  const char *name = slash ? slash + 1 : path;
  if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return -EINVAL;
  if (!slash) {
    strcpy(parent, ".");
  } else {
    size_t n = (size_t)(slash - path);
    if (n == 0) return -EXDEV; /* "/name": absolute, so never beneath */
    if (n >= parent_size) return -ENAMETOOLONG;
    memcpy(parent, path, n);
    parent[n] = '\0';
  }
  *last = name;
  return 0;
}

/* The parent directory of `path`, opened beneath dirfd with the same rules as any open. */
static int open_parent(int dirfd, const char *path, const char **last) {
  char parent[PATH_MAX];
  int rc = split_parent(path, parent, sizeof parent, last);
  if (rc < 0) return rc;
  return open_beneath(dirfd, parent, HOW_PATH | HOW_DIRECTORY, 0);
}

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc == want;
}

static char *get_string(napi_env env, napi_value v) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok || len >= PATH_MAX) return NULL;
  char *s = malloc(len + 1);
  if (!s) return NULL;
  if (napi_get_value_string_utf8(env, v, s, len + 1, &len) != napi_ok || strlen(s) != len) {
    free(s); /* an embedded NUL would silently shorten the name */
    return NULL;
  }
  return s;
}

static napi_value int_result(napi_env env, int value) {
  napi_value result;
  napi_create_int32(env, value, &result);
  return result;
}

/* openBeneath(dirfd, path, how, mode): a descriptor, or -errno. */
napi_value open_beneath_js(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  int32_t dirfd, how, mode;
  char *path;
  if (!get_args(env, info, 4, argv) || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok ||
      napi_get_value_int32(env, argv[2], &how) != napi_ok || napi_get_value_int32(env, argv[3], &mode) != napi_ok ||
      dirfd < 0 || how < 0 || how > 15 || mode < 0 || mode > 07777 || !(path = get_string(env, argv[1]))) {
    napi_throw_type_error(env, NULL, "openBeneath(dirfd, path, how, mode) takes a descriptor, a name without NUL bytes and two small integers");
    return NULL;
  }
  int fd = open_beneath(dirfd, path, how, (mode_t)mode);
  free(path);
  return int_result(env, fd);
}

/* mkdirBeneath(dirfd, path, mode): 0, or -errno. The parent is resolved beneath dirfd first. */
napi_value mkdir_beneath_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t dirfd, mode;
  char *path;
  if (!get_args(env, info, 3, argv) || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok ||
      napi_get_value_int32(env, argv[2], &mode) != napi_ok || dirfd < 0 || mode < 0 || mode > 07777 ||
      !(path = get_string(env, argv[1]))) {
    napi_throw_type_error(env, NULL, "mkdirBeneath(dirfd, path, mode) takes a descriptor, a name and a mode");
    return NULL;
  }
  const char *last;
  int parent = open_parent(dirfd, path, &last);
  int rc = parent;
  if (parent >= 0) {
    rc = mkdirat(parent, last, (mode_t)mode) == 0 ? 0 : -errno;
    close(parent);
  }
  free(path);
  return int_result(env, rc);
}

/* unlinkBeneath(dirfd, path, isDirectory): 0, or -errno. Removes the name itself, never what a
 * symlink points at (unlinkat does not follow the last component). */
napi_value unlink_beneath_js(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int32_t dirfd;
  bool is_dir;
  char *path;
  if (!get_args(env, info, 3, argv) || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok ||
      napi_get_value_bool(env, argv[2], &is_dir) != napi_ok || dirfd < 0 || !(path = get_string(env, argv[1]))) {
    napi_throw_type_error(env, NULL, "unlinkBeneath(dirfd, path, isDirectory) takes a descriptor, a name and a boolean");
    return NULL;
  }
  const char *last;
  int parent = open_parent(dirfd, path, &last);
  int rc = parent;
  if (parent >= 0) {
    rc = unlinkat(parent, last, is_dir ? AT_REMOVEDIR : 0) == 0 ? 0 : -errno;
    close(parent);
  }
  free(path);
  return int_result(env, rc);
}

/* listDirectory(dirfd): the names in the directory (without "." and ".."), or -errno. Reads a
 * duplicate of the descriptor, so the caller's stays open and keeps its position. */
napi_value list_directory_js(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  int32_t dirfd;
  if (!get_args(env, info, 1, argv) || napi_get_value_int32(env, argv[0], &dirfd) != napi_ok || dirfd < 0) {
    napi_throw_type_error(env, NULL, "listDirectory(dirfd) takes a descriptor");
    return NULL;
  }
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return int_result(env, -errno);
  DIR *dir = fdopendir(fd);
  if (!dir) {
    int e = errno;
    close(fd);
    return int_result(env, -e);
  }
  napi_value names;
  napi_create_array(env, &names);
  uint32_t count = 0;
  struct dirent *entry;
  errno = 0;
  while ((entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    napi_value name;
    napi_create_string_utf8(env, entry->d_name, NAPI_AUTO_LENGTH, &name);
    napi_set_element(env, names, count++, name);
    errno = 0;
  }
  int e = errno;
  closedir(dir);
  return e ? int_result(env, -e) : names;
}
