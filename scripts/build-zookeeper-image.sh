#!/usr/bin/env bash
# Builds chaos-zookeeper:latest, the image of examples/zookeeper and of the JMX attach tests, in two
# steps, nothing pulled from an image registry:
#   1. chaos-zookeeper-base:latest: a minimal Debian rootfs (debootstrap --variant=minbase, the
#      host's suite and apt mirror) with Debian's ZooKeeper (`libzookeeper-java`: the jars of the
#      `zookeeper` package, whose own dependency on the full `default-jre` would pull GTK and
#      Mesa into the image) and `openjdk-17-jre-headless`, imported with `docker import`. Cached: skipped when the image carries the same recipe hash
#      (packages, suite, mirror, trimming). Cold: about 5 minutes; needs root and debootstrap.
#   2. chaos-zookeeper:latest: FROM the base, plus the `zookeeper` user, a console log4j
#      configuration and examples/zookeeper/image/zk-start (docker build of
#      examples/zookeeper/image/Dockerfile; seconds).
# No JMX agent inside: the recorder attaches its own at run time. Needs the docker CLI.
#
# Usage: scripts/build-zookeeper-image.sh [--tag NAME:TAG]   (env ZOOKEEPER_IMAGE also sets the tag,
#        ZOOKEEPER_BASE_IMAGE the base's; DEBIAN_SUITE and DEBIAN_MIRROR override the host's)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${ZOOKEEPER_IMAGE:-chaos-zookeeper:latest}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) shift; TAG="${1:?--tag needs a value}" ;;
    --tag=*) TAG="${1#--tag=}" ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "build-zookeeper-image.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
command -v docker >/dev/null 2>&1 || { echo "build-zookeeper-image.sh: docker CLI not found" >&2; exit 5; }

# The host's suite and mirror (deb822 sources or a one-line sources.list), else Debian's defaults.
SUITE="${DEBIAN_SUITE:-}"
MIRROR="${DEBIAN_MIRROR:-}"
if [ -z "$SUITE" ] && [ -r /etc/os-release ]; then
  SUITE="$(. /etc/os-release; echo "${VERSION_CODENAME:-}")"
fi
SUITE="${SUITE:-bookworm}"
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)"
fi
if [ -z "$MIRROR" ]; then
  MIRROR="$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1 || true)"
fi
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
PACKAGES="libzookeeper-java,openjdk-17-jre-headless"

BASE="${ZOOKEEPER_BASE_IMAGE:-chaos-zookeeper-base:latest}"
# Bump BASE_RECIPE_VERSION when the debootstrap or trimming steps below change.
BASE_RECIPE_VERSION=2
BASE_SUM="$(printf '%s' "$BASE_RECIPE_VERSION $SUITE $MIRROR $PACKAGES" | sha256sum | cut -d' ' -f1)"
IMAGE_DIR="$ROOT/examples/zookeeper/image"

build_final() {
  local sum
  sum="$(cat "$IMAGE_DIR/Dockerfile" "$IMAGE_DIR/zk-start" "$IMAGE_DIR/log4j.properties" | sha256sum | cut -d' ' -f1)-$BASE_SUM-$BASE"
  if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chaos-trace.zookeeper.recipe" }}' "$TAG" 2>/dev/null || true)" = "$sum" ]; then
    echo "$TAG up to date"
    return 0
  fi
  local out
  if ! out="$(DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --quiet \
    --build-arg "BASE=$BASE" --label "org.chaos-trace.zookeeper.recipe=$sum" -t "$TAG" "$IMAGE_DIR" 2>&1)"; then
    echo "$out" >&2
    echo "build-zookeeper-image.sh: docker build of $TAG failed" >&2
    exit 5
  fi
  echo "$TAG built"
}

# One build at a time (several test processes may call this at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>/var/tmp/.chaos-zookeeper-image.lock
  flock 9
fi
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chaos-trace.zookeeper.base" }}' "$BASE" 2>/dev/null || true)" = "$BASE_SUM" ]; then
  build_final
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "build-zookeeper-image.sh: debootstrap not found (apt-get install debootstrap, or scripts/setup.sh)" >&2; exit 5; }
[ "$(id -u)" = 0 ] || { echo "build-zookeeper-image.sh: debootstrap needs root" >&2; exit 5; }

WORK="$(mktemp -d /var/tmp/chaos-zk-rootfs.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
echo "build-zookeeper-image.sh: debootstrap $SUITE from $MIRROR ($PACKAGES)" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -30 "$WORK/debootstrap.log" >&2
  echo "build-zookeeper-image.sh: debootstrap failed" >&2
  exit 5
fi
R="$WORK/rootfs"
# Trim what a container never reads.
rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/cache/apt/* \
  "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/usr/share/locale/*
find "$R/usr/share/zoneinfo" -mindepth 1 -maxdepth 1 ! -name UTC ! -name Etc -exec rm -rf {} + 2>/dev/null || true
tar -C "$R" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "LABEL org.chaos-trace.zookeeper.base=$BASE_SUM" \
  - "$BASE" >/dev/null
SIZE="$(docker image inspect -f '{{ .Size }}' "$BASE")"
echo "$BASE built ($((SIZE / 1048576)) MiB, $(( $(date +%s) - START )) s)"
build_final
