#!/usr/bin/env bash
# bench/build.sh — `berth build` against `buildah bud --layers` on the same Dockerfiles, side
# by side on this machine, in one run. A benchmark, not a test: it fails only when a build
# fails, never because it is slow.
#
# Cases (each from a busybox base served by a local `berth serve`):
#   small    50 files, a RUN, ENV, WORKDIR, CMD
#   big      a 500 MB COPY of mixed random and text files (--quick: 100 MB)
#   stages   a two-stage build with COPY --from
#   runs     30 RUN steps
# For each: cold (empty cache, base not pulled), warm (nothing changed), and one input file
# changed (for `runs`, the file the 20th step reads). Then the big image written as an OCI
# layout with gzip (berth: `--output type=oci`; buildah: `buildah push oci:`), and the CPU
# use of berth's cold big build (user+sys over wall time: 2.0 means both cores busy).
# Compression alone: a cold `berth build` of one compressible text file (300 MB; --quick
# 100 MB), whose time is mostly gzip, against `gzip -6` (one core) and `pigz -6` on every
# core of the same file (pigz is installed with apt-get when missing).
# Prints a table with berth/buildah ratios and the targets (cold ≤ 0.5×, warm ≤ 0.1×), and
# writes it to bench/results/build-<date>[-quick].txt (git-ignored).
#
# Debian rows (also alone with --debian): on a Debian bookworm base (debootstrap minbase,
# merged /usr; the tests' cached layer under target/debian-base/ when there is one of
# today), `RUN apt-get update && apt-get install -y curl` then `COPY small.txt /`: cold
# (empty caches, base not pulled; BuildKit's cache emptied with `docker builder prune -af`),
# and after editing small.txt, by berth, buildah and the Docker engine's BuildKit
# (DOCKER_BUILDKIT=1 /usr/bin/docker build). Targets: cold ≤ 1.0× buildah; the edit costs
# berth at most 0.1 s plus its COPY step (the step's own time is printed beside the build's).
# apt-get downloads from Debian's mirror, so cold times carry the network's noise: the rows
# are medians of DEBIAN_ROUNDS rounds (default 3), each starting the builders in another order.
#
# Usage: bench/build.sh [--quick] [--keep] [--debian]
# Environment:
#   BERTH_BIN    berth binary (default target/release/berth, built if missing)
#   BENCH_DIR    parent of the work folder (default $TMPDIR or /tmp); needs ~3 GiB free
#   DEBIAN_ROUNDS  rounds of the Debian rows (default 3)
#
# Needs buildah (apt-get install -y buildah), runc, GNU time (/usr/bin/time), python3.
# buildah runs as `buildah bud --layers --timestamp 0 --isolation chroot`, storing into its
# default storage; the images this script names (localhost/berth-bench-*) are removed at the
# start and the end. The registry binds 127.0.0.1 only and is stopped on exit.
set -euo pipefail

QUICK=0 KEEP=0 DEBIAN_ONLY=0 DEBIAN_ROUNDS=${DEBIAN_ROUNDS:-3}
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --debian) DEBIAN_ONLY=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
REPO=$PWD
BERTH_BIN=${BERTH_BIN:-$REPO/target/release/berth}
if [ ! -x "$BERTH_BIN" ]; then
  echo "== building $BERTH_BIN"
  cargo build --release -p berth-cli
fi
for tool in buildah runc python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done

WORK=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/berth-build-bench.XXXXXX")
REG_PID=""
PORT=""
cleanup() {
  [ -n "$REG_PID" ] && kill "$REG_PID" 2>/dev/null || true
  for img in $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep -e berth-bench -e "127.0.0.1:$PORT/" || true); do
    buildah rmi -f "$img" >/dev/null 2>&1 || true
  done
  /usr/bin/docker rmi -f berth-bench-debian >/dev/null 2>&1 || true
  if [ "$KEEP" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# A registry with the busybox base.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BERTH_BIN" serve --addr "127.0.0.1:$PORT" --root "$WORK/registry" --log-level warn >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
BASE="127.0.0.1:$PORT/bench/busybox:1"
mkdir -p "$WORK/base/rootfs/bin" "$WORK/base/rootfs/etc" "$WORK/base/rootfs/tmp" "$WORK/base/rootfs/root"
cp /bin/busybox "$WORK/base/rootfs/bin/"
for a in sh ls echo cat true env mkdir rm touch cp wc sleep; do ln -sf busybox "$WORK/base/rootfs/bin/$a"; done
chmod 1777 "$WORK/base/rootfs/tmp"
printf 'FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD ["sh"]\n' >"$WORK/base/Dockerfile"
"$BERTH_BIN" --root "$WORK/base-store" build --progress quiet -t "$BASE" --push "$WORK/base" >/dev/null

# The Debian rows: base image, contexts, and the three builders cold and after one edit.
debian_rows() {
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
  local layer
  layer=$(ls -t "$REPO"/target/debian-base/bookworm-minbase-"$(date -u +%F)"-*.tar.gz 2>/dev/null | head -1 || true)
  mkdir -p "$WORK/debian-base"
  if [ -z "$layer" ]; then
    echo "== bootstrapping Debian bookworm (minbase)"
    debootstrap --variant=minbase bookworm "$WORK/debian-root" http://deb.debian.org/debian >"$WORK/debootstrap.log" 2>&1
    layer=$WORK/debian-base/rootfs.tar.gz
    tar --numeric-owner -czf "$layer" -C "$WORK/debian-root" --exclude='./dev/*' --exclude='./proc/*' \
      --exclude='./sys/*' --exclude='./var/cache/apt/archives/*.deb' --exclude='./var/lib/apt/lists/*' .
    rm -rf "$WORK/debian-root"
  else
    # A copy: a link out of the context would resolve inside it (as BuildKit resolves it).
    cp "$layer" "$WORK/debian-base/rootfs.tar.gz"
  fi
  DEBIAN_BASE="127.0.0.1:$PORT/bench/debian:bookworm"
  printf 'FROM scratch\nADD rootfs.tar.gz /\nCMD ["bash"]\n' >"$WORK/debian-base/Dockerfile"
  "$BERTH_BIN" --root "$WORK/base-store" build --progress quiet -t "$DEBIAN_BASE" --push "$WORK/debian-base" >/dev/null
  mkdir -p "$WORK/ctx/debian"
  echo "small file" >"$WORK/ctx/debian/small.txt"
  printf 'FROM %s\nRUN apt-get update && apt-get install -y curl\nCOPY small.txt /small.txt\n' "$DEBIAN_BASE" \
    >"$WORK/ctx/debian/Dockerfile"
  buildkit_build() { env DOCKER_BUILDKIT=1 /usr/bin/docker build --progress plain -t berth-bench-debian "$WORK/ctx/debian"; }
  buildkit_reset() {
    /usr/bin/docker rmi -f berth-bench-debian "$DEBIAN_BASE" >/dev/null 2>&1 || true
    /usr/bin/docker builder prune -af >/dev/null 2>&1 || true
  }
  echo "== debian (apt-get install curl), $DEBIAN_ROUNDS rounds"
  # Each round starts the three builders cold in another order (the Debian mirror's answers
  # vary, and whoever goes first may warm a cache on its way); every row is the median.
  local r i builders=(berth buildah buildkit) order b
  declare -A runs=()
  for ((r = 0; r < DEBIAN_ROUNDS; r++)); do
    order=()
    for i in 0 1 2; do order+=("${builders[$(((i + r) % 3))]}"); done
    rm -rf "$WORK/store-debian"; buildah_reset; buildkit_reset; sync
    echo "small file" >"$WORK/ctx/debian/small.txt"
    for b in "${order[@]}"; do debian_build "$b" cold; runs[$b-cold]+="${T[$b-debian-cold]} "; done
    echo "changed $(date +%s%N)" >>"$WORK/ctx/debian/small.txt"
    for b in "${order[@]}"; do debian_build "$b" change; runs[$b-change]+="${T[$b-debian-change]} "; done
    echo "   round $((r + 1)): order ${order[*]}; cold $(for b in "${builders[@]}"; do printf '%s %ss ' "$b" "${T[$b-debian-cold]}"; done)"
  done
  for b in "${builders[@]}"; do
    for k in cold change; do
      T[$b-debian-$k]=$(printf '%s\n' ${runs[$b-$k]} | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
    done
  done
  # The COPY step's own time in berth's plain progress: `#N [3/3] COPY …` then `#N DONE 0.0s`.
  local id
  id=$(grep -m1 'COPY small.txt' "$WORK/log-berth-debian-change.txt" | cut -d' ' -f1)
  COPY_STEP=$(grep -m1 "^$id DONE" "$WORK/log-berth-debian-change.txt" | awk '{print $3}' | tr -d s)
  buildkit_reset
}

debian_build() {  # debian_build BUILDER cold|change
  case $1 in
    berth) timed "berth-debian-$2" berth_build debian "$WORK/store-debian" ;;
    buildah) timed "buildah-debian-$2" buildah_build debian ;;
    buildkit) timed "buildkit-debian-$2" buildkit_build ;;
  esac
}

debian_table() {
  printf '%-22s %9s %9s %9s %8s %8s %s\n' case berth buildah buildkit b/buildah b/bkit target
  for k in cold change; do
    local b=${T[berth-debian-$k]} h=${T[buildah-debian-$k]} k2=${T[buildkit-debian-$k]} tgt
    case $k in cold) tgt="<= 1.0 (vs buildah)" ;; change) tgt="<= 0.1 s + the COPY (berth's COPY step: ${COPY_STEP}s)" ;; esac
    printf '%-22s %8ss %8ss %8ss %8s %8s %s\n' "debian apt $k" "$b" "$h" "$k2" \
      "$(python3 -c "print(f'{$b/$h:.3f}')")" "$(python3 -c "print(f'{$b/$k2:.3f}')")" "$tgt"
  done
}

# Contexts.
mk_small() {
  local d=$1; mkdir -p "$d/files"
  for i in $(seq 1 50); do printf 'file %d\n%s\n' "$i" "$(head -c 2000 /dev/urandom | base64)" >"$d/files/f$i.txt"; done
  cat >"$d/Dockerfile" <<EOF
FROM $BASE
ENV APP=/app
WORKDIR /app
COPY files/ ./files/
RUN cat files/*.txt | wc -c > total
CMD ["cat", "/app/total"]
EOF
}
mk_big() {
  local d=$1 mb=$2; mkdir -p "$d/data"
  python3 - "$d/data" "$mb" <<'PY'
import os, sys, random
root, mb = sys.argv[1], int(sys.argv[2])
random.seed(7)
words = [b"alpha", b"beta", b"gamma", b"delta", b"layer", b"image", b"berth", b"build", b"cache", b"tar"]
total, i = 0, 0
while total < mb * 1024 * 1024:
    size = random.choice([64 << 10, 512 << 10, 2 << 20, 8 << 20])
    sub = os.path.join(root, f"d{i % 16}")
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, f"f{i}.{'bin' if i % 2 else 'txt'}"), "wb") as f:
        if i % 2:
            f.write(os.urandom(size))
        else:
            line = b" ".join(random.choice(words) for _ in range(12)) + b"\n"
            f.write((line * (size // len(line) + 1))[:size])
    total += size
    i += 1
PY
  cat >"$d/Dockerfile" <<EOF
FROM $BASE
COPY data/ /data/
CMD ["sh"]
EOF
}
mk_stages() {
  local d=$1; mkdir -p "$d/src"
  for i in $(seq 1 20); do echo "source $i" >"$d/src/s$i.txt"; done
  cat >"$d/Dockerfile" <<EOF
FROM $BASE AS build
COPY src/ /src/
RUN mkdir -p /out && cat /src/*.txt > /out/all.txt && echo done > /out/done
FROM $BASE
COPY --from=build /out/ /app/
CMD ["cat", "/app/all.txt"]
EOF
}
mk_runs() {
  local d=$1; mkdir -p "$d/in"
  { echo "FROM $BASE"; echo "COPY in/ /in/"
    for i in $(seq 1 30); do
      if [ "$i" = 20 ]; then echo "COPY late.txt /late.txt"; echo "RUN cat /late.txt > /step$i"
      else echo "RUN echo step $i > /step$i"; fi
    done
    echo 'CMD ["sh"]'; } >"$d/Dockerfile"
  echo a >"$d/in/a"; echo late >"$d/late.txt"
}
changed_file() {  # the one input file each case changes
  case $1 in
    small) echo files/f7.txt ;; big) find "$2/data" -name '*.txt' | sort | sed -n 1p | sed "s|$2/||" ;;
    stages) echo src/s3.txt ;; runs) echo late.txt ;;
  esac
}

BIG_MB=500; [ "$QUICK" = 1 ] && BIG_MB=100
if [ "$DEBIAN_ONLY" = 0 ]; then
  for c in small big stages runs; do mkdir -p "$WORK/ctx/$c"; done
  mk_small "$WORK/ctx/small"; mk_big "$WORK/ctx/big" "$BIG_MB"; mk_stages "$WORK/ctx/stages"; mk_runs "$WORK/ctx/runs"
  sync
fi

now() { date +%s.%N; }
declare -A T
timed() {  # timed NAME command...: wall seconds into T[NAME]
  local name=$1; shift
  local t0 t1; t0=$(now)
  "$@" >"$WORK/log-$name.txt" 2>&1 || { echo "FAILED: $name"; tail -20 "$WORK/log-$name.txt"; exit 1; }
  t1=$(now)
  T[$name]=$(python3 -c "print(f'{$t1-$t0:.2f}')")
}

berth_build() {  # berth_build CASE ROOT [extra...]
  local c=$1 root=$2; shift 2
  "$BERTH_BIN" --root "$root" build --progress plain --runtime "$(command -v runc)" "$@" "$WORK/ctx/$c"
}
buildah_build() {
  buildah bud --layers --timestamp 0 --isolation chroot --tls-verify=false -q -t "localhost/berth-bench-$1" "$WORK/ctx/$1"
}
buildah_reset() {
  for img in $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep -e berth-bench -e "127.0.0.1:$PORT" || true); do
    buildah rmi -f "$img" >/dev/null 2>&1 || true
  done
  buildah rmi --prune >/dev/null 2>&1 || true
}

if [ "$DEBIAN_ONLY" = 1 ]; then
  debian_rows
  OUT=bench/results/build-debian-$(date +%Y%m%d-%H%M%S).txt
  mkdir -p bench/results
  { echo "berth build vs buildah bud --layers ($(buildah --version | cut -d' ' -f3)) vs BuildKit (docker 20.10), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
    debian_table; } | tee "$OUT"
  echo "written to $OUT"
  exit 0
fi

echo "== cases ready in $WORK (big: $BIG_MB MB); load: $(cut -d' ' -f1-3 /proc/loadavg)"
for c in small big stages runs; do
  echo "== $c"
  rm -rf "$WORK/store-$c"; buildah_reset; sync
  if [ "$c" = big ]; then
    /usr/bin/time -f "%e %U %S" -o "$WORK/cpu-big.txt" "$BERTH_BIN" --root "$WORK/store-$c" build --progress plain \
      "$WORK/ctx/$c" >"$WORK/log-berth-big-cold.txt" 2>&1 || { echo "FAILED: berth-big-cold"; tail -20 "$WORK/log-berth-big-cold.txt"; exit 1; }
    T[berth-$c-cold]=$(cut -d' ' -f1 "$WORK/cpu-big.txt")
  else
    timed "berth-$c-cold" berth_build "$c" "$WORK/store-$c"
  fi
  timed "buildah-$c-cold" buildah_build "$c"
  timed "berth-$c-warm" berth_build "$c" "$WORK/store-$c"
  timed "buildah-$c-warm" buildah_build "$c"
  f=$(changed_file "$c" "$WORK/ctx/$c")
  echo "changed $(date +%s%N)" >>"$WORK/ctx/$c/$f"
  timed "berth-$c-change" berth_build "$c" "$WORK/store-$c"
  timed "buildah-$c-change" buildah_build "$c"
  grep -c CACHED "$WORK/log-berth-$c-change.txt" >"$WORK/cached-$c.txt" || true
  if [ "$c" = big ]; then
    echo "== writing the big image as an OCI layout (gzip)"
    timed berth-oci berth_build big "$WORK/store-big" --output "type=oci,dest=$WORK/oci-berth"
    timed buildah-oci buildah push -q localhost/berth-bench-big "oci:$WORK/oci-buildah:latest"
  fi
done

debian_rows

# Compression: one text layer, cold, against gzip and pigz on the same bytes.
echo "== compression"
command -v pigz >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pigz >/dev/null
TEXT_MB=$([ "$QUICK" = 1 ] && echo 100 || echo 300)
mkdir -p "$WORK/text"
python3 - "$WORK/text/text.txt" "$TEXT_MB" <<'PY'
import random, sys
random.seed(11)
words = ["".join(random.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(random.randint(2, 9))) for _ in range(5000)]
with open(sys.argv[1], "w") as f:
    written = 0
    while written < int(sys.argv[2]) * 1024 * 1024:
        line = " ".join(random.choice(words) for _ in range(150)) + "\n"
        f.write(line)
        written += len(line)
PY
printf 'FROM scratch\nCOPY text.txt /text.txt\n' >"$WORK/text/Dockerfile"
cat "$WORK/text/text.txt" >/dev/null
/usr/bin/time -f "%e %U %S" -o "$WORK/cpu-text.txt" "$BERTH_BIN" --root "$WORK/store-text" build --progress quiet \
  "$WORK/text" >/dev/null
/usr/bin/time -f "%e %U %S" -o "$WORK/cpu-gzip.txt" gzip -6 -c "$WORK/text/text.txt" >/dev/null
/usr/bin/time -f "%e %U %S" -o "$WORK/cpu-pigz.txt" pigz -6 -p "$(nproc)" -c "$WORK/text/text.txt" >/dev/null
read -r twall tuser tsys <"$WORK/cpu-text.txt"
read -r gwall _ _ <"$WORK/cpu-gzip.txt"
read -r pwall puser psys <"$WORK/cpu-pigz.txt"

read -r wall user sys <"$WORK/cpu-big.txt"
CPU=$(python3 -c "print(f'{($user+$sys)/$wall:.2f}')")
OUT=bench/results/build-$(date +%Y%m%d-%H%M%S)$([ "$QUICK" = 1 ] && echo -quick || true).txt
mkdir -p bench/results
{
  echo "berth build vs buildah bud --layers ($(buildah --version | cut -d' ' -f3)), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
  printf '%-22s %9s %9s %7s %s\n' case berth buildah ratio target
  for c in small big stages runs; do
    for k in cold warm change; do
      b=${T[berth-$c-$k]} h=${T[buildah-$c-$k]}
      r=$(python3 -c "print(f'{$b/$h:.3f}')")
      case $k in cold) tgt="<= 0.5" ;; warm) tgt="<= 0.1" ;; change) tgt="only later layers (berth cached $(cat "$WORK/cached-$c.txt") steps)" ;; esac
      printf '%-22s %8ss %8ss %7s %s\n' "$c $k" "$b" "$h" "$r" "$tgt"
    done
  done
  r=$(python3 -c "print(f'{${T[berth-oci]}/${T[buildah-oci]}:.3f}')")
  printf '%-22s %8ss %8ss %7s %s\n' "big -> OCI layout" "${T[berth-oci]}" "${T[buildah-oci]}" "$r" "(berth: warm build + layout copy)"
  debian_table
  echo "berth cold big build: ${wall}s wall, ${user}s user, ${sys}s sys: $CPU cores busy on average (compression on every core)"
  python3 - "$TEXT_MB" "$twall" "$tuser" "$tsys" "$gwall" "$pwall" "$puser" "$psys" "$(nproc)" <<'PY'
import sys
mb, tw, tu, ts, gw, pw, pu, ps, n = sys.argv[1], *map(float, sys.argv[2:9]), sys.argv[9]
print(f"compression, {mb} MB text layer: berth cold build {tw:.2f}s ({(tu + ts) / tw:.2f} cores busy), "
      f"gzip -6 {gw:.2f}s (1 core), pigz -6 -p{n} {pw:.2f}s ({(pu + ps) / pw:.2f} cores busy); "
      f"berth/gzip {tw / gw:.3f}, berth/pigz {tw / pw:.3f}")
PY
} | tee "$OUT"
echo "written to $OUT"
