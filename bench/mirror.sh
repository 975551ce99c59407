#!/usr/bin/env bash
# bench/mirror.sh — the pull-through cache: berth mirroring distribution 2.8.2, against
# pulling straight from it, and against distribution 2.8.2 in proxy mode, in one run. A
# benchmark, not a test: it fails only when a server answers wrongly, never because it is slow.
#
# An image of LAYERS random layers (~200 MB in all) is pushed to distribution (the upstream).
# A pull is: the manifest, then the config and every layer at once (curl --parallel, bytes
# discarded after their digest is checked by the mirror or the client), as a client would.
# Measured, each once:
#   direct        from the upstream itself
#   berth cold    through berth's mirror (empty cache)       target: <= 1.1 x direct
#   berth warm    the same again (all cached)                 target: <= 1.05 x berth plain
#   berth plain   from a berth registry the image was pushed to
#   dist cold     through distribution in proxy mode (empty cache)
#   dist warm     the same again
#
# Usage: bench/mirror.sh [--quick]      (--quick: ~40 MB image)
# Environment: BERTH_BIN (default target/release/berth), BENCH_DIR (parent of the work
# folder, default /tmp; needs ~1.5 GB), LAYERS (default 4), LAYER_MB (default 50).
# Needs docker-registry, skopeo, curl (7.66+ for --parallel), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
LAYERS=${LAYERS:-4} LAYER_MB=${LAYER_MB:-50}
[[ ${1:-} == --quick ]] && LAYER_MB=10
BERTH_BIN=${BERTH_BIN:-target/release/berth}
[[ -x $BERTH_BIN ]] || { echo "no berth binary at $BERTH_BIN (cargo build --release -p berth-cli)" >&2; exit 1; }
WORK=$(mktemp -d "${BENCH_DIR:-/tmp}/berth-mirror-bench.XXXXXX")
declare -A PID=()
cleanup() {
  local s=$? n
  for n in "${!PID[@]}"; do kill "${PID[$n]}" 2>/dev/null || true; wait "${PID[$n]}" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit "$s"
}
trap cleanup EXIT
log() { echo "[mirror-bench] $*" >&2; }
die() { log "error: $*"; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {  # name port
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$WORK/$1.log" >&2; die "$1 exited at start"; }
    curl -s -o /dev/null "http://127.0.0.1:$2/v2/" && return 0
    sleep 0.1
  done
  die "$1 did not start"
}
distribution() {  # name port [proxy-url]
  local dir=$WORK/$1
  mkdir -p "$dir"
  cat > "$dir/config.yml" <<YML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/data}}
http: {addr: 127.0.0.1:$2}
YML
  [[ -n ${3:-} ]] && printf 'proxy:\n  remoteurl: %s\n' "$3" >> "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$WORK/$1.log" 2>&1 & PID[$1]=$!
  wait_ready "$1" "$2"
}
berth() {  # name port [mirror-section]
  local dir=$WORK/$1
  mkdir -p "$dir"
  printf 'addr = "127.0.0.1:%s"\nlog_level = "warn"\n[storage.filesystem]\nroot = "%s"\nfsync = false\n%s\n' \
    "$2" "$dir/data" "${3:-}" > "$dir/berth.toml"
  "$BERTH_BIN" serve -c "$dir/berth.toml" > "$WORK/$1.log" 2>&1 & PID[$1]=$!
  wait_ready "$1" "$2"
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

UP=$(port) MIR=$(port) PLAIN=$(port) PROXY=$(port)
distribution upstream "$UP"
berth plain "$PLAIN"
for p in "$UP" "$PLAIN"; do
  skopeo --insecure-policy copy -q --preserve-digests --dest-tls-verify=false "oci:$WORK/image:big" "docker://127.0.0.1:$p/bench/big:1" >&2
done
berth mirror "$MIR" "$(printf '[[mirror]]\nurl = "http://127.0.0.1:%s"\nhost = "up.test"\n' "$UP")"
distribution proxy "$PROXY" "http://127.0.0.1:$UP"

ACCEPT='Accept: application/vnd.oci.image.manifest.v1+json'
pull() {  # port repository -> seconds
  local base="http://127.0.0.1:$1/v2/$2" start args=() d
  start=$(date +%s%N)
  curl -sfS -H "$ACCEPT" "$base/manifests/1" -o "$WORK/manifest.json" || die "manifest from $1 ($2)"
  for d in $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(" ".join(x["digest"] for x in [m["config"]]+m["layers"]))' "$WORK/manifest.json"); do
    args+=(-o /dev/null "$base/blobs/$d")
  done
  curl -sfS --no-progress-meter -L --parallel --parallel-max 8 "${args[@]}" || die "blobs from $1 ($2)"
  awk -v a="$start" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}
direct=$(pull "$UP" bench/big)
bcold=$(pull "$MIR" up.test/bench/big)
bwarm=$(pull "$MIR" up.test/bench/big)
plain=$(pull "$PLAIN" bench/big)
dcold=$(pull "$PROXY" bench/big)
dwarm=$(pull "$PROXY" bench/big)
# The mirror's copy must be whole: pull it again through skopeo, which checks every digest.
skopeo --insecure-policy copy -q --src-tls-verify=false "docker://127.0.0.1:$MIR/up.test/bench/big:1" "oci:$WORK/check:x" >&2 \
  || die "the mirrored image does not verify"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '%-28s %8s\n' "pull of $((LAYERS * LAYER_MB)) MB" seconds
printf '%-28s %8s\n' "direct (distribution)" "$direct" "berth plain registry" "$plain" \
  "berth mirror, cold" "$bcold" "berth mirror, warm" "$bwarm" "distribution proxy, cold" "$dcold" "distribution proxy, warm" "$dwarm"
echo "berth cold / direct        $(ratio "$bcold" "$direct")  (target <= 1.10)"
echo "berth warm / berth plain   $(ratio "$bwarm" "$plain")  (target <= 1.05)"
echo "dist proxy cold / direct   $(ratio "$dcold" "$direct")"
echo "dist proxy warm / direct   $(ratio "$dwarm" "$direct")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
