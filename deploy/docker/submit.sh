#!/usr/bin/env bash
# compose's `coordinator`: submit FedSynth (the code in this image) to the SuperLink over
# TLS and stream the run's log. The run's outputs are in the `runs` volume.
#   FEDSYNTH_SUPERLINK   the SuperLink, host:port                    (superlink:9092)
#   FEDSYNTH_CA_CERT     the consortium CA                           (/pki/certs/ca.crt)
#   FEDSYNTH_APP_DIR     the FedSynth project folder to submit        (/app)
#   FEDSYNTH_RUN_CONFIG  run_config overrides                         (num-server-rounds=5)
set -euo pipefail
export FLWR_HOME=${FLWR_HOME:-$(mktemp -d)}
mkdir -p "$FLWR_HOME"
cat > "$FLWR_HOME/config.toml" <<TOML
[superlink]
default = "consortium"

[superlink.consortium]
address = "${FEDSYNTH_SUPERLINK:-superlink:9092}"
root-certificates = "${FEDSYNTH_CA_CERT:-/pki/certs/ca.crt}"
TOML
exec flwr run "${FEDSYNTH_APP_DIR:-/app}" consortium --stream \
  --run-config "${FEDSYNTH_RUN_CONFIG:-num-server-rounds=5}"
