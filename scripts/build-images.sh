#!/usr/bin/env bash
# Builds the static demo-node binary (release, x86_64-unknown-linux-gnu, crt-static) and the
# FROM scratch image chaos-demo-node:latest from it. Idempotent and quick when up to date
# (cargo and docker's layer cache both skip unchanged work). Needs only cargo and the docker CLI;
# nothing is pulled (FROM scratch).
#
# Usage: scripts/build-images.sh [--no-image] [--tag NAME:TAG] [--zookeeper] [--redis] [--otel]
#   --no-image   build the static binary only (prints its path)
#   --tag        image tag (default chaos-demo-node:latest; env DEMO_NODE_IMAGE also works)
#   --zookeeper  also the JMX agent jar (jmx-agent/build.sh) and chaos-zookeeper:latest
#                (scripts/build-zookeeper-image.sh: debootstrap, about 5 min cold, cached)
#   --redis      also chaos-redis:latest (scripts/build-redis-image.sh: Debian's redis-server and
#                redis-sentinel by debootstrap, a few minutes cold, cached)
#   --otel       also chaos-otel-python:latest, the OpenTelemetry Python SDK image of examples/otel
#                (scripts/build-otel-image.sh: debootstrap and pip, about 5 min cold, cached)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_TRIPLE="x86_64-unknown-linux-gnu"
TAG="${DEMO_NODE_IMAGE:-chaos-demo-node:latest}"
BUILD_IMAGE=1
ZOOKEEPER=0
REDIS=0
OTEL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --no-image) BUILD_IMAGE=0 ;;
    --zookeeper) ZOOKEEPER=1 ;;
    --redis) REDIS=1 ;;
    --otel) OTEL=1 ;;
    --tag) shift; TAG="${1:?--tag needs a value}" ;;
    --tag=*) TAG="${1#--tag=}" ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build-images.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done

if [ "$ZOOKEEPER" = 1 ] && [ "$BUILD_IMAGE" = 1 ]; then
  bash "$ROOT/jmx-agent/build.sh" >/dev/null
  bash "$ROOT/scripts/build-zookeeper-image.sh"
fi
if [ "$REDIS" = 1 ] && [ "$BUILD_IMAGE" = 1 ]; then
  bash "$ROOT/scripts/build-redis-image.sh"
fi
if [ "$OTEL" = 1 ] && [ "$BUILD_IMAGE" = 1 ]; then
  bash "$ROOT/scripts/build-otel-image.sh"
fi

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
mkdir -p "$TARGET_DIR"
# Several test processes may call this at once: one build at a time.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$TARGET_DIR/.build-images.lock"
  flock 9
fi
# --target keeps these artifacts in target/$TARGET_TRIPLE, apart from the host builds, and makes
# RUSTFLAGS apply to the target crates only (not build scripts or proc macros).
RUSTFLAGS="${DEMO_NODE_RUSTFLAGS:--C target-feature=+crt-static}" \
  cargo build --quiet --release -p demo-node --target "$TARGET_TRIPLE" --manifest-path "$ROOT/Cargo.toml"
BIN="$TARGET_DIR/$TARGET_TRIPLE/release/demo-node"
[ -x "$BIN" ] || { echo "build-images.sh: binary not found at $BIN" >&2; exit 5; }
if command -v file >/dev/null 2>&1 && ! file "$BIN" | grep -qE 'static(ally|-pie) linked'; then
  echo "build-images.sh: $BIN is not statically linked" >&2
  exit 5
fi
if [ "$BUILD_IMAGE" = 0 ]; then
  echo "$BIN"
  exit 0
fi

command -v docker >/dev/null 2>&1 || { echo "build-images.sh: docker CLI not found" >&2; exit 5; }
# A minimal build context: the Dockerfile and the binary only (not the repository or target/).
CTX="$TARGET_DIR/demo-node-image"
mkdir -p "$CTX"
cp "$ROOT/demo-node/Dockerfile" "$CTX/Dockerfile"
if ! cmp -s "$BIN" "$CTX/demo-node"; then
  cp "$BIN" "$CTX/demo-node.tmp.$$" && mv -f "$CTX/demo-node.tmp.$$" "$CTX/demo-node"
fi
SUM="$(sha256sum "$CTX/demo-node" | cut -d' ' -f1)"
# Skip docker build entirely when the image already holds this exact binary.
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chaos-trace.demo-node.sha256" }}' "$TAG" 2>/dev/null || true)" = "$SUM" ]; then
  echo "$TAG up to date ($SUM)"
  exit 0
fi
DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --quiet \
  --label "org.chaos-trace.demo-node.sha256=$SUM" -t "$TAG" "$CTX" >/dev/null
echo "$TAG built ($SUM)"
