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
command -v docker >/dev/null 2>&1 || { echo "build-redis-image.sh: docker CLI not found" >&2; exit 5; }

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
PACKAGES="redis-server,redis-sentinel,redis-tools"

# Bump RECIPE_VERSION when the debootstrap or trimming steps below change.
RECIPE_VERSION=1
SUM="$(printf '%s' "$RECIPE_VERSION $SUITE $MIRROR $PACKAGES" | sha256sum | cut -d' ' -f1)"

# One build at a time (several test processes may call this at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>/var/tmp/.chaos-redis-image.lock
  flock 9
fi
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chaos-trace.redis.recipe" }}' "$TAG" 2>/dev/null || true)" = "$SUM" ]; then
  echo "$TAG up to date"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "build-redis-image.sh: debootstrap not found (apt-get install debootstrap, or scripts/setup.sh)" >&2; exit 5; }
[ "$(id -u)" = 0 ] || { echo "build-redis-image.sh: debootstrap needs root" >&2; exit 5; }

WORK="$(mktemp -d /var/tmp/chaos-redis-rootfs.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
echo "build-redis-image.sh: debootstrap $SUITE from $MIRROR ($PACKAGES)" >&2
if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -30 "$WORK/debootstrap.log" >&2
  echo "build-redis-image.sh: debootstrap failed" >&2
  exit 5
fi
R="$WORK/rootfs"
# Trim what a container never reads.
rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/cache/apt/* \
  "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/usr/share/locale/*
find "$R/usr/share/zoneinfo" -mindepth 1 -maxdepth 1 ! -name UTC ! -name Etc -exec rm -rf {} + 2>/dev/null || true
tar -C "$R" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c "LABEL org.chaos-trace.redis.recipe=$SUM" \
  - "$TAG" >/dev/null
SIZE="$(docker image inspect -f '{{ .Size }}' "$TAG")"
echo "$TAG built ($((SIZE / 1048576)) MiB, $(( $(date +%s) - START )) s)"
