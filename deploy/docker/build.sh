#!/usr/bin/env bash
# Build FedSynth's images on this machine with one command:
#
#   bash deploy/docker/build.sh            # fedsynth-client:VERSION and fedsynth-server:VERSION
#   bash deploy/docker/build.sh client     # one of them
#
# What it does, in order:
#   1. the base: BASE_IMAGE if set; else Flower's official SuperNode image (the Dockerfile's
#      default) if it is here or can be pulled; else a Debian base made on this machine by
#      deploy/docker/base.sh (needs root and debootstrap), made once and reused;
#   2. what the build needs from this machine, passed at build time and never stored in a
#      layer: pip's configuration (as `pip config list` shows it; local mirrors are mounted
#      read-only with podman), the CA bundle pip trusts, and the folder holding the CPU
#      torch wheel when there is one on disk;
#   3. `ENGINE build --target client|server`, then each image's size.
#
# Settings (environment):
#   FEDSYNTH_ENGINE   podman or docker                                   (podman if installed)
#   BASE_IMAGE        the base image                                     (see 1.)
#   FEDSYNTH_VERSION  the images' tag                                    (pyproject's version)
#   PIP_CONF          a pip.conf for the build                           (this machine's pip config)
#   CA_BUNDLE         a CA bundle pip must trust                         (pip's cert, if any)
#   TORCH_WHEEL_DIR   a folder with torch-2.13.0+cpu-*.whl               (searched in pip's find-links)
#   BUILD_NETWORK     the build's network                                (host)
set -euo pipefail
cd "$(dirname "$0")/../.."

ENGINE=${FEDSYNTH_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
command -v "$ENGINE" >/dev/null \
  || { echo "error: container engine '$ENGINE' not found; install podman or docker, or set FEDSYNTH_ENGINE" >&2; exit 2; }
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3 || true)}
VERSION=${FEDSYNTH_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)}
targets=("$@"); [ ${#targets[@]} -gt 0 ] && [ "${targets[0]}" != all ] || targets=(client server)
for t in "${targets[@]}"; do
  case "$t" in client|server) ;; *) echo "error: unknown target '$t'; use client, server or all" >&2; exit 2;; esac
done
exists() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }
work=$(mktemp -d /tmp/fedsynth-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 1. The base.
official=$(sed -n 's/^ARG BASE_IMAGE=//p' deploy/docker/Dockerfile)
if [ -z "${BASE_IMAGE:-}" ]; then
  if exists "$official" || "$ENGINE" pull -q "$official" >/dev/null 2>"$work/pull.log"; then
    BASE_IMAGE=$official
  else
    BASE_IMAGE=localhost/fedsynth-base:bookworm
    echo "build: cannot pull $official ($(tail -1 "$work/pull.log" | cut -c1-120)); using the local Debian base $BASE_IMAGE"
    exists "$BASE_IMAGE" || FEDSYNTH_ENGINE=$ENGINE bash deploy/docker/base.sh "$BASE_IMAGE"
  fi
fi
echo "build: base $BASE_IMAGE, engine $ENGINE ($("$ENGINE" --version))"

# 2. Build-time inputs from this machine.
args=(--network "${BUILD_NETWORK:-host}" --build-arg "BASE_IMAGE=$BASE_IMAGE")
podman=0; [ "$(basename "$ENGINE")" = podman ] && podman=1
# docker needs BuildKit for the build-time mounts (secrets, the wheel folder)
[ $podman = 1 ] || export DOCKER_BUILDKIT=1
conf=$work/pip.conf; : > "$conf"; cert=${CA_BUNDLE:-}; links=()
if [ -n "${PIP_CONF:-}" ]; then
  cp "$PIP_CONF" "$conf"
elif [ -n "$PYTHON" ] && "$PYTHON" -m pip --version >/dev/null 2>&1; then
  # `pip config list` prints every file's and the environment's settings, scope.key='value',
  # lowest precedence first: as in pip, a later scope's value replaces an earlier one.
  declare -A setting=()
  while IFS= read -r line; do
    key=${line#*.}; key=${key%%=*}; value=${line#*=}; value=${value#\'}; value=${value%\'}
    setting[$key]=$value
  done < <("$PYTHON" -m pip config list 2>/dev/null)
  echo "[global]" > "$conf"
  declare -A mounted=()
  for key in "${!setting[@]}"; do
    value=${setting[$key]}
    case "$key" in
      cert) [ -n "$cert" ] || cert=$value ;;
      index-url|extra-index-url|find-links)
        kept=()
        for v in $value; do
          path=${v#file://}
          if [ "${path:0:1}" = / ]; then
            [ -e "$path" ] || continue
            [ "$key" = find-links ] && links+=("$path")
            if [ $podman = 0 ]; then
              echo "build: note: $v is a local folder; docker cannot mount it into a build (the torch wheel still comes in)"
              continue
            fi
            # A local "simple" index links to its files beside it: mount its parent.
            dir=$path; [ "$(basename "$path")" = simple ] && dir=$(dirname "$path")
            [ -n "${mounted[$dir]:-}" ] || { args+=(--volume "$dir:$dir:ro"); mounted[$dir]=1; }
          fi
          kept+=("$v")
        done
        [ ${#kept[@]} -gt 0 ] && echo "$key = ${kept[*]}" >> "$conf" ;;
      trusted-host|timeout|default-timeout|retries|proxy) echo "$key = $value" >> "$conf" ;;
    esac
  done
fi
: "${cert:=${PIP_CERT:-}}"
ca=$work/ca.pem; : > "$ca"; [ -n "$cert" ] && [ -f "$cert" ] && cp "$cert" "$ca"
args+=(--secret "id=pip.conf,src=$conf" --secret "id=ca.pem,src=$ca")
wheels=${TORCH_WHEEL_DIR:-}
if [ -z "$wheels" ]; then
  for d in "${links[@]}"; do
    if compgen -G "$d/torch-2.13.0+cpu-cp311-*.whl" >/dev/null; then wheels=$d; break; fi
  done
fi
# The wheel folder the Dockerfile mounts (.build-wheels in the context; never copied
# into a layer): the torch wheel linked in, or nothing.
rm -rf .build-wheels; mkdir .build-wheels
if [ -n "$wheels" ]; then
  for whl in "$wheels"/torch-2.13.0+cpu-cp311-*.whl; do
    ln "$whl" .build-wheels/ 2>/dev/null || cp "$whl" .build-wheels/
  done
  args+=(--build-arg TORCH_INDEX=)
  echo "build: the CPU torch wheel from $wheels"
fi
trap 'rm -rf "$work" .build-wheels' EXIT

# 3. Build.
for t in "${targets[@]}"; do
  start=$(date +%s)
  echo "build: fedsynth-$t:$VERSION ..."
  "$ENGINE" build "${args[@]}" -f deploy/docker/Dockerfile --target "$t" -t "fedsynth-$t:$VERSION" . \
    > "$work/build-$t.log" 2>&1 \
    || { tail -40 "$work/build-$t.log" >&2; echo "error: building fedsynth-$t failed (last lines above)" >&2; exit 1; }
  size=$("$ENGINE" image inspect --format '{{.Size}}' "fedsynth-$t:$VERSION")
  echo "build: fedsynth-$t:$VERSION built in $(( $(date +%s) - start )) s, $(awk -v s="$size" 'BEGIN {printf "%.2f GB", s/1e9}')"
done
