#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the store tests: initdb in a directory of the caller's,
# listening on a Unix socket in that directory only (no TCP port, so two builds' clusters never
# meet), trust authentication for the role `epcs`, and a database `epcs`.
#
#   tests/scripts/pg_scratch.sh start DIR     prints the connection URI on its last line
#   tests/scripts/pg_scratch.sh stop DIR      stops it and removes DIR
#
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user the
# Debian package creates. fsync stays on: the store tests claim durability.
set -euo pipefail

command=${1:?usage: pg_scratch.sh start|stop DIR}
dir=${2:?usage: pg_scratch.sh start|stop DIR}
bin=$(ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true)
if [ -z "$bin" ]; then
    echo "pg_scratch: PostgreSQL 15 is not installed (scripts/setup.sh installs postgresql-15)" >&2
    exit 1
fi

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

stop() {
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case $command in
start)
    # What an earlier run left (a killed ctest) is stopped first, never reused.
    stop
    mkdir -p "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres: "$dir"
    fi
    as_owner "$bin/initdb" -D "$dir/data" -U epcs -A trust -E UTF8 --locale=C.UTF-8 \
        --no-sync >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        exit 1
    }
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $dir -c max_connections=200 -c fsync=on" start >/dev/null || {
        cat "$dir/server.log" >&2
        exit 1
    }
    as_owner "$bin/createdb" -h "$dir" -U epcs epcs
    echo "postgresql:///epcs?host=$dir&user=epcs"
    ;;
stop)
    stop
    ;;
*)
    echo "pg_scratch: unknown command $command (start or stop)" >&2
    exit 2
    ;;
esac
