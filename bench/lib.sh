# shellcheck shell=bash disable=SC2034,SC2153,SC2154  # sourced: its globals belong to the caller
# bench/lib.sh — what bench/registry.sh and bench/registry-s3.sh share: the work folder, the
# traps that stop every server, the watchdog, and the client-side helpers (uploads, pulls,
# wrk runs). Sourced, not run. The caller sets, before sourcing: LIMIT (seconds), KEEP
# (0/1), BENCH (this folder), and defines log and die; and, before calling the helpers, SIZE,
# CHUNK_BYTES, CHUNK_MIB, PUSH_REPS, WRK_THREADS, WRK_CONNS, WRK_DUR, ACCEPT, OCI_MANIFEST.
# Servers it must stop go into PID[name]. Push helpers call `hook_point commit PORT` just
# before a chunked upload's final PUT (inside the timed part) and `hook_point pushed PORT`
# once a push's time is taken; it does nothing unless the caller redefines it, and it must
# not write to stdout (the push helpers' stdout is their time).

# --- work folder, cleanup, watchdog ------------------------------------------------------
DEADLINE=$(($(date +%s) + LIMIT))
WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-bench.XXXXXX")
SHM=/dev/shm
[[ -d $SHM && -w $SHM ]] || SHM=$WORK
declare -A PID=()   # server name -> pid
SAMPLER=""
WATCHDOG=""

stop_pid() {  # TERM, then KILL after 5 s
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
  [[ -n "$SAMPLER" ]] && stop_pid "$SAMPLER"
  for name in "${!PID[@]}"; do stop_pid "${PID[$name]}"; done
  [[ -n "$WATCHDOG" ]] && stop_pid "$WATCHDOG"
  rm -f "$SHM/berth-bench-warm.$$"
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

# --- helpers -----------------------------------------------------------------------------
now_ns() { date +%s%N; }
sha256_of() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }  # file, or - for stdin
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.6f", (b - a) / 1e9 }'; }
mbps() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.1f", n / s / 1e6 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
free_ports() {  # n -> n distinct free loopback ports, one a line
  python3 -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))' "$1"
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }  # user + system time of a process
CLK_TCK=$(getconf CLK_TCK)
rss_mib() { awk -v k="${2:-VmRSS}:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status"; }
# cap N: N seconds, or what is left before the deadline if that is less (at least 1)
cap() { local left=$((DEADLINE - $(date +%s))); ((left < 1)) && left=1; echo $((left < $1 ? left : $1)); }
# Blob transfers and uploads. No Expect: 100-continue, which costs a round trip.
curl_() { timeout -k 2 "$(cap 120)" curl -sS --max-time 120 -H 'Expect:' "$@"; }

wait_ready() {  # name url
  local name=$1 url=$2 i
  for ((i = 0; i < 200; i++)); do
    kill -0 "${PID[$name]}" 2>/dev/null || { tail -n 20 "$WORK/$name.log" >&2; die "$name exited at start"; }
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true) == 200 ]] && return 0
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2
  die "$name not ready after 20 s at $url"
}

absolute() {  # port location -> absolute URL
  case "$2" in
    http://*|https://*) printf '%s' "$2" ;;
    /*) printf 'http://127.0.0.1:%s%s' "$1" "$2" ;;
    *) die "unexpected Location: '$2'" ;;
  esac
}
with_digest() { if [[ $1 == *\?* ]]; then printf '%s&digest=%s' "$1" "$2"; else printf '%s?digest=%s' "$1" "$2"; fi; }

start_upload() {  # port repo -> upload URL on stdout
  local out code loc
  out=$(curl_ -o "$WORK/resp" -w '%{http_code} %header{location}' -X POST \
    "http://127.0.0.1:$1/v2/$2/blobs/uploads/") || die "POST upload on :$1 failed"
  read -r code loc <<<"$out"
  [[ $code == 202 ]] || die "POST /v2/$2/blobs/uploads/ on :$1 answered $code: $(head -c 300 "$WORK/resp")"
  absolute "$1" "$loc"
}

finish_upload() {  # url digest [file] ; PUT ?digest=, with the file as body if given
  local url code
  url=$(with_digest "$1" "$2")
  if [[ -n "${3:-}" ]]; then
    code=$(curl_ -o "$WORK/resp" -w '%{http_code}' -H 'Content-Type: application/octet-stream' -T "$3" "$url") \
      || die "PUT $url failed"
  else
    code=$(curl_ -o "$WORK/resp" -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' \
      --data-binary '' "$url") || die "PUT $url failed"
  fi
  [[ $code == 201 ]] || die "PUT ${url%%\?*}?digest=... answered $code: $(head -c 300 "$WORK/resp")"
}

check_blob() {  # port repo digest size
  local out
  out=$(curl -sS --max-time 30 -o /dev/null -I -w '%{http_code}' "http://127.0.0.1:$1/v2/$2/blobs/$3" -D "$WORK/head")
  [[ $out == 200 ]] || die "HEAD blob $3 in $2 on :$1 answered $out"
  grep -qi "^content-length: $4"$'\r'"\?$" "$WORK/head" || die "HEAD blob $3 on :$1: wrong Content-Length: $(grep -i content-length "$WORK/head")"
}

push_small() {  # port repo file -> monolithic POST + PUT of a small blob
  local url
  url=$(start_upload "$1" "$2")
  finish_upload "$url" "sha256:$(sha256_of "$3")" "$3"
}

# Monolithic push: POST, then one PUT ?digest= carrying the whole body (curl -T streams the
# file with a Content-Length; it does not buffer it). Prints seconds.
push_mono() {  # port repo file digest
  local t0 url
  warm_memory
  sync
  t0=$(now_ns)
  url=$(start_upload "$1" "$2")
  finish_upload "$url" "$4" "$3"
  secs_since "$t0"
  hook_point pushed "$1"
  check_blob "$1" "$2" "$4" "$SIZE"
}

# Chunked push: POST, one PATCH per 16 MiB chunk file of the folder (Content-Range:
# start-end, following the Location each answer gives), all over one keep-alive connection
# (patches.py), then PUT ?digest= with no body. Prints seconds: those patches.py measured from
# its POST to its last answer (not its own start), plus the PUT's.
push_chunked() {  # port repo folder digest
  local out patched url t1
  warm_memory
  sync
  out=$(timeout -k 2 "$(cap 300)" python3 "$BENCH/patches.py" "$1" "$2" "$3"/c.*) || die "chunked push on :$1 failed"
  read -r patched url <<<"$out"
  t1=$(now_ns)
  hook_point commit "$1"
  finish_upload "$url" "$4"
  awk -v p="$patched" -v a="$t1" -v b="$(now_ns)" 'BEGIN { printf "%.6f", p + (b - a) / 1e9 }'
  hook_point pushed "$1"
  check_blob "$1" "$2" "$4" "$SIZE"
}

pull_once() {  # url -> seconds (curl's time_total), body to /dev/null
  local out code size t
  out=$(timeout -k 2 "$(cap 120)" curl -sS --max-time 120 -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "$1") || die "GET $1 failed"
  read -r code size t <<<"$out"
  [[ $code == 200 && $size == "$SIZE" ]] || die "GET $1 answered $code with $size bytes (want 200, $SIZE)"
  echo "$t"
}

# On these virtual machines a page of memory the guest has not used yet costs a trip to
# the host: writing into such memory runs at ~300 MB/s, into memory used before at 1-3 GB/s.
# Before each push, fill and free SIZE + 256 MiB of tmpfs, so that every push writes into
# used memory and none gets the warm pages another step left behind.
warm_memory() {
  local f="$SHM/berth-bench-warm.$$"
  dd if=/dev/zero of="$f" bs=1M count=$((SIZE_MIB + 256)) status=none || die "cannot write $f"
  rm -f "$f"
}

run_wrk() {  # name script url -> "req_per_s errors" ; output kept in $WORK/wrk-<name>-<script>.txt
  local out rps n non2xx sockerr
  out="$WORK/wrk-$1-$(basename "$2" .lua).txt"
  BENCH_ACCEPT=$ACCEPT timeout -k 2 "$(cap 60)" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$WRK_DUR" --timeout 5s -s "$2" "$3" >"$out" 2>&1 \
    || die "wrk against $1 failed: $(cat "$out")"
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$out")
  n=$(awk '/ requests in / { print $1 }' "$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ { print $NF }' "$out")
  sockerr=$(awk '/Socket errors:/ { n = 0; for (i = 3; i <= NF; i++) n += $i; print n }' "$out")
  [[ -n "$rps" && ${n:-0} -gt 0 ]] || die "wrk against $1 completed no request: $(cat "$out")"
  echo "$rps $((${non2xx:-0} + ${sockerr:-0}))"
}

check_manifest() {  # port repo ref
  local code
  code=$(curl -sS --max-time 30 -o "$WORK/resp" -D "$WORK/head" -w '%{http_code}' -H "Accept: $ACCEPT" \
    "http://127.0.0.1:$1/v2/$2/manifests/$3")
  [[ $code == 200 ]] || die "GET manifest $2:$3 on :$1 answered $code: $(head -c 300 "$WORK/resp")"
  cmp -s "$WORK/resp" "$MANIFEST" || die "GET manifest $2:$3 on :$1 returned other bytes"
  code=$(curl -sS --max-time 30 -o /dev/null -I -w '%{http_code}' -H "Accept: $ACCEPT" "http://127.0.0.1:$1/v2/$2/manifests/$3")
  [[ $code == 200 ]] || die "HEAD manifest $2:$3 on :$1 answered $code"
}

push_manifest() {  # port repo tag
  local code
  code=$(curl -sS --max-time 30 -o "$WORK/resp" -w '%{http_code}' -X PUT -H "Content-Type: $OCI_MANIFEST" \
    --data-binary @"$MANIFEST" "http://127.0.0.1:$1/v2/$2/manifests/$3")
  [[ $code == 201 ]] || die "PUT manifest $2:$3 on :$1 answered $code: $(head -c 300 "$WORK/resp")"
}

# Called at fixed points of a push (see the header); callers that count requests redefine it.
hook_point() { :; }

# Every push gets bytes of its own, so no server ever finds the blob already stored.
# Monolithic pushes read www/blob<r> (blob1 is also the one pulled, and nginx serves it);
# chunked pushes read chunks<r>/c.NNNN, 16 MiB each.
make_blobs() {
  mkdir -p "$WORK/www"
  declare -ga MONO_FILE MONO_DIGEST CHUNK_DIR CHUNK_DIGEST
  log "work folder $WORK; generating $((2 * PUSH_REPS)) random blobs of ${SIZE_MIB} MiB"
  for ((r = 1; r <= PUSH_REPS; r++)); do
    MONO_FILE[r]="$WORK/www/blob$r"
    head -c "$SIZE" /dev/urandom >"${MONO_FILE[r]}"
    t0=$(now_ns)
    MONO_DIGEST[r]="sha256:$(sha256_of "${MONO_FILE[r]}")"
    ((r == 1)) && R[ceil.sha256]=$(mbps "$SIZE" "$(secs_since "$t0")")
    CHUNK_DIR[r]="$WORK/chunks$r"
    mkdir -p "${CHUNK_DIR[r]}"
    head -c "$SIZE" /dev/urandom | split -b "$CHUNK_BYTES" -d -a 4 - "${CHUNK_DIR[r]}/c."
    CHUNK_DIGEST[r]="sha256:$(cat "${CHUNK_DIR[r]}"/c.* | sha256_of -)"
  done
  NCHUNKS=$(find "${CHUNK_DIR[1]}" -name 'c.*' | wc -l)
}

# A small image: a 4 KiB layer, its config, and an OCI manifest ($MANIFEST) naming both.
make_image() {
  head -c 4096 /dev/urandom >"$WORK/layer"
  LAYER_DIGEST="sha256:$(sha256_of "$WORK/layer")"
  printf '{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$LAYER_DIGEST" >"$WORK/config"
  CONFIG_DIGEST="sha256:$(sha256_of "$WORK/config")"
  MANIFEST="$WORK/manifest"
  printf '{"schemaVersion":2,"mediaType":"%s","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%d},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%d}]}' \
    "$OCI_MANIFEST" "$CONFIG_DIGEST" "$(stat -c %s "$WORK/config")" "$LAYER_DIGEST" 4096 >"$MANIFEST"
}
