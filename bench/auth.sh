#!/usr/bin/env bash
# bench/auth.sh — what access control costs on the hottest path: manifest GETs per second
# against berth with token authentication on (every request carries a valid Bearer token,
# checked for signature, expiry, audience and scope, then cached) and with auth off, on the
# same data. Prints both rates and their ratio against the target (auth on at most 15%
# slower: ratio >= 0.85), plus basic authentication on every request for reference. A
# benchmark, not a test: it fails only when a server answers wrongly, never because it is
# slow.
#
# Usage: bench/auth.sh [--quick] [--keep]
#   --quick   5 s wrk runs, one round (a fast check of the harness)
#   --keep    keep the work folder (configs, data, logs, raw wrk output) and print its path
# Environment:
#   BERTH_BIN   berth binary (default target/release/berth, built if missing)
#   BENCH_DIR   parent of the work folder (default $TMPDIR or /tmp)
#   BENCH_LIMIT seconds the run may take, not counting a build (default 300)
#
# Needs wrk, curl, python3 and htpasswd (Debian: wrk curl python3 apache2-utils). Both
# servers bind 127.0.0.1 only and are stopped on exit; a watchdog stops the script at the
# limit. Runs alternate off/on so drift on the machine hits both sides alike; the best run
# of each side counts, and every run is printed.
set -euo pipefail

QUICK=0 KEEP=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ((QUICK)); then WRK_DUR=5s ROUNDS=1; else WRK_DUR=10s ROUNDS=3; fi
WRK_THREADS=2 WRK_CONNS=64
LIMIT=${BENCH_LIMIT:-300}
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json'
USER_NAME=bench
PASSWORD="bench-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

for tool in curl wrk python3 htpasswd; do
  command -v "$tool" >/dev/null || die "missing $tool (Debian: curl wrk python3 apache2-utils)"
done

if [[ -z "${BERTH_BIN:-}" ]]; then
  BERTH_BIN="$ROOT/target/release/berth"
  if [[ ! -x "$BERTH_BIN" ]]; then
    log "building berth (cargo build --release -p berth-cli)"
    (cd "$ROOT" && cargo build --release -p berth-cli) || die "cargo build failed"
  fi
fi
[[ -x "$BERTH_BIN" ]] || die "BERTH_BIN=$BERTH_BIN is not an executable"

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-auth-bench.XXXXXX")
declare -A PID=()
WATCHDOG=""
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$? name
  trap - EXIT INT TERM
  for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
  [[ -n "$WATCHDOG" ]] && stop_pid "$WATCHDOG"
  if ((KEEP)); then log "work folder kept: $WORK"; else rm -rf "$WORK"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" & sp=$!
  wait "$sp"
  echo "[bench] time limit of ${LIMIT}s reached, stopping" >&2
  kill -TERM $$
) &
WATCHDOG=$!

read -r PORT_OFF PORT_ON < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')

# --- servers -----------------------------------------------------------------------------
htpasswd -nbB "$USER_NAME" "$PASSWORD" | sed '/^$/d' >"$WORK/htpasswd"
cat >"$WORK/on.toml" <<EOF
log_level = "warn"
[storage.filesystem]
root = "$WORK/on-data"
[auth]
htpasswd = "$WORK/htpasswd"
token_ttl_secs = 3600
[[auth.rules]]
repositories = ["*"]
actions = ["*"]
who = ["user:$USER_NAME"]
EOF
cat >"$WORK/off.toml" <<EOF
log_level = "warn"
[storage.filesystem]
root = "$WORK/off-data"
EOF

start() {  # name port
  "$BERTH_BIN" serve --config "$WORK/$1.toml" --addr "127.0.0.1:$2" >"$WORK/$1.log" 2>&1 &
  PID[$1]=$!
  local i code
  for ((i = 0; i < 200; i++)); do
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$WORK/$1.log" >&2; die "$1 exited at start"; }
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$2/v2/" || true)
    [[ $code == 200 || $code == 401 ]] && return 0
    sleep 0.1
  done
  die "$1 not ready after 20 s"
}
start off "$PORT_OFF"
start on "$PORT_ON"

push() {  # port [curl auth args...]: one config blob and a manifest at bench/small:latest
  local port=$1 code digest size
  shift
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' >"$WORK/config.json"
  digest="sha256:$(sha256sum "$WORK/config.json" | cut -d' ' -f1)"
  size=$(stat -c %s "$WORK/config.json")
  code=$(curl -sS -o "$WORK/resp" -w '%{http_code}' "$@" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$WORK/config.json" "http://127.0.0.1:$port/v2/bench/small/blobs/uploads/?digest=$digest")
  [[ $code == 201 ]] || die "blob push on :$port answered $code: $(head -c 300 "$WORK/resp")"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[]}' \
    "$digest" "$size" >"$WORK/manifest.json"
  code=$(curl -sS -o "$WORK/resp" -w '%{http_code}' "$@" -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary @"$WORK/manifest.json" "http://127.0.0.1:$port/v2/bench/small/manifests/latest")
  [[ $code == 201 ]] || die "manifest push on :$port answered $code: $(head -c 300 "$WORK/resp")"
}
push "$PORT_OFF"
push "$PORT_ON" -u "$USER_NAME:$PASSWORD"

TOKEN=$(curl -sS -u "$USER_NAME:$PASSWORD" "http://127.0.0.1:$PORT_ON/token?service=berth&scope=repository:bench/small:pull" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])') || die "no token from the token endpoint"
BASIC="Basic $(printf '%s' "$USER_NAME:$PASSWORD" | base64 -w0)"

URL_OFF="http://127.0.0.1:$PORT_OFF/v2/bench/small/manifests/latest"
URL_ON="http://127.0.0.1:$PORT_ON/v2/bench/small/manifests/latest"
# Every side must answer 200 before it is measured; without credentials, auth-on answers 401.
check() {  # url [header]
  local code
  if [[ -n "${2:-}" ]]; then
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $ACCEPT" -H "$2" "$1")
  else
    code=$(curl -s -o /dev/null -w '%{http_code}' -H "Accept: $ACCEPT" "$1")
  fi
  echo "$code"
}
[[ $(check "$URL_OFF") == 200 ]] || die "GET $URL_OFF did not answer 200"
[[ $(check "$URL_ON" "Authorization: Bearer $TOKEN") == 200 ]] || die "GET $URL_ON with the token did not answer 200"
[[ $(check "$URL_ON" "Authorization: $BASIC") == 200 ]] || die "GET $URL_ON with basic auth did not answer 200"
[[ $(check "$URL_ON") == 401 ]] || die "GET $URL_ON without credentials did not answer 401"

run_wrk() {  # label url [header] -> requests/s ; raw output in $WORK/wrk-<label>.txt
  local label=$1 url=$2 header=${3:-} out rps non2xx errors
  out="$WORK/wrk-$label.txt"
  local args=(-t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DUR" --latency -H "Accept: $ACCEPT")
  [[ -n "$header" ]] && args+=(-H "$header")
  timeout -k 2 60 wrk "${args[@]}" "$url" >"$out" 2>&1 || die "wrk $label failed: $(cat "$out")"
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $5 }' "$out")
  errors=$(awk '/Socket errors:/ { s = 0; for (i = 4; i <= NF; i += 2) s += $i; print s }' "$out")
  [[ -n "$rps" ]] || die "wrk $label printed no rate: $(cat "$out")"
  [[ ${non2xx:-0} == 0 && ${errors:-0} == 0 ]] || die "wrk $label: ${non2xx:-0} non-2xx answers, ${errors:-0} socket errors"
  echo "$rps"
}

best() { printf '%s\n' "$@" | sort -g | tail -n 1; }
OFF=() ON=() BASIC_RUNS=()
for ((round = 1; round <= ROUNDS; round++)); do
  r=$(run_wrk "off-$round" "$URL_OFF"); OFF+=("$r"); log "round $round: auth off    $r req/s"
  r=$(run_wrk "token-$round" "$URL_ON" "Authorization: Bearer $TOKEN"); ON+=("$r"); log "round $round: token auth  $r req/s"
  r=$(run_wrk "basic-$round" "$URL_ON" "Authorization: $BASIC"); BASIC_RUNS+=("$r"); log "round $round: basic auth  $r req/s"
done
B_OFF=$(best "${OFF[@]}") B_ON=$(best "${ON[@]}") B_BASIC=$(best "${BASIC_RUNS[@]}")
RATIO=$(awk -v a="$B_ON" -v b="$B_OFF" 'BEGIN { printf "%.3f", a / b }')
RATIO_BASIC=$(awk -v a="$B_BASIC" -v b="$B_OFF" 'BEGIN { printf "%.3f", a / b }')
VERDICT=$(awk -v r="$RATIO" 'BEGIN { print (r >= 0.85 ? "met" : "MISSED") }')

mkdir -p "$ROOT/bench/results"
SUFFIX=""
((QUICK)) && SUFFIX="-quick"
RESULT="$ROOT/bench/results/auth-$(date +%Y%m%d-%H%M%S)$SUFFIX.txt"
{
  echo "berth manifest GET, auth off vs on: wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DUR, best of $ROUNDS (runs: off ${OFF[*]}; token ${ON[*]}; basic ${BASIC_RUNS[*]})"
  echo "berth: $("$BERTH_BIN" --version 2>/dev/null || echo "$BERTH_BIN"); load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-34s %12s %8s\n' "" "req/s" "ratio"
  printf '%-34s %12s %8s\n' "auth off" "$B_OFF" "1.000"
  printf '%-34s %12s %8s\n' "token auth (Bearer, cached)" "$B_ON" "$RATIO"
  printf '%-34s %12s %8s\n' "basic auth (bcrypt, cached)" "$B_BASIC" "$RATIO_BASIC"
  echo "target: token auth at most 15% slower (ratio >= 0.85): $VERDICT"
} | tee "$RESULT"
log "written to $RESULT"
