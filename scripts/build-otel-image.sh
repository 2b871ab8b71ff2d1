#!/usr/bin/env bash
# Builds chaos-otel-python:latest, the image of examples/otel and of the OTLP receiver's Docker
# test, nothing pulled from an image registry: a minimal Debian rootfs (debootstrap
# --variant=minbase, the host's suite and apt mirror) with Debian's python3, plus the
# OpenTelemetry Python SDK and its OTLP exporters (gRPC and HTTP/protobuf) from PyPI, installed by
# the host's pip into /opt/otel (on PYTHONPATH), imported with `docker import`. The example's
# programs are not in the image: compose mounts them. Cached: skipped when the image carries the
# same recipe hash (suite, mirror, packages, versions). Cold: about 2 minutes; needs root,
# debootstrap, pip and the docker CLI.
#
# Usage: scripts/build-otel-image.sh [--tag NAME:TAG]   (env OTEL_IMAGE also sets the tag;
#        DEBIAN_SUITE and DEBIAN_MIRROR override the host's)
set -euo pipefail
TAG="${OTEL_IMAGE:-chaos-otel-python:latest}"
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) shift; TAG="${1:?--tag needs a value}" ;;
    --tag=*) TAG="${1#--tag=}" ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "build-otel-image.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
command -v docker >/dev/null 2>&1 || { echo "build-otel-image.sh: docker CLI not found" >&2; exit 5; }

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
DEB_PACKAGES="python3"
OTEL_VERSION=1.45.2
PY_PACKAGES="opentelemetry-sdk==$OTEL_VERSION opentelemetry-exporter-otlp-proto-grpc==$OTEL_VERSION opentelemetry-exporter-otlp-proto-http==$OTEL_VERSION"
# Bump RECIPE_VERSION when the steps below change.
RECIPE_VERSION=1
SUM="$(printf '%s' "$RECIPE_VERSION $SUITE $MIRROR $DEB_PACKAGES $PY_PACKAGES" | sha256sum | cut -d' ' -f1)"

# One build at a time (several test processes may call this at once).
if command -v flock >/dev/null 2>&1; then
  exec 9>/var/tmp/.chaos-otel-image.lock
  flock 9
fi
if [ "$(docker image inspect -f '{{ index .Config.Labels "org.chaos-trace.otel.recipe" }}' "$TAG" 2>/dev/null || true)" = "$SUM" ]; then
  echo "$TAG up to date"
  exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "build-otel-image.sh: debootstrap not found (apt-get install debootstrap, or scripts/setup.sh)" >&2; exit 5; }
[ "$(id -u)" = 0 ] || { echo "build-otel-image.sh: debootstrap needs root" >&2; exit 5; }
PIP="${PIP:-python3 -m pip}"
$PIP --version >/dev/null 2>&1 || { echo "build-otel-image.sh: pip not found on the host ($PIP)" >&2; exit 5; }

WORK="$(mktemp -d /var/tmp/chaos-otel-rootfs.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
START=$(date +%s)
echo "build-otel-image.sh: debootstrap $SUITE from $MIRROR ($DEB_PACKAGES)" >&2
if ! debootstrap --variant=minbase --include="$DEB_PACKAGES" "$SUITE" "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -30 "$WORK/debootstrap.log" >&2
  echo "build-otel-image.sh: debootstrap failed" >&2
  exit 5
fi
R="$WORK/rootfs"
# The wheels for the rootfs's own python (not the host's): its version, CPython, x86_64 glibc.
PYVER="$(ls "$R/usr/lib" | grep -E '^python3\.[0-9]+$' | sort -V | tail -1 | sed 's/^python//')"
[ -n "$PYVER" ] || { echo "build-otel-image.sh: no python3 in the rootfs" >&2; exit 5; }
echo "build-otel-image.sh: pip install for python $PYVER: $PY_PACKAGES" >&2
# shellcheck disable=SC2086
if ! $PIP install --quiet --no-cache-dir --disable-pip-version-check --target "$R/opt/otel" \
    --only-binary=:all: --implementation cp --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    $PY_PACKAGES >"$WORK/pip.log" 2>&1; then
  tail -30 "$WORK/pip.log" >&2
  echo "build-otel-image.sh: pip install failed" >&2
  exit 5
fi
rm -rf "$R"/usr/share/doc/* "$R"/usr/share/man/* "$R"/usr/share/info/* "$R"/var/cache/apt/* \
  "$R"/var/lib/apt/lists/* "$R"/var/log/*.log "$R"/usr/share/locale/*
tar -C "$R" --numeric-owner -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV PYTHONPATH=/opt/otel' \
  -c 'ENV PYTHONUNBUFFERED=1' \
  -c "LABEL org.chaos-trace.otel.recipe=$SUM" \
  - "$TAG" >/dev/null
SIZE="$(docker image inspect -f '{{ .Size }}' "$TAG")"
echo "$TAG built ($((SIZE / 1048576)) MiB, $(( $(date +%s) - START )) s)"
