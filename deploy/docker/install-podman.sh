#!/usr/bin/env bash
# Install and configure podman on Debian or Ubuntu (as root), as CI and the guides use it:
# podman with the runc runtime, debootstrap for deploy/docker/base.sh. Safe to run again.
#
#   sudo bash deploy/docker/install-podman.sh
#
# Written only when /etc/containers/containers.conf does not exist yet (an existing one
# is left as it is, with a note):
#   [containers] default_ulimits = []        no ulimits the host may not grant
#   [engine]     cgroup_manager = "cgroupfs" works without systemd as PID 1 (CI, containers)
#                runtime = "runc"            crun refuses hybrid cgroup hierarchies
#                events_logger = "file"      no journald needed
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "error: run as root (sudo bash $0)" >&2; exit 2; }
command -v apt-get >/dev/null || { echo "error: apt-get not found; install podman with your distribution's tools" >&2; exit 2; }
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc debootstrap uidmap netavark aardvark-dns conmon fuse-overlayfs >/dev/null
fi
conf=/etc/containers/containers.conf
if [ -f "$conf" ]; then
  echo "install-podman: $conf exists; left as it is"
else
  mkdir -p /etc/containers
  cat > "$conf" <<'EOF'
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
EOF
fi
podman info >/dev/null || { echo "error: podman is installed but cannot run here (podman info failed)" >&2; exit 1; }
echo "install-podman: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}')"
