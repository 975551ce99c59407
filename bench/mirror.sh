#!/usr/bin/env bash
# bench/mirror.sh — the pull-through cache: berth mirroring distribution 2.8.2, against
# pulling straight from it, and against distribution 2.8.2 in proxy mode, in one run. A
# benchmark, not a test: it fails only when a server answers wrongly, never because it is slow.
#
# An image of LAYERS random layers (~200 MB in all) is pushed to distribution (the upstream).
# A pull is: the manifest, then the config and every layer at once (curl --parallel, bytes
# discarded after their digest is checked by the mirror or the client), as a client would.
# Every row is the median of REPS pulls; each cold pull goes through a new mirror with an
# empty cache.
#
# Two upstreams, one after the other:
#   loopback   distribution on 127.0.0.1, as every other server here. Each byte of a cold
#              pull is then received, hashed, written and sent again by the mirror, while the
#              direct pull is one sendfile: on 2 cores that is a CPU comparison.
#   link       (root, with tc's tbf) distribution in a network namespace of its own behind a
#              veth pair shaped to LINK_MBIT (default 1000) in both directions, as a registry
#              across a link is: the case a mirror is for.
# Rows, for each upstream:
#   direct        from the upstream itself
#   berth cold    through berth's mirror (empty cache)       target: <= 1.1 x direct
#   dist cold     through distribution in proxy mode (empty cache)
#   berth warm    the same again (all cached)                 target: <= 1.05 x berth plain
#   dist warm     the same again
#   berth plain   from a berth registry the image was pushed to, each pull right after a
#                 warm one
#
# Usage: bench/mirror.sh [--quick]      (--quick: ~40 MB image)
# Environment: BERTH_BIN (default target/release/berth), BENCH_DIR (parent of the work
# folder, default /tmp; needs ~2.5 GB), LAYERS (default 4), LAYER_MB (default 50), REPS
# (default 3), LINK_MBIT (default 1000; 0 skips the link upstream).
# Needs docker-registry, skopeo, curl (7.66+ for --parallel), python3; iproute2 for the link.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-4} LAYER_MB=${LAYER_MB:-50} REPS=${REPS:-3} LINK_MBIT=${LINK_MBIT:-1000}
[[ ${1:-} == --quick ]] && LAYER_MB=10
BERTH_BIN=${BERTH_BIN:-target/release/berth}
[[ -x $BERTH_BIN ]] || { echo "no berth binary at $BERTH_BIN (cargo build --release -p berth-cli)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/berth-mirror-bench.XXXXXX")
NS="" VETH=""
declare -A PID=()
stop() {  # name
  [[ -n ${PID[$1]:-} ]] || return 0
  kill "${PID[$1]}" 2>/dev/null || true
  wait "${PID[$1]}" 2>/dev/null || true
  unset "PID[$1]"
}
cleanup() {
  local s=$? n
  for n in "${!PID[@]}"; do stop "$n"; done
  [[ -n $VETH ]] && ip link del "$VETH" 2>/dev/null
  [[ -n $NS ]] && ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
  exit "$s"
}
trap cleanup EXIT
log() { echo "[mirror-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # name url
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$WORK/$1.log" >&2; die "$1 exited at start"; }
    curl -s -o /dev/null "$2/v2/" && return 0
    sleep 0.1
  done
  die "$1 did not start"
}
distribution() {  # name host port [proxy-url] [netns]
  local dir=$WORK/$1 run=()
  rm -rf "$dir"; mkdir -p "$dir"
  cat > "$dir/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/data}}
http: {addr: $2:$3}
YML
  [[ -n ${4:-} ]] && printf 'proxy:\n  remoteurl: %s\n' "$4" >> "$dir/config.yml"
  [[ -n ${5:-} ]] && run=(ip netns exec "$5")
  "${run[@]}" docker-registry serve "$dir/config.yml" > "$WORK/$1.log" 2>&1 & PID[$1]=$!
  wait_ready "$1" "http://$2:$3"
}
berth() {  # name port [mirror-section]
  local dir=$WORK/$1
  rm -rf "$dir"; mkdir -p "$dir"
  printf 'addr = "127.0.0.1:%s"\nlog_level = "warn"\n[storage.filesystem]\nroot = "%s"\nfsync = false\n%s\n' \
    "$2" "$dir/data" "${3:-}" > "$dir/berth.toml"
  "$BERTH_BIN" serve -c "$dir/berth.toml" > "$WORK/$1.log" 2>&1 & PID[$1]=$!
  wait_ready "$1" "http://127.0.0.1:$2"
}

log "writing a ${LAYERS} x ${LAYER_MB} MB image"
python3 - "$WORK/image" "$LAYERS" "$LAYER_MB" <<'PY'
import hashlib, json, os, sys
root, layers, mb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
blobs = os.path.join(root, "blobs", "sha256"); os.makedirs(blobs)
def add(data):
    d = hashlib.sha256(data).hexdigest()
    open(os.path.join(blobs, d), "wb").write(data)
    return {"digest": "sha256:" + d, "size": len(data)}
ls = [dict(add(os.urandom(mb << 20)), mediaType="application/vnd.oci.image.layer.v1.tar") for _ in range(layers)]
cfg = dict(add(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()),
           mediaType="application/vnd.oci.image.config.v1+json")
m = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": ls}).encode()
md = dict(add(m), mediaType="application/vnd.oci.image.manifest.v1+json", annotations={"org.opencontainers.image.ref.name": "big"})
json.dump({"schemaVersion": 2, "manifests": [md]}, open(os.path.join(root, "index.json"), "w"))
open(os.path.join(root, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
PY
push() {  # registry-url (host:port)
  skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false "oci:$WORK/image:big" "docker://$1/bench/big:1" >&2
}

ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
pull() {  # base-url repository -> seconds
  local base="$1/v2/$2" start args=() d
  start=$(date +%s%N)
  curl -sfS -H "$ACCEPT" "$base/manifests/1" -o "$WORK/manifest.json" || die "manifest from $1 ($2)"
  for d in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(x["digest"] for x in [m["config"]]+m["layers"]))' "$WORK/manifest.json"); do
    args+=(-o /dev/null "$base/blobs/$d")
  done
  curl -sfS --no-progress-meter -L --parallel --parallel-max 8 "${args[@]}" || die "blobs from $1 ($2)"
  awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f\n", (b - a) / 1e9 }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

# berth plain stays up: its pulls alternate with the warm ones, so that both see the same
# machine.
PLAIN=$(port)
berth plain "$PLAIN"
push "127.0.0.1:$PLAIN"

declare -A ROW=()
measure() {  # label upstream-url
  local label=$1 up=$2 mir=$(port) prox=$(port) i
  local section
  section=$(printf '[[mirror]]\nurl = "%s"\nhost = "up.test"\n' "$up")
  ROW[$label,direct]=$(for ((i = 0; i < REPS; i++)); do pull "$up" bench/big; done | median)
  : > "$WORK/bcold.times" ; : > "$WORK/dcold.times"
  for ((i = 0; i < REPS; i++)); do
    berth mirror "$mir" "$section"
    pull "http://127.0.0.1:$mir" up.test/bench/big >> "$WORK/bcold.times"
    ((i < REPS - 1)) && stop mirror
    distribution proxy 127.0.0.1 "$prox" "$up"
    pull "http://127.0.0.1:$prox" bench/big >> "$WORK/dcold.times"
    ((i < REPS - 1)) && stop proxy
  done
  ROW[$label,bcold]=$(median < "$WORK/bcold.times")
  ROW[$label,dcold]=$(median < "$WORK/dcold.times")
  : > "$WORK/bwarm.times" ; : > "$WORK/plain.times"
  for ((i = 0; i < REPS; i++)); do
    pull "http://127.0.0.1:$mir" up.test/bench/big >> "$WORK/bwarm.times"
    pull "http://127.0.0.1:$PLAIN" bench/big >> "$WORK/plain.times"
  done
  ROW[$label,bwarm]=$(median < "$WORK/bwarm.times")
  ROW[$label,plain]=$(median < "$WORK/plain.times")
  ROW[$label,dwarm]=$(for ((i = 0; i < REPS; i++)); do pull "http://127.0.0.1:$prox" bench/big; done | median)
  # The mirror's copy must be whole: pull it again through skopeo, which checks every digest.
  skopeo --insecure-policy copy -q --src-tls-verify=false "docker://127.0.0.1:$mir/up.test/bench/big:1" "oci:$WORK/check-$label:x" >&2 \
    || die "the mirrored image does not verify"
  rm -rf "$WORK/check-$label"
  stop mirror; stop proxy
}

UP=$(port)
log "upstream on loopback"
distribution upstream 127.0.0.1 "$UP"
push "127.0.0.1:$UP"
measure loopback "http://127.0.0.1:$UP"
stop upstream
labels=(loopback)

if [[ $LINK_MBIT != 0 ]]; then
  if [[ $(id -u) != 0 ]] || ! command -v tc >/dev/null; then
    log "SKIP the link upstream: it needs root and tc (iproute2)"
  else
    log "upstream behind a ${LINK_MBIT} Mbit/s link"
    NS=berth-mb-$$ VETH=bmb$$
    ip netns add "$NS"
    ip link add "$VETH" type veth peer name up0 netns "$NS"
    ip addr add 10.213.77.1/30 dev "$VETH"
    ip link set "$VETH" up
    ip -n "$NS" addr add 10.213.77.2/30 dev up0
    ip -n "$NS" link set up0 up
    ip -n "$NS" link set lo up
    tc qdisc add dev "$VETH" root tbf rate "${LINK_MBIT}mbit" burst 256kb latency 50ms
    ip netns exec "$NS" tc qdisc add dev up0 root tbf rate "${LINK_MBIT}mbit" burst 256kb latency 50ms
    distribution upstream 10.213.77.2 5000 "" "$NS"
    push 10.213.77.2:5000
    measure link "http://10.213.77.2:5000"
    stop upstream
    labels+=(link)
  fi
fi

printf '%-34s %8s\n' "pull of $((LAYERS * LAYER_MB)) MB, median of $REPS" seconds
for l in "${labels[@]}"; do
  [[ $l == link ]] && name="upstream behind ${LINK_MBIT} Mbit/s" || name="upstream on loopback"
  echo "$name:"
  printf '  %-32s %8s\n' "direct (distribution)" "${ROW[$l,direct]}" "berth mirror, cold" "${ROW[$l,bcold]}" \
    "berth mirror, warm" "${ROW[$l,bwarm]}" "berth plain (beside warm)" "${ROW[$l,plain]}" \
    "distribution proxy, cold" "${ROW[$l,dcold]}" \
    "distribution proxy, warm" "${ROW[$l,dwarm]}"
done
for l in "${labels[@]}"; do
  echo "$l: berth cold / direct        $(ratio "${ROW[$l,bcold]}" "${ROW[$l,direct]}")  (target <= 1.10)"
  echo "$l: dist proxy cold / direct   $(ratio "${ROW[$l,dcold]}" "${ROW[$l,direct]}")"
  echo "$l: berth warm / berth plain   $(ratio "${ROW[$l,bwarm]}" "${ROW[$l,plain]}")  (target <= 1.05)"
  echo "$l: dist proxy warm / direct   $(ratio "${ROW[$l,dwarm]}" "${ROW[$l,direct]}")"
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
