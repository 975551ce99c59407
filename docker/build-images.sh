#!/usr/bin/env bash
# Builds the images of the berth deployment FROM scratch, out of binaries on this host, so
# nothing has to be pulled from a registry:
#
#   berth/registry:dev  berth serve                      (docker/Dockerfile)
#   berth/s3:dev        s3s-fs 0.14.1, an S3 server      (docker/s3.Dockerfile)
#   berth/lb:dev        Debian's nginx, load balancer    (docker/lb.Dockerfile)
#
# Usage: docker/build-images.sh [registry] [s3] [lb]      (no argument: all three)
#
# Each image holds its binary, the shared libraries `ldd` lists for it (with the dynamic
# loader) at the same paths as on the host, and a few files under /etc. The build contexts
# are written to a folder under target/docker/ and removed at the end.
#
# Environment:
#   BERTH_IMAGE, BERTH_S3_IMAGE, BERTH_LB_IMAGE   tags (defaults above; compose.yaml reads the same)
#   BERTH_BIN       a berth binary to use instead of building one
#   BERTH_STATIC=1  build berth statically linked (glibc, +crt-static) instead of
#                   `cargo build --release -p berth-cli`; a separate, full build
#   S3S_FS_BIN      s3s-fs binary (default: on PATH, else ~/.cargo/bin/s3s-fs; install it with
#                   `cargo install s3s-fs@0.14.1 --locked --features binary`)
#   NGINX_BIN       nginx binary (default /usr/sbin/nginx; apt-get install -y nginx-light)
#   BUSYBOX         static busybox for the S3 image's entrypoint (default /bin/busybox;
#                   apt-get install -y busybox-static)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DOCKER_DIR="$ROOT/docker"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CONTEXTS="$TARGET_DIR/docker"
CARGO="${CARGO:-cargo}"

BERTH_IMAGE="${BERTH_IMAGE:-berth/registry:dev}"
BERTH_S3_IMAGE="${BERTH_S3_IMAGE:-berth/s3:dev}"
BERTH_LB_IMAGE="${BERTH_LB_IMAGE:-berth/lb:dev}"
NGINX_BIN="${NGINX_BIN:-/usr/sbin/nginx}"
BUSYBOX="${BUSYBOX:-/bin/busybox}"
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { echo "== $*" >&2; }
die() { echo "build-images: $*" >&2; exit 1; }

# Copies the binary $2 into the root filesystem $1 as $3, with every shared library it loads
# (and the dynamic loader) at the path ldd reports, so the loader finds them without an
# ld.so.cache. A static binary is copied alone.
add_binary() {
  local rootfs="$1" src="$2" dest="$3" deps lib
  [ -x "$src" ] || die "$src is missing or not executable"
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L "$src" "$rootfs$dest"
  chmod 0755 "$rootfs$dest"
  if ! deps="$(ldd "$src" 2>&1)"; then
    case "$deps" in
      *"not a dynamic executable"*) return 0 ;;
      *) die "ldd $src failed: $deps" ;;
    esac
  fi
  case "$deps" in
    *"statically linked"*) return 0 ;;
    *"not found"*) die "$src needs libraries this host lacks:"$'\n'"$deps" ;;
  esac
  while read -r lib; do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$deps")
}

# Writes /etc/passwd and /etc/group for root, one service user ($2, uid and gid $3) and nobody,
# plus an /etc/nsswitch.conf so glibc looks up names in files, then DNS.
add_users() {
  local rootfs="$1" user="$2" id="$3" home="$4"
  mkdir -p "$rootfs/etc"
  printf '%s\n' "root:x:0:0:root:/root:/sbin/nologin" \
    "$user:x:$id:$id:$user:$home:/sbin/nologin" \
    "nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin" >"$rootfs/etc/passwd"
  printf '%s\n' "root:x:0:" "$user:x:$id:" "nogroup:x:65534:" >"$rootfs/etc/group"
  printf '%s\n' "passwd: files" "group: files" "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
}

# A fresh, empty build context for image $1, with rootfs/ and /tmp (mode 1777) in it; one
# folder per run, so runs at the same time (parallel test runs) never share one.
new_context() {
  local ctx
  ctx="$(mktemp -d "$RUN_DIR/$1.XXXXXX")"
  mkdir -p "$ctx/rootfs/tmp"
  chmod 1777 "$ctx/rootfs/tmp"
  echo "$ctx"
}

# docker build with the context $1, the Dockerfile $2 and the tag $3. The image the tag named
# before is removed when nothing else uses it, so rebuilds leave no untagged images behind.
build() {
  local ctx="$1" dockerfile="$2" tag="$3" old new
  old="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
  log "docker build $tag"
  docker build --quiet --file "$dockerfile" --tag "$tag" \
    --label "org.opencontainers.image.revision=$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
    "$ctx" >/dev/null
  new="$(docker image inspect --format '{{.Id}}' "$tag")"
  if [ -n "$old" ] && [ "$old" != "$new" ]; then
    docker rmi "$old" >/dev/null 2>&1 || true
  fi
  log "$tag: $(docker image inspect --format '{{.Size}}' "$tag" | awk '{ printf "%.1f MB", $1 / 1e6 }')"
}

# The berth binary: BERTH_BIN, else a release build (static with BERTH_STATIC=1).
berth_binary() {
  if [ -n "${BERTH_BIN:-}" ]; then
    echo "$BERTH_BIN"
    return
  fi
  if [ "${BERTH_STATIC:-0}" = 1 ]; then
    local host
    host="$(rustc -vV | sed -n 's/^host: //p')"
    log "cargo build --release -p berth-cli --target $host (static)"
    # With --target, RUSTFLAGS reach only the target's crates, not build scripts or proc macros.
    (cd "$ROOT" && RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
      "$CARGO" build --release -p berth-cli --target "$host" >&2)
    echo "$TARGET_DIR/$host/release/berth"
  else
    log "cargo build --release -p berth-cli"
    (cd "$ROOT" && "$CARGO" build --release -p berth-cli >&2)
    echo "$TARGET_DIR/release/berth"
  fi
}

build_registry() {
  local bin ctx
  bin="$(berth_binary)"
  ctx="$(new_context registry)"
  add_binary "$ctx/rootfs" "$bin" /berth
  [ -f "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing (apt-get install -y ca-certificates)"
  mkdir -p "$ctx/rootfs/etc/ssl/certs"
  cp -L "$CA_BUNDLE" "$ctx/rootfs$CA_BUNDLE"
  add_users "$ctx/rootfs" berth 65532 /data
  mkdir -p "$ctx/data"
  build "$ctx" "$DOCKER_DIR/Dockerfile" "$BERTH_IMAGE"
}

build_s3() {
  local bin="${S3S_FS_BIN:-}" ctx applet
  if [ -z "$bin" ]; then
    bin="$(command -v s3s-fs || true)"
    [ -n "$bin" ] || bin="$HOME/.cargo/bin/s3s-fs"
  fi
  [ -x "$bin" ] || die "s3s-fs not found: cargo install s3s-fs@0.14.1 --locked --features binary (or set S3S_FS_BIN)"
  [ -x "$BUSYBOX" ] || die "$BUSYBOX not found: apt-get install -y busybox-static (or set BUSYBOX)"
  if ldd "$BUSYBOX" >/dev/null 2>&1 && ! ldd "$BUSYBOX" 2>&1 | grep -q "statically linked"; then
    die "$BUSYBOX is dynamically linked; the S3 image needs a static one (busybox-static)"
  fi
  ctx="$(new_context s3)"
  add_binary "$ctx/rootfs" "$bin" /s3s-fs
  mkdir -p "$ctx/rootfs/bin"
  cp -L "$BUSYBOX" "$ctx/rootfs/bin/busybox"
  for applet in sh mkdir wget grep ls cat find; do
    ln -s busybox "$ctx/rootfs/bin/$applet"
  done
  install -m 0755 "$DOCKER_DIR/s3-entrypoint.sh" "$ctx/rootfs/entrypoint.sh"
  add_users "$ctx/rootfs" s3 65532 /data
  mkdir -p "$ctx/data"
  build "$ctx" "$DOCKER_DIR/s3.Dockerfile" "$BERTH_S3_IMAGE"
}

build_lb() {
  local ctx dir
  [ -x "$NGINX_BIN" ] || die "$NGINX_BIN not found: apt-get install -y nginx-light (or set NGINX_BIN)"
  ctx="$(new_context lb)"
  add_binary "$ctx/rootfs" "$NGINX_BIN" /usr/sbin/nginx
  mkdir -p "$ctx/rootfs/etc/nginx"
  cp "$DOCKER_DIR/nginx.conf" "$ctx/rootfs/etc/nginx/nginx.conf"
  # Debian's build names these folders as defaults (temporary files, logs, lock, pid).
  for dir in /var/lib/nginx /var/log/nginx /var/lock /run; do
    mkdir -p "$ctx/rootfs$dir"
  done
  # uid and gid 101, as in the official image.
  add_users "$ctx/rootfs" nginx 101 /nonexistent
  build "$ctx" "$DOCKER_DIR/lb.Dockerfile" "$BERTH_LB_IMAGE"
}

command -v docker >/dev/null 2>&1 || die "docker is not installed"
mkdir -p "$CONTEXTS"
RUN_DIR="$(mktemp -d "$CONTEXTS/run.XXXXXX")"
trap 'rm -rf "$RUN_DIR"' EXIT
[ $# -gt 0 ] || set -- registry s3 lb
for image in "$@"; do
  case "$image" in
    registry) build_registry ;;
    s3) build_s3 ;;
    lb) build_lb ;;
    *) die "unknown image $image (expected registry, s3 or lb)" ;;
  esac
done
