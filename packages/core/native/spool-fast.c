/*
 * spool-fast.c: the per-segment fast path of cairn-wal-push (archive_command)
 * and cairn-wal-get (restore_command), as one small program with no process
 * of its own to start. PostgreSQL calls these once per WAL segment; when the
 * push-ahead worker already archived the segment (or the prefetch worker
 * already fetched it), the answer is a handful of lstat calls, and sh -> bash
 * -> stat (-> mv) cost more than the check itself (issue 16).
 *
 * It does exactly what the fast path of the bash wrappers does
 * (tools/wal-push/bin/cairn-wal-push.sh, tools/wal-get/bin/cairn-wal-get.sh;
 * read them next to this file): the same context text, the same directory,
 * the same lstat rules per component, the same identity string as stat(1)
 * prints it, the same waits. Whenever it does not succeed (any doubt, any
 * error), it execs the bash wrapper with the same arguments, which decides
 * exactly as before (and starts Node). It never confirms or serves anything
 * the bash would not: where the bash's behaviour is hard to mirror byte for
 * byte (duplicate or odd environment names, /dev/fd paths, two directories
 * with the same context, glob characters), it falls back.
 *
 * Build: cc -std=c11 -O2 -static -DCAIRN_WAL_PUSH (or -DCAIRN_WAL_GET)
 * (scripts/build-native.mjs). The constants come from spool-contract.h,
 * generated from packages/core/src/spool/contract.ts (docs/design.md §4 rule 12).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <regex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "spool-contract.h"

#if defined(CAIRN_WAL_PUSH) == defined(CAIRN_WAL_GET)
#error "define exactly one of CAIRN_WAL_PUSH and CAIRN_WAL_GET"
#endif
#ifdef CAIRN_WAL_PUSH
#define TOOL_NAME "cairn-wal-push"
#else
#define TOOL_NAME "cairn-wal-get"
#endif

extern char **environ;

/* Nothing read into memory grows past this: a bigger config or context file
 * sends the call to the wrapper (which reads it whole). */
#define MAX_READ (64u * 1024u * 1024u)

static char **g_argv;
/* Set once the whole poll budget was spent waiting: the wrapper then does not wait again. */
static int g_waited;

/* ---- fallback --------------------------------------------------------- */

/* The wrapper beside this program's real path: <dir>/<tool>.sh. */
static char *wrapper_path(void)
{
  char *self = realpath("/proc/self/exe", NULL);
  /* Without /proc, argv[0] when it names a path (PATH lookups give no path). */
  if (self == NULL && g_argv[0] != NULL && strchr(g_argv[0], '/') != NULL) self = realpath(g_argv[0], NULL);
  if (self == NULL) return NULL;
  char *slash = strrchr(self, '/');
  if (slash == NULL) return NULL;
  size_t dir = (size_t)(slash - self) + 1;
  const char *name = TOOL_NAME ".sh";
  char *out = malloc(dir + strlen(name) + 1);
  if (out == NULL) return NULL;
  memcpy(out, self, dir);
  strcpy(out + dir, name);
  free(self);
  return out;
}

/* Hands the call, arguments unchanged, to the bash wrapper: Node decides. */
static _Noreturn void fallback(void)
{
  if (g_waited && setenv(SP_WAITED_ENV, "1", 1) != 0) g_waited = 0;
  char *sh = wrapper_path();
  if (sh != NULL) {
    execv(sh, g_argv);
    /* Not executable (a copy that lost its mode): run it with bash. */
    size_t n = 0;
    while (g_argv[n] != NULL) n++;
    char **av = calloc(n + 2, sizeof *av);
    if (av != NULL) {
      av[0] = "bash";
      av[1] = sh;
      for (size_t i = 1; i <= n; i++) av[i + 1] = g_argv[i];
      execv("/bin/bash", av);
    }
  }
  fprintf(stderr, "%s: error: cannot run the wrapper %s.sh beside this program: %s\n", TOOL_NAME, TOOL_NAME, strerror(errno));
#ifdef CAIRN_WAL_GET
  /* Never "not found" (1): recovery must stop, not end (contract.ts WAL_GET_EXIT). */
  _exit(SP_EXIT_FAILED);
#else
  _exit(1);
#endif
}

/* ---- small helpers ---------------------------------------------------- */

struct buf {
  char *p;
  size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
  if (n > MAX_READ || b->len > MAX_READ - n) fallback();
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) fallback();
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* A new string: a + b (+ c). */
static char *join3(const char *a, const char *b, const char *c)
{
  struct buf r = {0};
  buf_str(&r, a);
  buf_str(&r, b);
  buf_str(&r, c);
  return r.p;
}

static int starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int ends_with(const char *s, const char *suffix)
{
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* bash's [[ $s =~ $re ]] on an ASCII pattern, in the C locale (no setlocale):
 * anything but a match is no match. */
static int matches(const char *pattern, const char *s)
{
  regex_t re;
  if (regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB) != 0) return 0;
  int ok = regexec(&re, s, 0, NULL, 0) == 0;
  regfree(&re);
  return ok;
}

/*
 * bash's `IFS= read -r -d '' v < path`: the bytes up to the first NUL or the
 * end. 0 when read, -1 when the file cannot be opened or read. O_NONBLOCK: a
 * FIFO planted in place of a file reads as nothing instead of hanging (the
 * wrapper would hang; not matching is the safe side).
 */
static int read_to_nul(const char *path, struct buf *out)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return -1;
  char chunk[8192];
  for (;;) {
    ssize_t r = read(fd, chunk, sizeof chunk);
    if (r < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return -1;
    }
    if (r == 0) break;
    char *nul = memchr(chunk, '\0', (size_t)r);
    buf_add(out, chunk, nul ? (size_t)(nul - chunk) : (size_t)r);
    if (nul) break;
  }
  close(fd);
  if (out->p == NULL) buf_add(out, "", 0);
  return 0;
}

#ifdef CAIRN_WAL_PUSH
/*
 * The first line of a small file, as `IFS= read -r v < path` gives it, for a
 * record or a claim: 1 with the line ended by a newline, 2 for bytes at the
 * end without one, 0 when there is nothing, unreadable, or anything bash's read
 * would alter (a NUL byte, which read drops) or a line longer than the
 * buffer (neither a pid nor an identity is that long).
 */
static int read_line(const char *path, char *line, size_t size)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) return 0;
  size_t len = 0;
  int ended = 0;
  while (len < size - 1) {
    ssize_t r = read(fd, line + len, size - 1 - len);
    if (r < 0) {
      if (errno == EINTR) continue;
      close(fd);
      return 0;
    }
    if (r == 0) break;
    char *nl = memchr(line + len, '\n', (size_t)r);
    if (nl) {
      len = (size_t)(nl - line);
      ended = 1;
      break;
    }
    len += (size_t)r;
  }
  close(fd);
  if (!ended && len == size - 1) return 0;
  line[len] = '\0';
  if (memchr(line, '\0', len) != NULL) return 0;
  return ended ? 1 : (len > 0 ? 2 : 0);
}
#endif

/* [ -f path ]: stat (following links) says a regular file. */
static int is_file(const char *path)
{
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* One poll's pause (spool_sleep): POLL_MS, without a process. */
static void poll_sleep(void)
{
  struct timespec t = {SP_POLL_MS / 1000, (long)(SP_POLL_MS % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0 && errno == EINTR) {}
}

/* ---- spool_find ------------------------------------------------------- */

struct checked {
  char *path;
  char kind; /* D, F, A or I, as in spool_check */
};

struct spool {
  struct buf ctx;
  char *dir; /* sp_dir */
  struct checked *paths;
  size_t npaths, cap;
  char *ident; /* the I path's identity, once checked */
};

static void add_path(struct spool *s, char *path, char kind)
{
  if (s->npaths == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    struct checked *p = realloc(s->paths, cap * sizeof *p);
    if (p == NULL) fallback();
    s->paths = p;
    s->cap = cap;
  }
  s->paths[s->npaths].path = path;
  s->paths[s->npaths].kind = kind;
  s->npaths++;
}

static int not_context_env(const char *name, size_t len)
{
  static const char *const skip[] = SP_NOT_CONTEXT_ENV;
  for (size_t i = 0; skip[i] != NULL; i++) {
    if (strlen(skip[i]) == len && memcmp(skip[i], name, len) == 0) return 1;
  }
  return 0;
}

static int cmp_env(const void *a, const void *b)
{
  /* bash sorts ${!CAIRN_*} by strcmp of the names; names differ, so comparing
   * "NAME=value" up to the '=' is the same as comparing names. */
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
  int r = memcmp(x, y, nx < ny ? nx : ny);
  if (r != 0) return r;
  return nx < ny ? -1 : nx > ny ? 1 : 0;
}

/*
 * The CAIRN_* environment as bash sees it, sorted; NULL (fall back) when
 * bash's view could differ from the raw environment: a name bash does not
 * import (not an identifier), or one given twice.
 */
static const char **cairn_env(size_t *count, const char **config, const char **spool_dir)
{
  size_t n = 0, k = 0;
  for (char **e = environ; *e; e++) n++;
  const char **list = calloc(n + 1, sizeof *list);
  if (list == NULL) return NULL;
  *config = NULL;
  *spool_dir = NULL;
  for (char **e = environ; *e; e++) {
    if (!starts_with(*e, "CAIRN_")) continue;
    const char *eq = strchr(*e, '=');
    if (eq == NULL) return NULL;
    for (const char *c = *e; c < eq; c++) {
      if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_')) return NULL;
    }
    for (size_t i = 0; i < k; i++) {
      if (cmp_env(&list[i], (const char *const *)e) == 0) return NULL;
    }
    size_t len = (size_t)(eq - *e);
    if (len == strlen("CAIRN_CONFIG") && starts_with(*e, "CAIRN_CONFIG=")) *config = eq + 1;
    if (len == strlen("CAIRN_SPOOL_DIR") && starts_with(*e, "CAIRN_SPOOL_DIR=")) *spool_dir = eq + 1;
    list[k++] = *e;
  }
  qsort(list, k, sizeof *list, cmp_env);
  *count = k;
  return list;
}

/* A root the wrapper refuses as it is written (trailing slash, //, . or ..). */
static int odd_root(const char *r)
{
  return ends_with(r, "/") || strstr(r, "//") || strstr(r, "/./") || strstr(r, "/../") || ends_with(r, "/.") || ends_with(r, "/..");
}

/*
 * spool_find KIND NPOS: the context directory Node made for this call, and
 * the components to check (s->paths). 0 when found; -1 when there is none or
 * anything is in doubt.
 */
static int spool_find(struct spool *s, const char *kind, int argc, char **argv, int npos)
{
  int n = argc - 1 - npos; /* the arguments before the positionals: argv[1..n] */
  char *cwd = getcwd(NULL, 0); /* cd -P . then $PWD: the physical directory */
  if (cwd == NULL || cwd[0] != '/') return -1;
  buf_str(&s->ctx, SP_CTX_HEADER "\n" SP_CTX_CWD);
  buf_str(&s->ctx, cwd);
  buf_str(&s->ctx, "\n");
  for (int i = 1; i <= n; i++) {
    buf_str(&s->ctx, SP_CTX_ARG);
    buf_str(&s->ctx, argv[i]);
    buf_str(&s->ctx, "\n");
  }
  size_t nenv = 0;
  const char *env_config, *env_spool;
  const char **env = cairn_env(&nenv, &env_config, &env_spool);
  if (env == NULL) return -1;
  for (size_t i = 0; i < nenv; i++) {
    if (not_context_env(env[i], strcspn(env[i], "="))) continue;
    buf_str(&s->ctx, SP_CTX_ENV);
    buf_str(&s->ctx, env[i]);
    buf_str(&s->ctx, "\n");
  }
  const char *conf = env_config ? env_config : SP_DEFAULT_CONFIG;
  const char *root = "";
  for (int i = 1; i <= n; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--config") == 0) {
      if (i < n) conf = argv[++i];
    } else if (starts_with(a, "--config=")) {
      conf = a + strlen("--config=");
    } else if (strcmp(a, "--spool-dir") == 0) {
      if (i < n) root = argv[++i];
    } else if (starts_with(a, "--spool-dir=")) {
      root = a + strlen("--spool-dir=");
    }
  }
  buf_str(&s->ctx, SP_CTX_CONFIG);
  buf_str(&s->ctx, conf);
  buf_str(&s->ctx, "\n");
  /* bash's test treats /dev/fd/N and /dev/std* itself: not mirrored here. */
  if (starts_with(conf, "/dev/fd/") || starts_with(conf, "/dev/std")) return -1;
  struct stat st;
  if (conf[0] != '\0' && stat(conf, &st) == 0) {
    /* [ -f ] && [ -r ] (test -r is access with the effective ids), else refused. */
    if (!S_ISREG(st.st_mode) || faccessat(AT_FDCWD, conf, R_OK, AT_EACCESS) != 0) return -1;
    buf_str(&s->ctx, SP_CTX_PRESENT "\n");
    if (read_to_nul(conf, &s->ctx) != 0) return -1;
  } else {
    /* [ -e ] fails for every stat error: the wrapper writes "absent". */
    buf_str(&s->ctx, SP_CTX_ABSENT "\n");
  }
  if (root[0] == '\0' && env_spool != NULL) root = env_spool;
  char *rootp;
  if (root[0] == '\0') {
    rootp = join3(SP_WAL_DIR, "/", SP_DIR_NAME);
    add_path(s, join3(SP_WAL_DIR, "/", ""), 'D');
  } else {
    rootp = root[0] == '/' ? join3(root, "", "") : join3(cwd, "/", root);
    if (odd_root(rootp)) return -1;
    /* Every directory above the root, up to /, is an A component. */
    char *a = join3(rootp, "", "");
    for (char *slash; (slash = strrchr(a, '/')) != NULL && slash != a;) {
      *slash = '\0';
      add_path(s, join3(a, "", ""), 'A');
    }
    add_path(s, join3("/", "", ""), 'A');
  }
  /* The wrapper's compgen -G takes the directory as a pattern: no glob
   * characters, so both see the same names. */
  if (strpbrk(rootp, "*?[\\") != NULL) return -1;
  char *kinddir = join3(rootp, "/", kind);
  DIR *d = opendir(kinddir);
  if (d == NULL) return -1;
  char *found = NULL;
  int count = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue; /* the glob's * skips dot names */
    char *ctxfile = join3(kinddir, "/", e->d_name);
    char *full = join3(ctxfile, "/", SP_CONTEXT_FILE);
    struct buf have = {0};
    if (read_to_nul(full, &have) == 0 && have.len == s->ctx.len && memcmp(have.p, s->ctx.p, have.len) == 0) {
      count++;
      found = ctxfile;
    } else {
      free(ctxfile);
    }
    free(full);
    free(have.p);
    errno = 0;
  }
  int err = errno;
  closedir(d);
  /* Two directories with one context: which one the glob takes first depends
   * on the locale's collation; leave that to the wrapper. */
  if (err != 0 || count != 1) return -1;
  for (const char *c = found + strlen(kinddir) + 1; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_')) return -1;
  }
  s->dir = found;
  add_path(s, rootp, 'D');
  add_path(s, kinddir, 'D');
  add_path(s, join3(found, "", ""), 'D');
  add_path(s, join3(found, "/", SP_CONTEXT_FILE), 'F');
  return 0;
}

/* ---- spool_check ------------------------------------------------------ */

/* The identity as stat -c '%d %i %s %.9Y %.9Z' prints it (contract.ts IDENTITY_STAT_FORMAT). */
static char *identity(const struct stat *st)
{
  /* GNU stat prints a time before 1970 in its own way: not mirrored. */
  if (st->st_mtim.tv_sec < 0 || st->st_ctim.tv_sec < 0) return NULL;
  char tmp[256];
  int r = snprintf(tmp, sizeof tmp, "%ju %ju %jd %jd.%09ld %jd.%09ld", (uintmax_t)st->st_dev, (uintmax_t)st->st_ino, (intmax_t)st->st_size,
                   (intmax_t)st->st_mtim.tv_sec, (long)st->st_mtim.tv_nsec, (intmax_t)st->st_ctim.tv_sec, (long)st->st_ctim.tv_nsec);
  if (r < 0 || (size_t)r >= sizeof tmp) return NULL;
  return join3(tmp, "", "");
}

/*
 * spool_check: one lstat of every path; each must be what its kind says
 * (D: our directory, F: our regular file, A: a directory above a configured
 * root owned by root or us, others' write only with the sticky bit; I: lstat
 * for its identity only). Symbolic links fail D, F and A (lstat: S_ISLNK).
 */
static int spool_check(struct spool *s)
{
  uid_t euid = geteuid();
  for (size_t i = 0; i < s->npaths; i++) {
    struct stat st;
    if (lstat(s->paths[i].path, &st) != 0) return -1;
    mode_t m = st.st_mode;
    switch (s->paths[i].kind) {
    case 'I':
      free(s->ident);
      s->ident = identity(&st);
      if (s->ident == NULL) return -1;
      break;
    case 'A':
      if (!(S_ISDIR(m) && (st.st_uid == 0 || st.st_uid == euid) && ((m & 022) == 0 || (m & 01000) != 0))) return -1;
      break;
    case 'D':
      if (!(S_ISDIR(m) && st.st_uid == euid && (m & 022) == 0)) return -1;
      break;
    case 'F':
      if (!(S_ISREG(m) && st.st_uid == euid && (m & 022) == 0)) return -1;
      break;
    default:
      return -1;
    }
  }
  return 0;
}

/* ---- the tools -------------------------------------------------------- */

#ifdef CAIRN_WAL_PUSH
/* kill -0 on the claimant named in the claim file (Node writes the pid without a newline). */
static int claimant_alive(const char *claim)
{
  char line[64];
  if (read_line(claim, line, sizeof line) == 0) return 0;
  if (line[0] == '\0' || strspn(line, "0123456789") != strlen(line)) return 0;
  errno = 0;
  char *end;
  intmax_t pid = strtoimax(line, &end, 10);
  /* bash's kill refuses a number that is no pid_t: the wait ends. */
  if (errno != 0 || *end != '\0' || pid != (intmax_t)(pid_t)pid) return 0;
  return kill((pid_t)pid, 0) == 0;
}

static int run(int argc, char **argv)
{
  /* The positionals end the command line: %p [%f]. */
  int n = argc - 1;
  const char *last = n >= 1 ? argv[n] : "";
  const char *prev = n >= 2 ? argv[n - 1] : "";
  const char *p, *f;
  int npos = 0;
  size_t ll = strlen(last), pl = strlen(prev);
  if (n >= 2 && matches(SP_WAL_NAME_RE, last) && prev[0] != '-' && (strcmp(prev, last) == 0 || (pl > ll && prev[pl - ll - 1] == '/' && strcmp(prev + pl - ll, last) == 0))) {
    p = prev, f = last, npos = 2;
  } else {
    const char *slash = strrchr(last, '/');
    const char *base = slash ? slash + 1 : last;
    if (n >= 1 && last[0] != '-' && matches(SP_WAL_NAME_RE, base)) p = last, f = base, npos = 1;
  }
  struct spool s = {0};
  if (npos == 0 || spool_find(&s, SP_KIND_PUSH, argc, argv, npos) != 0) return -1;
  char *rec = join3(s.dir, "/", f);
  rec = join3(rec, SP_RECORD_SUFFIX, "");
  char *claim = join3(s.dir, "/", f);
  claim = join3(claim, SP_CLAIM_SUFFIX, "");
  /* The push-ahead worker is archiving this very file: wait for its record
   * (at most PUSH_CLAIM_WAIT_MS), as the wrapper does. */
  int i;
  for (i = 0; i < SP_PUSH_CLAIM_POLLS; i++) {
    if (is_file(rec) || !claimant_alive(claim)) break;
    poll_sleep();
  }
  if (i == SP_PUSH_CLAIM_POLLS) g_waited = 1;
  if (!is_file(rec)) return -1;
  /* The file itself (I) first, the record (F) last, as the wrapper lists them. */
  add_path(&s, NULL, 0);
  memmove(s.paths + 1, s.paths, (s.npaths - 1) * sizeof *s.paths);
  s.paths[0].path = join3(p, "", "");
  s.paths[0].kind = 'I';
  add_path(&s, rec, 'F');
  if (spool_check(&s) != 0 || s.ident == NULL) return -1;
  char want[256];
  if (read_line(rec, want, sizeof want) != 1 || strcmp(want, s.ident) != 0) return -1;
  /* Used up by emptying it: an empty record confirms nothing, and the worker
   * prunes it once the file is done. Like the wrapper's `: > rec`, a failure
   * here does not undo the confirmation. */
  int fd = open(rec, O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  if (fd >= 0) close(fd);
  return 0;
}
#else
/* compgen -G "$sp_dir/.$f$sp_temp_infix*": a fetch of f in progress. */
static int fetch_in_progress(const char *dir, const char *f)
{
  char *prefix = join3(".", f, SP_TEMP_INFIX);
  DIR *d = opendir(dir);
  if (d == NULL) return 0;
  int found = 0;
  struct dirent *e;
  while (!found && (e = readdir(d)) != NULL) found = starts_with(e->d_name, prefix);
  closedir(d);
  free(prefix);
  return found;
}

static int run(int argc, char **argv)
{
  /* --prefetch 0 turns prefetching off: the last --prefetch decides, over CAIRN_PREFETCH. */
  const char *env = getenv("CAIRN_PREFETCH");
  int fast = !(env != NULL && strcmp(env, "0") == 0);
  const char *prev = "";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = "";
    if (strcmp(prev, "--prefetch") == 0) v = a;
    if (starts_with(a, "--prefetch=")) v = a + strlen("--prefetch=");
    if (v[0] != '\0') fast = strcmp(v, "0") != 0;
    prev = a;
  }
  /* The positionals end the command line: %f %p. */
  if (!fast || argc - 1 < 2) return -1;
  const char *f = argv[argc - 2], *p = argv[argc - 1];
  struct spool s = {0};
  if (!matches(SP_SEGMENT_NAME_RE, f) || p[0] == '-' || spool_find(&s, SP_KIND_GET, argc, argv, 2) != 0) return -1;
  char *entry = join3(s.dir, "/", f);
  /* The worker is fetching this very segment: wait for it (at most GET_FETCH_WAIT_MS). */
  int i;
  for (i = 0; i < SP_GET_FETCH_POLLS; i++) {
    if (is_file(entry) || !fetch_in_progress(s.dir, f)) break;
    poll_sleep();
  }
  if (i == SP_GET_FETCH_POLLS) g_waited = 1;
  if (!is_file(entry)) return -1;
  add_path(&s, entry, 'F');
  if (spool_check(&s) != 0) return -1;
  /* mv -f -- entry p, which is one rename here: mv would move the entry into
   * p when p is a directory (or a link to one), refuse when both name one
   * file, and copy across file systems; those go to the wrapper. */
  struct stat src, dst;
  if (lstat(entry, &src) != 0 || !S_ISREG(src.st_mode)) return -1;
  if (stat(p, &dst) == 0 && (S_ISDIR(dst.st_mode) || (dst.st_dev == src.st_dev && dst.st_ino == src.st_ino))) return -1;
  if (lstat(p, &dst) == 0 && dst.st_dev == src.st_dev && dst.st_ino == src.st_ino) return -1;
  if (rename(entry, p) != 0) return -1;
  return 0;
}
#endif

int main(int argc, char **argv)
{
  g_argv = argv;
  if (argc < 1 || argv[0] == NULL) fallback();
  if (run(argc, argv) == 0) return 0;
  fallback();
}
