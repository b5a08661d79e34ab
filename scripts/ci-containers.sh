#!/bin/sh
# The containers, built and run for real (issue 15): .ci/run calls this after
# the test suite. It needs root and Debian's packages; elsewhere it says
# "skipped" and exits 0 (CAIRN_CONTAINERS=require makes that a failure).
#
#  1. docker.io, debootstrap and docker-compose from Debian; a private dockerd
#     (overlay2 storage, else vfs; no bridge, no iptables, its own data/exec root and socket
#     under a temporary directory); a base image made with debootstrap, since
#     Docker Hub is out of reach. Every build and container uses the host's
#     network: no bridge network is ever made, traffic stays on loopback.
#  2. The release tarball (scripts/package.mjs) and the cairn image from
#     deploy/docker/Dockerfile; its size; no compiler, npm or test file in it.
#  3. A PostgreSQL 15 container with cairn added the documented way
#     (deploy/docker/postgres.Dockerfile) archives into a repository volume;
#     the cairn image, as uid 999, runs basebackup --remote, dump --all,
#     check, verify and drill, and prom-export --listen answers /metrics; a
#     third container restores the repository into a fresh volume, which a
#     PostgreSQL container starts and recovers; the rows are compared.
#  4. deploy/compose: `docker-compose config` validates it, then `up` with
#     test/containers/compose.ci.yml (host network, the test's ports and
#     images) until the cairn service's health check passes.
# dockerd is stopped and its directories removed at the end, whatever happened.
#
# usage: scripts/ci-containers.sh        exit: 0 passed or skipped, 1 failed
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf 'containers: %s\n' "$*" >&2; }
fail() { say "FAIL: $*"; exit 1; }
started=$(date +%s)
step() { say "[$(( $(date +%s) - started ))s] $*"; }

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  [ "${CAIRN_CONTAINERS:-}" != require ] || fail "needs root and apt-get (CAIRN_CONTAINERS=require)"
  say "skipped: needs root and Debian's apt-get (to install docker.io and run dockerd)"
  exit 0
fi

# ---- 1. tools, dockerd, base image ----
need=""
command -v dockerd >/dev/null || need="$need docker.io"
command -v debootstrap >/dev/null || need="$need debootstrap"
command -v docker-compose >/dev/null || need="$need docker-compose"
if [ -n "$need" ]; then
  step "installing$need (apt-get)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi

# Debian's own client (docker.io): BuildKit is built into its dockerd and
# this client uses it without the buildx plugin, several times faster on vfs
# than the classic builder (which copies the image for every instruction).
# A newer client elsewhere on PATH would want buildx.
docker() { /usr/bin/docker "$@"; }
[ -x /usr/bin/docker ] || fail "/usr/bin/docker (Debian's docker.io) is missing"

work=$(mktemp -d /tmp/cairn-containers.XXXXXX)
export DOCKER_HOST="unix://$work/docker.sock"
cleanup() {
  rc=$?
  trap - EXIT INT TERM
  if [ -S "$work/docker.sock" ]; then
    if [ -f "$work/compose/compose.env" ]; then compose down -v -t 5 >/dev/null 2>&1 || true; fi
    /usr/bin/docker ps -aq | xargs -r /usr/bin/docker rm -f >/dev/null 2>&1 || true
  fi
  if [ -f "$work/dockerd.pid" ]; then
    pid=$(cat "$work/dockerd.pid")
    kill "$pid" 2>/dev/null || true
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 30 ]; do sleep 1; i=$((i + 1)); done
    kill -9 "$pid" 2>/dev/null || true
  fi
  if [ $rc != 0 ] && [ -f "$work/dockerd.log" ]; then say "dockerd's log, the end:"; tail -n 20 "$work/dockerd.log" >&2; fi
  # Mounts dockerd may leave (netns, shm) before the directories go.
  grep " $work/" /proc/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
  step "done (exit $rc)"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# overlay2 where the kernel mounts it: vfs copies every layer in full, which
# cost the CI about 140 s of CPU beside the test suite. vfs where it does not.
startdockerd() {
  dockerd --storage-driver="$1" --bridge=none --iptables=false --ip6tables=false \
    --data-root="$work/data-$1" --exec-root="$work/exec-$1" --pidfile="$work/dockerd.pid" \
    -H "$DOCKER_HOST" >"$work/dockerd.log" 2>&1 &
  dpid=$!
  i=0; until docker version >/dev/null 2>&1; do
    kill -0 "$dpid" 2>/dev/null || return 1
    i=$((i + 1)); [ $i -lt 60 ] || fail "dockerd did not answer on $DOCKER_HOST in 60 s"; sleep 1
  done
}
storage=${CAIRN_DOCKER_STORAGE:-overlay2}
step "starting dockerd in $work ($storage storage)"
if ! startdockerd "$storage"; then
  [ "$storage" != vfs ] || { tail -n 20 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
  say "dockerd would not start with $storage storage ($(tail -n 1 "$work/dockerd.log" | cut -c1-200)); vfs instead"
  # Its directories stay (it may leave mounts there) until the cleanup.
  rm -f "$work/dockerd.pid"
  startdockerd vfs || { tail -n 20 "$work/dockerd.log" >&2; fail "dockerd did not start"; }
fi

step "base image: debootstrap --variant=minbase bookworm"
debootstrap --variant=minbase bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; fail "debootstrap failed"; }
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar -C "$work/rootfs" -c . | docker import - cairn-ci/debian:bookworm >/dev/null
rm -rf "$work/rootfs"

# ---- 2. the cairn image ----
step "the release tarball"
scripts/node scripts/package.mjs --no-deb >"$work/package.log" 2>&1 || { tail -n 20 "$work/package.log" >&2; fail "scripts/package.mjs failed"; }
mkdir "$work/ctx" "$work/empty"
cp dist/cairn-*-linux-x64.tar.gz "$work/ctx/"
build() { DOCKER_BUILDKIT=1 docker build --network host -q "$@" >/dev/null || fail "docker build $*"; }
step "docker build deploy/docker/Dockerfile (BASE=cairn-ci/debian:bookworm, PG_MAJOR=15 from Debian)"
build -f deploy/docker/Dockerfile --build-arg BASE=cairn-ci/debian:bookworm -t cairn-ci/cairn "$work/ctx"
build -f deploy/docker/Dockerfile --build-arg BASE=cairn-ci/debian:bookworm --target postgresql -t cairn-ci/postgresql "$work/ctx"
size=$(docker image inspect -f '{{.Size}}' cairn-ci/cairn)
base=$(docker image inspect -f '{{.Size}}' cairn-ci/debian:bookworm)
say "image size: $((size / 1000000)) MB (the base image: $((base / 1000000)) MB; PostgreSQL 15 and cairn: $(((size - base) / 1000000)) MB)"
[ "$(docker image inspect -f '{{.Config.User}}' cairn-ci/cairn)" = 999:999 ] || fail "the image does not run as 999:999"
[ "$(docker image inspect -f '{{json .Config.Entrypoint}}' cairn-ci/cairn)" = '["/usr/local/bin/cairn"]' ] || fail "the entrypoint is not the cairn dispatcher"
found=$(docker run --rm --network host --entrypoint /bin/sh cairn-ci/cairn -c '
  for c in cc gcc g++ c++ clang make tsc npm npx yarn pnpm node-gyp; do command -v "$c"; done
  find / -xdev \( -name "*.test.js" -o -name "*.test.ts" -o -name "*.spec.js" -o -name "*.tsbuildinfo" -o -name ".npm" -o -name "_cacache" -o -name typescript \) -print 2>/dev/null' || true)
[ -z "$found" ] || fail "the image holds a compiler, npm, a cache or tests: $(echo "$found" | head -n 5 | tr '\n' ' ')"
say "the image holds no compiler, no npm or npm cache, no test files"
docker run --rm --network host cairn-ci/cairn --version >/dev/null || fail "cairn --version in the image"

# ---- 3. PostgreSQL archiving through cairn, then every tool ----
step "a PostgreSQL 15 container with cairn added the documented way"
build -f test/containers/postgres-standin.Dockerfile --build-arg POSTGRESQL_STAGE=cairn-ci/postgresql -t cairn-ci/postgres:15 test/containers
build -f deploy/docker/postgres.Dockerfile --build-arg CAIRN_IMAGE=cairn-ci/cairn --build-arg POSTGRES_IMAGE=cairn-ci/postgres:15 -t cairn-ci/postgres-cairn:15 "$work/empty"

freeport() { scripts/node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
pgport=$(freeport); pgport2=$(freeport); mport=$(freeport); cport=$(freeport); cmport=$(freeport)
mkdir -p "$work/etc" "$work/secrets"
printf '[global]\nrepo = /var/lib/cairn\ncompress = zstd:3\n' >"$work/etc/cairn.conf"
pw=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$pw" >"$work/secrets/password"
printf '*:*:*:*:%s\n' "$pw" >"$work/secrets/pgpass"
chown 999:999 "$work/secrets/password" "$work/secrets/pgpass"; chmod 600 "$work/secrets/password" "$work/secrets/pgpass"
chmod 755 "$work" "$work/etc" "$work/secrets"

# The repository volume is first mounted where the cairn image has
# /var/lib/cairn (owned by 999), so it starts out writable by postgres.
docker volume create cairn-ci-repo >/dev/null
docker run --rm --network host -v cairn-ci-repo:/var/lib/cairn cairn-ci/cairn --version >/dev/null
common="-v cairn-ci-repo:/var/lib/cairn -v $work/etc:/etc/cairn:ro"
postgres_args="-c port=$pgport -c listen_addresses=127.0.0.1 -c wal_level=replica -c archive_mode=on -c archive_timeout=60"
# shellcheck disable=SC2086
docker run -d --name cairn-ci-pg --network host $common -v cairn-ci-pgdata:/var/lib/postgresql/data \
  -v "$work/secrets/password:/run/secrets/postgres-password:ro" -e POSTGRES_PASSWORD_FILE=/run/secrets/postgres-password \
  cairn-ci/postgres-cairn:15 $postgres_args -c 'archive_command=/opt/cairn/bin/cairn-wal-push %p' >/dev/null
waitready() {
  i=0; until docker exec "$1" pg_isready -q -h 127.0.0.1 -p "$2" 2>/dev/null; do
    [ "$(docker inspect -f '{{.State.Running}}' "$1")" = true ] || { docker logs "$1" 2>&1 | tail -n 20 >&2; fail "$1 stopped"; }
    i=$((i + 1)); [ $i -lt 120 ] || { docker logs "$1" 2>&1 | tail -n 20 >&2; fail "$1 did not accept connections in 120 s"; }; sleep 1
  done
}
waitready cairn-ci-pg "$pgport"
sql() { c=$1 p=$2; shift 2; docker exec -e PGPASSWORD="$pw" "$c" psql -X -q -At -h 127.0.0.1 -p "$p" -U postgres -v ON_ERROR_STOP=1 -c "$@"; }
sql cairn-ci-pg "$pgport" "create table ci_rows (id int primary key, note text); insert into ci_rows select g, md5(g::text) from generate_series(1, 5000) g" || fail "creating the test table"

# cairn as uid 999 against the server over loopback; the password from a
# file (PGPASSFILE), never the command line.
cairn() {
  # shellcheck disable=SC2086
  docker run --rm --network host $common -v "$work/secrets/pgpass:/run/secrets/pgpass:ro" \
    -e PGHOST=127.0.0.1 -e PGPORT="$pgport" -e PGUSER=postgres -e PGPASSFILE=/run/secrets/pgpass "$@"
}
step "cairn basebackup --remote --type full"
cairn cairn-ci/cairn basebackup --remote --type full >"$work/out" || fail "basebackup --remote"
say "  backup $(cat "$work/out")"
step "cairn dump --all"
cairn cairn-ci/cairn dump --all >"$work/out" || fail "dump --all"
# Rows after the backup: only WAL replay brings them back.
sql cairn-ci-pg "$pgport" "insert into ci_rows select g, md5(g::text) from generate_series(5001, 7500) g; update ci_rows set note = 'after the backup' where id % 7 = 0" || fail "writing after the backup"
step "cairn check (switches WAL and waits for the segment in the repository)"
cairn cairn-ci/cairn check --archive-timeout 120 || fail "check: archiving through the copied-in cairn-wal-push does not work"
expected=$(sql cairn-ci-pg "$pgport" "select count(*) || ':' || md5(string_agg(id || note, ',' order by id)) from ci_rows")
step "cairn verify"
cairn cairn-ci/cairn verify || fail "verify"
step "cairn drill (a scratch server inside the cairn container)"
cairn cairn-ci/cairn drill --json >"$work/drill.json" || { cat "$work/drill.json" >&2; fail "drill"; }

step "cairn prom-export --listen 127.0.0.1:$mport"
cairn -d --name cairn-ci-metrics cairn-ci/cairn prom-export --listen "127.0.0.1:$mport" >/dev/null
i=0; until scripts/node -e 'fetch(process.argv[1]).then(async r=>{const t=await r.text(); if(!r.ok) process.exit(1); require("fs").writeFileSync(process.argv[2], t)}).catch(()=>process.exit(1))' "http://127.0.0.1:$mport/metrics" "$work/metrics"; do
  i=$((i + 1)); [ $i -lt 60 ] || { docker logs cairn-ci-metrics 2>&1 | tail -n 10 >&2; fail "/metrics did not answer in 60 s"; }; sleep 1
done
for m in cairn_backup_last_success_timestamp_seconds cairn_dump_last_success_timestamp_seconds cairn_wal_last_archived_timestamp_seconds; do
  grep -q "^$m" "$work/metrics" || fail "/metrics has no $m"
done
for m in cairn_verify_last_success cairn_drill_last_success cairn_recoverable; do
  grep -Eq "^$m(\{[^}]*\})? 1$" "$work/metrics" || fail "/metrics: $m is not 1: $(grep "^$m" "$work/metrics" | head -n 2)"
done
docker rm -f cairn-ci-metrics >/dev/null
say "  /metrics answered: $(grep -c '^cairn_' "$work/metrics") samples"

step "restore from a third container into a fresh volume; PostgreSQL recovers it"
docker stop -t 30 cairn-ci-pg >/dev/null
# shellcheck disable=SC2086
docker run --rm --network host $common -v cairn-ci-restored:/var/lib/postgresql cairn-ci/cairn restore --pgdata /var/lib/postgresql/data >"$work/out" 2>&1 || { cat "$work/out" >&2; fail "restore"; }
# shellcheck disable=SC2086
docker run -d --name cairn-ci-pg2 --network host $common -v cairn-ci-restored:/var/lib/postgresql \
  cairn-ci/postgres-cairn:15 -c port="$pgport2" -c listen_addresses=127.0.0.1 -c archive_mode=off >/dev/null
waitready cairn-ci-pg2 "$pgport2"
i=0; until [ "$(sql cairn-ci-pg2 "$pgport2" 'select pg_is_in_recovery()' 2>/dev/null)" = f ]; do
  i=$((i + 1)); [ $i -lt 180 ] || { docker logs cairn-ci-pg2 2>&1 | tail -n 20 >&2; fail "the restored server did not finish recovery in 180 s"; }; sleep 1
done
got=$(sql cairn-ci-pg2 "$pgport2" "select count(*) || ':' || md5(string_agg(id || note, ',' order by id)) from ci_rows")
[ "$got" = "$expected" ] || fail "the restored rows differ: $got, expected $expected"
say "  the restored server has every row ($expected)"
docker rm -f cairn-ci-pg cairn-ci-pg2 >/dev/null

# ---- 4. docker compose ----
step "deploy/compose: docker-compose config, then up (host network) until the cairn service is healthy"
# A copy, so the secret file the setup wants is not written into the checkout.
cp -r deploy/compose "$work/compose"
cp test/containers/compose.ci.yml "$work/compose/"
# docker-compose refuses published ports with the host network, and an
# override cannot remove a list: the copy loses its `ports:` entries (the
# file itself is validated as shipped, below).
awk 'skip && /^      - /{next} {skip=0} /^    ports:$/{skip=1; next} {print}' deploy/compose/docker-compose.yml >"$work/compose/docker-compose.yml"
! grep -q 'ports:' "$work/compose/docker-compose.yml" || fail "the ports of deploy/compose/docker-compose.yml were not removed from the CI copy"
printf '%s' "$pw" >"$work/compose/postgres-password"
chown 999:999 "$work/compose/postgres-password"; chmod 600 "$work/compose/postgres-password"
printf 'CAIRN_IMAGE=cairn-ci/cairn\nPOSTGRES_IMAGE=cairn-ci/postgres:15\nPG_MAJOR=15\nCI_PGPORT=%s\nCI_METRICS_PORT=%s\n' "$cport" "$cmport" >"$work/compose/compose.env"
compose() { (cd "$work/compose" && DOCKER_HOST="$DOCKER_HOST" docker-compose --env-file compose.env -p cairnci -f docker-compose.yml -f compose.ci.yml "$@"); }
(cd "$work/compose" && cp "$root/deploy/compose/docker-compose.yml" shipped.yml && docker-compose --env-file compose.env -f shipped.yml config -q) || fail "docker-compose config rejects deploy/compose/docker-compose.yml"
compose config -q || fail "docker-compose config rejects the file with test/containers/compose.ci.yml"
compose up -d >"$work/compose.log" 2>&1 || { cat "$work/compose.log" >&2; fail "docker-compose up"; }
if docker network ls --format '{{.Name}}' | grep -q '^cairnci'; then fail "docker-compose made a network: $(docker network ls --format '{{.Name}} {{.Driver}}' | grep '^cairnci')"; fi
i=0; until [ "$(docker inspect -f '{{.State.Health.Status}}' cairnci_cairn_1 2>/dev/null)" = healthy ]; do
  i=$((i + 1))
  [ $i -lt 180 ] || { compose logs --tail 20 >&2; docker inspect -f '{{json .State.Health}}' cairnci_cairn_1 >&2; fail "the compose cairn service was not healthy in 180 s"; }
  sleep 1
done
say "  the cairn service is healthy (cron runs, /metrics answers)"
step "docker-compose run --rm cairn basebackup --remote (the password from the secret, through .pgpass)"
# On the host network docker-compose 1.29 links a one-off container to the
# service's running ones, and docker refuses links there ("host type networking
# can't be used with links"); on the shipped bridge network this never arises.
compose stop -t 5 cairn >/dev/null 2>&1 || fail "docker-compose stop cairn"
compose run --rm -T cairn basebackup --remote --type full >"$work/out" 2>&1 || { cat "$work/out" >&2; fail "basebackup through the compose cairn service"; }
grep -q 'F (full)' "$work/out" || { cat "$work/out" >&2; fail "no backup id from the compose basebackup"; }
compose down -v -t 5 >/dev/null 2>&1 || fail "docker-compose down"
rm -f "$work/compose/compose.env"
