#!/usr/bin/env bash
# Builds the systemd base image for test hosts offline: Debian bookworm from
# debootstrap, imported with `docker import`. Cached by a hash of its recipe.
# Prints the image reference on stdout. MODELOPS_FLEET_IMAGE skips the build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
fleet=$(cd "$here/.." && pwd)
repo="modelops-fleet"

say() { printf 'image: %s\n' "$*" >&2; }
die() { printf 'image: %s\n' "$*" >&2; exit 1; }

if [ -n "${MODELOPS_FLEET_IMAGE:-}" ]; then
  docker image inspect "$MODELOPS_FLEET_IMAGE" >/dev/null 2>&1 \
    || docker pull "$MODELOPS_FLEET_IMAGE" >&2 \
    || die "MODELOPS_FLEET_IMAGE=$MODELOPS_FLEET_IMAGE is neither local nor pullable; build ours by unsetting it."
  echo "$MODELOPS_FLEET_IMAGE"
  exit 0
fi

# Everything that goes into the image is part of its cache key.
recipe_files=("$here/build.sh" "$here/packages.txt" "$here/setup-rootfs.sh" "$fleet/nvidia-smi")
tag=$(cat "${recipe_files[@]}" | sha256sum | cut -c1-12)
ref="$repo:$tag"

if docker image inspect "$ref" >/dev/null 2>&1; then
  docker tag "$ref" "$repo:latest"
  echo "$ref"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || die "debootstrap is missing; install it (apt-get install debootstrap) or set MODELOPS_FLEET_IMAGE to a systemd image."
[ "$(id -u)" -eq 0 ] || die "building the base image needs root (debootstrap); run as root or set MODELOPS_FLEET_IMAGE."

mirror=${MODELOPS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /tmp/modelops-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
packages=$(grep -v '^#' "$here/packages.txt" | xargs | tr ' ' ',')

say "building $ref (debootstrap bookworm from $mirror)"
debootstrap --variant=minbase --include="$packages" bookworm "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above); check that $mirror is reachable."; }

install -m 0755 "$fleet/nvidia-smi" "$work/root/usr/bin/nvidia-smi"
install -m 0755 "$here/setup-rootfs.sh" "$work/root/tmp/setup-rootfs.sh"
chroot "$work/root" /tmp/setup-rootfs.sh
rm -f "$work/root/tmp/setup-rootfs.sh"

tar -C "$work/root" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  - "$ref" >&2
docker tag "$ref" "$repo:latest"
say "built $ref"
echo "$ref"
