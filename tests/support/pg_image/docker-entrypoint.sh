#!/bin/sh
# Entrypoint of the local PostgreSQL test image (postgres-test:15, built by build.sh here),
# installed as /usr/local/bin/docker-entrypoint.sh. It behaves like the official image's
# for what this project uses:
#
#   POSTGRES_USER              superuser name (default: postgres)
#   POSTGRES_PASSWORD          its password; required on the first start unless
#                              POSTGRES_HOST_AUTH_METHOD=trust (or POSTGRES_PASSWORD_FILE)
#   POSTGRES_DB                database created on the first start (default: the user's name)
#   POSTGRES_HOST_AUTH_METHOD  pg_hba method for network clients (default: scram-sha-256)
#   POSTGRES_INITDB_ARGS       extra initdb arguments (split on spaces)
#   /docker-entrypoint-initdb.d/*.sql, *.sh   run once, on the first start
#
# As root it prepares $PGDATA (mode 700, owned by postgres) and re-runs itself as postgres
# through setpriv, so the server ends up as PID 1 (exec all the way). The first start only
# (no $PGDATA/PG_VERSION yet) runs initdb and a temporary server; later starts ignore
# POSTGRES_PASSWORD, POSTGRES_USER and POSTGRES_DB, as the official image does.
#
# The password never appears on a command line: initdb reads it from a mode-600 file that
# is removed right after, and the server itself does not get it in its environment.
#
# The temporary server of the first start listens on a private socket directory only (not
# /var/run/postgresql, no TCP), so `pg_isready` -- the healthcheck -- answers "ready" only
# once the real server is up, never during the initialisation.
#
# Anything other than `postgres ...` (or options, which mean `postgres -opts`) is exec'd
# unchanged as root: `docker run IMAGE psql -h db ...`, `docker exec C pg_dump ...`.
set -eu

log() { printf 'docker-entrypoint.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
    '' ) set -- postgres ;;
    -* ) set -- postgres "$@" ;;
esac

if [ "$1" != postgres ]; then
    exec "$@"
fi

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA

if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    # A fresh named volume or bind mount may be root-owned; chown only what is not
    # postgres's already (as the official image does).
    find "$PGDATA" ! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    mkdir -p /var/run/postgresql
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    HOME=/var/lib/postgresql
    export HOME
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
    if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
        [ -z "${POSTGRES_PASSWORD:-}" ] || die "set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, not both"
        [ -r "$POSTGRES_PASSWORD_FILE" ] || die "POSTGRES_PASSWORD_FILE=$POSTGRES_PASSWORD_FILE is not readable"
        POSTGRES_PASSWORD="$(cat "$POSTGRES_PASSWORD_FILE")"
    fi
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        die "the database is not initialised and POSTGRES_PASSWORD is empty; set it" \
            "(or POSTGRES_HOST_AUTH_METHOD=trust to allow every connection without one)"
    fi

    log "first start: initialising $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
    work="$(mktemp -d /tmp/pg-init.XXXXXX)"   # mode 700, postgres's
    pwfile="$work/pwfile"
    sockdir="$work/socket"
    mkdir "$sockdir"
    trap 'rm -rf "$work"' EXIT
    trap 'exit 1' INT TERM

    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        # printf is a shell builtin: the password reaches the file without any argv.
        (umask 077 && printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile")
        # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is split on purpose
        initdb --username="$POSTGRES_USER" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-} >&2
        rm -f "$pwfile"
    else
        # shellcheck disable=SC2086
        initdb --username="$POSTGRES_USER" ${POSTGRES_INITDB_ARGS:-} >&2
    fi

    printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    pg_ctl -D "$PGDATA" -w -t 60 \
        -o "-c listen_addresses='' -c unix_socket_directories=$sockdir" start >&2
    if [ "$POSTGRES_DB" != postgres ]; then
        # psql variables quote the name (:"db"); they are expanded in stdin, not in -c.
        printf 'CREATE DATABASE :"db";\n' |
            psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -U "$POSTGRES_USER" -d postgres -v db="$POSTGRES_DB" >&2
    fi
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sql) log "running $f"
                   psql -X -q -v ON_ERROR_STOP=1 -h "$sockdir" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -f "$f" >&2 ;;
            *.sh)  log "running $f"
                   PGHOST="$sockdir" PGUSER="$POSTGRES_USER" PGDATABASE="$POSTGRES_DB" sh "$f" >&2 ;;
            *)     [ ! -e "$f" ] || log "ignoring $f" ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w -t 60 stop >&2
    rm -rf "$work"
    trap - EXIT INT TERM
    log "initialisation done; starting the server"
fi

unset POSTGRES_PASSWORD
exec "$@"
