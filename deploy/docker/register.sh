#!/usr/bin/env bash
# compose's one-shot `register`: the coordinator registers each hospital's public key
# with the SuperLink (idempotent), so that only these three SuperNodes can join.
#   FEDSYNTH_SUPERLINK  the SuperLink, host:port   (superlink:9092)
#   FEDSYNTH_PKI_DIR    ca.crt and the keys' .pub  (/pki)
set -euo pipefail
PKI=${FEDSYNTH_PKI_DIR:-/pki}
for site in site-1 site-2 site-3; do
  fedsynth deploy register-node "$PKI/keys/$site.pub" --name "$site" \
    --superlink "${FEDSYNTH_SUPERLINK:-superlink:9092}" --ca-cert "$PKI/certs/ca.crt"
done
