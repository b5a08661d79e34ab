/*
 * map-file.c: a Node addon (Node-API) that maps a file read-only, for the
 * push-ahead worker's encoder threads (codec/segment-encoder.ts). A WAL
 * segment PostgreSQL has just written is in the page cache: read(2) copies
 * its 16 MiB into the thread's buffer (~3.8 ms here), while mapping it with
 * MAP_POPULATE costs ~1.7 ms and SHA-256 and zstd then read the cached pages
 * in place: ~5% of a drain's CPU.
 *
 *   map(path, size) -> ArrayBuffer  the first `size` bytes of `path`; an
 *                                   Error with `code`: the file's (ENOENT,
 *                                   EACCES, …, ESHRUNK when it is shorter),
 *                                   or ERR_MAP_UNAVAILABLE when mapping is
 *                                   not possible here (read the file instead)
 *   unmap(arrayBuffer)              drops the file's pages now and detaches
 *                                   the buffer (views of it are empty from
 *                                   then on); a mapping never unmapped goes
 *                                   when it is collected
 *
 * A file truncated while it is mapped makes a read of the lost pages raise
 * SIGBUS: PostgreSQL never truncates a segment waiting in archive_status/,
 * and only the worker (never PostgreSQL's own call) uses this; a worker that
 * dies leaves its files to PostgreSQL's calls, which archive them with read(2).
 *
 * Build (scripts/build-native.mjs): cc -std=c11 -O2 -shared -fPIC
 * -I<node>/include/node. Where it cannot be built or loaded, the threads
 * read the file as before.
 */
#define _GNU_SOURCE
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct mapping {
  void *addr;
  size_t len;
  int live;
};

/* The ArrayBuffer's backing store is gone: unmap unless unmap() did. */
static void finalize(napi_env env, void *data, void *hint)
{
  (void)env;
  (void)data;
  struct mapping *m = hint;
  if (m->live) munmap(m->addr, m->len);
  free(m);
}

/* Throws an Error whose code is the errno's name (as Node's fs errors). */
static napi_value throw_code(napi_env env, const char *code, const char *message)
{
  napi_value c, msg, err;
  if (napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &c) == napi_ok && napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) == napi_ok &&
      napi_create_error(env, c, msg, &err) == napi_ok)
    napi_throw(env, err);
  else
    napi_throw_error(env, code, message);
  return NULL;
}

static napi_value throw_errno(napi_env env, int e, const char *what, const char *path)
{
  const char *name = strerrorname_np(e);
  char msg[4352];
  snprintf(msg, sizeof msg, "%s: %s, %s '%s'", name ? name : "EIO", strerror(e), what, path);
  return throw_code(env, name ? name : "EIO", msg);
}

static napi_value map_file(napi_env env, napi_callback_info info)
{
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) return throw_code(env, "ERR_INVALID_ARG", "map(path, size)");
  char path[4097];
  size_t plen = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &plen) != napi_ok || plen == 0 || plen >= sizeof path - 1 || strlen(path) != plen)
    return throw_code(env, "ERR_INVALID_ARG", "map: path must be a non-empty string without NUL");
  int64_t want;
  if (napi_get_value_int64(env, argv[1], &want) != napi_ok || want < 0 || (uint64_t)want > SIZE_MAX) return throw_code(env, "ERR_INVALID_ARG", "map: size must be a non-negative integer");
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return throw_errno(env, errno, "open", path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, e, "fstat", path);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return throw_errno(env, EINVAL, "map (not a regular file)", path);
  }
  if (st.st_size < want) {
    close(fd);
    char msg[128];
    snprintf(msg, sizeof msg, "file shrank while being read (%jd of %jd bytes)", (intmax_t)st.st_size, (intmax_t)want);
    return throw_code(env, "ESHRUNK", msg);
  }
  napi_value ab;
  if (want == 0) {
    close(fd);
    void *unused;
    if (napi_create_arraybuffer(env, 0, &unused, &ab) != napi_ok) return throw_code(env, "ERR_MAP_UNAVAILABLE", "map: no memory");
    return ab;
  }
  void *addr = mmap(NULL, (size_t)want, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
  int e = errno;
  close(fd);
  if (addr == MAP_FAILED) {
    /* Not the file's fault (a file system without mmap, no address space): the caller reads it instead. */
    char msg[4352];
    snprintf(msg, sizeof msg, "mmap of '%s' failed: %s", path, strerror(e));
    return throw_code(env, "ERR_MAP_UNAVAILABLE", msg);
  }
  struct mapping *m = malloc(sizeof *m);
  if (m == NULL) {
    munmap(addr, (size_t)want);
    return throw_code(env, "ERR_MAP_UNAVAILABLE", "map: no memory");
  }
  m->addr = addr;
  m->len = (size_t)want;
  m->live = 1;
  if (napi_create_external_arraybuffer(env, addr, (size_t)want, finalize, m, &ab) != napi_ok) {
    munmap(addr, (size_t)want);
    free(m);
    return throw_code(env, "ERR_MAP_UNAVAILABLE", "map: external array buffers are not allowed here");
  }
  /* unmap() finds the mapping through the wrap; the finalizer above owns m. */
  if (napi_wrap(env, ab, m, NULL, NULL, NULL) != napi_ok) {
    /* Still valid: it is unmapped when collected. */
  }
  return ab;
}

static napi_value unmap_file(napi_env env, napi_callback_info info)
{
  size_t argc = 1;
  napi_value ab;
  napi_value undef;
  napi_get_undefined(env, &undef);
  if (napi_get_cb_info(env, info, &argc, &ab, NULL, NULL) != napi_ok || argc < 1) return undef;
  void *p = NULL;
  if (napi_remove_wrap(env, ab, &p) != napi_ok || p == NULL) return undef;
  struct mapping *m = p;
  /* The file's pages go now: the range is replaced in one call by an
   * inaccessible reservation (never unmapped here, so no other mapping can
   * land in it while the buffer lives), which the finalizer unmaps. m is
   * not touched after the detach, which may run the finalizer at once. */
  mmap(m->addr, m->len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
  napi_detach_arraybuffer(env, ab);
  return undef;
}

NAPI_MODULE_INIT(/* napi_env env, napi_value exports */)
{
  napi_value f;
  if (napi_create_function(env, "map", NAPI_AUTO_LENGTH, map_file, NULL, &f) != napi_ok || napi_set_named_property(env, exports, "map", f) != napi_ok) return NULL;
  if (napi_create_function(env, "unmap", NAPI_AUTO_LENGTH, unmap_file, NULL, &f) != napi_ok || napi_set_named_property(env, exports, "unmap", f) != napi_ok) return NULL;
  return exports;
}
