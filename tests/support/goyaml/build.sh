#!/usr/bin/env bash
# Build goyaml-parse (main.go: the Infisical CLI's YAML secrets-file parser, with the real
# gopkg.in/yaml.v3) without network: Go from Debian's golang-go, yaml.v3 from Debian's
# golang-gopkg-yaml.v3-dev under /usr/share/gocode (go.mod points there with `replace`).
#
#   tests/support/goyaml/build.sh [OUTPUT]    default OUTPUT: tests/support/goyaml/goyaml-parse
#
# Exit 3 when Go or yaml.v3 is missing (the test fixture then skips, or fails in CI).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/goyaml-parse}"
yaml_src=/usr/share/gocode/src/gopkg.in/yaml.v3

if ! command -v go >/dev/null 2>&1; then
    echo "go is not installed (apt-get install golang-go golang-gopkg-yaml.v3-dev)" >&2
    exit 3
fi
if [ ! -f "$yaml_src/yaml.go" ]; then
    echo "gopkg.in/yaml.v3 is not under $yaml_src (apt-get install golang-gopkg-yaml.v3-dev)" >&2
    exit 3
fi

# No proxy, no module downloads, no workspace or vendoring from the caller's settings.
export GOPROXY=off GOFLAGS= GOWORK=off GO111MODULE=on GOTOOLCHAIN=local GONOSUMDB= GOSUMDB=off
# The build cache needs a writable home; fall back to /tmp when there is none.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ] && [ -z "${XDG_CACHE_HOME:-}" ]; then
    export GOCACHE="/tmp/goyaml-parse-gocache-$(id -u)"
fi

tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
cd "$here"
go build -trimpath -o "$tmp" .
mv -f "$tmp" "$out"   # atomic: a concurrent test run never sees half a binary
