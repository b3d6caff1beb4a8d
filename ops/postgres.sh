#!/usr/bin/env bash
# A private PostgreSQL cluster for radstream's development, demo and CI: up | down | status | roles.
#
# It never touches Debian's system cluster: it initdb's its own data directory under the
# repository's ignored .state/postgres/ (or /tmp/radstream-pg-<hash> when the `postgres` OS user
# cannot reach the repository), listens on 127.0.0.1:${RADSTREAM_PG_PORT:-5432} with trust auth
# on loopback (development only; production uses SCRAM, see docs/database.md), and creates the
# role `radstream` (LOGIN CREATEDB, not superuser) and the database `radstream` it owns.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$REPO_ROOT/.state/postgres"
PORT="${RADSTREAM_PG_PORT:-5432}"
HOST="127.0.0.1"
READY_TIMEOUT_SECONDS=30
ROLE="radstream"
DATABASE="radstream"

log() { printf 'postgres.sh: %s\n' "$*"; }
die() { printf 'postgres.sh: error: %s\n' "$*" >&2; exit 1; }

# PostgreSQL refuses to run as root: as root, every server-side command runs as `postgres`.
# `cd /` first, because initdb and psql complain when they cannot read the caller's directory.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

find_bin_dir() {
    local dir
    dir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n $dir && -x $dir/pg_ctl && -x $dir/initdb ]]; then
        printf '%s\n' "$dir"
    elif command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v pg_ctl)")"
    fi
}

ensure_installed() {
    BIN_DIR="$(find_bin_dir)"
    if [[ -z $BIN_DIR ]]; then
        log "PostgreSQL binaries not found; installing Debian's postgresql package"
        local sudo=()
        if [[ $EUID -ne 0 ]]; then sudo=(sudo); fi
        "${sudo[@]}" apt-get update
        DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y postgresql
        BIN_DIR="$(find_bin_dir)"
        [[ -n $BIN_DIR ]] || die "postgresql installed but initdb/pg_ctl still not found"
    fi
}

# Decide (once) where the cluster lives and remember it, so down/status find the same cluster.
resolve_location() {
    mkdir -p "$STATE_DIR"
    if [[ -f $STATE_DIR/location ]]; then
        BASE_DIR="$(<"$STATE_DIR/location")"
    else
        BASE_DIR="$STATE_DIR"
        local socket="$STATE_DIR/.s.PGSQL.$PORT"
        if [[ $EUID -eq 0 ]]; then
            chmod 0755 "$STATE_DIR"
            if ! runuser -u postgres -- test -x "$STATE_DIR"; then
                BASE_DIR="/tmp/radstream-pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
            fi
        fi
        # A Unix socket path longer than 107 bytes cannot be bound.
        if (( ${#socket} > 100 )); then
            BASE_DIR="/tmp/radstream-pg-$(printf '%s' "$REPO_ROOT" | sha256sum | cut -c1-12)"
        fi
        printf '%s\n' "$BASE_DIR" >"$STATE_DIR/location"
    fi
    DATA_DIR="$BASE_DIR/data"
    LOG_FILE="$BASE_DIR/server.log"
}

is_running() {
    [[ -f $DATA_DIR/PG_VERSION ]] && as_pg "$BIN_DIR/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1
}

running_port() {
    # postmaster.pid line 4 is the port the running server listens on.
    sed -n 4p "$DATA_DIR/postmaster.pid" 2>/dev/null || true
}

port_in_use() {
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

init_cluster() {
    mkdir -p "$BASE_DIR"
    if [[ $EUID -eq 0 ]]; then
        chown postgres:postgres "$BASE_DIR"
        chmod 0755 "$BASE_DIR"
    fi
    log "initialising a private cluster in $DATA_DIR"
    as_pg "$BIN_DIR/initdb" -D "$DATA_DIR" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    # Trust on loopback is for this local development cluster only (see docs/database.md).
    as_pg tee "$DATA_DIR/pg_hba.conf" >/dev/null <<HBA
# radstream private development cluster: trust on loopback only, never on a network address.
local   all   all                  peer
host    all   all   127.0.0.1/32   trust
host    all   all   ::1/128        trust
HBA
    as_pg tee -a "$DATA_DIR/postgresql.conf" >/dev/null <<CONF

# ---- radstream development cluster (ops/postgres.sh)
listen_addresses = '$HOST'
unix_socket_directories = '$BASE_DIR'
max_connections = 100
shared_buffers = 128MB
fsync = on
synchronous_commit = on
logging_collector = off
log_min_messages = warning
CONF
}

ensure_role_and_database() {
    as_pg "$BIN_DIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE_DIR" -p "$(running_port)" -d postgres <<SQL >/dev/null
SELECT 'CREATE ROLE $ROLE LOGIN CREATEDB NOSUPERUSER'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$ROLE')\gexec
SELECT 'CREATE DATABASE $DATABASE OWNER $ROLE'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DATABASE')\gexec
SQL
}

print_status() {
    if is_running; then
        log "running: pid $(head -n 1 "$DATA_DIR/postmaster.pid"), $HOST:$(running_port), data $DATA_DIR"
        return 0
    fi
    log "stopped (data $DATA_DIR)"
    return 3
}

cmd_up() {
    ensure_installed
    resolve_location
    exec 9>"$STATE_DIR/lock"
    flock -w 60 9 || die "another postgres.sh is holding $STATE_DIR/lock"
    if is_running; then
        print_status
        ensure_role_and_database
        return 0
    fi
    if port_in_use "$PORT"; then
        die "port $HOST:$PORT is already in use by another process; set RADSTREAM_PG_PORT to a free port"
    fi
    [[ -f $DATA_DIR/PG_VERSION ]] || init_cluster
    : >"$LOG_FILE.tmp" && mv "$LOG_FILE.tmp" "$LOG_FILE"
    if [[ $EUID -eq 0 ]]; then chown postgres:postgres "$LOG_FILE"; fi
    as_pg "$BIN_DIR/pg_ctl" start -D "$DATA_DIR" -l "$LOG_FILE" -o "-p $PORT" -W >/dev/null 9>&-
    local waited=0
    until "$BIN_DIR/pg_isready" -q -h "$HOST" -p "$PORT"; do
        if (( waited >= READY_TIMEOUT_SECONDS )); then
            printf 'postgres.sh: error: not ready after %ss; server log tail:\n' "$READY_TIMEOUT_SECONDS" >&2
            tail -n 40 "$LOG_FILE" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    ensure_role_and_database
    print_status
}

cmd_down() {
    ensure_installed
    resolve_location
    if ! is_running; then
        log "already stopped"
        return 0
    fi
    as_pg "$BIN_DIR/pg_ctl" stop -D "$DATA_DIR" -m fast -w -t 60 >/dev/null
    log "stopped"
}

# Least-privilege roles (docs/security.md#postgresql): the group roles migration 0004 grants to,
# and a login in each. The owner `radstream` runs Alembic; workers and the API connect as
# radstream_app (RADSTREAM_DATABASE_URL), audit verify as radstream_reader
# (RADSTREAM_DATABASE__READONLY_URL), migrations as radstream (RADSTREAM_DATABASE__OWNER_URL).
# Run it before the first `radstream db upgrade`; on a database already at 0004, re-apply the
# grants with `radstream db downgrade 0003 && radstream db upgrade` (0004's downgrade only revokes).
cmd_roles() {
    ensure_installed
    resolve_location
    is_running || die "the cluster is not running: ops/postgres.sh up first"
    as_pg "$BIN_DIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$BASE_DIR" -p "$(running_port)" -d postgres <<SQL >/dev/null
SELECT 'CREATE ROLE ${DATABASE}_runtime NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DATABASE}_runtime')\gexec
SELECT 'CREATE ROLE ${DATABASE}_readonly NOLOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '${DATABASE}_readonly')\gexec
SELECT 'CREATE ROLE radstream_app LOGIN IN ROLE ${DATABASE}_runtime'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'radstream_app')\gexec
SELECT 'CREATE ROLE radstream_reader LOGIN IN ROLE ${DATABASE}_readonly'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'radstream_reader')\gexec
SQL
    log "roles ${DATABASE}_runtime (login radstream_app) and ${DATABASE}_readonly (login radstream_reader) exist"
}

cmd_status() {
    BIN_DIR="$(find_bin_dir)"
    [[ -n $BIN_DIR ]] || { log "stopped (PostgreSQL is not installed)"; exit 3; }
    resolve_location
    print_status || exit 3
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    roles) cmd_roles ;;
    *) printf 'usage: %s up|down|status|roles\n' "$0" >&2; exit 2 ;;
esac
