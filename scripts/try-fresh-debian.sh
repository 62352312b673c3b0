#!/usr/bin/env bash
# The README's two commands on a bare Debian 12, the way a newcomer meets them, without a
# container registry and without touching this checkout.
#
#   scripts/try-fresh-debian.sh [--rebuild] [--keep]
#
# Runs as root on a Debian host with `debootstrap`, `git` and a running Docker engine:
#  1. the image: `debootstrap --variant=minbase bookworm` into a cache folder, `docker import`ed
#     as fresh-debian12:local (reused while that tag exists; --rebuild makes both again);
#  2. a work folder holding two fresh clones of this checkout's HEAD (commit what you want to
#     try), mounted into the container at the SAME absolute path, so the bind mounts of the
#     compose files the tests and the stack start resolve on the engine's side, and used as
#     TMPDIR (pytest's tmp_path too) for the same reason; the engine's socket mounted; the
#     host's network (the engine here may run without NAT, --iptables=false);
#  3. in the container, as a newcomer's Debian 12 has them: `apt-get install python3 docker.io`
#     from Debian's mirror, nothing else. docker.io is installed rather than the host's client
#     mounted: it is what the README names for Debian, its client is /usr/bin/docker (20.10),
#     and its `dockerd` only makes .ci/run see an installed engine (the engine used is the
#     host's, through the socket). --no-install-recommends, so git, ca-certificates and the
#     rest are not there unless something installs them;
#  4. then, in the container:
#     a. `python3 start_services.py init` in clone "stack" before python3-venv is installed:
#        expected to exit 2 with one line naming python3-venv;
#     b. `bash .ci/run` (the README's test command) in clone "tests";
#     c. `python3 start_services.py init && python3 start_services.py --profile cpu` (the
#        README's first command) in clone "stack": the first run makes .venv; without a
#        registry it is expected to end at the first image pull with one clear line. Then
#        `start_services.py down --with-infisical` and the project's volumes are removed.
#  5. a summary: each command's exit code and last lines; logs stay in the work folder.
#
# pip in the container uses this machine's index settings: PIP_INDEX_URL, PIP_EXTRA_INDEX_URL
# and PIP_TRUSTED_HOST (or pip's config, `pip config get global.*`; file:// indexes left out)
# and the CA file of PIP_CERT or global.cert, mounted read-only (a TLS-inspecting proxy's CA).
# The compose project is named try-fresh-<pid> (COMPOSE_PROJECT_NAME) so that it cannot touch
# a `localai` stack on the same engine.
#
# Settings: TRY_IMAGE (fresh-debian12:local), TRY_CACHE (${XDG_CACHE_HOME:-~/.cache}/try-fresh-debian),
# TRY_MIRROR (the first URIs: of /etc/apt/sources.list.d/debian.sources, else deb.debian.org),
# TRY_SECURITY_MIRROR. --keep keeps the work folder (default: removed when everything went as
# expected). Exit 0 when a, b and c each ended as expected, 1 otherwise.
set -euo pipefail

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'try-fresh-debian.sh: %s\n' "$*" >&2; exit 1; }

rebuild=0
keep=0
for arg in "$@"; do
    case "$arg" in
        --rebuild) rebuild=1 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $arg (see --help)" ;;
    esac
done

repo="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)"
IMAGE="${TRY_IMAGE:-fresh-debian12:local}"
CACHE="${TRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/try-fresh-debian}"
SOCKET="${DOCKER_HOST:-unix:///var/run/docker.sock}"
SOCKET="${SOCKET#unix://}"

[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and the engine's socket)"
command -v docker >/dev/null 2>&1 || die "no docker CLI on PATH"
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info)"
[ -S "$SOCKET" ] || die "the engine's socket $SOCKET is not a local socket"

mirror_from_sources() {  # $1: pattern the URIs line must (security) or must not match
    local file=/etc/apt/sources.list.d/debian.sources
    [ -f "$file" ] || return 0
    awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' "$file" | grep -E -e "$1" | head -n 1 || true
}
MIRROR="${TRY_MIRROR:-$(mirror_from_sources '^[^ ]*/debian/?$')}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${TRY_SECURITY_MIRROR:-$(mirror_from_sources 'debian-security')}"
SECURITY_MIRROR="${SECURITY_MIRROR:-http://deb.debian.org/debian-security}"

# --- 1. the image ------------------------------------------------------------------------------
if [ "$rebuild" -eq 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
    root="$CACHE/bookworm-minbase"
    mkdir -p "$CACHE"
    if [ "$rebuild" -eq 1 ] || [ ! -f "$CACHE/bookworm-minbase.done" ]; then
        rm -rf "$root" "$CACHE/bookworm-minbase.done"
        log "debootstrap --variant=minbase bookworm $root $MIRROR (about 30 s)"
        debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
        cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
        # No service starts inside a container (docker.io's postinst would try dockerd).
        printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
        chmod 755 "$root/usr/sbin/policy-rc.d"
        # A newcomer's apt starts without package lists or downloaded packages.
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
        chmod 755 "$root"
        touch "$CACHE/bookworm-minbase.done"
    fi
    log "docker import $root as $IMAGE"
    tar -C "$root" --numeric-owner -c . | docker import -c 'CMD ["/bin/bash"]' -c 'ENV LANG=C.UTF-8' - "$IMAGE" >/dev/null
fi

# --- 2. the work folder and the clones ---------------------------------------------------------
work="$(mktemp -d /tmp/try-fresh-debian.XXXXXX)"
chmod 755 "$work"
mkdir -p "$work/tmp" "$work/logs"
chmod 1777 "$work/tmp"
git clone -q "$repo" "$work/tests"
git clone -q "$repo" "$work/stack"
commit="$(git -C "$work/stack" log -1 --format='%h %s')"
log "work folder $work (mounted at the same path); clones of $commit"
if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no)" ]; then
    log "note: $repo has uncommitted changes; the clones have HEAD only"
fi

# --- pip's settings, as on this machine -------------------------------------------------------
pip_get() { python3 -m pip config get "global.$1" 2>/dev/null || true; }
docker_args=()
index="${PIP_INDEX_URL:-$(pip_get index-url)}"
[ -z "$index" ] || [ "${index#file:}" != "$index" ] || docker_args+=(-e "PIP_INDEX_URL=$index")
extra=""
for url in ${PIP_EXTRA_INDEX_URL:-$(pip_get extra-index-url)}; do
    [ "${url#file:}" != "$url" ] || extra="${extra:+$extra }$url"
done
[ -z "$extra" ] || docker_args+=(-e "PIP_EXTRA_INDEX_URL=$extra")
trusted="${PIP_TRUSTED_HOST:-$(pip_get trusted-host)}"
[ -z "$trusted" ] || docker_args+=(-e "PIP_TRUSTED_HOST=$trusted")
cert="${PIP_CERT:-$(pip_get cert)}"
if [ -n "$cert" ] && [ -f "$cert" ]; then
    docker_args+=(-v "$(readlink -f "$cert"):/etc/try-fresh-debian/pip-cert.pem:ro" -e "PIP_CERT=/etc/try-fresh-debian/pip-cert.pem")
fi
[ -z "${PIP_DEFAULT_TIMEOUT:-}" ] || docker_args+=(-e "PIP_DEFAULT_TIMEOUT=$PIP_DEFAULT_TIMEOUT")
[ -z "${CI:-}" ] || docker_args+=(-e "CI=$CI")

# --- 3-4. the newcomer's machine and the two commands ------------------------------------------
project="try-fresh-$$"
cat >"$work/inner.sh" <<'INNER'
#!/bin/bash
# Runs inside the container: $WORK holds the clones "tests" and "stack" and logs/.
set -uo pipefail
say() { printf '\n########## %s\n' "$*"; }
# run NAME DIR COMMAND: run COMMAND with bash in DIR, output to the terminal and logs/NAME.log,
# its exit code to logs/NAME.rc
run() {
    say "$1: (cd $2 && $3)"
    (cd "$2" && bash -c "$3") 2>&1 | tee "$WORK/logs/$1.log"
    echo "${PIPESTATUS[0]}" >"$WORK/logs/$1.rc"
}

say "the newcomer's machine: apt-get install python3 docker.io"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >"$WORK/logs/apt.log" 2>&1 \
    && apt-get install -y -q --no-install-recommends python3 docker.io >>"$WORK/logs/apt.log" 2>&1 \
    || { tail -n 20 "$WORK/logs/apt.log"; echo "apt-get failed"; exit 1; }
echo "$(python3 --version), $(docker --version) at $(command -v docker)"

run first-before-venv "$WORK/stack" 'python3 start_services.py init'
run ci "$WORK/tests" 'bash .ci/run'
run first-command "$WORK/stack" 'python3 start_services.py init && python3 start_services.py --profile cpu'

say "clean-up: down --with-infisical, and the project's volumes"
cd "$WORK/stack"
if [ -x .venv/bin/python ]; then
    python3 start_services.py down --with-infisical || true
fi
for name in "$COMPOSE_PROJECT_NAME" "$COMPOSE_PROJECT_NAME-infisical"; do
    docker ps -aq --filter "label=com.docker.compose.project=$name" | xargs -r docker rm -f >/dev/null
    docker volume ls -q --filter "label=com.docker.compose.project=$name" | xargs -r docker volume rm >/dev/null
    docker network ls -q --filter "label=com.docker.compose.project=$name" | xargs -r docker network rm >/dev/null
done
INNER

log "starting the container ($IMAGE)"
set +e
docker run --rm --name "$project" --network host \
    -v "$SOCKET:/var/run/docker.sock" -v "$work:$work" -w "$work" \
    -e "WORK=$work" -e "TMPDIR=$work/tmp" -e "COMPOSE_PROJECT_NAME=$project" "${docker_args[@]}" \
    "$IMAGE" bash "$work/inner.sh"
container_rc=$?
set -e

# --- 5. the summary ------------------------------------------------------------------------------
rc_of() { cat "$work/logs/$1.rc" 2>/dev/null || echo "did not run"; }
last_lines() { grep -v '^[[:space:]]*$' "$work/logs/$1.log" 2>/dev/null | tail -n "$2" | sed 's/^/    /'; }
ok=1
echo
echo "########## summary (clones of $commit; logs in $work/logs)"
[ "$container_rc" -eq 0 ] || { echo "the container exited $container_rc"; ok=0; }

rc="$(rc_of first-before-venv)"
echo "a. python3 start_services.py init, before python3-venv: exit $rc (expected 2, one line naming python3-venv)"
last_lines first-before-venv 2
{ [ "$rc" = 2 ] && grep -q 'python3-venv' "$work/logs/first-before-venv.log"; } || ok=0

rc="$(rc_of ci)"
echo "b. bash .ci/run: exit $rc (expected 0)"
last_lines ci 3
[ "$rc" = 0 ] || ok=0

rc="$(rc_of first-command)"
echo "c. python3 start_services.py init && python3 start_services.py --profile cpu: exit $rc (expected: .venv made, .env written, then 'error: cannot pull ...')"
last_lines first-command 3
# As expected: the first run made .venv, `init` wrote .env, `up` ended in the launcher's one
# line about the pull (exit 1, compose's), and nowhere a traceback.
if [ "$rc" = 0 ] || ! grep -q '^start_services.py: first run: creating .venv' "$work/logs/first-command.log" \
    || ! grep -q '^Wrote .env' "$work/logs/first-command.log" \
    || ! grep -q '^error: cannot pull ' "$work/logs/first-command.log" \
    || grep -q 'Traceback' "$work/logs/first-command.log"; then
    ok=0
fi

if [ "$ok" -eq 1 ] && [ "$keep" -eq 0 ]; then
    rm -rf "$work"
    echo "as expected; removed $work"
    exit 0
fi
echo "work folder kept: $work"
[ "$ok" -eq 1 ]
