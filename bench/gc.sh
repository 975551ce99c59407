#!/usr/bin/env bash
# bench/gc.sh — berth's online garbage collection against distribution 2.8.2's offline
# `garbage-collect`, on the filesystem, on the same data; and berth's push throughput while a
# collection runs against without one. A benchmark, not a test: it fails only on wrong
# answers (a push refused, a collection that frees nothing), never because it is slow.
#
#   bench/gc.sh          # quick: 300 manifests, 3,000 blobs, 10% garbage (~1 minute)
#   bench/gc.sh --full   # the issue's: 10,000 manifests, 100,000 blobs, 10% garbage
#   bench/gc.sh --keep   # keep the work folder
#
# Both registries get the same images, pushed over HTTP by bench/gcload.py (a config and nine
# 64-byte layers each, every tag in one of 100 repositories); then every tenth manifest is
# deleted by digest in both, which leaves its ten blobs unreferenced. distribution is stopped
# (its collector is offline) and `docker-registry garbage-collect` timed; berth keeps serving
# and `berth gc` (grace 0) is timed. Then pushes of new images to berth are timed without a
# collection and while `berth gc` runs again and again, alternately, ROUNDS times (default
# 5), and the ratio of the medians printed (target ≥ 0.8).
# Environment: BERTH_BIN (default target/release/berth, built if missing), BENCH_DIR.
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
MANIFESTS=300 KEEP=0 THREADS=8 PUSHES=100 ROUNDS=${ROUNDS:-5}
for arg in "$@"; do
  case $arg in
    --full) MANIFESTS=10000 PUSHES=500 ;;
    --keep) KEEP=1 ;;
    *) echo "usage: bench/gc.sh [--full] [--keep]" >&2; exit 2 ;;
  esac
done
BLOBS=10
log() { printf '%s\n' "$*" >&2; }
die() { log "bench/gc.sh: $*"; exit 1; }

DIST_BIN=/usr/bin/docker-registry
[[ -x $DIST_BIN ]] || die "missing $DIST_BIN (Debian: docker-registry)"
command -v python3 >/dev/null || die "missing python3"
BERTH_BIN=${BERTH_BIN:-$ROOT/target/release/berth}
if [[ ! -x $BERTH_BIN ]]; then
  log "building $BERTH_BIN"
  (cd "$ROOT" && cargo build --release -q -p berth-cli) || die "cannot build berth"
fi

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-gc-bench.XXXXXX")
declare -A PID=()
cleanup() {
  for name in "${!PID[@]}"; do kill "${PID[$name]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if ((KEEP)); then log "work folder kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {  # url
  for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  die "nothing answers at $1"
}
blob_files() { find "$1" -name data -path '*blobs*' | wc -l; }
ms_since() { echo $((($(date +%s%N) - $1) / 1000000)); }

DPORT=$(free_port) BPORT=$(free_port)
mkdir -p "$WORK/dist" "$WORK/berth"
cat >"$WORK/dist.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/dist
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$DPORT
EOF
"$DIST_BIN" serve "$WORK/dist.yml" >"$WORK/dist.log" 2>&1 &
PID[dist]=$!
BERTH_GC__INTERVAL_SECS=0 "$BERTH_BIN" serve --addr "127.0.0.1:$BPORT" --root "$WORK/berth" --log-level warn \
  >"$WORK/berth.log" 2>&1 &
PID[berth]=$!
wait_ready "http://127.0.0.1:$DPORT/v2/"
wait_ready "http://127.0.0.1:$BPORT/v2/"

log "pushing $MANIFESTS manifests and $((MANIFESTS * BLOBS)) blobs to each"
python3 "$BENCH/gcload.py" push "$DPORT" 0 "$MANIFESTS" "$BLOBS" "$THREADS" "$WORK/dist.list" >/dev/null
python3 "$BENCH/gcload.py" push "$BPORT" 0 "$MANIFESTS" "$BLOBS" "$THREADS" "$WORK/berth.list" >/dev/null
python3 "$BENCH/gcload.py" delete "$DPORT" "$WORK/dist.list" 10 >/dev/null
python3 "$BENCH/gcload.py" delete "$BPORT" "$WORK/berth.list" 10 >/dev/null
dist_before=$(blob_files "$WORK/dist") berth_before=$(blob_files "$WORK/berth")

# distribution: offline, so stopped first.
kill "${PID[dist]}"; wait "${PID[dist]}" 2>/dev/null || true; unset 'PID[dist]'
t=$(date +%s%N)
"$DIST_BIN" garbage-collect "$WORK/dist.yml" >"$WORK/dist-gc.log" 2>&1 || die "garbage-collect failed: $(tail -5 "$WORK/dist-gc.log")"
dist_ms=$(ms_since "$t")
# berth: online, the server keeps serving.
t=$(date +%s%N)
BERTH_GC__GRACE_SECS=0 "$BERTH_BIN" gc --root "$WORK/berth" >"$WORK/berth-gc.log" 2>&1 || die "berth gc failed: $(tail -5 "$WORK/berth-gc.log")"
berth_ms=$(ms_since "$t")
dist_after=$(blob_files "$WORK/dist") berth_after=$(blob_files "$WORK/berth")
((dist_after < dist_before && berth_after < berth_before)) || die "a collector freed nothing ($dist_before→$dist_after, $berth_before→$berth_after)"

# Push throughput on berth, without and during collections (each push its own new images):
# ROUNDS rounds of one timed push run without, then one while `berth gc` runs again and again;
# the medians of each (alternating, so that both see the same machine).
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
: >"$WORK/without.times"; : >"$WORK/during.times"
for ((r = 0; r < ROUNDS; r++)); do
  python3 "$BENCH/gcload.py" push "$BPORT" $((100000 + r * 10000)) "$PUSHES" "$BLOBS" "$THREADS" "$WORK/p1-$r.list" >>"$WORK/without.times"
  echo >>"$WORK/without.times"
  rm -f "$WORK/stop"
  (while [[ ! -e $WORK/stop ]]; do BERTH_GC__GRACE_SECS=3600 "$BERTH_BIN" gc --root "$WORK/berth" >/dev/null 2>&1 || true; done) &
  PID[loop]=$!
  sleep 0.5
  python3 "$BENCH/gcload.py" push "$BPORT" $((200000 + r * 10000)) "$PUSHES" "$BLOBS" "$THREADS" "$WORK/p2-$r.list" >>"$WORK/during.times"
  echo >>"$WORK/during.times"
  touch "$WORK/stop"; wait "${PID[loop]}" || true; unset 'PID[loop]'
done
without=$(grep . "$WORK/without.times" | median)
during=$(grep . "$WORK/during.times" | median)

printf 'bench/gc.sh: %s manifests, %s blobs, 10%% of manifests deleted; load %s\n' \
  "$MANIFESTS" "$((MANIFESTS * BLOBS))" "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %10s %10s\n' "" berth distribution
printf '%-44s %10s %10s\n' "collection time (ms)" "$berth_ms" "$dist_ms"
printf '%-44s %10s %10s\n' "blob files before → after" "$berth_before→$berth_after" "$dist_before→$dist_after"
printf '%-44s %10s\n' "berth serving during its collection" yes
awk -v b="$berth_ms" -v d="$dist_ms" 'BEGIN { printf "collection speed-up (distribution / berth): %.2fx (target >= 2)\n", d / b }'
awk -v n="$PUSHES" -v a="$without" -v b="$during" 'BEGIN {
  printf "pushes/s without a collection: %.1f, during collections: %.1f, ratio %.2f (target >= 0.8; medians of '"$ROUNDS"' rounds)\n", n / a, n / b, a / b }'
