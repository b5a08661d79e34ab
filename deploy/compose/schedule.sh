#!/bin/bash
# The entrypoint of the compose `cairn` service (root in the container):
#   schedule.sh              cron with deploy/compose/crontab, and
#                            cairn-prom-export --listen $CAIRN_METRICS_LISTEN,
#                            both as postgres; their output on stdout. Exits
#                            (and compose restarts the service) when either stops.
#   schedule.sh --health     the health check: cron runs and /metrics answers
#   schedule.sh TOOL ARGS    one cairn tool as postgres, e.g.
#                            `docker compose run --rm cairn basebackup --remote`
# The password for libpq comes from the secret /run/secrets/postgres-password,
# written to ~postgres/.pgpass (mode 600): never into the environment or the
# crontab.
# exit: 0, or the tool's; 3 when something it needs is missing; 1 unhealthy
set -euo pipefail
listen=${CAIRN_METRICS_LISTEN:-0.0.0.0:9188}
here=$(dirname "$(readlink -f "$0")")
err() { echo "schedule.sh: error: $1" >&2; exit "${2:-3}"; }

if [ "${1:-}" = --health ]; then
  pid=$(cat /run/crond.pid 2>/dev/null || true)
  if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then echo "cron is not running"; exit 1; fi
  port=${listen##*:}
  # shellcheck disable=SC2016 # JavaScript, not shell
  exec /opt/cairn/node/bin/node -e '
    fetch(`http://127.0.0.1:${process.argv[1]}/metrics`, { signal: AbortSignal.timeout(8000) })
      .then(async (r) => { const t = await r.text(); if (!r.ok || !t.includes("cairn_")) { console.log(`/metrics: ${r.status}`); process.exit(1); } })
      .catch((e) => { console.log(`/metrics: ${e.message}`); process.exit(1); });' "$port"
fi

[ "$(id -u)" = 0 ] || err "the scheduler starts as root (user: \"0:0\"): cron needs it; the jobs run as postgres"
command -v cron >/dev/null || err "this image has no cron: build it from deploy/docker/Dockerfile"

# libpq's password file, from the secret.
if [ -r /run/secrets/postgres-password ]; then
  umask 077
  { printf '*:*:*:*:'; sed -e 's/\\/\\\\/g' -e 's/:/\\:/g' /run/secrets/postgres-password | head -n 1; } > /var/lib/postgresql/.pgpass
  chown 999:999 /var/lib/postgresql/.pgpass
  umask 022
fi

# The variables a job needs, kept from this container's environment (cron
# gives jobs none of it).
mapfile -t vars < <(env | grep -E '^(PG(HOST|PORT|USER|DATABASE|SSLMODE)|CAIRN_[A-Z_]+|AWS_[A-Z_]+)=' | grep -v '^CAIRN_METRICS_LISTEN=' || true)
as_postgres() { setpriv --reuid=999 --regid=999 --init-groups --reset-env -- env HOME=/var/lib/postgresql PATH="/usr/local/bin:$PATH" "${vars[@]}" "$@"; }

if [ $# -gt 0 ]; then as_postgres cairn "$@"; exit; fi

install -d -o 999 -g 999 -m 750 /var/log/cairn
touch /var/log/cairn/cron.log && chown 999:999 /var/log/cairn/cron.log
{
  echo "# written by $0 at start: do not edit (edit $here/crontab)"
  echo "SHELL=/bin/sh"
  echo "PATH=/usr/local/bin:$PATH"
  echo "HOME=/var/lib/postgresql"
  printf '%s\n' "${vars[@]}"
  grep -v '^#' "$here/crontab"
} > /etc/cron.d/cairn
chmod 644 /etc/cron.d/cairn

pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; exit 0' TERM INT
cron -f -L 15 & pids+=($!)
as_postgres cairn prom-export --listen "$listen" & pids+=($!)
tail -n 0 -F /var/log/cairn/cron.log & pids+=($!)
wait -n "${pids[@]}" || true
echo "schedule.sh: cron or cairn-prom-export stopped; exiting so the service restarts" >&2
kill "${pids[@]}" 2>/dev/null || true
exit 1
