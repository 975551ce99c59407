#!/usr/bin/env bash
# bench/ui.sh — the web UI and admin API on a big registry: 10,000 repositories and one
# repository of 10,000 tags. Prints the server time of the repository list, a search, and the
# tag page (target: each under 50 ms), the JSON API's equivalents, and the weight of the first
# page with its stylesheet and script (target: under 100 KB). Each figure is the first request
# (nothing cached in the server; a repository too dear for the page's budget is listed with
# "…" and summed up in the background) and the median of the next five. A benchmark, not a
# test: it fails only when a page answers wrongly, never because it is slow.
#
# Usage: bench/ui.sh [--quick] [--keep]
#   --quick   1,000 repositories and 1,000 tags
#   --keep    keep the work folder and print its path
# Environment:
#   BERTH_BIN   berth binary (default target/release/berth, built if missing)
#   BENCH_DIR   parent of the work folder (default $TMPDIR or /tmp)
#
# The data is written straight into the filesystem storage layout (registry/src/paths.rs):
# pushing 20,000 manifests over HTTP would take longer than the measurement. Every repository
# and every tag has a manifest of its own, so nothing is shared that would flatter a cache.
set -euo pipefail

REPOS=10000 TAGS=10000 KEEP=0
for arg in "$@"; do
  case "$arg" in
    --quick) REPOS=1000 TAGS=1000 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }
for tool in curl python3; do command -v "$tool" >/dev/null || die "missing $tool"; done
if [[ -z "${BERTH_BIN:-}" ]]; then
  BERTH_BIN="$ROOT/target/release/berth"
  [[ -x "$BERTH_BIN" ]] || (cd "$ROOT" && cargo build --release -p berth-cli) || die "cargo build failed"
fi

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-ui-bench.XXXXXX")
SERVER=""
cleanup() {
  local status=$?
  [[ -n "$SERVER" ]] && { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; }
  if ((KEEP)); then log "work folder kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT

log "writing $REPOS repositories and one of $TAGS tags"
python3 - "$WORK/data" "$REPOS" "$TAGS" <<'PY'
import hashlib, json, os, sys
root, repos, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f: f.write(data)
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    put(f"{root}/blobs/sha256/{h[:2]}/{h}/data", data)
    return h
config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                     "rootfs": {"type": "layers", "diff_ids": []}}).encode()
layer = os.urandom(4096)
c, l = blob(config), blob(layer)
def manifest(repo, tag, n):
    body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + c, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + l, "size": len(layer)}],
        "annotations": {"n": str(n)}}).encode()
    m = blob(body)
    r = f"{root}/repositories/{repo}"
    put(f"{r}/_manifests/revisions/sha256/{m}", b"application/vnd.oci.image.manifest.v1+json")
    put(f"{r}/_manifests/tags/{tag}", ("sha256:" + m).encode())
    for d in (c, l):
        put(f"{r}/_layers/sha256/{d}", b"")
for i in range(repos):
    manifest(f"team-{i // 100:03d}/app-{i % 100:02d}", "latest", i)
for t in range(tags):
    manifest("big/app", f"v{t:05d}", repos + t)
PY

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'log_level = "warn"\n[storage.filesystem]\nroot = "%s"\nfsync = false\n[gc]\ninterval_secs = 0\n' "$WORK/data" >"$WORK/config.toml"
"$BERTH_BIN" serve --config "$WORK/config.toml" --addr "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null || die "the server did not start: $(cat "$WORK/server.log")"

# measure LABEL PATH MUST_CONTAIN: first request, then the median of five.
measure() {
  local label=$1 path=$2 want=$3 out first times=()
  out=$(curl -s -o "$WORK/page" -w '%{http_code} %{time_total}' "http://127.0.0.1:$PORT$path")
  [[ ${out%% *} == 200 ]] || die "$path answered ${out%% *}"
  grep -q -- "$want" "$WORK/page" || die "$path lacks $want"
  first=${out##* }
  for _ in 1 2 3 4 5; do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$PORT$path")")
  done
  python3 - "$label" "$first" "${times[@]}" <<'PY'
import sys
label, first, rest = sys.argv[1], float(sys.argv[2]), sorted(map(float, sys.argv[3:]))
warm = rest[len(rest) // 2]
print(f"{label:<34} first {first*1000:7.1f} ms   then {warm*1000:7.1f} ms   {'ok' if warm < 0.05 else 'over 50 ms (target 50)'}")
PY
}

# What the searches look for exists in either data set: a team in the middle (100 repositories
# match), the very last repository (one match), a tag in the middle of the big repository.
TEAM=$(printf 'team-%03d' $((REPOS / 200)))
LAST=$(printf 'team-%03d/app-%02d' $(((REPOS - 1) / 100)) $(((REPOS - 1) % 100)))
MIDDLE=$(printf 'v%05d' $((TAGS / 2)))
echo "== berth web UI: $REPOS repositories, one of $TAGS tags (load: $(cut -d' ' -f1-3 /proc/loadavg))"
measure "repository list (/)" "/" "team-000/app-00"
measure "search (/?q=$TEAM)" "/?q=$TEAM" "$TEAM/app-17"
measure "search, one match" "/?q=$LAST" "$LAST"
measure "tag page (/r/big/app)" "/r/big/app" "v00099"
measure "tag page, newest first" "/r/big/app?sort=pushed" "docker pull"
measure "image page" "/r/big/app/@$MIDDLE" "Layers"
measure "API repositories" "/api/v1/repositories?q=$TEAM" "$TEAM/app-17"
measure "API tags" "/api/v1/repositories/big/app/tags" "v00099"
# The first page holds big/app, too dear to sum up within a page's budget right after the
# start: it was listed with "…" while a background task summed it up. Once that is done:
for _ in $(seq 1200); do
  curl -s "http://127.0.0.1:$PORT/api/v1/repositories" | grep -q '"pending":true' || break
  sleep 0.5
done
measure "repository list, figures computed" "/" "team-000/app-00"
html=$(curl -s "http://127.0.0.1:$PORT/" | wc -c)
css=$(curl -s "http://127.0.0.1:$PORT/assets/style.css" | wc -c)
js=$(curl -s "http://127.0.0.1:$PORT/assets/app.js" | wc -c)
total=$((html + css + js))
echo "first page weight: $total bytes (HTML $html, CSS $css, JS $js; uncompressed)  $([[ $total -lt 100000 ]] && echo ok || echo 'over 100 KB')"
