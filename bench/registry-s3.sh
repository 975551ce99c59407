#!/usr/bin/env bash
# bench/registry-s3.sh — berth's registry on S3 storage against CNCF distribution 2.8.2 on its
# s3 (s3aws) driver, both on one s3s-fs server (separate buckets), side by side in one run.
# A benchmark, not a test: it fails only when a server answers wrongly, never because it is
# slow.
#
# Measures, for each registry: 1 GiB monolithic blob push (POST, one PUT ?digest= with the
# body), 1 GiB chunked push (16 MiB PATCHes, then PUT ?digest=; the final PUT, which is the
# commit, is also timed alone), 1 GiB blob pull through the registry and with the registry's
# redirect to a presigned S3 URL (curl -L), manifest GET by tag under `wrk -t2 -c64 -d10s`,
# and the S3 requests each push and each manifest GET costs, by operation (berth: its
# /metrics; distribution: bench/s3shim.py, which it talks through). The ceiling is the S3
# server itself: the AWS CLI's multipart upload of the same bytes, and curl of a presigned
# URL of the object. Prints a table with berth/distribution and berth/S3 ratios and the
# project's targets, and writes it to bench/results/registry-s3-<date>.txt (git-ignored).
#
# Usage: bench/registry-s3.sh [--quick] [--keep]
#   --quick          256 MiB blobs, 5 s wrk runs (a fast check of the harness)
#   --keep           keep the work folder (S3 data, configs, server logs) and print its path
# Environment:
#   BERTH_BIN        berth binary (default target/release/berth, built if missing); copied
#                    into the work folder at start, so a rebuild during the run is harmless
#   BERTH_SERVE_ARGS extra arguments for `berth serve` (word-split)
#   S3S_FS           s3s-fs binary (default ~/.cargo/bin/s3s-fs; install it with
#                    `cargo install s3s-fs@0.14.1 --locked --features binary`)
#   BENCH_DIR        parent of the work folder (default $TMPDIR or /tmp); needs ~16 GiB free
#   BENCH_LIMIT      seconds the run may take, not counting a build (default 1200; a full run
#                    took 800 s at a load average of 7-10)
#
# Every server binds 127.0.0.1 only and is stopped on exit (trap). Every client runs under
# `timeout` set to what is left of BENCH_LIMIT, and a watchdog stops the script at the limit.
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
BENCH="$ROOT/bench"
if ((QUICK)); then SIZE_MIB=256 WRK_DUR=5s PULL_REPS=3; else SIZE_MIB=1024 WRK_DUR=10s PULL_REPS=5; fi
CHUNK_MIB=16
PART_MIB=16          # berth's part_size_mib, distribution's chunksize, the AWS CLI's part size
WRK_THREADS=2 WRK_CONNS=64
PUSH_REPS=2
LIMIT=${BENCH_LIMIT:-1200}
DIST_BIN=/usr/bin/docker-registry
S3S_FS=${S3S_FS:-$HOME/.cargo/bin/s3s-fs}
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
START_TIME=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
# Throwaway keys of this run's S3 server (it listens on 127.0.0.1 only and dies with the run).
S3_KEY=bench$RANDOM$RANDOM S3_SECRET=$(openssl rand -hex 16)

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# --- tools -------------------------------------------------------------------------------
missing=()
for pair in curl:curl wrk:wrk "$DIST_BIN":docker-registry; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    die "could not install ${missing[*]} (Debian: curl wrk docker-registry)"
fi
if ! command -v aws >/dev/null; then
  log "installing the AWS CLI (pip install awscli)"
  python3 -m pip install -q awscli || die "could not install the AWS CLI (pip install awscli)"
fi
for tool in curl wrk aws python3 openssl split awk "$DIST_BIN"; do
  command -v "$tool" >/dev/null || die "missing $tool (Debian: curl wrk docker-registry; pip: awscli)"
done
[[ -x "$S3S_FS" ]] || die "no s3s-fs at $S3S_FS: cargo install s3s-fs@0.14.1 --locked --features binary"

# --- the berth binary --------------------------------------------------------------------
if [[ -z "${BERTH_BIN:-}" ]]; then
  BERTH_BIN="$ROOT/target/release/berth"
  if [[ ! -x "$BERTH_BIN" ]]; then
    log "building berth (cargo build --release -p berth-cli)"
    (cd "$ROOT" && cargo build --release -p berth-cli) || die "cargo build failed"
  fi
fi
[[ -x "$BERTH_BIN" ]] || die "BERTH_BIN=$BERTH_BIN is not an executable"
BERTH_BUILT=$(date -r "$BERTH_BIN" '+%Y-%m-%d %H:%M')

# --- work folder, cleanup, watchdog, shared helpers ----------------------------------------
# shellcheck source=bench/lib.sh
source "$BENCH/lib.sh"
cp "$BERTH_BIN" "$WORK/berth" || die "cannot copy $BERTH_BIN"
BERTH=$WORK/berth

# --- helpers of this benchmark -----------------------------------------------------------
A=berth B=distribution
declare -A NAME_OF_PORT=()   # port -> server name, for the push hooks

wait_line() {  # name file regex -> first match of regex in file, within 20 s
  local i m
  for ((i = 0; i < 200; i++)); do
    kill -0 "${PID[$1]}" 2>/dev/null || { tail -n 20 "$2" >&2; die "$1 exited at start"; }
    m=$(grep -o -m1 -E "$3" "$2" || true)
    [[ -n "$m" ]] && { echo "$m"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$2" >&2
  die "$1 printed no '$3' in 20 s"
}

start_s3() {  # the S3 server, with one bucket (folder) per client
  mkdir -p "$WORK/s3/berth" "$WORK/s3/dist" "$WORK/s3/ceiling"
  RUST_LOG=s3s_fs=info "$S3S_FS" --host 127.0.0.1 --port 0 --access-key "$S3_KEY" --secret-key "$S3_SECRET" \
    "$WORK/s3" >"$WORK/s3s-fs.log" 2>&1 &
  PID[s3s-fs]=$!
  S3_PORT=$(wait_line s3s-fs "$WORK/s3s-fs.log" 'running at http://127\.0\.0\.1:[0-9]+' | sed 's/.*://')
}

start_shim() {
  python3 "$BENCH/s3shim.py" --upstream "$S3_PORT" >"$WORK/shim.log" 2>&1 &
  PID[shim]=$!
  SHIM_PORT=$(wait_line shim "$WORK/shim.log" 'listening on 127\.0\.0\.1:[0-9]+' | sed 's/.*://')
}

start_berth_s3() {  # name port redirect(true|false)
  local name=$1 port=$2
  cat >"$WORK/$name.toml" <<EOF
addr = "127.0.0.1:$port"
log_level = "warn"

[storage.s3]
bucket = "berth"
endpoint = "http://127.0.0.1:$S3_PORT"
path_style = true
access_key_id = "$S3_KEY"
secret_access_key = "$S3_SECRET"
redirect = $3
part_size_mib = $PART_MIB
EOF
  local args=(-c "$WORK/$name.toml")
  # shellcheck disable=SC2206
  args+=(${BERTH_SERVE_ARGS:-})
  "$BERTH" serve "${args[@]}" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  NAME_OF_PORT[$port]=$name
  wait_ready "$name" "http://127.0.0.1:$port/v2/"
}

# distribution reaches S3 through the shim (see s3shim.py: s3s-fs lacks the multipart
# listings distribution's driver needs). AWS_CA_BUNDLE, if set, makes aws-sdk-go 1.x refuse
# to start ("unsupported transport"), so it is removed from distribution's environment.
start_distribution_s3() {  # name port redirect(true|false)
  local name=$1 port=$2 disable=true
  [[ $3 == true ]] && disable=false
  cat >"$WORK/$name.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    region: us-east-1
    bucket: dist
    regionendpoint: http://127.0.0.1:$SHIM_PORT
    accesskey: $S3_KEY
    secretkey: $S3_SECRET
    secure: false
    v4auth: true
    chunksize: $((PART_MIB * 1024 * 1024))
  redirect:
    disable: $disable
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
  env -u AWS_CA_BUNDLE "$DIST_BIN" serve "$WORK/$name.yml" >"$WORK/$name.log" 2>&1 &
  PID[$name]=$!
  NAME_OF_PORT[$port]=$name
  wait_ready "$name" "http://127.0.0.1:$port/v2/"
}

# The AWS CLI, with a config of this run only ($WORK/aws-config, or the file AWS_CFG names):
# parts of PART_MIB, its default 10 requests at once, checksums only where S3 requires them
# (as berth sends them).
aws_() {
  env -u AWS_CA_BUNDLE -u AWS_PROFILE AWS_CONFIG_FILE="${AWS_CFG:-$WORK/aws-config}" AWS_SHARED_CREDENTIALS_FILE="$WORK/aws-credentials" \
    AWS_ACCESS_KEY_ID="$S3_KEY" AWS_SECRET_ACCESS_KEY="$S3_SECRET" AWS_DEFAULT_REGION=us-east-1 \
    timeout -k 2 "$(cap 300)" aws "$@"
}

# S3 requests a registry sent so far, "operation count" a line: berth's from its /metrics,
# distribution's from the shim it talks through.
snap_counts() {  # name outfile
  case "$1" in
    berth*) curl -sS --max-time 10 "http://127.0.0.1:${PORT[$1]}/metrics" |
      sed -n 's/^berth_storage_requests_total{operation="\([A-Za-z0-9]*\)"} \([0-9]*\).*/\1 \2/p' >"$2" ||
      die "GET /metrics on $1 failed" ;;
    *) curl -sS --max-time 10 "http://127.0.0.1:$SHIM_PORT/__shim/counts" | awk '{ print $1, $2 }' >"$2" ||
      die "GET /__shim/counts failed" ;;
  esac
}
# before after -> "Op n, Op n (total N)" of the requests in between
diff_counts() {
  awk 'FILENAME == ARGV[1] { a[$1] = $2; next } { d = $2 - a[$1]; if (d > 0) { s = s sep $1 " " d; sep = ", "; t += d } }
    END { printf "%s (total %d)\n", (s == "" ? "none" : s), t }' "$1" "$2"
}
total_of() { sed -n 's/.*(total \([0-9]*\))$/\1/p' <<<"$1"; }
copies_of() {  # CopyObject + UploadPartCopy in a diff_counts line
  awk -v s="$1" 'BEGIN { n = 0; k = split(s, f, /, | \(/); for (i = 1; i <= k; i++) if (f[i] ~ /^(CopyObject|UploadPartCopy) /) { split(f[i], p, " "); n += p[2] }; print n }'
}

# Called by push_mono / push_chunked (lib.sh): snapshots of the counts just before the
# commit (the final PUT of a chunked push) and after the push, with the time of each.
hook_point() {  # commit|pushed port
  local name=${NAME_OF_PORT[$2]}
  case "$1" in
    commit) snap_counts "$name" "$WORK/counts-commit"; now_ns >"$WORK/t-commit" ;;
    pushed) now_ns >"$WORK/t-pushed"; snap_counts "$name" "$WORK/counts-pushed" ;;
  esac
}

# Direct multipart upload of the file into the ceiling bucket with the AWS CLI. Prints seconds.
push_aws() {  # endpoint-port file key
  local t0
  warm_memory
  sync
  t0=$(now_ns)
  aws_ s3 cp --only-show-errors --endpoint-url "http://127.0.0.1:$1" "$2" "s3://ceiling/$3" >&2 ||
    die "aws s3 cp of $2 to :$1 failed"
  secs_since "$t0"
  [[ $(stat -c %s "$WORK/s3/ceiling/$3" 2>/dev/null) == "$SIZE" ]] || die "the S3 server holds no $SIZE-byte ceiling/$3 after aws s3 cp"
}

# GET, following redirects when told; checks status, size and how many redirects. Prints
# seconds (curl's time_total); with a digest, hashes the body and checks it instead.
pull_s3() {  # url redirects(0|1) [digest]
  local out code size hops t got
  if [[ -n "${3:-}" ]]; then
    got="sha256:$(timeout -k 2 "$(cap 300)" curl -sSL --max-time 300 -w '%{stderr}%{http_code} %{size_download} %{num_redirects}\n' \
      "$1" 2>"$WORK/pull-info" | sha256_of -)" || true
    read -r code size hops <"$WORK/pull-info" || true
    [[ $code == 200 && $size == "$SIZE" && $hops == "$2" ]] ||
      die "GET $1 answered $code with $size bytes after $hops redirects (want 200, $SIZE, $2): $(head -c 300 "$WORK/pull-info")"
    [[ $got == "$3" ]] || die "GET $1 returned other bytes: $got, want $3"
    return 0
  fi
  out=$(timeout -k 2 "$(cap 300)" curl -sSL --max-time 300 -o /dev/null -w '%{http_code} %{size_download} %{num_redirects} %{time_total}' "$1") ||
    die "GET $1 failed"
  read -r code size hops t <<<"$out"
  [[ $code == 200 && $size == "$SIZE" && $hops == "$2" ]] || die "GET $1 answered $code with $size bytes after $hops redirects (want 200, $SIZE, $2)"
  echo "$t"
}

cpu_s() { awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.1f", (b - a) / hz }'; }

# --- data --------------------------------------------------------------------------------
SIZE=$((SIZE_MIB * 1024 * 1024))
CHUNK_BYTES=$((CHUNK_MIB * 1024 * 1024))
declare -A R=()
make_blobs
PULL_DIGEST=${MONO_DIGEST[1]}
make_image
printf '[default]\nregion = us-east-1\nrequest_checksum_calculation = when_required\nresponse_checksum_validation = when_required\ns3 =\n  multipart_chunksize = %dMB\n  multipart_threshold = %dMB\n' \
  "$PART_MIB" "$PART_MIB" >"$WORK/aws-config"
# The same, one part at a time: what S3 takes from a client that, like a chunked push, sends
# one part after the other.
{ cat "$WORK/aws-config"; echo "  max_concurrent_requests = 1"; } >"$WORK/aws-config-seq"

# --- servers -----------------------------------------------------------------------------
# berth and distribution push and serve; berth-r and dist-r are second instances on the same
# buckets, with redirects on, for the redirect pulls. distribution redirects by default on
# S3; its main instance has them off, so that each pull row compares like with like.
declare -A PORT=()
start_s3
start_shim
{ read -r "PORT[$A]"; read -r "PORT[$B]"; read -r "PORT[berth-r]"; read -r "PORT[dist-r]"; } < <(free_ports 4)
start_berth_s3 "$A" "${PORT[$A]}" false
start_berth_s3 berth-r "${PORT[berth-r]}" true
start_distribution_s3 "$B" "${PORT[$B]}" false
start_distribution_s3 dist-r "${PORT[dist-r]}" true
sleep 1
for s in "$A" "$B"; do R[$s.rss_idle]=$(rss_mib "${PID[$s]}"); done
log "s3s-fs :$S3_PORT (pid ${PID[s3s-fs]}), shim :$SHIM_PORT; $A :${PORT[$A]} (redirect off), berth-r :${PORT[berth-r]} (on); $B :${PORT[$B]} (off), dist-r :${PORT[dist-r]} (on)"

# --- 1. monolithic push, 2. chunked push, each beside the AWS CLI's upload --------------------
# PUSH_REPS tries each, of other bytes each time, the order turned around every try; best kept.
# Beside the monolithic pushes, the AWS CLI uploads the same bytes (10 parts at once); beside
# the chunked pushes, it uploads them one part at a time.
best() { awk -v a="${1:-0}" -v b="$2" 'BEGIN { print (b + 0 > a + 0) ? b : a }'; }
least() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b + 0 < a + 0) ? b : a }'; }
S3PID=${PID[s3s-fs]}
for kind in mono chunked; do
  for ((r = 1; r <= PUSH_REPS; r++)); do
    order=("$A" "$B" s3)
    if ((r % 2 == 0)); then
      rev=(); for ((i = ${#order[@]} - 1; i >= 0; i--)); do rev+=("${order[i]}"); done; order=("${rev[@]}")
    fi
    for s in "${order[@]}"; do
      z0=$(cpu_ticks "$S3PID")
      if [[ $s == s3 ]]; then
        if [[ $kind == mono ]]; then
          t=$(push_aws "$S3_PORT" "${MONO_FILE[r]}" "blob$r")
        else
          t=$(AWS_CFG="$WORK/aws-config-seq" push_aws "$S3_PORT" "${MONO_FILE[r]}" "seq$r")
          rm -f "$WORK/s3/ceiling/seq$r"
        fi
        v=$(mbps "$SIZE" "$t")
        R[s3.$kind]=$(best "${R[s3.$kind]:-}" "$v")
        R[s3.${kind}_all]="${R[s3.${kind}_all]:-}${R[s3.${kind}_all]:+, }$v (s3s-fs $(cpu_s "$z0" "$(cpu_ticks "$S3PID")") cpu-s)"
        log "S3 direct: aws s3 cp ${SIZE_MIB} MiB$([[ $kind == chunked ]] && echo ", one part at a time"), try $r: $t s ($v MB/s)"
        continue
      fi
      snap_counts "$s" "$WORK/counts-before"
      c0=$(cpu_ticks "${PID[$s]}")
      if [[ $kind == mono ]]; then
        t=$(push_mono "${PORT[$s]}" "bench/mono$r" "${MONO_FILE[r]}" "${MONO_DIGEST[r]}")
      else
        t=$(push_chunked "${PORT[$s]}" "bench/chunked$r" "${CHUNK_DIR[r]}" "${CHUNK_DIGEST[r]}")
      fi
      v=$(mbps "$SIZE" "$t")
      cpu=$(cpu_s "$c0" "$(cpu_ticks "${PID[$s]}")") zcpu=$(cpu_s "$z0" "$(cpu_ticks "$S3PID")")
      reqs=$(diff_counts "$WORK/counts-before" "$WORK/counts-pushed")
      R[$s.$kind]=$(best "${R[$s.$kind]:-}" "$v")
      R[$s.${kind}_all]="${R[$s.${kind}_all]:-}${R[$s.${kind}_all]:+, }$v ($cpu + s3s-fs $zcpu cpu-s)"
      R[$s.${kind}_reqs.$r]=$reqs
      R[$s.${kind}_total]=$(total_of "$reqs")
      R[$s.copies]=$((${R[$s.copies]:-0} > $(copies_of "$reqs") ? ${R[$s.copies]:-0} : $(copies_of "$reqs")))
      msg=""
      if [[ $kind == chunked ]]; then
        ct=$(awk -v a="$(cat "$WORK/t-commit")" -v b="$(cat "$WORK/t-pushed")" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
        creqs=$(diff_counts "$WORK/counts-commit" "$WORK/counts-pushed")
        R[$s.commit]=$(least "${R[$s.commit]:-}" "$ct")
        R[$s.commit_all]="${R[$s.commit_all]:-}${R[$s.commit_all]:+, }$ct"
        R[$s.commit_reqs.$r]=$creqs
        R[$s.commit_copies]=$((${R[$s.commit_copies]:-0} > $(copies_of "$creqs") ? ${R[$s.commit_copies]:-0} : $(copies_of "$creqs")))
        msg="; commit (final PUT) $ct s, $creqs"
      fi
      log "$s: $kind push ${SIZE_MIB} MiB$([[ $kind == chunked ]] && echo " ($NCHUNKS x ${CHUNK_MIB} MiB)"), try $r: $t s ($v MB/s, server $cpu cpu-s, s3s-fs $zcpu cpu-s); S3 requests: $reqs$msg"
    done
  done
done
for s in "$A" "$B"; do R[$s.rss_hwm_push]=$(rss_mib "${PID[$s]}" VmHWM); done

# The shim's own cost, on distribution's path: the same upload through it, once.
t=$(push_aws "$SHIM_PORT" "${MONO_FILE[1]}" "via-shim")
R[s3.mono_shim]=$(mbps "$SIZE" "$t")
rm -f "$WORK/s3/ceiling/via-shim"
log "S3 through the shim: aws s3 cp ${SIZE_MIB} MiB: $t s (${R[s3.mono_shim]} MB/s)"

# --- 3. pull, through the registry and by redirect ----------------------------------------
# First one checked pull of each (sha256 of the body; doubles as warm-up), then PULL_REPS
# rounds of every source in turn; the median of each counts. The S3 row is curl of a
# presigned URL of the AWS CLI's copy of the same bytes, straight from s3s-fs and through
# the shim (distribution's path).
DIRECT_URL=$(aws_ s3 presign --endpoint-url "http://127.0.0.1:$S3_PORT" --expires-in 3600 s3://ceiling/blob1) || die "aws s3 presign failed"
SHIM_URL=$(aws_ s3 presign --endpoint-url "http://127.0.0.1:$SHIM_PORT" --expires-in 3600 s3://ceiling/blob1) || die "aws s3 presign failed"
declare -A URL=([$A]="http://127.0.0.1:${PORT[$A]}/v2/bench/mono1/blobs/$PULL_DIGEST"
  [$B]="http://127.0.0.1:${PORT[$B]}/v2/bench/mono1/blobs/$PULL_DIGEST"
  [berth-r]="http://127.0.0.1:${PORT[berth-r]}/v2/bench/mono1/blobs/$PULL_DIGEST"
  [dist-r]="http://127.0.0.1:${PORT[dist-r]}/v2/bench/mono1/blobs/$PULL_DIGEST"
  [s3]=$DIRECT_URL [s3-shim]=$SHIM_URL)
declare -A HOPS=([$A]=0 [$B]=0 [berth-r]=1 [dist-r]=1 [s3]=0 [s3-shim]=0)
PULLERS=("$A" "$B" berth-r dist-r s3 s3-shim)
for s in "${PULLERS[@]}"; do
  pull_s3 "${URL[$s]}" "${HOPS[$s]}" "$PULL_DIGEST"
  : >"$WORK/pull-$s"
done
log "pulls checked: every source returned the ${SIZE_MIB} MiB blob with its digest (berth-r and dist-r by one redirect)"
for ((i = 0; i < PULL_REPS; i++)); do
  for s in "${PULLERS[@]}"; do pull_s3 "${URL[$s]}" "${HOPS[$s]}" >>"$WORK/pull-$s"; done
done
for s in "${PULLERS[@]}"; do
  t=$(median <"$WORK/pull-$s")
  R[$s.pull]=$(mbps "$SIZE" "$t")
  R[$s.pull_all]=$(while read -r x; do mbps "$SIZE" "$x"; echo; done <"$WORK/pull-$s" | paste -sd' ' | sed 's/ /, /g')
  log "$(case $s in s3) echo "S3 direct" ;; s3-shim) echo "S3 through the shim" ;; *) echo "$s" ;; esac): pull ${SIZE_MIB} MiB in $t s (${R[$s.pull]} MB/s, median of $PULL_REPS)"
done

# --- 4. manifest GET, and the S3 requests it costs ------------------------------------------
for s in "$A" "$B"; do
  push_small "${PORT[$s]}" bench/small "$WORK/config"
  push_small "${PORT[$s]}" bench/small "$WORK/layer"
  push_manifest "${PORT[$s]}" bench/small latest
  check_manifest "${PORT[$s]}" bench/small latest
done
for s in "$A" "$B"; do
  snap_counts "$s" "$WORK/counts-before"
  r=$(run_wrk "$s" "$BENCH/lua/manifest-get.lua" "http://127.0.0.1:${PORT[$s]}/v2/bench/small/manifests/latest")
  snap_counts "$s" "$WORK/counts-after"
  R[$s.get]=${r% *} R[$s.get_err]=${r#* }
  n=$(awk '/ requests in / { print $1 }' "$WORK/wrk-$s-manifest-get.txt")
  R[$s.get_reqs]=$(diff_counts "$WORK/counts-before" "$WORK/counts-after")
  R[$s.get_per]=$(awk -v t="$(total_of "${R[$s.get_reqs]}")" -v n="$n" 'BEGIN { printf "%.2f", t / n }')
  log "$s: manifest GET ${R[$s.get]} req/s (${R[$s.get_err]} errors), $n GETs cost ${R[$s.get_reqs]} S3 requests (${R[$s.get_per]} each)"
done
for s in "$A" "$B"; do R[$s.rss_hwm]=$(rss_mib "${PID[$s]}" VmHWM); done

# --- report ------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
verdict() { awk -v v="$1" -v t="$3" -v op="$2" 'BEGIN { if (v !~ /^[0-9.]+$/) { print "-"; exit }
  ok = (op == ">=") ? (v + 0 >= t + 0) : (op == "==") ? (v + 0 == t + 0) : (v + 0 < t + 0); print ok ? "PASS" : "MISS" }'; }
SUFFIX=""
((QUICK)) && SUFFIX+=-quick
RESULTS="$BENCH/results/registry-s3-$(date +%Y%m%d-%H%M%S)$SUFFIX.txt"
mkdir -p "$BENCH/results"
{
  echo "berth registry benchmark on S3 — $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "mode: $( ((QUICK)) && echo quick || echo full): blobs ${SIZE_MIB} MiB, chunks ${CHUNK_MIB} MiB, parts ${PART_MIB} MiB, pushes best of $PUSH_REPS, pulls median of $PULL_REPS, wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DUR"
  echo "load average at start: $LOAD_START, at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this machine skews every figure)"
  echo "machine: $(nproc) cpus ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), kernel $(uname -r), S3 data on $(df --output=fstype "$WORK" | tail -n 1)"
  echo "S3: $("$S3S_FS" --version 2>/dev/null | head -n 1 || echo s3s-fs) on 127.0.0.1, buckets berth, dist, ceiling"
  echo "$A: $BERTH_BIN ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit'), built $BERTH_BUILT) serve -c TOML ${BERTH_SERVE_ARGS:-}: [storage.s3] path_style, part_size_mib = $PART_MIB, redirect = false; berth-r: the same with redirect = true"
  echo "$B: $("$DIST_BIN" --version), s3 driver, chunksize $PART_MIB MiB, redirect disabled; dist-r: the same with redirects (its default); both through bench/s3shim.py"
  echo "S3 direct: AWS CLI $(aws_ --version 2>&1 | awk '{ print $1 }' | cut -d/ -f2) s3 cp (multipart, $PART_MIB MiB parts, 10 at once) to upload; curl of a presigned URL to pull"
  echo "MB = 10^6 bytes, MiB = 2^20 bytes. ratio = $A / $B; of S3 = $A / S3 direct."
  echo
  fmt='%-40s %9s %13s %10s %7s %7s  %-22s %s\n'
  row() {
    # shellcheck disable=SC2059
    printf "$fmt" "$@"
  }
  row "metric" "$A" "$B" "S3 direct" "ratio" "of S3" "target" "result"
  printf '%s\n' "$(printf '%.0s-' {1..120})"
  x=$(ratio "${R[$A.mono]}" "${R[$B.mono]}"); f=$(ratio "${R[$A.mono]}" "${R[s3.mono]}")
  row "monolithic push ${SIZE_MIB} MiB, MB/s *" "${R[$A.mono]}" "${R[$B.mono]}" "${R[s3.mono]}" "$x" "$f" ">= 0.90 of S3" "$(verdict "$f" '>=' 0.9)"
  x=$(ratio "${R[$A.chunked]}" "${R[$B.chunked]}"); f=$(ratio "${R[$A.chunked]}" "${R[s3.mono]}")
  row "chunked push (${CHUNK_MIB} MiB PATCH), MB/s *" "${R[$A.chunked]}" "${R[$B.chunked]}" "${R[s3.mono]}" "$x" "$f" ">= 2x dist, 0.90 of S3" "$(verdict "$x" '>=' 2) (2x), $(verdict "$f" '>=' 0.9) (S3)"
  row "  S3 direct one part at a time, MB/s" "" "" "${R[s3.chunked]}" "" "$(ratio "${R[$A.chunked]}" "${R[s3.chunked]}")" "" ""
  row "  its commit (final PUT), s, least" "${R[$A.commit]}" "${R[$B.commit]}" "" "$(ratio "${R[$A.commit]}" "${R[$B.commit]}")" "" "" ""
  row "S3 copy requests per push, most" "${R[$A.copies]}" "${R[$B.copies]}" "" "" "" "0" "$(verdict "${R[$A.copies]}" '==' 0)"
  row "S3 requests per monolithic push" "${R[$A.mono_total]}" "${R[$B.mono_total]}" "" "" "" "" ""
  row "S3 requests per chunked push" "${R[$A.chunked_total]}" "${R[$B.chunked_total]}" "" "" "" "" ""
  x=$(ratio "${R[$A.pull]}" "${R[$B.pull]}"); f=$(ratio "${R[$A.pull]}" "${R[s3.pull]}")
  row "pull ${SIZE_MIB} MiB through registry, MB/s" "${R[$A.pull]}" "${R[$B.pull]}" "${R[s3.pull]}" "$x" "$f" "" ""
  x=$(ratio "${R[berth-r.pull]}" "${R[dist-r.pull]}"); f=$(ratio "${R[berth-r.pull]}" "${R[s3.pull]}")
  row "pull ${SIZE_MIB} MiB by redirect (-L), MB/s" "${R[berth-r.pull]}" "${R[dist-r.pull]}" "${R[s3.pull]}" "$x" "$f" "" ""
  x=$(ratio "${R[$A.get]}" "${R[$B.get]}")
  row "manifest GET by tag (wrk), req/s" "${R[$A.get]}" "${R[$B.get]}" "" "$x" "" "" \
    "$( ((R[$A.get_err] + R[$B.get_err])) && echo "errors: $A ${R[$A.get_err]}, $B ${R[$B.get_err]}")"
  row "  S3 requests per manifest GET" "${R[$A.get_per]}" "${R[$B.get_per]}" "" "" "" "" ""
  row "RSS peak after the pushes (VmHWM), MiB" "${R[$A.rss_hwm_push]}" "${R[$B.rss_hwm_push]}" "" "$(ratio "${R[$A.rss_hwm_push]}" "${R[$B.rss_hwm_push]}")" "" "" ""
  row "RSS lifetime peak (VmHWM), MiB" "${R[$A.rss_hwm]}" "${R[$B.rss_hwm]}" "" "$(ratio "${R[$A.rss_hwm]}" "${R[$B.rss_hwm]}")" "" "" ""
  echo
  echo "* best of $PUSH_REPS pushes, each of other bytes, order turned around each try. Every try, MB/s (cpu seconds of the registry + of s3s-fs):"
  echo "  monolithic: $A ${R[$A.mono_all]}"
  echo "              $B ${R[$B.mono_all]}"
  echo "              S3 direct (aws s3 cp, 10 parts at once) ${R[s3.mono_all]}"
  echo "  chunked:    $A ${R[$A.chunked_all]}"
  echo "              $B ${R[$B.chunked_all]}"
  echo "              S3 direct (aws s3 cp, one part at a time) ${R[s3.chunked_all]}"
  echo "  commit (the chunked push's final PUT, no body), s: $A ${R[$A.commit_all]}; $B ${R[$B.commit_all]}"
  echo "S3 requests per push, by operation (berth: its /metrics; distribution: counted by the shim):"
  for s in "$A" "$B"; do
    for ((r = 1; r <= PUSH_REPS; r++)); do
      echo "  $s monolithic try $r: ${R[$s.mono_reqs.$r]}"
    done
    for ((r = 1; r <= PUSH_REPS; r++)); do
      echo "  $s chunked try $r:    ${R[$s.chunked_reqs.$r]}"
      echo "    of which the commit: ${R[$s.commit_reqs.$r]}"
    done
  done
  echo "  manifest GETs under wrk: $A ${R[$A.get_reqs]}; $B ${R[$B.get_reqs]}"
  echo "every pull, MB/s, in the order taken: $A ${R[$A.pull_all]}; $B ${R[$B.pull_all]};"
  echo "  berth-r ${R[berth-r.pull_all]}; dist-r ${R[dist-r.pull_all]}; S3 direct ${R[s3.pull_all]}; through the shim ${R[s3-shim.pull_all]}"
  echo "the S3 server alone, and through the shim (distribution's path), in this run:"
  echo "  upload: aws s3 cp direct ${R[s3.mono]} MB/s (best), through the shim ${R[s3.mono_shim]} MB/s (one try)"
  echo "  pull:   curl of a presigned URL direct ${R[s3.pull]} MB/s (median), through the shim ${R[s3-shim.pull]} MB/s (median)"
  echo "distribution reaches S3 through bench/s3shim.py, which answers ListMultipartUploads and ListParts itself"
  echo "(s3s-fs 0.14.1 does not implement the first and answers the second without what aws-sdk-go needs);"
  echo "its counts include those two. berth talks to s3s-fs directly."
  if ((QUICK)); then echo "quick mode: the targets are for 1 GiB blobs; read these results as a check of the harness."; fi
  echo "run took $(($(date +%s) - START_TIME)) s"
} | tee "$RESULTS"
log "results written to ${RESULTS#"$ROOT"/}"
