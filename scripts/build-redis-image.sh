#!/usr/bin/env bash
# Builds chaos-redis:latest, the image of examples/redis-sentinel (Redis master, replicas,
# sentinels and the writing client), nothing pulled from an image registry: a minimal Debian
# rootfs (debootstrap --variant=minbase, the host's suite and apt mirror) with Debian's
# `redis-server`, `redis-sentinel` and `redis-tools` (redis-cli), imported with `docker import`.
# Cached: skipped when the image carries the same recipe hash (packages, suite, mirror,
# trimming). Cold: a few minutes; needs root and debootstrap. Needs the docker CLI.
#
# Usage: scripts/build-redis-image.sh [--tag NAME:TAG]   (env REDIS_IMAGE also sets the tag;
#        DEBIAN_SUITE and DEBIAN_MIRROR override the host's)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TAG="${REDIS_IMAGE:-chaos-redis:latest}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) shift; TAG="${1:?--tag needs a value}" ;;
    --tag=*) TAG="${1#--tag=}" ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build-redis-image.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
BUILDER=build-redis-image.sh
# shellcheck source=scripts/lib/debootstrap.sh
. "$ROOT/scripts/lib/debootstrap.sh"
command -v docker >/dev/null 2>&1 || die "docker CLI not found"

debian_source
PACKAGES="redis-server,redis-sentinel,redis-tools"

# Bump RECIPE_VERSION when the debootstrap or trimming steps below change.
RECIPE_VERSION=1
SUM="$(recipe_sum "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$PACKAGES")"

# One build at a time (several test processes may call this at once).
build_lock chaos-redis-image
if [ "$(image_label "$TAG" org.chaos-trace.redis.recipe)" = "$SUM" ]; then
  echo "$TAG up to date"
  exit 0
fi
debootstrap_rootfs chaos-redis-rootfs "$PACKAGES"
# Trim what a container never reads.
trim_rootfs --zoneinfo
import_rootfs "$TAG" "LABEL org.chaos-trace.redis.recipe=$SUM"
