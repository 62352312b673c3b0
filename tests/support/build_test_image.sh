#!/usr/bin/env bash
# Build the local test image busybox-test:local (no registry needed): a rootfs holding
# Debian's static busybox, one symlink per applet, imported with `docker import`.
# Idempotent: does nothing when the image already exists.
set -euo pipefail

IMAGE="${TEST_IMAGE:-busybox-test:local}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"

if docker image inspect "$IMAGE" >/dev/null 2>&1; then
    exit 0
fi
if [ ! -x "$BUSYBOX" ]; then
    echo "build_test_image.sh: $BUSYBOX not found (apt-get install busybox-static)" >&2
    exit 1
fi
# Debian's busybox-static is statically linked; a dynamic one would not run in the image.
if command -v file >/dev/null 2>&1 && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    echo "build_test_image.sh: $BUSYBOX is not statically linked (need busybox-static)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/root"
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"

tar -C "$root" -c . | docker import -c 'CMD ["/bin/sh"]' -c 'ENV PATH=/bin' - "$IMAGE" >/dev/null
echo "built $IMAGE"
