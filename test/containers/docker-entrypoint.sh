#!/bin/sh
# The part of the official postgres image's entrypoint that the containers
# test relies on (see postgres-standin.Dockerfile): initdb on an empty
# PGDATA with the superuser password, connections from anywhere with
# scram-sha-256, then the command (`-c …` alone means postgres -c …).
set -eu
case "${1:-postgres}" in -*) set -- postgres "$@" ;; esac
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then pw=$(cat "$POSTGRES_PASSWORD_FILE"); else pw=${POSTGRES_PASSWORD:-}; fi
  [ -n "$pw" ] || { echo "docker-entrypoint.sh: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE is needed" >&2; exit 1; }
  mkdir -p "$PGDATA" && chmod 700 "$PGDATA"
  pwfile=$(mktemp) && printf '%s\n' "$pw" > "$pwfile"
  initdb -D "$PGDATA" --username=postgres --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 -k >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  echo "host replication all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec "$@"
