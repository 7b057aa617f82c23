#!/usr/bin/env bash
# compose's one-shot `init`: what a coordinator and three hospitals do once, on one
# machine. Safe to run again: it keeps what exists.
#   FEDSYNTH_PKI_DIR       certificates and node keys                  (/pki)
#   FEDSYNTH_SAMPLE_DIR    the sample consortium's data                 (/sample)
#   FEDSYNTH_SAMPLE_CASES  patients per hospital in the sample data     (40)
set -euo pipefail
PKI=${FEDSYNTH_PKI_DIR:-/pki}
SAMPLE=${FEDSYNTH_SAMPLE_DIR:-/sample}
if [ ! -f "$PKI/certs/server.pem" ]; then
  # Names the SuperNodes (superlink) and the flwr CLI on the host (localhost) connect to.
  fedsynth deploy certs --host superlink --host localhost --host 127.0.0.1 --out "$PKI/certs"
fi
for site in site-1 site-2 site-3; do
  [ -f "$PKI/keys/$site.key" ] || fedsynth deploy node-key --out "$PKI/keys/$site"
done
[ -f "$SAMPLE/manifest.json" ] \
  || fedsynth sample-data "$SAMPLE" --sites 3 --cases-per-site "${FEDSYNTH_SAMPLE_CASES:-40}"
echo "init: CA, SuperLink certificate, 3 node keys and sample data ready"
