#!/usr/bin/env bash
# The PostgreSQL image's start (docker/compose.cluster.yaml): an empty data directory becomes a
# standby cloned with pg_basebackup from whichever node is the primary now, or, on the
# bootstrap node when no node holds a cluster yet, a new primary with epcs's database and
# roles. A data directory that holds a cluster is started as it is (a standby stays one).
# Then PostgreSQL replaces this script as PID 1.
#
# Environment:
#   EPCS_PG_NAME       this node's host name on the network, and its standby name
#   EPCS_PG_NODES      every node's name, space-separated; each is a synchronous standby
#                      candidate: synchronous_standby_names = 'ANY 1 (...)'
#   EPCS_PG_BOOTSTRAP  1 on the one node that may make a new cluster
#   EPCS_PG_EPCS_PASSFILE         pgpass line of the role epcs    (/run/secrets/pgpass_epcs)
#   EPCS_PG_REPLICATION_PASSFILE  pgpass line of role replicator  (/run/secrets/pgpass_replication)
set -euo pipefail

name=${EPCS_PG_NAME:?EPCS_PG_NAME: this node\'s host name}
nodes=${EPCS_PG_NODES:?EPCS_PG_NODES: every node\'s host name}
epcs_passfile=${EPCS_PG_EPCS_PASSFILE:-/run/secrets/pgpass_epcs}
replication_passfile=${EPCS_PG_REPLICATION_PASSFILE:-/run/secrets/pgpass_replication}
log() { echo "epcs-postgres: $*" >&2; }

# The password of a pgpass file's line for `role` (host:port:db:role:password; the names here
# hold no ':' or '\', which pgpass would escape).
password_of() {
    local file=$1 role=$2 password
    [ -r "$file" ] || { log "cannot read $file"; exit 1; }
    password=$(awk -F: -v r="$role" '$4 == r { print substr($0, index($0, $5)); exit }' "$file")
    [ -n "$password" ] || { log "$file has no line for the role $role"; exit 1; }
    printf '%s' "$password"
}

# The node that is a primary now, if one answers: a standby is cloned from it.
find_primary() {
    local node
    for node in $nodes; do
        [ "$node" = "$name" ] && continue
        if [ "$(psql -Atq "host=$node user=replicator dbname=postgres passfile=$replication_passfile connect_timeout=2" \
            -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; then
            echo "$node"
            return 0
        fi
    done
    return 1
}

configure() {
    local standbys
    # shellcheck disable=SC2086 # one argument per node name
    standbys=$(printf '"%s", ' $nodes)
    cat >>"$PGDATA/postgresql.conf" <<CONF

# --- docker/postgres/entrypoint.sh ---
listen_addresses = '*'
wal_level = replica
max_wal_senders = 10
# A standby that was away for a while catches up from here rather than needing a new clone.
wal_keep_size = '512MB'
# pg_rewind can then turn a former primary into a standby without a new base backup.
wal_log_hints = on
hot_standby = on
# A commit is acknowledged once one other node has it: nothing answered is lost with a node.
synchronous_commit = on
synchronous_standby_names = 'ANY 1 (${standbys%, })'
CONF
    cat >"$PGDATA/pg_hba.conf" <<HBA
# docker/postgres/entrypoint.sh: peers on the compose network, with passwords (SCRAM).
local   all          all                      peer
host    replication  replicator  samenet      scram-sha-256
host    postgres     replicator  samenet      scram-sha-256
host    epcs         epcs        samenet      scram-sha-256
HBA
}

bootstrap() {
    local epcs_password replication_password
    epcs_password=$(password_of "$epcs_passfile" epcs)
    replication_password=$(password_of "$replication_passfile" replicator)
    log "no node holds a cluster: making one here"
    initdb -D "$PGDATA" --username=postgres --encoding=UTF8 --locale=C --data-checksums \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    configure
    # Unreachable from the network, and without waiting for a standby that does not exist yet.
    pg_ctl -D "$PGDATA" -w -s -o "-c listen_addresses='' -c synchronous_standby_names=''" start
    psql -q -v ON_ERROR_STOP=1 -v epcs="$epcs_password" -v replication="$replication_password" \
        -d postgres <<'SQL'
CREATE ROLE replicator LOGIN REPLICATION PASSWORD :'replication';
CREATE ROLE epcs LOGIN PASSWORD :'epcs';
CREATE DATABASE epcs OWNER epcs;
SQL
    pg_ctl -D "$PGDATA" -w -s -m fast stop
}

clone() {
    local primary=$1
    log "cloning the primary $primary (pg_basebackup)"
    pg_basebackup -d "host=$primary user=replicator passfile=$replication_passfile" \
        -D "$PGDATA" -X stream -c fast
    touch "$PGDATA/standby.signal"
    # The standby name is what synchronous_standby_names counts.
    printf "primary_conninfo = 'host=%s user=replicator passfile=%s application_name=%s'\n" \
        "$primary" "$replication_passfile" "$name" >>"$PGDATA/postgresql.auto.conf"
}

# Whether another node runs PostgreSQL at all (a primary, a standby, or one starting up).
another_runs() {
    local node
    for node in $nodes; do
        [ "$node" = "$name" ] && continue
        # 0: accepting connections; 1: rejecting them (starting, or shutting down).
        pg_isready -q -h "$node" -t 2 && return 0
        [ $? = 1 ] && return 0
    done
    return 1
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    waited=0
    until primary=$(find_primary); do
        # A new cluster only where no node runs one: a wiped bootstrap node must not start an
        # empty primary beside a standby (or a primary found a moment later) that holds the data.
        if [ "${EPCS_PG_BOOTSTRAP:-0}" = 1 ] && [ "$waited" -ge 2 ] && ! another_runs; then
            break
        fi
        [ "$waited" = 0 ] && log "no primary answers among: $nodes; waiting for one"
        waited=$((waited + 1))
        sleep 1
    done
    if [ -n "${primary:-}" ]; then
        clone "$primary"
    else
        bootstrap
    fi
fi

log "starting $(cat "$PGDATA/PG_VERSION") as $([ -e "$PGDATA/standby.signal" ] && echo standby || echo primary)"
exec postgres -D "$PGDATA"
