#!/usr/bin/env bash
# bench/registry.sh — berth's registry against CNCF distribution 2.8 (and nginx for pulls),
# side by side on this machine, in one run. A benchmark, not a test: it fails only when a
# server answers wrongly, never because it is slow.
#
# Measures, for each server: 1 GiB monolithic blob push (POST, then one PUT ?digest= with
# the body), 1 GiB chunked push (16 MiB PATCHes with Content-Range, then PUT ?digest=),
# 1 GiB blob pull (also from nginx, sendfile on), manifest GET by tag under
# `wrk -t2 -c64 -d10s` and HEAD under `ab -k -i -c64 -t10` (wrk cannot time HEAD), pushing
# 10,000 tags of one manifest (wrk, 2 threads, 64 connections), listing those tags (whole
# list, and paged with n=100), and resident memory (idle after start, peak during the load
# runs, lifetime peak). Prints a table with berth/distribution ratios and the project's
# targets, and writes it to bench/results/registry-<date>.txt (git-ignored).
#
# Usage: bench/registry.sh [--quick] [--dist-vs-dist] [--keep]
#   --quick          256 MiB blobs, 1,000 tags, 5 s wrk runs (a fast check of the harness)
#   --dist-vs-dist   run distribution on the "berth" side too: every ratio should be ~1.0,
#                    which shows the noise of this machine (needs no berth binary)
#   --keep           keep the work folder (data, configs, server logs) and print its path
# Environment:
#   BERTH_BIN        berth binary (default target/release/berth, built if missing)
#   BERTH_SERVE_ARGS extra arguments for `berth serve` (word-split)
#   BENCH_DIR        parent of the work folder (default $TMPDIR or /tmp); needs ~13 GiB free
#   BENCH_LIMIT      seconds the run may take, not counting a build (default 580)
#
# Every server binds 127.0.0.1 only and is stopped on exit (trap). Every client runs under
# `timeout` set to what is left of BENCH_LIMIT, and a watchdog stops the script at the limit.
set -euo pipefail

QUICK=0 DVD=0 KEEP=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --dist-vs-dist) DVD=1 ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
if ((QUICK)); then SIZE_MIB=256 TAGS=1000 WRK_DUR=5s; else SIZE_MIB=1024 TAGS=10000 WRK_DUR=10s; fi
CHUNK_MIB=16
PAGE=100
WRK_THREADS=2 WRK_CONNS=64
PULL_REPS=5
PUSH_REPS=2
LIMIT=${BENCH_LIMIT:-580}
DIST_BIN=/usr/bin/docker-registry
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
START_TIME=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# The peers and clients come from Debian's packages; install the missing ones (needs root).
missing=()
for pair in curl:curl wrk:wrk ab:apache2-utils nginx:nginx-light "$DIST_BIN":docker-registry; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    die "could not install ${missing[*]} (Debian: curl wrk apache2-utils nginx-light docker-registry)"
fi
for tool in curl wrk ab nginx python3 openssl split awk "$DIST_BIN"; do
  command -v "$tool" >/dev/null || die "missing $tool (Debian: curl wrk apache2-utils nginx-light docker-registry)"
done

# --- the berth binary --------------------------------------------------------------------
A=berth
if ((DVD)); then
  A=dist-2
else
  if [[ -z "${BERTH_BIN:-}" ]]; then
    BERTH_BIN="$ROOT/target/release/berth"
    if [[ ! -x "$BERTH_BIN" ]]; then
      log "building berth (cargo build --release -p berth-cli)"
      (cd "$ROOT" && cargo build --release -p berth-cli) || die "cargo build failed"
    fi
  fi
  [[ -x "$BERTH_BIN" ]] || die "BERTH_BIN=$BERTH_BIN is not an executable"
fi
B=distribution

# --- work folder, cleanup, watchdog, shared helpers ----------------------------------
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"

# --- helpers of this benchmark ---------------------------------------------------------
start_distribution() {  # name port
  local name=$1 port=$2
  mkdir -p "$WORK/$name-data"
  cat >"$WORK/$name.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/$name-data
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  "$DIST_BIN" serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  wait_ready "$name" "http://127.0.0.1:$port/v2/"
}

start_berth() {  # name port
  local name=$1 port=$2
  mkdir -p "$WORK/$name-data"
  local args=(--addr "127.0.0.1:$port" --root "$WORK/$name-data" --log-level warn)
  # shellcheck disable=SC2206
  args+=(${BERTH_SERVE_ARGS:-})
  "$BERTH_BIN" serve "${args[@]}" --print-config >"$WORK/$name.toml" 2>&1 || die "berth serve --print-config failed: $(cat "$WORK/$name.toml")"
  "$BERTH_BIN" serve "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  wait_ready "$name" "http://127.0.0.1:$port/v2/"
}

start_nginx() {  # port; serves $WORK/www with sendfile, /ok answers 200 from memory
  local port=$1
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
daemon off;
user root root;
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  default_type application/octet-stream;
  server {
    listen 127.0.0.1:$port;
    root $WORK/www;
    location = /ok { return 200 "{}"; }
    location = /sink { client_max_body_size 0; return 201; }
  }
}
EOF
  nginx -e "$WORK/nginx.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx.out" 2>&1 &
  PID[nginx]=$!
  wait_ready nginx "http://127.0.0.1:$port/ok"
}

sample_rss() {  # pid outfile: writes the highest VmRSS (MiB) seen, every 100 ms
  local max=0 cur
  while kill -0 "$1" 2>/dev/null; do
    cur=$(rss_mib "$1") || break
    if awk -v a="$cur" -v b="$max" 'BEGIN { exit !(a > b) }'; then max=$cur; echo "$max" >"$2"; fi
    sleep 0.1
  done
}

# HEAD load: wrk cannot measure HEAD (its parser waits for the body that the Content-Length
# announces and a HEAD answer never carries, so every request times out). ab sends HEAD
# with -i; it runs one thread, keep-alive (-k), same concurrency and duration.
run_ab_head() {  # name url -> "req_per_s errors" ; output kept in $WORK/ab-<name>-head.txt
  local out="$WORK/ab-$1-head.txt" rps n failed non2xx
  timeout -k 2 "$(cap 60)" ab -q -r -k -i -c "$WRK_CONNS" -t "${WRK_DUR%s}" -n 100000000 -H "Accept: $ACCEPT" "$2" >"$out" 2>&1 \
    || die "ab against $1 failed: $(cat "$out")"
  rps=$(awk '/^Requests per second:/ { print $4 }' "$out")
  n=$(awk '/^Complete requests:/ { print $3 }' "$out")
  failed=$(awk '/^Failed requests:/ { print $3 }' "$out")
  non2xx=$(awk '/^Non-2xx responses:/ { print $3 }' "$out")
  [[ -n "$rps" && ${n:-0} -gt 0 ]] || die "ab against $1 completed no request: $(cat "$out")"
  echo "$rps $((${failed:-0} + ${non2xx:-0}))"
}

# Manifest GET (wrk) and HEAD (ab) by tag, with VmRSS sampled throughout.
bench_manifest() {  # name port
  local name=$1 url="http://127.0.0.1:$2/v2/bench/small/manifests/latest" r
  SAMPLER_OUT="$WORK/rss-$name"
  echo 0 >"$SAMPLER_OUT"
  sample_rss "${PID[$name]}" "$SAMPLER_OUT" &
  SAMPLER=$!
  r=$(run_wrk "$name" "$BENCH/lua/manifest-get.lua" "$url"); R[$name.get]=${r% *}; R[$name.get_err]=${r#* }
  r=$(run_ab_head "$name" "$url"); R[$name.head]=${r% *}; R[$name.head_err]=${r#* }
  stop_pid "$SAMPLER"; SAMPLER=""
  R[$name.rss_load]=$(cat "$SAMPLER_OUT")
  log "$name: manifest GET ${R[$name.get]} req/s (${R[$name.get_err]} errors), HEAD ${R[$name.head]} req/s (${R[$name.head_err]} errors), peak RSS ${R[$name.rss_load]} MiB"
}

# Push $TAGS tags of one manifest with wrk (see lua/tag-push.lua), then verify the count.
bench_tags() {  # name port
  local name=$1 port=$2 out="$WORK/wrk-$1-tags.txt" line dur puts errs first
  rm -f "$WORK/tags-done"
  BENCH_TAGS=$TAGS BENCH_THREADS=$WRK_THREADS BENCH_REPO=bench/tags BENCH_MANIFEST=$MANIFEST \
    BENCH_MANIFEST_TYPE=$OCI_MANIFEST BENCH_DONE="$WORK/tags-done" timeout -k 2 "$(cap 140)" wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d120s --timeout 10s \
    -s "$BENCH/lua/tag-push.lua" "http://127.0.0.1:$port" >"$out" 2>&1 || die "wrk tag push against $name failed: $(cat "$out")"
  line=$(grep '^BENCH ' "$out") || die "tag push on $name: no summary: $(cat "$out")"
  dur=$(sed -n 's/.*elapsed_us=\([0-9]*\).*/\1/p' <<<"$line")
  puts=$(sed -n 's/.* puts=\([0-9]*\).*/\1/p' <<<"$line")
  errs=$(sed -n 's/.*put_errors=\([0-9]*\).*/\1/p' <<<"$line")
  first=$(sed -n 's/.*first_error=\([0-9]*\).*/\1/p' <<<"$line")
  ((puts == TAGS)) || die "tag push on $name: $puts of $TAGS PUTs answered within 120 s (wrk: $(tail -n 3 "$out" | tr '\n' ' '))"
  ((errs == 0)) || die "tag push on $name: $errs PUTs failed, first with HTTP $first"
  R[$name.tags]=$(awk -v n="$TAGS" -v us="$dur" 'BEGIN { printf "%.0f", n / (us / 1e6) }')
  log "$name: pushed $TAGS tags in $(awk -v us="$dur" 'BEGIN { printf "%.2f", us / 1e6 }') s (${R[$name.tags]} tags/s)"
}

bench_list() {  # name port
  local name=$1 out="$WORK/list-$1.txt" k
  timeout -k 2 "$(cap 120)" python3 "$BENCH/taglist.py" --port "$2" --repo bench/tags --expect "$TAGS" --page "$PAGE" \
    --budget "$LIST_BUDGET" >"$out" 2>&1 || die "tags list on $name: $(cat "$out")"
  for k in full_median_ms full_p90_ms full_requests page_median_ms page_p90_ms walk_median_ms paged_supported paged_requests_per_walk full_bytes; do
    R[$name.$k]=$(sed -n "s/^$k=//p" "$out")
  done
  log "$name: tags list full ${R[$name.full_median_ms]} ms (median of ${R[$name.full_requests]}), page n=$PAGE ${R[$name.page_median_ms]} ms, paging supported: ${R[$name.paged_supported]}"
}

# --- data --------------------------------------------------------------------------------
SIZE=$((SIZE_MIB * 1024 * 1024))
CHUNK_BYTES=$((CHUNK_MIB * 1024 * 1024))
LIST_BUDGET=$((QUICK ? 5 : 10))
declare -A R=()
make_blobs
PULL_DIGEST=${MONO_DIGEST[1]}

make_image

# --- servers -----------------------------------------------------------------------------
declare -A PORT=()
{ read -r "PORT[$A]"; read -r "PORT[$B]"; read -r "PORT[nginx]"; } < <(free_ports 3)
if ((DVD)); then start_distribution "$A" "${PORT[$A]}"; else start_berth "$A" "${PORT[$A]}"; fi
start_distribution "$B" "${PORT[$B]}"
start_nginx "${PORT[nginx]}"
sleep 2
for s in "$A" "$B"; do R[$s.rss_idle]=$(rss_mib "${PID[$s]}"); done
log "servers up: $A :${PORT[$A]} (pid ${PID[$A]}, ${R[$A.rss_idle]} MiB), $B :${PORT[$B]} (pid ${PID[$B]}, ${R[$B.rss_idle]} MiB), nginx :${PORT[nginx]}"

# --- ceilings: what the client and the disk do with no registry in the way ----------------
sync
t0=$(now_ns)
code=$(curl_ -o /dev/null -w '%{http_code}' -T "${MONO_FILE[1]}" "http://127.0.0.1:${PORT[nginx]}/sink") \
  || die "upload to nginx failed"
[[ $code == 201 ]] || die "upload to nginx /sink answered $code"
R[ceil.upload]=$(mbps "$SIZE" "$(secs_since "$t0")")
for n in 1 2; do
  sync
  t0=$(now_ns)
  dd if="${MONO_FILE[1]}" of="$WORK/ddtest" bs=1M status=none
  R[ceil.dd$n]=$(mbps "$SIZE" "$(secs_since "$t0")")
  rm -f "$WORK/ddtest"
done
log "ceilings: curl -T into nginx ${R[ceil.upload]} MB/s, dd into the work folder ${R[ceil.dd1]} then ${R[ceil.dd2]} MB/s, sha256 ${R[ceil.sha256]} MB/s"

# --- 1. monolithic push, 2. chunked push: PUSH_REPS each, order alternating, best kept ----
best() { awk -v a="${1:-0}" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
for kind in mono chunked; do
  for ((r = 1; r <= PUSH_REPS; r++)); do
    order=("$A" "$B")
    ((r % 2)) || order=("$B" "$A")
    for s in "${order[@]}"; do
      c0=$(cpu_ticks "${PID[$s]}")
      if [[ $kind == mono ]]; then
        t=$(push_mono "${PORT[$s]}" "bench/mono$r" "${MONO_FILE[r]}" "${MONO_DIGEST[r]}")
      else
        t=$(push_chunked "${PORT[$s]}" "bench/chunked$r" "${CHUNK_DIR[r]}" "${CHUNK_DIGEST[r]}")
      fi
      v=$(mbps "$SIZE" "$t")
      cpu=$(awk -v a="$c0" -v b="$(cpu_ticks "${PID[$s]}")" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / hz }')
      R[$s.$kind]=$(best "${R[$s.$kind]:-}" "$v")
      R[$s.${kind}_all]="${R[$s.${kind}_all]:-}${R[$s.${kind}_all]:+, }$v ($cpu cpu-s)"
      log "$s: $kind push ${SIZE_MIB} MiB$([[ $kind == chunked ]] && echo " ($NCHUNKS x ${CHUNK_MIB} MiB)"), try $r: $t s ($v MB/s, server used $cpu cpu-s)"
    done
  done
done

# --- 3. pull -----------------------------------------------------------------------------
# One warm-up each, then PULL_REPS rounds of berth, distribution, nginx in turn (so a spell
# of load from elsewhere hits all three alike); the median of each counts.
declare -A URL=([$A]="http://127.0.0.1:${PORT[$A]}/v2/bench/mono1/blobs/$PULL_DIGEST"
  [$B]="http://127.0.0.1:${PORT[$B]}/v2/bench/mono1/blobs/$PULL_DIGEST" [nginx]="http://127.0.0.1:${PORT[nginx]}/blob1")
for s in "$A" "$B" nginx; do pull_once "${URL[$s]}" >/dev/null; : >"$WORK/pull-$s"; done
for ((i = 0; i < PULL_REPS; i++)); do
  for s in "$A" "$B" nginx; do pull_once "${URL[$s]}" >>"$WORK/pull-$s"; done
done
for s in "$A" "$B" nginx; do
  t=$(median <"$WORK/pull-$s")
  R[$s.pull]=$(mbps "$SIZE" "$t")
  log "$s: pull ${SIZE_MIB} MiB in $t s (${R[$s.pull]} MB/s, median of $PULL_REPS)"
done

# --- 4. manifest GET / HEAD, 7. RSS under load -------------------------------------------
for s in "$A" "$B"; do
  for repo in bench/small bench/tags; do
    push_small "${PORT[$s]}" "$repo" "$WORK/config"
    push_small "${PORT[$s]}" "$repo" "$WORK/layer"
  done
  push_manifest "${PORT[$s]}" bench/small latest
  check_manifest "${PORT[$s]}" bench/small latest
done
for s in "$A" "$B"; do bench_manifest "$s" "${PORT[$s]}"; done
r=$(run_wrk nginx "$BENCH/lua/manifest-get.lua" "http://127.0.0.1:${PORT[nginx]}/ok"); R[nginx.get]=${r% *}
r=$(run_ab_head nginx "http://127.0.0.1:${PORT[nginx]}/ok"); R[nginx.head]=${r% *}
log "nginx: 2-byte answer from memory, GET ${R[nginx.get]} req/s (wrk), HEAD ${R[nginx.head]} req/s (ab): the ceiling of each client here"

# --- 5. tag pushes, 6. tags list ---------------------------------------------------------
for s in "$A" "$B"; do bench_tags "$s" "${PORT[$s]}"; done
for s in "$A" "$B"; do bench_list "$s" "${PORT[$s]}"; done
for s in "$A" "$B"; do
  R[$s.rss_end]=$(rss_mib "${PID[$s]}")
  R[$s.rss_hwm]=$(rss_mib "${PID[$s]}" VmHWM)
done

# --- report ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
# verdict value op threshold -> PASS/MISS
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { if (v !~ /^[0-9.]+$/) { print "-"; exit }
  ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print ok ? "PASS" : "MISS" }'; }
SUFFIX=""
((QUICK)) && SUFFIX+=-quick
((DVD)) && SUFFIX+=-dist-vs-dist
RESULTS="$BENCH/results/registry-$(date +%Y%m%d-%H%M%S)$SUFFIX.txt"
mkdir -p "$BENCH/results"
{
  echo "berth registry benchmark — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "mode: $( ((QUICK)) && echo quick || echo full): blobs ${SIZE_MIB} MiB, chunks ${CHUNK_MIB} MiB, pushes best of $PUSH_REPS, $TAGS tags, wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DUR, pulls median of $PULL_REPS"
  echo "load average at start: $LOAD_START (other work on this machine skews every figure)"
  echo "machine: $(nproc) cpus ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), work folder on $(df --output=fstype "$WORK" | tail -n 1)"
  if ((DVD)); then echo "$A: a second $("$DIST_BIN" --version | awk '{ print $NF }') distribution (calibration run: ratios should be ~1.00)"
  else echo "$A: $BERTH_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit'), built $(date -r "$BERTH_BIN" '+%Y-%m-%d %H:%M')) serve --log-level warn ${BERTH_SERVE_ARGS:-}; fsync $(awk '$1 == "fsync" { print $3 }' "$WORK/$A.toml")"; fi
  echo "$B: $("$DIST_BIN" --version), filesystem driver, inmemory blob descriptor cache, access log off"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //'), sendfile on; clients: curl $(curl --version | awk 'NR == 1 { print $2 }'), wrk, ab $(ab -V | awk 'NR == 1 { print $5 }'), python3 (http.client for the tags list, patches.py for the chunked push: one keep-alive connection, sendfile)"
  echo "MB = 10^6 bytes, MiB = 2^20 bytes. ratio = $A / $B (for ms and MiB rows lower is better)."
  echo
  fmt='%-38s %10s %13s %9s %8s  %-16s %s\n'
  # shellcheck disable=SC2059
  printf "$fmt" "metric" "$A" "$B" "nginx" "ratio" "target" "result"
  printf '%s\n' "$(printf '%.0s-' {1..106})"
  row() {  # label a b nginx ratio target result
    # shellcheck disable=SC2059
    printf "$fmt" "$@"
  }
  x=$(ratio "${R[$A.mono]}" "${R[$B.mono]}")
  row "monolithic push ${SIZE_MIB} MiB, MB/s *" "${R[$A.mono]}" "${R[$B.mono]}" "" "$x" ">= 3x dist" "$(verdict "$x" '>=' 3)"
  x=$(ratio "${R[$A.chunked]}" "${R[$B.chunked]}")
  row "chunked push (${CHUNK_MIB} MiB PATCH), MB/s *" "${R[$A.chunked]}" "${R[$B.chunked]}" "" "$x" ">= 4x dist" "$(verdict "$x" '>=' 4)"
  x=$(ratio "${R[$A.pull]}" "${R[$B.pull]}"); n=$(ratio "${R[$A.pull]}" "${R[nginx.pull]}")
  row "blob pull ${SIZE_MIB} MiB, MB/s" "${R[$A.pull]}" "${R[$B.pull]}" "${R[nginx.pull]}" "$x" ">= 0.90x nginx" "$(verdict "$n" '>=' 0.9) ($A/nginx $n)"
  x=$(ratio "${R[$A.get]}" "${R[$B.get]}")
  row "manifest GET by tag (wrk), req/s" "${R[$A.get]}" "${R[$B.get]}" "${R[nginx.get]}" "$x" ">= 10x dist" \
    "$(verdict "$x" '>=' 10)$( ((R[$A.get_err] + R[$B.get_err])) && echo " (errors: $A ${R[$A.get_err]}, $B ${R[$B.get_err]})")"
  x=$(ratio "${R[$A.head]}" "${R[$B.head]}")
  row "manifest HEAD by tag (ab), req/s" "${R[$A.head]}" "${R[$B.head]}" "${R[nginx.head]}" "$x" ">= 10x dist" \
    "$(verdict "$x" '>=' 10)$( ((R[$A.head_err] + R[$B.head_err])) && echo " (errors: $A ${R[$A.head_err]}, $B ${R[$B.head_err]})")"
  x=$(ratio "${R[$A.tags]}" "${R[$B.tags]}")
  row "tag push ($TAGS tags), tags/s" "${R[$A.tags]}" "${R[$B.tags]}" "" "$x" ">= 10x dist" "$(verdict "$x" '>=' 10)"
  x=$(ratio "${R[$A.full_median_ms]}" "${R[$B.full_median_ms]}")
  row "tags list, all $TAGS, ms (median)" "${R[$A.full_median_ms]}" "${R[$B.full_median_ms]}" "" "$x" "< 5 ms" "$(verdict "${R[$A.full_median_ms]}" '<' 5)"
  pa=$( ((R[$A.paged_supported])) && echo "${R[$A.page_median_ms]}" || echo "no paging")
  pb=$( ((R[$B.paged_supported])) && echo "${R[$B.page_median_ms]}" || echo "no paging")
  x=$( ((R[$A.paged_supported] && R[$B.paged_supported])) && ratio "$pa" "$pb" || echo "-")
  row "tags list, page n=$PAGE, ms (median)" "$pa" "$pb" "" "$x" "< 5 ms" "$(verdict "$pa" '<' 5)"
  wa=$( ((R[$A.paged_supported])) && echo "${R[$A.walk_median_ms]}" || echo "-")
  wb=$( ((R[$B.paged_supported])) && echo "${R[$B.walk_median_ms]}" || echo "-")
  row "tags list, walk all pages, ms" "$wa" "$wb" "" "$( ((R[$A.paged_supported] && R[$B.paged_supported])) && ratio "$wa" "$wb" || echo "-")" "" ""
  x=$(ratio "${R[$A.rss_idle]}" "${R[$B.rss_idle]}")
  row "RSS idle after start, MiB" "${R[$A.rss_idle]}" "${R[$B.rss_idle]}" "" "$x" "< 20 MB" "$(verdict "${R[$A.rss_idle]}" '<' 20)"
  row "RSS peak under GET/HEAD load, MiB" "${R[$A.rss_load]}" "${R[$B.rss_load]}" "" "$(ratio "${R[$A.rss_load]}" "${R[$B.rss_load]}")" "" ""
  row "RSS at end, MiB" "${R[$A.rss_end]}" "${R[$B.rss_end]}" "" "$(ratio "${R[$A.rss_end]}" "${R[$B.rss_end]}")" "" ""
  row "RSS lifetime peak (VmHWM), MiB" "${R[$A.rss_hwm]}" "${R[$B.rss_hwm]}" "" "$(ratio "${R[$A.rss_hwm]}" "${R[$B.rss_hwm]}")" "" ""
  echo
  echo "* best of $PUSH_REPS pushes, each of other bytes, order alternating. Every try, MB/s (cpu seconds the server used):"
  echo "  monolithic: $A ${R[$A.mono_all]}; $B ${R[$B.mono_all]}"
  echo "  chunked:    $A ${R[$A.chunked_all]}; $B ${R[$B.chunked_all]}"
  echo "ceilings of this machine in this run (no registry in the way):"
  echo "  upload: curl -T of the blob into nginx, body discarded  ${R[ceil.upload]} MB/s"
  echo "  write:  dd of the blob into the work folder, bs=1M, twice ${R[ceil.dd1]} MB/s, then ${R[ceil.dd2]} MB/s"
  echo "  hash:   openssl dgst -sha256 of the blob                 ${R[ceil.sha256]} MB/s"
  echo "  nginx on the manifest rows: a 2-byte answer from memory, the most each client gets from a server here."
  echo "HEAD runs under ab -k -i (one thread): wrk cannot time HEAD. Both clients share the 2 cpus with the server."
  if ((QUICK)); then echo "quick mode: the targets are for 1 GiB blobs and 10,000 tags; read these results as a check of the harness."; fi
  echo "run took $(($(date +%s) - START_TIME)) s"
} | tee "$RESULTS"
log "results written to ${RESULTS#"$ROOT"/}"
