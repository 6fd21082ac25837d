#!/usr/bin/env bash
# A throwaway PostgreSQL server on loopback for the test suite.
#   scripts/test-postgres.sh start   initialise (once) and start it; prints its URL
#   scripts/test-postgres.sh stop
#   scripts/test-postgres.sh url
set -euo pipefail

PORT="${RUNYARD_TEST_PG_PORT:-54329}"
DATA="${RUNYARD_TEST_PG_DIR:-/tmp/runyard-test-pg-$PORT}"
URL="postgresql+psycopg://postgres@127.0.0.1:$PORT/postgres"
BIN="$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)")"

# PostgreSQL refuses to run as root: run it as the postgres user when we are root.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

case "${1:-start}" in
  start)
    if [ ! -s "$DATA/PG_VERSION" ]; then
      mkdir -p "$DATA"
      [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$DATA"
      as_owner "$BIN/initdb" -D "$DATA" -U postgres -A trust -E UTF8 --no-locale >/dev/null
    fi
    # wal_level=logical: the CDC tests use this server as their source (logical replication slots, wal2json).
    OPTIONS="-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=off \
-c synchronous_commit=off -c full_page_writes=off -c wal_level=logical -c max_replication_slots=50 -c max_wal_senders=20"
    if as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
      level="$(as_owner "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -Atc 'SHOW wal_level' 2>/dev/null || true)"
      if [ "$level" != "logical" ]; then  # started by an older version of this script
        as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 -m fast restart -o "$OPTIONS" >/dev/null
      fi
    else
      rm -f "$DATA/postmaster.pid"  # left by a server that was killed with its session
      as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start -o "$OPTIONS" >/dev/null
    fi
    echo "$URL"
    ;;
  stop)
    as_owner "$BIN/pg_ctl" -D "$DATA" -m fast stop >/dev/null 2>&1 || true
    ;;
  url)
    echo "$URL"
    ;;
  *)
    echo "usage: $0 start|stop|url" >&2
    exit 2
    ;;
esac
