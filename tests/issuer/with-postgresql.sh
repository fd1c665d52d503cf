#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# with-postgresql.sh COMMAND [ARG...]
#
# Runs COMMAND against a real PostgreSQL server of its own: initdb and
# pg_ctl in a temporary directory, listening only on a unix socket in that
# directory (no TCP), as an unprivileged user (the "postgres" system user
# when run as root, since the server refuses to run as root).  COMMAND finds
# the server through TALLY_TEST_PG_CONNINFO.  The server is stopped and the
# directory removed on every exit, failure included.
#
# Missing server binaries are a failure, never a skip: the issuer suite
# must run against PostgreSQL wherever it runs.

set -eu

pg_bin=${TALLY_PG_BIN:-/usr/lib/postgresql/15/bin}
me=with-postgresql

for tool in initdb pg_ctl; do
  if [ ! -x "$pg_bin/$tool" ]; then
    echo "$me: $pg_bin/$tool not found: install the PostgreSQL server with" \
         "scripts/install-deps.sh --test (package postgresql)" >&2
    exit 1
  fi
done
if [ $# -eq 0 ]; then
  echo "usage: $me COMMAND [ARG...]" >&2
  exit 2
fi

if [ "$(id -u)" -eq 0 ]; then
  pg_user=postgres
  if ! id -u "$pg_user" >/dev/null 2>&1; then
    echo "$me: running as root, but there is no unprivileged \"$pg_user\" user to run" \
         "the server as (the postgresql package creates it)" >&2
    exit 1
  fi
  as_server() { runuser -u "$pg_user" -- "$@"; }
else
  as_server() { "$@"; }
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/tally-pg-XXXXXX")
data=$dir/data
started=no

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  status=$?
  if [ "$started" = yes ]; then
    as_server "$pg_bin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [ "$status" -ne 0 ] && [ -f "$dir/server.log" ]; then
    echo "$me: server log:" >&2
    tail -n 30 "$dir/server.log" >&2 || true
  fi
  rm -rf "$dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" -eq 0 ]; then
  chown "$pg_user" "$dir"
fi
chmod 0700 "$dir"
if ! as_server test -w "$dir"; then
  echo "$me: the server's user cannot write $dir: point TMPDIR at a directory" \
       "every user can enter, e.g. /tmp" >&2
  exit 1
fi

# Only the socket in $dir, reachable by whoever may enter $dir: trust is
# safe there, and no password travels.  fsync is off: these servers hold
# test data only and die with the test.
# Tests need no durability; a benchmark that wants a durable server's
# figures sets TALLY_PG_FSYNC=on (docs/bench.md).
case ${TALLY_PG_FSYNC:-off} in
  on | off) fsync=${TALLY_PG_FSYNC:-off} ;;
  *)
    echo "$me: TALLY_PG_FSYNC must be on or off" >&2
    exit 2
    ;;
esac
as_server "$pg_bin/initdb" -D "$data" -U tally -A trust -E UTF8 --locale=C.UTF-8 \
  --no-sync >"$dir/initdb.log" 2>&1 || {
  cat "$dir/initdb.log" >&2
  exit 1
}
as_server "$pg_bin/pg_ctl" -D "$data" -l "$dir/server.log" -w -t 60 \
  -o "-c listen_addresses= -c unix_socket_directories=$dir -c fsync=$fsync -c full_page_writes=$fsync" \
  start >/dev/null
started=yes

TALLY_TEST_PG_CONNINFO="host=$dir user=tally dbname=postgres"
export TALLY_TEST_PG_CONNINFO

# Not exec: the trap must stop the server after COMMAND.  In the
# background, so that a TERM (meson's timeout) or an INT reaches the trap at
# once; it passes the signal on to COMMAND.  $TALLY_WRAP (e.g. valgrind)
# wraps COMMAND alone: a wrapper given to meson would check this script.
# shellcheck disable=SC2086 # TALLY_WRAP is a command line, split on purpose
${TALLY_WRAP:-} "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
trap 'kill -INT "$child" 2>/dev/null; exit 130' INT
set +e
wait "$child"
status=$?
set -e
exit "$status"
