#!/usr/bin/env bash
# Build the local PostgreSQL test image postgres-test:15 without any registry: a minimal
# Debian 12 root made by debootstrap, Debian's own postgresql-15 installed into it, trimmed
# to about 210 MB, and loaded with `docker import`.
#
#   tests/support/pg_image/build.sh            # as root; needs debootstrap, docker, Debian's mirror
#
# What the image holds and does (like the official postgres image, for what the project uses):
#   - PostgreSQL 15 from bookworm (+ updates and security): postgres, initdb, pg_ctl, psql,
#     pg_dump, pg_restore, pg_isready ... first on PATH (/usr/lib/postgresql/15/bin), and
#     /bin/sh (dash) for CMD-SHELL healthchecks such as `pg_isready -U infisical -d infisical`;
#   - ENTRYPOINT docker-entrypoint.sh (next to this file; see its header): POSTGRES_USER,
#     POSTGRES_PASSWORD, POSTGRES_DB on the first start; runs the server as postgres, PID 1;
#   - CMD postgres, ENV PGDATA=/var/lib/postgresql/data, VOLUME $PGDATA, EXPOSE 5432,
#     LANG=C.UTF-8 (no locales needed), STOPSIGNAL SIGINT (fast shutdown: `docker stop`
#     takes a fraction of a second instead of the 10 s timeout);
#   - no LLVM JIT (the JIT provider files are removed; PostgreSQL then runs with JIT off),
#     no docs, man pages or translations;
#   - differences from the official image: PostgreSQL 15 (the compose files pin 16.9), and
#     the postgres user has Debian's system uid (about 100, not 999 or alpine's 70).
#
# Environment:
#   PG_TEST_IMAGE        image name (default postgres-test:15)
#   PG_IMAGE_ROOT_CACHE  where the trimmed root (about 220 MB) is kept between builds, so a
#                        rebuild only re-imports it (about 10 s instead of a minute or two);
#                        default /var/cache/pg-image-root; "" or "none" to keep nothing
#   PG_IMAGE_MIRROR, PG_IMAGE_SECURITY_MIRROR
#                        Debian mirrors (default: the URIs: of /etc/apt/sources.list.d/
#                        debian.sources, else deb.debian.org)
#   PG_IMAGE_FORCE=1     rebuild even when the image is up to date
#
# Caching and idempotence: the image carries the label pg-test-image.recipe, a hash of this
# script and the entrypoint. When an image with the same recipe exists, nothing is done
# (one `docker image inspect`); when the files changed, it is rebuilt -- from the cached root
# in seconds, unless the code that makes the root (build_root) or the mirrors changed -- and
# the outdated image is removed once no container uses it. Concurrent runs wait for each other (flock). The image appears in one step (the final
# `docker build -t`), so a failed or interrupted run never leaves a half-built image under
# the name; an interrupted run stops its steps, unmounts what it mounted and removes its
# work directory.
#
# Errors: one line on stderr, "pg_image/build.sh: FAILED while <step> (exit N): <last line
# of the step's output>; log: <file>" (the full log is kept). Runs without stdin.
set -Eeuo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGE="${PG_TEST_IMAGE:-postgres-test:15}"
BASE_IMAGE="${IMAGE}-base"   # postgres-test:15-base, untagged again at the end
CACHE="${PG_IMAGE_ROOT_CACHE-/var/cache/pg-image-root}"
[ "$CACHE" != none ] || CACHE=""
SUITE=bookworm
PGVER=15
ENTRYPOINT_SRC="$here/docker-entrypoint.sh"

step="starting"
log=""
work=""
root=""
child=""   # the running step's pid (and process group), see run()

note() { printf 'pg_image/build.sh: %s\n' "$*" >&2; }
fail() {  # fail MESSAGE: one line, exit 1 (the EXIT trap adds nothing more)
    printf 'pg_image/build.sh: FAILED: %s\n' "$*" >&2
    step=""
    exit 1
}

# Every mount under DIR (our /proc, and the /proc and /sys debootstrap mounts while it runs),
# deepest first. Returns 1 when one stays mounted.
unmount_under() {
    local dir="$1" m
    [ -n "$dir" ] && [ -d "$dir" ] || return 0
    for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
    ! awk -v d="$dir/" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/self/mounts
}

on_exit() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # A step still running (we were signalled): stop its whole process group first.
    if [ -n "$child" ]; then
        kill -TERM -- "-$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    fi
    if [ -n "$work" ] && [ -d "$work" ]; then
        if unmount_under "$work"; then
            rm -rf --one-file-system "$work"
        else
            note "could not unmount everything under $work; left in place"
        fi
    fi
    if [ "$rc" -ne 0 ] && [ -n "$step" ]; then
        local last=""
        if [ -n "$log" ] && [ -s "$log" ]; then
            last="$(grep -v '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-300 || true)"
        fi
        printf 'pg_image/build.sh: FAILED while %s (exit %s)%s%s\n' "$step" "$rc" \
            "${last:+: $last}" "${log:+; log: $log}" >&2
    elif [ -n "$log" ]; then
        rm -f "$log"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Each step runs as a background job in its own process group (job control on), and the
# script waits for it: a signal to this script is handled at once (bash defers traps while
# a foreground command runs), and the clean-up stops the step's whole tree (debootstrap,
# dpkg, the chroot's apt-get) before it unmounts and removes anything.
set -m

# run STEP CMD...: the command's output goes to the log, not the terminal.
run() {
    step="$1"
    shift
    printf '\n=== %s: %s\n' "$step" "$*" >>"$log"
    local rc=0
    "$@" >>"$log" 2>&1 </dev/null &
    child=$!
    wait "$child" || rc=$?
    child=""
    return "$rc"
}

# in_root CMD...: run CMD inside the new root with a clean, non-interactive environment.
in_root() {
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 HOME=/root \
        DEBIAN_FRONTEND=noninteractive DEBCONF_NONINTERACTIVE_SEEN=true \
        chroot "$root" "$@"
}

# --- up to date already? ---------------------------------------------------------------
recipe="$(cat "${BASH_SOURCE[0]}" "$ENTRYPOINT_SRC" | sha256sum | cut -c1-16)"

image_recipe() {
    docker image inspect --format '{{index .Config.Labels "pg-test-image.recipe"}}' "$IMAGE" 2>/dev/null || true
}
up_to_date() { [ "${PG_IMAGE_FORCE:-}" != 1 ] && [ "$(image_recipe)" = "$recipe" ]; }

command -v docker >/dev/null 2>&1 || fail "docker is not installed"
up_to_date && exit 0

[ "$(id -u)" = 0 ] || fail "must run as root (debootstrap, chroot and mount need it)"
for tool in debootstrap chroot mount umount flock tar sha256sum awk; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is not installed (apt-get install debootstrap util-linux)"
done
docker info >/dev/null 2>&1 || fail "the Docker engine does not answer (docker info)"

# One build at a time; the second waits, then finds the image there.
lockfile=/run/lock/pg-test-image.lock
[ -d /run/lock ] || lockfile=/tmp/pg-test-image.lock
exec 9>"$lockfile"
flock -w 1800 9 || fail "another build held $lockfile for 30 min"
if up_to_date; then
    exit 0
fi

log="$(mktemp /tmp/pg-image-build.XXXXXX.log)"
started=$SECONDS

# --- mirrors ---------------------------------------------------------------------------
# The URIs: of the deb822 stanza whose Suites: holds SUITE (debian.sources format).
sources_uri() {
    local want="$1" file=/etc/apt/sources.list.d/debian.sources
    [ -r "$file" ] || return 0
    awk -v want="$want" '
        /^[[:space:]]*$/ { if (uri != "" && hit) exit; uri = ""; hit = 0; next }
        tolower($1) == "uris:"   { uri = $2 }
        tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == want) hit = 1 }
        END { if (uri != "" && hit) print uri }
    ' "$file"
}
MIRROR="${PG_IMAGE_MIRROR:-$(sources_uri "$SUITE")}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY="${PG_IMAGE_SECURITY_MIRROR:-$(sources_uri "$SUITE-security")}"
SECURITY="${SECURITY:-http://deb.debian.org/debian-security}"

# --- the root: from the cache, or made now ---------------------------------------------
build_root() {
    run "debootstrap $SUITE from $MIRROR" \
        debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR"

    step="configuring the root"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY $SUITE-security main
EOF
    # No service may start inside the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 755 "$root/usr/sbin/policy-rc.d"
    # Debian's postinst would otherwise create the cluster "15/main" under /var/lib/postgresql.
    mkdir -p "$root/etc/postgresql-common/createcluster.d"
    printf 'create_main_cluster = false\n' >"$root/etc/postgresql-common/createcluster.d/00-test-image.conf"
    # No docs, man pages or translations from the packages installed below.
    mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
    cat >"$root/etc/dpkg/dpkg.cfg.d/01-test-image-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF

    step="mounting /proc in the root"
    mount -t proc proc "$root/proc"

    local apt=(apt-get -q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false
               -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
    run "apt-get update in the root" in_root "${apt[@]}" update
    run "apt-get upgrade in the root (bookworm-updates, bookworm-security)" in_root "${apt[@]}" upgrade
    run "installing postgresql-$PGVER in the root" in_root "${apt[@]}" install "postgresql-$PGVER"
    run "apt-get clean in the root" in_root apt-get clean

    step="unmounting /proc in the root"
    unmount_under "$root" || fail "could not unmount everything under $root"

    step="preparing the postgres directories"
    in_root install -d -o postgres -g postgres -m 3777 /var/run/postgresql
    in_root install -d -o postgres -g postgres -m 700 /var/lib/postgresql/data
    in_root install -d -m 755 /docker-entrypoint-initdb.d

    step="trimming the root"
    rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
        "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old \
        "$root"/var/log/* "$root"/tmp/* "$root"/var/tmp/* \
        "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
        "$root"/usr/share/lintian "$root"/usr/share/linda
    find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf '{}' +
    # The LLVM JIT: PostgreSQL loads llvmjit.so only when a query is JIT-compiled, and runs
    # with JIT disabled when it is missing. libLLVM-14 and its libz3 are about 160 MB.
    rm -rf "$root/usr/lib/postgresql/$PGVER/lib/llvmjit"* "$root/usr/lib/postgresql/$PGVER/lib/bitcode"
    rm -f "$root"/usr/lib/*-linux-gnu/libLLVM-*.so* "$root"/usr/lib/*-linux-gnu/libz3.so*
    # A root made by mktemp -d is 0700: no non-root user could load a library from it.
    chmod 755 "$root"

    step="checking the root"
    in_root "/usr/lib/postgresql/$PGVER/bin/postgres" --version >>"$log" 2>&1 ||
        fail "postgres --version does not run in the new root (log: $log)"
    for tool in initdb pg_ctl psql pg_dump pg_restore pg_isready; do
        [ -x "$root/usr/lib/postgresql/$PGVER/bin/$tool" ] || fail "$tool is missing from postgresql-$PGVER"
    done
    [ -x "$root/bin/sh" ] && [ -x "$root/usr/bin/setpriv" ] || fail "sh or setpriv is missing from the root"
}

# The cached root is reused while the recipe for it is the same: the code of build_root
# (declare -f leaves the comments out) and the suite, version and mirrors.
root_key="$({ declare -f build_root in_root; echo "$SUITE $PGVER $MIRROR $SECURITY"; } | sha256sum | cut -c1-16)"

if [ -n "$CACHE" ] && [ -f "$CACHE/root.key" ] && [ "$(cat "$CACHE/root.key")" = "$root_key" ] && [ -d "$CACHE/root" ]; then
    root="$CACHE/root"
    note "using the cached root $root"
else
    step="creating the work directory"
    if [ -n "$CACHE" ]; then
        mkdir -p "$CACHE"
        # Left by a run that was killed outright (SIGKILL skips the clean-up); we hold the lock.
        for stale in "$CACHE"/build.*; do
            [ -d "$stale" ] || continue
            if unmount_under "$stale"; then rm -rf --one-file-system "$stale"; fi
        done
        work="$(mktemp -d "$CACHE/build.XXXXXX")"   # same filesystem: the final mv is a rename
    else
        work="$(mktemp -d /tmp/pg-image-root.XXXXXX)"
    fi
    root="$work/root"
    mkdir "$root"
    note "building the root in $root (debootstrap + postgresql-$PGVER, a minute or two)"
    build_root
    if [ -n "$CACHE" ]; then
        step="storing the root in $CACHE"
        rm -rf --one-file-system "$CACHE/root" "$CACHE/root.key"
        mv "$root" "$CACHE/root"
        root="$CACHE/root"
        printf '%s\n' "$root_key" >"$CACHE/root.key"
    fi
fi

# --- the image -------------------------------------------------------------------------
step="installing the entrypoint"
install -m 755 "$ENTRYPOINT_SRC" "$root/usr/local/bin/docker-entrypoint.sh"

import() {
    tar -C "$root" --numeric-owner -c . |
        docker import \
            -c 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' \
            -c 'CMD ["postgres"]' \
            -c "ENV PATH=/usr/lib/postgresql/$PGVER/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            -c 'ENV LANG=C.UTF-8' \
            -c 'ENV PGDATA=/var/lib/postgresql/data' \
            -c 'EXPOSE 5432' \
            -c 'VOLUME /var/lib/postgresql/data' \
            -c "LABEL pg-test-image.recipe=$recipe" \
            - "$BASE_IMAGE"
}
run "importing the root as $BASE_IMAGE" import
# `docker import` refuses STOPSIGNAL; a legacy build adds it and pulls nothing (FROM is local).
add_stopsignal() {
    printf 'FROM %s\nSTOPSIGNAL SIGINT\n' "$BASE_IMAGE" | DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" -
}
run "adding STOPSIGNAL SIGINT (docker build -t $IMAGE)" add_stopsignal
# Only untags: the base image stays, as the parent of $IMAGE.
run "untagging $BASE_IMAGE" docker rmi "$BASE_IMAGE"

step="checking the image"
[ "$(image_recipe)" = "$recipe" ] || fail "$IMAGE does not carry the recipe label after the build"
# Outdated builds, now untagged, would stay as <none> (about 200 MB each on vfs): remove
# those no container uses (with their untagged bases). One still in use stays until later.
docker image prune -f --filter label=pg-test-image.recipe >>"$log" 2>&1 || true
size="$(docker image inspect --format '{{.Size}}' "$IMAGE")"
step=""
note "built $IMAGE ($((size / 1000000)) MB) in $((SECONDS - started)) s"
