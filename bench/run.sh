#!/usr/bin/env bash
# Container start latency and pull+unpack time: berth against runc, crun, podman, skopeo+umoci
# and plain `gzip -dc | tar -x`, in one run, printing each figure and the ratios.
#
#   bench/run.sh              # 30 starts per runtime, 3 pulls per tool
#   bench/run.sh --quick      # 10 starts, 1 pull
#   bench/run.sh --no-pull    # start and exec latency only (no debootstrap image)
#   bench/run.sh --exec-only  # exec latency only
#
# Start latency: `berth run --rm --network none IMAGE true` (embedded runtime) against `runc
# run` and `crun run` on a prepared bundle of the same busybox rootfs, and `podman run --rm
# --network none --runtime runc` of the same image (all with no network setup beyond a private
# namespace). crun refuses a hybrid cgroup host unless it runs in a mount namespace with
# /sys/fs/cgroup/unified unmounted, so its runs happen in one (and podman's use runc).
# Networking: `berth run --rm` on its default bridge network (wired by berth) against the same
# with --network none (target: at most 15 ms more), and against `podman run --rm` on its
# default network (--runtime runc, CNI backend; target: at most 0.5x).
#
# Exec latency: `berth exec C true` into a running container (embedded runtime, and one run
# with --runtime runc) against `runc exec` into a container runc runs from the bundle.
#
# Pull+unpack: a Debian bookworm minbase root (debootstrap, cached in $BENCH_CACHE) as a
# one-layer gzip image in a local berth registry, pulled into a fresh store by `berth pull`,
# by `skopeo copy` + `umoci unpack`, and by `podman pull`; the baseline is
# `gzip -dc layer | tar -x` of the same layer file.
#
# Needs root and the Debian packages runc crun podman skopeo umoci debootstrap busybox-static
# (installed with apt-get when missing). Environment: BERTH_BIN (default target/release/berth,
# built if missing), BENCH_DIR (work folder parent, default /tmp), BENCH_CACHE (default
# /var/tmp/berth-bench). Results are also written to bench/results/run-<date>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

STARTS=30
PULLS=3
DO_PULL=1
DO_START=1
for arg in "$@"; do
  case "$arg" in
    --quick) STARTS=10; PULLS=1 ;;
    --no-pull) DO_PULL=0 ;;
    --exec-only) DO_PULL=0; DO_START=0 ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh needs root (containers, mounts, cgroups)" >&2; exit 1; }
need=()
tools=(runc skopeo)
[ "$DO_START" -eq 1 ] && tools+=(crun podman)
[ "$DO_PULL" -eq 1 ] && tools+=(podman umoci debootstrap)
for tool in "${tools[@]}"; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
[ "$DO_START" -eq 0 ] || [ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /bin/busybox ] || need+=(busybox-static)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

BERTH=${BERTH_BIN:-$REPO/target/release/berth}
if [ ! -x "$BERTH" ]; then
  echo "== building berth (release)"
  cargo build --release -p berth-cli --quiet
fi
CACHE=${BENCH_CACHE:-/var/tmp/berth-bench}
mkdir -p "$CACHE" "$REPO/bench/results"
W=$(mktemp -d "${BENCH_DIR:-/tmp}/berth-run-bench.XXXXXX")
RESULTS="$REPO/bench/results/run-$(date +%Y%m%d-%H%M%S).txt"
SERVER=""
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  "$BERTH" --root "$W/store" ps -aq 2>/dev/null | xargs -r "$BERTH" --root "$W/store" rm -f >/dev/null 2>&1 || true
  runc --root "$W/runc-state" delete -f "bench-sleeper-$$" >/dev/null 2>&1 || true
  podman --root "$W/podman" --runroot "$W/podman-run" rmi -af >/dev/null 2>&1 || true
  for m in $(grep -o " $W[^ ]*" /proc/self/mountinfo | sort -r); do umount -l "$m" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT

say() { echo "$*" | tee -a "$RESULTS"; }
say "# bench/run.sh $(date -u +%FT%TZ) on $(uname -r), $(nproc) cores; load: $(cut -d' ' -f1-3 /proc/loadavg)"
say "# berth $($BERTH --version), $(runc --version | head -1), $(crun --version 2>/dev/null | head -1), $(podman --version 2>/dev/null)"

# ---- a berth registry on a free port ------------------------------------------------------
PORT=$((20000 + RANDOM % 20000))
"$BERTH" serve --addr "127.0.0.1:$PORT" --root "$W/registry" --log-level error >"$W/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
REG=127.0.0.1:$PORT

# make_layout DIR ROOTFS: a one-layer OCI image layout of ROOTFS in DIR (tag v1, Cmd sh);
# leaves the gzip layer in DIR/layer.tar.gz.
make_layout() {
  local dir=$1 rootfs=$2
  mkdir -p "$dir/layout/blobs/sha256"
  tar -C "$rootfs" --numeric-owner -cf "$dir/layer.tar" .
  local diff; diff=$(sha256sum "$dir/layer.tar" | cut -d' ' -f1)
  gzip -c "$dir/layer.tar" >"$dir/layer.tar.gz"
  rm "$dir/layer.tar"
  local l ls; l=$(sha256sum "$dir/layer.tar.gz" | cut -d' ' -f1); ls=$(stat -c %s "$dir/layer.tar.gz")
  cp "$dir/layer.tar.gz" "$dir/layout/blobs/sha256/$l"
  printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$diff" >"$dir/config.json"
  local c cs; c=$(sha256sum "$dir/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$dir/config.json")
  cp "$dir/config.json" "$dir/layout/blobs/sha256/$c"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$c" "$cs" "$l" "$ls" >"$dir/manifest.json"
  local m ms; m=$(sha256sum "$dir/manifest.json" | cut -d' ' -f1); ms=$(stat -c %s "$dir/manifest.json")
  cp "$dir/manifest.json" "$dir/layout/blobs/sha256/$m"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$m" "$ms" >"$dir/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/layout/oci-layout"
}

push() { skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$1:v1" "docker://$2" >/dev/null; }

# time_runs NAME COUNT COMMAND...: runs COMMAND COUNT times (after 3 unmeasured ones) and
# prints the median and mean in milliseconds; sets MEDIAN.
time_runs() {
  local name=$1 count=$2; shift 2
  for _ in 1 2 3; do "$@" >/dev/null 2>&1 || { echo "$name failed:"; "$@"; exit 1; }; done
  local times=()
  for _ in $(seq "$count"); do
    local t0=$EPOCHREALTIME
    "$@" >/dev/null 2>&1 || { echo "$name failed:"; "$@"; exit 1; }
    local t1=$EPOCHREALTIME
    times+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
  done
  MEDIAN=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
  local mean; mean=$(printf '%s\n' "${times[@]}" | awk '{s+=$1} END {print s/NR}')
  say "$(printf '%-34s median %8.1f ms   mean %8.1f ms   (%d runs)' "$name" "$MEDIAN" "$mean" "$count")"
}

ratio() { echo "scale=2; $1 / $2" | bc -l; }

# ---- start latency -----------------------------------------------------------------------
say ""
say "## start latency: a container running \`true\`"
BB=$W/busybox
mkdir -p "$BB/rootfs"/{bin,dev,etc,proc,sys,tmp,root}
cp /bin/busybox "$BB/rootfs/bin/busybox"
for a in sh true echo cat ls sleep; do ln -s busybox "$BB/rootfs/bin/$a"; done
chmod 1777 "$BB/rootfs/tmp"
echo 'root:x:0:0:root:/root:/bin/sh' >"$BB/rootfs/etc/passwd"
echo 'root:x:0:' >"$BB/rootfs/etc/group"
make_layout "$BB" "$BB/rootfs"
push "$BB/layout" "$REG/bench/busybox:v1"
"$BERTH" --root "$W/store" pull -q "$REG/bench/busybox:v1" >/dev/null

# The runc/crun bundle: `runc spec` defaults (its own namespaces incl. network, no cgroup
# limits), the same rootfs, running `true`.
mkdir -p "$W/bundle"
cp -a "$BB/rootfs" "$W/bundle/rootfs"
(cd "$W/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json)
grep -q '"true"' "$W/bundle/config.json" || { echo "could not prepare the bundle" >&2; exit 1; }

N=0
runc_once() { N=$((N + 1)); runc --root "$W/runc-state" run -b "$W/bundle" "bench-runc-$$-$N"; }

# ---- exec latency ------------------------------------------------------------------------
say ""
say "## exec latency: \`true\` in a running container"
"$BERTH" --root "$W/store" run -d --network none --name exec-embedded "$REG/bench/busybox:v1" sleep 100000 >/dev/null
"$BERTH" --root "$W/store" run -d --network none --runtime runc --name exec-runc "$REG/bench/busybox:v1" sleep 100000 >/dev/null
mkdir -p "$W/sleeper"
cp -a "$W/bundle/rootfs" "$W/sleeper/rootfs"
sed 's/"true"/"sleep", "100000"/' "$W/bundle/config.json" >"$W/sleeper/config.json"
runc --root "$W/runc-state" run -d -b "$W/sleeper" "bench-sleeper-$$" </dev/null >/dev/null 2>&1
time_runs "berth exec (embedded)" "$STARTS" "$BERTH" --root "$W/store" exec exec-embedded true
BERTH_EXEC=$MEDIAN
time_runs "berth exec (--runtime runc)" "$STARTS" "$BERTH" --root "$W/store" exec exec-runc true
BERTH_EXEC_RUNC=$MEDIAN
time_runs "runc exec" "$STARTS" runc --root "$W/runc-state" exec "bench-sleeper-$$" true
RUNC_EXEC=$MEDIAN
runc --root "$W/runc-state" delete -f "bench-sleeper-$$" >/dev/null 2>&1 || true
say ""
say "berth exec/runc exec   $(ratio "$BERTH_EXEC" "$RUNC_EXEC")x"
say "berth exec with runc / runc exec: $(ratio "$BERTH_EXEC_RUNC" "$RUNC_EXEC")x (berth's own overhead around runc exec)"
[ "$DO_START" -eq 1 ] || exit 0

say ""
say "## start latency (continued)"
time_runs "berth run --rm (embedded)" "$STARTS" "$BERTH" --root "$W/store" run --rm --network none "$REG/bench/busybox:v1" true
BERTH_START=$MEDIAN
time_runs "berth run --rm, bridge network" "$STARTS" "$BERTH" --root "$W/store" run --rm "$REG/bench/busybox:v1" true
BERTH_BRIDGE=$MEDIAN
time_runs "berth run --rm --runtime runc" "$STARTS" "$BERTH" --root "$W/store" run --rm --network none --runtime runc "$REG/bench/busybox:v1" true
BERTH_RUNC=$MEDIAN
time_runs "runc run (bundle)" "$STARTS" runc_once
RUNC=$MEDIAN

# crun, in a mount namespace without the v2 hierarchy of a hybrid host.
cat >"$W/crun-loop.sh" <<EOF
set -e
if grep -q " /sys/fs/cgroup/unified " /proc/self/mountinfo; then umount /sys/fs/cgroup/unified; fi
for i in 1 2 3; do crun --root "$W/crun-state" run -b "$W/bundle" "bench-crun-warm-\$i" >/dev/null; done
for i in \$(seq $STARTS); do
  t0=\$EPOCHREALTIME
  crun --root "$W/crun-state" run -b "$W/bundle" "bench-crun-\$i" >/dev/null
  t1=\$EPOCHREALTIME
  echo "(\$t1 - \$t0) * 1000" | bc -l
done
EOF
mapfile -t CRUN_TIMES < <(unshare -m --propagation private bash "$W/crun-loop.sh")
MEDIAN=$(printf '%s\n' "${CRUN_TIMES[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
say "$(printf '%-34s median %8.1f ms   mean %8.1f ms   (%d runs)' "crun run (bundle)" "$MEDIAN" \
  "$(printf '%s\n' "${CRUN_TIMES[@]}" | awk '{s+=$1} END {print s/NR}')" "${#CRUN_TIMES[@]}")"
CRUN=$MEDIAN

PODMAN=(podman --root "$W/podman" --runroot "$W/podman-run" --cgroup-manager cgroupfs --events-backend none)
"${PODMAN[@]}" pull -q --tls-verify=false "$REG/bench/busybox:v1" >/dev/null
# podman's default open-files and process limits (1048576) need CAP_SYS_RESOURCE where the
# caller's hard limits are lower (as in some sandboxes); berth caps them at the caller's, so
# podman gets the same. podman 4.3 also lowers its own hard process limit to 32768 as it starts,
# so runc, its child, cannot set more than that.
NOFILE=$(ulimit -Hn); NPROC=$(ulimit -Hu)
[ "$NPROC" = unlimited ] || [ "$NPROC" -gt 32768 ] && NPROC=32768
PODMAN_RUN=("${PODMAN[@]}" --runtime runc run --rm --network none --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC"
  "$REG/bench/busybox:v1" true)
if PODMAN_ERR=$("${PODMAN_RUN[@]}" 2>&1); then
  time_runs "podman run --rm --network none (runc)" "$STARTS" "${PODMAN_RUN[@]}"
  PODMAN_START=$MEDIAN
else
  say "podman run: cannot run here: $PODMAN_ERR"
  PODMAN_START=""
fi
# podman on its default network, with runc and the CNI backend (its netavark one could not
# reach its containers on this host; see the README's networks section).
PODMAN_NET_RUN=("${PODMAN[@]}" --network-backend cni --runtime runc run --rm --ulimit "nofile=$NOFILE:$NOFILE"
  --ulimit "nproc=$NPROC:$NPROC" "$REG/bench/busybox:v1" true)
if PODMAN_ERR=$("${PODMAN_NET_RUN[@]}" 2>&1); then
  time_runs "podman run --rm (runc, cni network)" "$STARTS" "${PODMAN_NET_RUN[@]}"
  PODMAN_NET=$MEDIAN
else
  say "podman run on its network: cannot run here: $PODMAN_ERR"
  PODMAN_NET=""
fi

say ""
say "berth/runc   $(ratio "$BERTH_START" "$RUNC")x   (target: at most 1.3x)"
say "berth/crun   $(ratio "$BERTH_START" "$CRUN")x"
[ -n "$PODMAN_START" ] && say "berth/podman $(ratio "$BERTH_START" "$PODMAN_START")x"
say "berth with runc / runc alone: $(ratio "$BERTH_RUNC" "$RUNC")x (berth's own overhead around a runtime)"
say "bridge network costs $(printf '%.1f' "$(echo "$BERTH_BRIDGE - $BERTH_START" | bc -l)") ms a start (target: at most 15 ms)"
[ -n "$PODMAN_NET" ] && say "berth/podman on a network $(ratio "$BERTH_BRIDGE" "$PODMAN_NET")x   (target: at most 0.5x)"

[ "$DO_PULL" -eq 1 ] || exit 0

# ---- pull + unpack -----------------------------------------------------------------------
say ""
say "## pull + unpack of a Debian bookworm minbase image"
DEB=$CACHE/debian-rootfs
if [ ! -f "$CACHE/debian-rootfs.done" ]; then
  echo "== debootstrap --variant=minbase bookworm (once; cached in $CACHE)"
  rm -rf "$DEB"
  debootstrap --variant=minbase bookworm "$DEB" http://deb.debian.org/debian >"$CACHE/debootstrap.log" 2>&1
  touch "$CACHE/debian-rootfs.done"
fi
make_layout "$W/debian" "$DEB"
push "$W/debian/layout" "$REG/bench/debian:v1"
say "image: $(du -sm "$DEB" | cut -f1) MB unpacked, one gzip layer of $(( $(stat -c %s "$W/debian/layer.tar.gz") / 1048576 )) MB"

best() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
seconds() { local t0=$EPOCHREALTIME; "$@" >/dev/null 2>&1 || { echo "failed: $*" >&2; "$@"; exit 1; }; echo "$EPOCHREALTIME - $t0" | bc -l; }

gz=(); berth=(); umoci=(); podman=()
for i in $(seq "$PULLS"); do
  sync; rm -rf "$W/x"; mkdir -p "$W/x"
  gz+=("$(seconds sh -c "gzip -dc '$W/debian/layer.tar.gz' | tar -x -C '$W/x'")")
  rm -rf "$W/x" "$W/pullstore"; sync
  berth+=("$(seconds "$BERTH" --root "$W/pullstore" pull -q "$REG/bench/debian:v1")")
  rm -rf "$W/pullstore" "$W/oci" "$W/unpacked"; sync
  umoci+=("$(seconds sh -c "skopeo --insecure-policy copy -q --src-tls-verify=false docker://$REG/bench/debian:v1 oci:$W/oci:v1 && umoci unpack --image $W/oci:v1 $W/unpacked")")
  rm -rf "$W/oci" "$W/unpacked"; sync
  podman+=("$(seconds podman --cgroup-manager cgroupfs --events-backend none --root "$W/podman-pull-$i" --runroot "$W/podman-pull-run-$i" --storage-driver overlay pull -q --tls-verify=false "$REG/bench/debian:v1")")
  podman --root "$W/podman-pull-$i" --runroot "$W/podman-pull-run-$i" rmi -af >/dev/null 2>&1 || true
  rm -rf "$W/podman-pull-$i" "$W/podman-pull-run-$i"
done
GZ=$(best "${gz[@]}"); B=$(best "${berth[@]}"); U=$(best "${umoci[@]}"); P=$(best "${podman[@]}")
say "$(printf '%-34s %6.2f s' "gzip -dc | tar -x (baseline)" "$GZ")"
say "$(printf '%-34s %6.2f s' "berth pull" "$B")"
say "$(printf '%-34s %6.2f s' "skopeo copy + umoci unpack" "$U")"
say "$(printf '%-34s %6.2f s' "podman pull" "$P")"
say ""
say "berth/gzip|tar  $(ratio "$B" "$GZ")x   (target: at most 1.2x)"
say "berth/podman    $(ratio "$B" "$P")x   (target: below 1)"
say "berth/skopeo+umoci $(ratio "$B" "$U")x"
say ""
say "results: $RESULTS"
