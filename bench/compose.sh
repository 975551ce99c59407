#!/usr/bin/env bash
# `berth compose` against Docker Compose v2 on the Docker engine, side by side in one run, on
# the same five-service application, printing each figure and the ratios (berth / Docker
# Compose; the issue's target for `up -d` is at most 0.5x):
#
#   up -d, cold    the image is in neither store: `up` pulls it from a local berth registry
#   up -d, warm    the image is present, no container exists (after a `down`)
#   up -d, again   everything already runs with this configuration: nothing to do
#   down           stop and remove the five containers and the project's network
#
#   bench/compose.sh            # 5 rounds
#   bench/compose.sh --quick    # 2 rounds
#
# The application: db, cache, worker (after db), api (after db and cache) and web (after api,
# busybox httpd published on a host port), all from one busybox image, each with `init: true`
# so that SIGTERM stops it at once under both engines (a stop that waits out its 10 s grace
# would measure the timeout, not the tool). Each round runs berth's step, then Docker
# Compose's, and prints the medians. After every `up`, both answer on their web port and run
# five containers; after every `down`, neither leaves a container of the project.
#
# Needs root, the Docker engine, Docker Compose v2 ($COMPOSE_V2, else docker-compose on PATH
# or in Python's scripts folder when it is v2), skopeo and busybox-static. Environment:
# BERTH_BIN (default target/release/berth, built if missing), BENCH_DIR (work folder parent,
# default /tmp). Results are also written to bench/results/compose-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

ROUNDS=5
for arg in "$@"; do
  case "$arg" in
    --quick) ROUNDS=2 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -eq 0 ] || { echo "bench/compose.sh needs root (containers, networks)" >&2; exit 1; }
for tool in docker skopeo curl; do
  command -v "$tool" >/dev/null || { echo "bench/compose.sh needs $tool" >&2; exit 1; }
done
[ -x /bin/busybox ] || { echo "bench/compose.sh needs /bin/busybox (busybox-static)" >&2; exit 1; }

is_v2() { "$1" version --short 2>/dev/null | sed 's/^v//' | awk -F. '{ exit !($1 >= 2) }'; }
COMPOSE=""
for c in "${COMPOSE_V2:-}" "$(command -v docker-compose || true)" \
  "$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)/docker-compose"; do
  if [ -n "$c" ] && [ -x "$c" ] && is_v2 "$c"; then COMPOSE=$c; break; fi
done
[ -n "$COMPOSE" ] || { echo "bench/compose.sh needs Docker Compose v2 (set COMPOSE_V2)" >&2; exit 1; }

BERTH=${BERTH_BIN:-$REPO/target/release/berth}
if [ ! -x "$BERTH" ]; then
  echo "== building berth (release)"
  cargo build --release -p berth-cli --quiet
fi
mkdir -p "$REPO/bench/results"
W=$(mktemp -d "${BENCH_DIR:-/tmp}/berth-compose-bench.XXXXXX")
RESULTS="$REPO/bench/results/compose-$(date +%Y%m%d-%H%M%S).txt"
PROJECT=benchcompose$$
SERVER=""
IMAGE=""

b() { "$BERTH" --root "$W/store" compose -f "$W/app/compose.yaml" -p "$PROJECT" "$@"; }
d() { WEB_PORT=$DOCKER_PORT "$COMPOSE" -f "$W/app/compose.yaml" -p "$PROJECT" "$@"; }

cleanup() {
  set +e
  b down >/dev/null 2>&1
  d down >/dev/null 2>&1
  [ -n "$IMAGE" ] && docker rmi -f "$IMAGE" >/dev/null 2>&1
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  for m in $(grep -o " $W[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$RESULTS"; }
say "# bench/compose.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
say "# berth $("$BERTH" --version) ($BERTH); Docker Compose $("$COMPOSE" version --short); Docker $(docker version -f '{{.Server.Version}}')"

free_ports() {
  python3 -c 'import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))'
}
read -r PORT BERTH_PORT DOCKER_PORT <<<"$(free_ports)"

# ---- a berth registry with the busybox image ---------------------------------------------
"$BERTH" serve --addr "127.0.0.1:$PORT" --root "$W/registry" --log-level error >"$W/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
REG=127.0.0.1:$PORT
IMAGE=$REG/bench/compose-busybox:v1

# A one-layer OCI image layout of a busybox root in $W/layout (tag v1).
R=$W/rootfs
mkdir -p "$R"/{bin,dev,etc,proc,sys,tmp,root,www} "$W/layout/blobs/sha256"
cp /bin/busybox "$R/bin/busybox"
for a in sh true echo cat sleep httpd wget; do ln -s busybox "$R/bin/$a"; done
chmod 1777 "$R/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
echo compose-bench-ok >"$R/www/index.html"
blob() {  # file -> "digest size", copied into the layout
  local h; h=$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$W/layout/blobs/sha256/$h"
  echo "$h $(stat -c %s "$1")"
}
tar -C "$R" --numeric-owner -cf "$W/layer.tar" .
DIFF=$(sha256sum "$W/layer.tar" | cut -d' ' -f1)
gzip -n "$W/layer.tar"
read -r L LS <<<"$(blob "$W/layer.tar.gz")"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$DIFF" >"$W/config.json"
read -r C CS <<<"$(blob "$W/config.json")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$C" "$CS" "$L" "$LS" >"$W/manifest.json"
read -r M MS <<<"$(blob "$W/manifest.json")"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
  "$M" "$MS" >"$W/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$W/layout/oci-layout"
skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$W/layout:v1" "docker://$IMAGE" >/dev/null

# ---- the application ---------------------------------------------------------------------
mkdir -p "$W/app"
cat >"$W/app/compose.yaml" <<EOF
x-service: &service
  image: $IMAGE
  init: true
  command: ["sleep", "100000"]
services:
  db:
    <<: *service
    environment: {ROLE: db}
  cache:
    <<: *service
    environment: {ROLE: cache}
  worker:
    <<: *service
    environment: {ROLE: worker}
    depends_on: [db]
  api:
    <<: *service
    environment: {ROLE: api}
    depends_on: [db, cache]
  web:
    <<: *service
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    environment: {ROLE: web}
    ports: ["\${WEB_PORT:-$BERTH_PORT}:80"]
    depends_on: [api]
EOF

# ---- checks (not timed) ------------------------------------------------------------------
answers() {  # port: the web service answers on it (bounded wait)
  for _ in $(seq 100); do
    [ "$(curl -s --max-time 1 "http://127.0.0.1:$1/" || true)" = compose-bench-ok ] && return 0
    sleep 0.1
  done
  echo "nothing answered on port $1" >&2
  exit 1
}
running_berth() { "$BERTH" --root "$W/store" ps 2>/dev/null | grep -c " $PROJECT-" || true; }
running_docker() { docker ps -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l; }
check_up() {  # tool
  local n
  if [ "$1" = berth ]; then answers "$BERTH_PORT"; n=$(running_berth); else answers "$DOCKER_PORT"; n=$(running_docker); fi
  [ "$n" -eq 5 ] || { echo "$1: $n containers run after up, not 5" >&2; exit 1; }
}
check_down() {  # tool
  local n
  if [ "$1" = berth ]; then n=$("$BERTH" --root "$W/store" ps -a | grep -c " $PROJECT-" || true)
  else n=$(docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" | wc -l); fi
  [ "$n" -eq 0 ] || { echo "$1: $n containers are left after down" >&2; exit 1; }
}

# timed TOOL STEP COMMAND...: runs COMMAND, appends its seconds to $W/times/TOOL.STEP.
mkdir -p "$W/times"
timed() {
  local tool=$1 step=$2; shift 2
  local t0=$EPOCHREALTIME
  "$@" >"$W/last.log" 2>&1 || { echo "$tool $step failed:" >&2; cat "$W/last.log" >&2; exit 1; }
  local t1=$EPOCHREALTIME
  echo "$t1 - $t0" | bc -l >>"$W/times/$tool.$step"
}
median() { sort -g "$1" | awk '{ a[NR] = $1 } END { print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }

forget_image() {  # tool
  if [ "$1" = berth ]; then "$BERTH" --root "$W/store" rmi "$IMAGE" >/dev/null 2>&1 || true
  else docker rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
}

round() {  # tool command-function
  local tool=$1 run=$2
  forget_image "$tool"
  timed "$tool" cold "$run" up -d
  check_up "$tool"
  timed "$tool" down "$run" down
  check_down "$tool"
  timed "$tool" warm "$run" up -d
  check_up "$tool"
  timed "$tool" again "$run" up -d
  check_up "$tool"
  timed "$tool" down "$run" down
  check_down "$tool"
}

# One unmeasured round each: the first `up` of a tool pays for things no later one does.
round berth b; round docker d; rm -f "$W"/times/*
for i in $(seq "$ROUNDS"); do
  echo "== round $i of $ROUNDS" >&2
  round berth b
  round docker d
done

say ""
say "## compose, five services, $ROUNDS rounds (median seconds)"
say "$(printf '%-16s %10s %16s %8s' step berth 'docker compose' ratio)"
for step in cold warm again down; do
  bm=$(median "$W/times/berth.$step")
  dm=$(median "$W/times/docker.$step")
  say "$(printf '%-16s %10.3f %16.3f %7.2fx' "$step" "$bm" "$dm" "$(echo "$bm / $dm" | bc -l)")"
done
say "# up -d cold: image pulled from a local registry; warm: image present; again: all running; down: 5 containers + network"
say "# results: $RESULTS"
