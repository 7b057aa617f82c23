#!/usr/bin/env bash
# Make a Debian 12 (bookworm) base image on this machine, for build machines that cannot
# pull Flower's official image (an offline hospital, a registry that blocks Docker Hub).
# It holds the minimal Debian system and CA certificates, like `debian:bookworm-slim`;
# deploy/docker/Dockerfile adds Python 3.11 and builds FedSynth's images on it
# (build.sh does all of this: BASE_IMAGE=<this tag>).
#
#   sudo bash deploy/docker/base.sh                  # -> localhost/fedsynth-base:bookworm
#   sudo bash deploy/docker/base.sh my/base:bookworm # another tag
#
# Needs root and debootstrap (Debian: apt-get install debootstrap). Settings (environment):
#   FEDSYNTH_ENGINE   podman or docker                        (podman if installed, else docker)
#   DEBIAN_MIRROR     where debootstrap and apt fetch packages (http://deb.debian.org/debian)
set -euo pipefail

TAG=${1:-localhost/fedsynth-base:bookworm}
ENGINE=${FEDSYNTH_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

[ "$(id -u)" = 0 ] || { echo "error: base.sh needs root (debootstrap makes device nodes and chroots); run it with sudo" >&2; exit 2; }
command -v debootstrap >/dev/null \
  || { echo "error: debootstrap not found; install it (apt-get install debootstrap) or pass BASE_IMAGE=<an image you can pull> to build.sh" >&2; exit 2; }
command -v "$ENGINE" >/dev/null \
  || { echo "error: container engine '$ENGINE' not found; install podman or docker, or set FEDSYNTH_ENGINE" >&2; exit 2; }

root=$(mktemp -d /tmp/fedsynth-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base: debootstrap --variant=minbase bookworm from $MIRROR (about a minute)"
debootstrap --variant=minbase --include=ca-certificates \
  bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; echo "error: debootstrap failed (log above, full log $root.log)" >&2; exit 1; }
rm -f "$root.log"

# Security updates come from the security archive, as on any Debian server.
cat > "$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://security.debian.org/debian-security bookworm-security main
EOF
# What the build and apt leave behind is not part of the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log

echo "base: importing into $ENGINE as $TAG"
quiet=(); [ "$(basename "$ENGINE")" = podman ] && quiet=(--quiet)
tar --numeric-owner -C "$root" -c . | "$ENGINE" import "${quiet[@]}" \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
  --message "Debian bookworm minbase (deploy/docker/base.sh)" - "$TAG" >/dev/null
echo "base: $TAG ($("$ENGINE" image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
