# shellcheck shell=bash
# Start and stop a local PostgreSQL cluster for tests and development (sourced by scripts/test and
# scripts/dev-env):
#
#   source scripts/lib/postgres.sh
#   pg_start /tmp/matih-pg 54329     # initdb on first use, start if not running; exports MATIH_POSTGRES_ADMIN_URL
#   pg_stop  /tmp/matih-pg           # stop if running (the data stays; rm -rf DIR to forget it)
#
# Both are idempotent. The server listens on 127.0.0.1:PORT only, with fsync off (throwaway data),
# password (SCRAM) authentication over TCP and trust over its Unix socket in DIR. The admin password
# is generated once and kept in DIR/admin-password. The server refuses to run as root: as root,
# the tools run as the `postgres` user and DIR is chowned to it.

_pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

_pg_need() {
    local tool
    for tool in initdb pg_ctl; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "pg_start: $tool is not on the PATH (PostgreSQL 15 server binaries are required)" >&2
            return 1
        fi
    done
}

# pg_start DIR PORT
pg_start() {
    local dir="${1:?usage: pg_start DIR PORT}" port="${2:?usage: pg_start DIR PORT}"
    _pg_need || return 1
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if [ ! -s "$dir/admin-password" ]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$dir/admin-password")
    fi
    if [ "$(id -u)" = 0 ]; then
        chown -R postgres:postgres "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        _pg_as initdb -D "$dir/data" -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
            --auth-local=trust --auth-host=scram-sha-256 --pwfile="$dir/admin-password" >"$dir/initdb.log" 2>&1 || {
            cat "$dir/initdb.log" >&2
            return 1
        }
    fi
    if ! _pg_as pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
        _pg_as pg_ctl -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            start >/dev/null || {
            tail -n 20 "$dir/server.log" >&2
            return 1
        }
    fi
    MATIH_POSTGRES_ADMIN_URL="postgresql://postgres:$(cat "$dir/admin-password")@127.0.0.1:$port/postgres"
    export MATIH_POSTGRES_ADMIN_URL
}

# pg_stop DIR
pg_stop() {
    local dir="${1:?usage: pg_stop DIR}"
    [ -f "$dir/data/PG_VERSION" ] || return 0
    if _pg_as pg_ctl -D "$dir/data" status >/dev/null 2>&1; then
        _pg_as pg_ctl -D "$dir/data" -m fast -w stop >/dev/null
    fi
}
