#!/usr/bin/env bash
# FedSynth server (coordinator) entrypoint: the SuperLink, with TLS and SuperNode
# authentication on, its state in a database that survives restarts. The SuperLink
# starts the SuperExec, which starts FedSynth's ServerApp for each submitted run.
# The server image runs this; the integration tests run this same script natively.
#
# Settings (environment):
#   FEDSYNTH_CERT_DIR   ca.crt, server.pem, server.key (fedsynth deploy certs)  (/certs)
#   FEDSYNTH_DATABASE   the SuperLink's state: runs, nodes, messages             (/state/superlink.db)
#   FEDSYNTH_HOST       address to listen on                                     (0.0.0.0)
#   FEDSYNTH_PORT       port SuperNodes and the flwr CLI connect to              (9092)
#   FEDSYNTH_INSECURE   1: no TLS (local tests only; prints a warning)            (0)
#   FEDSYNTH_NODE_AUTH  0: accept any SuperNode (prints a warning)               (1)
set -euo pipefail

CERTS=${FEDSYNTH_CERT_DIR:-/certs}
DB=${FEDSYNTH_DATABASE:-/state/superlink.db}
args=(--host "${FEDSYNTH_HOST:-0.0.0.0}" --port "${FEDSYNTH_PORT:-9092}"
      --database "$DB" --disable-runtime-dependency-installation)
if [ "${FEDSYNTH_INSECURE:-0}" = 1 ]; then
  echo "WARNING: FEDSYNTH_INSECURE=1: no TLS; anyone on the network can read weights and synthetic images" >&2
  args+=(--insecure)
else
  for f in ca.crt server.pem server.key; do
    [ -f "$CERTS/$f" ] || { echo "error: $CERTS/$f missing; make them with 'fedsynth deploy certs --host NAME...'" >&2; exit 2; }
  done
  args+=(--ssl-ca-certfile "$CERTS/ca.crt" --ssl-certfile "$CERTS/server.pem" --ssl-keyfile "$CERTS/server.key")
fi
if [ "${FEDSYNTH_NODE_AUTH:-1}" = 0 ]; then
  echo "WARNING: FEDSYNTH_NODE_AUTH=0: any SuperNode that reaches this port can join the consortium" >&2
else
  args+=(--enable-supernode-auth)
fi
mkdir -p "$(dirname "$DB")"
exec flower-superlink "${args[@]}"
