#!/usr/bin/env bash
# Install and configure podman on Debian or Ubuntu (as root), as CI and the guides use it:
# podman with the runc runtime, its network (netavark, iptables) and pause binary (catatonit),
# debootstrap for deploy/docker/base.sh. Safe to run again.
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
# Every package podman needs here, checked one by one: a machine can have podman without
# what --no-install-recommends leaves out (netavark calls iptables to set up a container's
# network; kube play builds its pause image from catatonit).
packages="podman runc debootstrap uidmap netavark aardvark-dns conmon fuse-overlayfs iptables catatonit"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "install-podman: installing$missing"
  apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
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
command -v iptables >/dev/null || { echo "error: iptables not found: netavark cannot set up container networks (apt-get install iptables)" >&2; exit 1; }
echo "install-podman: $(podman --version), runtime $(podman info --format '{{.Host.OCIRuntime.Name}}')"
