#!/usr/bin/env bash
# The coordinator from deploy/k8s/ on one machine, with `podman kube play` instead of a
# cluster: the same Deployment, claims and TLS secret that `kubectl apply -k deploy/k8s`
# creates. Build the server image first (deploy/docker/build.sh server).
#
#   bash deploy/k8s/play.sh up CERTS HELDOUT   # CERTS: ca.crt, server.pem, server.key
#                                              # HELDOUT: the held-out test set's folder
#   bash deploy/k8s/play.sh down               # stop the pod; volumes stay (--volumes: remove them)
#
# What kustomize does in a cluster is done here: the secretGenerator's Secret is made from
# CERTS (podman keeps it as a podman secret), the image is the local one, and the port is
# published on 127.0.0.1 (a cluster's Service does that there). The held-out claim is a
# podman volume filled from HELDOUT once; the state and runs claims are podman volumes.
#
# Settings (environment):
#   FEDSYNTH_VERSION   the server image's tag             (pyproject's version)
#   FEDSYNTH_PORT      port published on 127.0.0.1        (9092)
set -euo pipefail
K8S=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$(dirname "$K8S")")
VERSION=${FEDSYNTH_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)}
PORT=${FEDSYNTH_PORT:-9092}
IMAGE=localhost/fedsynth-server:$VERSION
SECRET=fedsynth-superlink-tls
die() { echo "error: $*" >&2; exit 1; }
command -v podman >/dev/null || die "podman not found; on a cluster use: kubectl apply -k deploy/k8s"

# The manifests as this machine runs them: the local image, the port on 127.0.0.1, and
# only the claims whose volumes do not exist yet (podman refuses to make one twice; a
# volume kept from before keeps its data, as a bound claim does).
render() {
  local kept; kept=$(podman volume ls --format '{{.Name}}' | tr '\n' ' ')
  sed -e "s|^\( *\)image: fedsynth-server$|\1image: $IMAGE|" \
      -e "s|{name: flower, containerPort: 9092}|{name: flower, containerPort: 9092, hostPort: $PORT, hostIP: 127.0.0.1}|" \
      "$K8S/superlink.yaml" \
  | awk -v kept=" $kept" '
      function flush() { if (doc != "" && !(claim && index(kept, " " name " "))) printf "%s", doc; doc = ""; claim = 0; name = "" }
      /^---$/ { flush(); print; next }
      { doc = doc $0 "\n" }
      /^kind: PersistentVolumeClaim$/ { claim = 1 }
      /^  name: / && name == "" { name = $2 }
      END { flush() }'
}

up() {
  local certs=${1:?usage: play.sh up CERTS HELDOUT} heldout=${2:?usage: play.sh up CERTS HELDOUT}
  local log; log=$(mktemp); trap 'rm -f "$log"' RETURN
  for f in ca.crt server.pem server.key; do
    [ -f "$certs/$f" ] || die "$certs/$f missing; make them with: fedsynth deploy certs --host NAME --out $certs"
  done
  [ -d "$heldout" ] || die "held-out folder $heldout not found"
  podman image inspect "$IMAGE" >/dev/null 2>&1 || die "image $IMAGE not found; build it: bash deploy/docker/build.sh server"
  render | grep -q "hostPort: $PORT" || die "could not publish the port: deploy/k8s/superlink.yaml changed its ports line"

  # kustomize's secretGenerator, as a podman secret holding a Secret (only these three
  # files). The values are the files as they are, not base64: podman 4.3 writes `data`
  # values to the mounted files without decoding them (and ignores stringData).
  # (podman 4.3 keeps a played Secret as a volume of that name: a new certificate replaces it)
  podman secret rm "$SECRET" >/dev/null 2>&1 || true
  podman volume rm -f "$SECRET" >/dev/null 2>&1 || true
  {
    echo "apiVersion: v1"; echo "kind: Secret"; echo "metadata: {name: $SECRET}"; echo "data:"
    for f in ca.crt server.pem server.key; do echo "  $f: |"; sed 's/^/    /' "$certs/$f"; done
  } | podman secret create "$SECRET" - >/dev/null
  # The held-out claim, filled once (a cluster provisions it; see kustomization.yaml).
  if ! podman volume inspect fedsynth-heldout >/dev/null 2>&1; then
    podman volume create fedsynth-heldout >/dev/null
    tar -C "$heldout" -c . | podman volume import fedsynth-heldout -
  fi
  # (without systemd podman cannot run the probes as healthchecks and says so: not an error
  # for this; anything else is shown)
  render | podman kube play --replace - >/dev/null 2>"$log" \
    || { cat "$log" >&2; die "podman kube play failed (above)"; }
  grep -v "systemd connection" "$log" >&2 || true
  local deadline=$((SECONDS + 90))
  until podman exec superlink-pod-0-superlink python -c \
      "import socket; socket.create_connection(('127.0.0.1', 9092), 2)" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { podman logs --tail 30 superlink-pod-0-superlink >&2; die "the SuperLink did not listen within 90 s (log above)"; }
    sleep 1
  done
  echo "play: the coordinator's SuperLink listens on 127.0.0.1:$PORT (pod superlink-pod-0; logs: podman logs superlink-pod-0-superlink)"
}

down() {
  render | podman kube down - >/dev/null 2>&1 || true
  if [ "${1:-}" = --volumes ]; then
    podman volume rm -f fedsynth-superlink-state fedsynth-runs fedsynth-heldout "$SECRET" >/dev/null 2>&1 || true
    podman secret rm "$SECRET" >/dev/null 2>&1 || true
  fi
  echo "play: down${1:+ (volumes removed)}"
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) shift; down "$@" ;;
  *) sed -n '2,9p' "$0" >&2; exit 2 ;;
esac
