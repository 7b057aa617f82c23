#!/usr/bin/env bash
# A three-hospital consortium in containers on one machine, TLS and SuperNode
# authentication on: what deploy/docker/compose.yaml describes, driven step by step with
# podman or docker alone (no compose tool needed). Build the images first (build.sh).
#
#   bash deploy/docker/consortium.sh up              # CA, keys, SuperLink, registration, 3 hospitals
#   bash deploy/docker/consortium.sh run [CONFIG]    # submit a run, stream its log, wait for the end
#   bash deploy/docker/consortium.sh verify          # fedsynth audit verify on every ledger
#   bash deploy/docker/consortium.sh restart site-2  # restart one hospital (it rejoins)
#   bash deploy/docker/consortium.sh logs NAME       # superlink, site-1, ...
#   bash deploy/docker/consortium.sh down            # stop and remove the containers (files stay)
#   bash deploy/docker/consortium.sh all             # up, run, verify, down
#
# Everything lives in one folder on this machine (FEDSYNTH_WORKDIR), mounted into the
# containers, so that what came out can be read without an engine:
#   pki/certs/       consortium CA (ca.crt, ca.key: never mounted anywhere), server.pem/.key
#   pki/keys/        each hospital's SuperNode key pair (site-N.key, site-N.pub)
#   data/site-N/     each hospital's raw data (read-only at /data); sample data unless present
#   data/heldout/    the coordinator's held-out test set (read-only at /srv/heldout)
#   state/site-N/    each hospital's private state (/state): site secret, cache, its ledger
#   registry/        the ledger keys the coordinator registered (fedsynth server register-site)
#   superlink/       the SuperLink's database; runs/NAME/: each run's report, metrics, ledger
# In a real consortium each of these lives at its owner; here one machine plays them all.
#
# Settings (environment):
#   FEDSYNTH_ENGINE        podman or docker                          (podman if installed)
#   FEDSYNTH_WORKDIR       the folder above                          (./fedsynth-containers)
#   FEDSYNTH_PROJECT       prefix of container and network names     (fedsynth)
#   FEDSYNTH_VERSION       image tag                                 (pyproject's version)
#   FEDSYNTH_PORT          SuperLink port published on 127.0.0.1    (9092)
#   FEDSYNTH_SITES         hospital names                            ("site-1 site-2 site-3")
#   FEDSYNTH_SAMPLE_CASES  patients per hospital in the sample data  (40)
#   FEDSYNTH_IMAGE_SIZE    image size of the intake cache and the run (128)
#   FEDSYNTH_RUN_CONFIG    run_config of `run` when none is given    (num-server-rounds=3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ENGINE=${FEDSYNTH_ENGINE:-$(command -v podman >/dev/null && echo podman || echo docker)}
WORK=${FEDSYNTH_WORKDIR:-$PWD/fedsynth-containers}
P=${FEDSYNTH_PROJECT:-fedsynth}
VERSION=${FEDSYNTH_VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)}
CLIENT=fedsynth-client:$VERSION
SERVER=fedsynth-server:$VERSION
PORT=${FEDSYNTH_PORT:-9092}
read -r -a SITES <<< "${FEDSYNTH_SITES:-site-1 site-2 site-3}"
SIZE=${FEDSYNTH_IMAGE_SIZE:-128}
UID_APP=49999   # the images' unprivileged user

say() { echo "consortium: $*"; }
die() { echo "error: $*" >&2; exit 1; }
e() { "$ENGINE" "$@"; }
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)

# Files the containers write belong to the images' user. As root the folders are handed to
# it; rootless podman maps this user onto it instead.
user_args=()
if [ "$(id -u)" != 0 ] && [ "$(basename "$ENGINE")" = podman ]; then
  user_args=(--userns "keep-id:uid=$UID_APP,gid=$UID_APP")
fi
own() { mkdir -p "$@"; [ "$(id -u)" != 0 ] || chown "$UID_APP:$UID_APP" "$@"; }
# A one-shot container on the consortium's network: once IMAGE ENTRYPOINT [OPTIONS] -- [ARGS].
once() {
  local image=$1 entry=$2 opts=(); shift 2
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  [ $# -gt 0 ] && shift
  e run --rm --network "$P-net" "${user_args[@]}" "${opts[@]}" --entrypoint "$entry" "$image" "$@"
}
site_dir() { readlink -f "$WORK/data/$1"; }

require_images() {
  for image in "$CLIENT" "$SERVER"; do
    e image inspect "$image" >/dev/null 2>&1 || die "image $image not found; build it first: bash deploy/docker/build.sh"
  done
}

wait_for_superlink() {
  local deadline=$((SECONDS + ${1:-90}))
  until e exec "$P-superlink" python -c "import socket; socket.create_connection(('127.0.0.1', 9092), 2)" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || { e logs --tail 30 "$P-superlink" >&2; die "the SuperLink did not listen within ${1:-90} s (its log above)"; }
    sleep 1
  done
}

up() {
  require_images
  e network inspect "$P-net" >/dev/null 2>&1 || e network create "$P-net" >/dev/null
  own "$WORK" "$WORK/pki" "$WORK/registry" "$WORK/superlink" "$WORK/runs"

  # 1. The coordinator's CA and SuperLink certificate (names: `superlink` for the hospitals
  #    on the network, localhost for the flwr CLI on this machine); one SuperNode key per
  #    hospital, made where the hospital is (here: the same machine); sample data.
  say "CA, SuperLink certificate, SuperNode keys, data in $WORK"
  local volumes=(-v "$WORK/pki:/pki")
  [ -f "$WORK/pki/certs/server.pem" ] \
    || once "$SERVER" fedsynth "${volumes[@]}" -- deploy certs --host superlink --host localhost --host 127.0.0.1 --out /pki/certs >/dev/null
  for site in "${SITES[@]}"; do
    [ -f "$WORK/pki/keys/$site.key" ] \
      || once "$CLIENT" fedsynth "${volumes[@]}" -- deploy node-key --out "/pki/keys/$site" >/dev/null
  done
  if [ ! -d "$WORK/data/heldout" ]; then
    say "no data in $WORK/data: making the sample consortium (${FEDSYNTH_SAMPLE_CASES:-40} patients per hospital)"
    once "$SERVER" fedsynth -v "$WORK:/w" -- sample-data /w/data --sites "${#SITES[@]}" \
      --cases-per-site "${FEDSYNTH_SAMPLE_CASES:-40}" >/dev/null
  fi

  # 2. The SuperLink: TLS with the consortium's certificate, SuperNode authentication, its
  #    database on a volume; only ca.crt, server.pem and server.key are mounted.
  if ! e container inspect "$P-superlink" >/dev/null 2>&1; then
    say "starting the SuperLink (127.0.0.1:$PORT)"
    local certs=()
    for f in ca.crt server.pem server.key; do certs+=(-v "$WORK/pki/certs/$f:/certs/$f:ro"); done
    e run -d --name "$P-superlink" --network "$P-net" --network-alias superlink "${user_args[@]}" \
      --restart unless-stopped -p "127.0.0.1:$PORT:9092" "${certs[@]}" \
      -v "$WORK/superlink:/state" -v "$WORK/runs:/srv/runs" -v "$WORK/registry:/srv/registry:ro" \
      -v "$(site_dir heldout):/srv/heldout:ro" "$SERVER" >/dev/null
  fi
  wait_for_superlink 90

  # 3. Registration: each hospital's SuperNode key with the SuperLink (only these join),
  #    and each hospital's ledger key in the coordinator's registry (only releases signed
  #    by it are accepted). The hospital makes its site secret and ledger key first.
  for site in "${SITES[@]}"; do
    own "$WORK/state/$site"
    once "$SERVER" fedsynth -v "$WORK/pki:/pki:ro" -- deploy register-node "/pki/keys/$site.pub" \
      --name "$site" --superlink superlink:9092 --ca-cert /pki/certs/ca.crt
    [ -f "$WORK/state/$site/site.secret" ] \
      || once "$CLIENT" fedsynth -v "$WORK/state/$site:/state" -- site keygen --state-dir /state >/dev/null
    once "$SERVER" fedsynth -v "$WORK/registry:/srv/registry" -- server register-site "$site" \
      "$(tr -d '[:space:]' < "$WORK/state/$site/privacy/site.pub")" --registry /srv/registry >/dev/null
  done

  # 4. The hospitals: each prepares its data (read-only mount) into its state and joins.
  for site in "${SITES[@]}"; do start_site "$site"; done
  say "up: SuperLink and ${#SITES[@]} hospitals running; submit with: bash $0 run"
}

start_site() {
  local site=$1
  e container inspect "$P-$site" >/dev/null 2>&1 && return 0
  say "starting hospital $site"
  e run -d --name "$P-$site" --network "$P-net" "${user_args[@]}" --restart unless-stopped \
    --stop-timeout 30 \
    -e FEDSYNTH_SUPERLINK=superlink:9092 -e FEDSYNTH_SITE_NAME="$site" \
    -e FEDSYNTH_IMAGE_SIZE="$SIZE" -e FEDSYNTH_REJOIN_DELAY="${FEDSYNTH_REJOIN_DELAY:-10}" \
    -v "$(site_dir "$site"):/data:ro" -v "$WORK/state/$site:/state" \
    -v "$WORK/pki/certs/ca.crt:/certs/ca.crt:ro" -v "$WORK/pki/keys/$site.key:/keys/node.key:ro" \
    "$CLIENT" >/dev/null
}

run() {
  require_images
  local name=${RUN_NAME:-run-$(date +%Y%m%d-%H%M%S)}
  local config="${1:-${FEDSYNTH_RUN_CONFIG:-num-server-rounds=3}} image-size=$SIZE"
  config+=" eval-dir=\"/srv/heldout\" out-dir=\"/srv/runs/$name\" registry=\"/srv/registry\""
  say "submitting $name: $config"
  once "$SERVER" bash -v "$WORK/pki/certs/ca.crt:/certs/ca.crt:ro" \
    -e FEDSYNTH_SUPERLINK=superlink:9092 -e FEDSYNTH_CA_CERT=/certs/ca.crt \
    -e FEDSYNTH_RUN_CONFIG="$config" -- /app/deploy/docker/submit.sh
  [ -f "$WORK/runs/$name/report.html" ] || die "run $name left no report in $WORK/runs/$name"
  say "run $name done: $WORK/runs/$name/report.html"
}

verify() {
  local ledgers=() run
  for site in "${SITES[@]}"; do ledgers+=("/w/state/$site/privacy/ledger.jsonl"); done
  for run in "$WORK"/runs/*/ledger/consortium.jsonl; do
    [ -f "$run" ] && ledgers+=("/w/${run#"$WORK"/}")
  done
  once "$CLIENT" fedsynth -v "$WORK:/w:ro" -- audit verify "${ledgers[@]}" --registry /w/registry
}

down() {
  local names=("$P-superlink")
  for site in "${SITES[@]}"; do names=("$P-$site" "${names[@]}"); done
  # SIGTERM with a grace period first (a hospital finishes writing its ledger), then remove.
  e stop -t 30 "${names[@]}" >/dev/null 2>&1 || true
  e rm -f "${names[@]}" >/dev/null 2>&1 || true
  e network rm "$P-net" >/dev/null 2>&1 || true
  say "down (files kept in $WORK)"
}

case "${1:-}" in
  up) up ;;
  run) shift; run "$@" ;;
  verify) verify ;;
  restart) [ -n "${2:-}" ] || die "restart which hospital? (${SITES[*]})"; e restart -t 30 "$P-$2" >/dev/null; say "$2 restarted" ;;
  logs) e logs "$P-${2:-superlink}" ;;
  down) down ;;
  all) up; run "${2:-}"; verify; down ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
