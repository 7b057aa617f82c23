#!/usr/bin/env bash
# FedSynth client (hospital) entrypoint: prepare the mounted data, then join the consortium.
# The client image runs this; the integration tests run this same script natively.
#
# Settings (environment):
#   FEDSYNTH_SUPERLINK     coordinator's SuperLink, host:port                 (required)
#   FEDSYNTH_SITE_NAME     this hospital's display name                        (required)
#   FEDSYNTH_DATA_DIR      raw data, read only                                 (/data)
#   FEDSYNTH_STATE_DIR     private, writable state                             (/state)
#   FEDSYNTH_CA_CERT       the consortium CA the SuperLink's certificate must chain to (/certs/ca.crt)
#   FEDSYNTH_NODE_KEY      this SuperNode's private key (fedsynth deploy node-key) (/keys/node.key)
#   FEDSYNTH_IMAGE_SIZE    resolution the cache is prepared at (the run's image-size) (128)
#   FEDSYNTH_TRAINER       1: run the warm site trainer beside the SuperNode  (1)
#   FEDSYNTH_NODE_CONFIG   more node_config pairs, e.g. 'max-epsilon=8.0'     ("")
#   FEDSYNTH_CLIENTAPPIO_PORT  local port of the SuperNode's ClientAppIo API  (9094)
#   FEDSYNTH_MAX_RETRIES   give up after this many failed connections or restarts (never)
#   FEDSYNTH_REJOIN_DELAY  seconds before starting an exited SuperNode again  (15)
#   FEDSYNTH_INSECURE      1: no TLS (local tests only; prints a warning)      (0)
#   FEDSYNTH_NODE_AUTH     0: no SuperNode authentication (prints a warning)  (1)
set -euo pipefail

: "${FEDSYNTH_SUPERLINK:?set FEDSYNTH_SUPERLINK to the coordinator's SuperLink, host:port}"
: "${FEDSYNTH_SITE_NAME:?set FEDSYNTH_SITE_NAME to this hospital's name}"
DATA=${FEDSYNTH_DATA_DIR:-/data}
STATE=${FEDSYNTH_STATE_DIR:-/state}
CA=${FEDSYNTH_CA_CERT:-/certs/ca.crt}
KEY=${FEDSYNTH_NODE_KEY:-/keys/node.key}
SIZE=${FEDSYNTH_IMAGE_SIZE:-128}
PORT=${FEDSYNTH_CLIENTAPPIO_PORT:-9094}

args=(--superlink "$FEDSYNTH_SUPERLINK" --port "$PORT")
# Retry for ever by default: a hospital rejoins when the coordinator comes back.
[ -n "${FEDSYNTH_MAX_RETRIES:-}" ] && args+=(--max-retries "$FEDSYNTH_MAX_RETRIES")
if [ "${FEDSYNTH_INSECURE:-0}" = 1 ]; then
  echo "WARNING: FEDSYNTH_INSECURE=1: no TLS; weights and synthetic images cross the network in clear text" >&2
  args+=(--insecure)
else
  [ -f "$CA" ] || { echo "error: no consortium CA certificate at $CA (FEDSYNTH_CA_CERT); ask the coordinator for ca.crt" >&2; exit 2; }
  args+=(--root-certificates "$CA")
fi
if [ "${FEDSYNTH_NODE_AUTH:-1}" = 0 ]; then
  echo "WARNING: FEDSYNTH_NODE_AUTH=0: this SuperNode does not authenticate; a SuperLink with node authentication refuses it" >&2
else
  [ -f "$KEY" ] || { echo "error: no SuperNode key at $KEY (FEDSYNTH_NODE_KEY); make one with 'fedsynth deploy node-key' and send the .pub file to the coordinator" >&2; exit 2; }
  args+=(--auth-supernode-private-key "$KEY")
fi

# 0. The site secret: every pseudonym comes from it, so it is never made by accident. A
#    state volume with nothing pseudonymised in it yet is a new site: make it, once.
#    Pseudonymised state without its secret means the secret was lost or the wrong
#    volume is mounted: stop rather than give every patient new pseudonyms.
if [ ! -f "$STATE/site.secret" ]; then
  for made in reidentification.table intake_report.json cache; do
    if [ -e "$STATE/$made" ]; then
      echo "error: $STATE holds pseudonymised site state ($made) but no site.secret; restore the secret from the site's backup" >&2
      exit 2
    fi
  done
  echo "new site: making its secret in $STATE (back it up: every pseudonym comes from it)" >&2
  fedsynth site keygen --state-dir "$STATE" >/dev/null
fi

# 1. Prepare: de-identify, check and cache the site's data (the report stays in $STATE).
#    A site with nothing usable still joins: it declines each round with the reason.
#    (No privacy plan here: it imports Opacus, seconds on every start; `fedsynth privacy
#    plan --state-dir` gives it.)
fedsynth site prepare --data-dir "$DATA" --state-dir "$STATE" --image-size "$SIZE" --no-privacy-plan \
  || echo "WARNING: no usable data at $DATA yet; joining anyway (rounds will be declined with the reason)" >&2

# 2. The warm trainer keeps torch and the data loaded between rounds (optional).
trainer=""
if [ "${FEDSYNTH_TRAINER:-1}" = 1 ]; then
  fedsynth site serve --state-dir "$STATE" &
  trainer=$!
fi

# 3. Join. Runtime dependency installation is off for SuperNodes (Flower's default):
#    everything the apps need is in this image, as in an offline hospital.
#    Flower refuses to re-activate a SuperNode whose previous session has not expired yet
#    (after a crash it stays "online" for up to a minute) and the SuperNode then exits:
#    start it again after a pause rather than give up (FEDSYNTH_MAX_RETRIES bounds this).
node_config="site-name=\"$FEDSYNTH_SITE_NAME\" data-dir=\"$DATA\" state-dir=\"$STATE\" ${FEDSYNTH_NODE_CONFIG:-}"
child=""
# However this script ends (stopped, given up, or the SuperNode done), the SuperNode and
# the warm trainer end with it: no trainer is left holding the site's data.
stop() {
  for pid in $child $trainer; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop; exit 143' TERM INT
trap stop EXIT
attempt=0
while true; do
  flower-supernode "${args[@]}" --node-config "$node_config" &
  child=$!
  rc=0
  wait "$child" || rc=$?
  [ "$rc" = 0 ] && exit 0
  attempt=$((attempt + 1))
  if [ -n "${FEDSYNTH_MAX_RETRIES:-}" ] && [ "$attempt" -gt "$FEDSYNTH_MAX_RETRIES" ]; then
    echo "error: the SuperNode exited with code $rc $attempt time(s); giving up (see the log above)" >&2
    exit "$rc"
  fi
  echo "the SuperNode exited with code $rc; starting it again in ${FEDSYNTH_REJOIN_DELAY:-15} s" >&2
  sleep "${FEDSYNTH_REJOIN_DELAY:-15}"
done
