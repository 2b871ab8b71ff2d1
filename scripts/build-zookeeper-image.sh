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
BUILDER=build-zookeeper-image.sh
# shellcheck source=scripts/lib/debootstrap.sh
. "$ROOT/scripts/lib/debootstrap.sh"
command -v docker >/dev/null 2>&1 || die "docker CLI not found"

debian_source
PACKAGES="libzookeeper-java,openjdk-17-jre-headless"

BASE="${ZOOKEEPER_BASE_IMAGE:-chaos-zookeeper-base:latest}"
# Bump BASE_RECIPE_VERSION when the debootstrap or trimming steps below change.
BASE_RECIPE_VERSION=2
BASE_SUM="$(recipe_sum "$BASE_RECIPE_VERSION" "$SUITE" "$MIRROR" "$PACKAGES")"
IMAGE_DIR="$ROOT/examples/zookeeper/image"

build_final() {
  local sum
  sum="$(cat "$IMAGE_DIR/Dockerfile" "$IMAGE_DIR/zk-start" "$IMAGE_DIR/log4j.properties" | sha256sum | cut -d' ' -f1)-$BASE_SUM-$BASE"
  if [ "$(image_label "$TAG" org.chaos-trace.zookeeper.recipe)" = "$sum" ]; then
    echo "$TAG up to date"
    return 0
  fi
  local out
  if ! out="$(DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}" docker build --quiet \
    --build-arg "BASE=$BASE" --label "org.chaos-trace.zookeeper.recipe=$sum" -t "$TAG" "$IMAGE_DIR" 2>&1)"; then
    echo "$out" >&2
    die "docker build of $TAG failed"
  fi
  echo "$TAG built"
}

# One build at a time (several test processes may call this at once).
build_lock chaos-zookeeper-image
if [ "$(image_label "$BASE" org.chaos-trace.zookeeper.base)" = "$BASE_SUM" ]; then
  build_final
  exit 0
fi
debootstrap_rootfs chaos-zk-rootfs "$PACKAGES"
# Trim what a container never reads.
trim_rootfs --zoneinfo
import_rootfs "$BASE" "LABEL org.chaos-trace.zookeeper.base=$BASE_SUM"
build_final
