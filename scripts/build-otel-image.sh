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
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
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
BUILDER=build-otel-image.sh
# shellcheck source=scripts/lib/debootstrap.sh
. "$ROOT/scripts/lib/debootstrap.sh"
command -v docker >/dev/null 2>&1 || die "docker CLI not found"

debian_source
DEB_PACKAGES="python3"
OTEL_VERSION=1.45.2
PY_PACKAGES="opentelemetry-sdk==$OTEL_VERSION opentelemetry-exporter-otlp-proto-grpc==$OTEL_VERSION opentelemetry-exporter-otlp-proto-http==$OTEL_VERSION"
# Bump RECIPE_VERSION when the steps below change.
RECIPE_VERSION=1
SUM="$(recipe_sum "$RECIPE_VERSION" "$SUITE" "$MIRROR" "$DEB_PACKAGES" "$PY_PACKAGES")"

# One build at a time (several test processes may call this at once).
build_lock chaos-otel-image
if [ "$(image_label "$TAG" org.chaos-trace.otel.recipe)" = "$SUM" ]; then
  echo "$TAG up to date"
  exit 0
fi
PIP="${PIP:-python3 -m pip}"
$PIP --version >/dev/null 2>&1 || die "pip not found on the host ($PIP)"
debootstrap_rootfs chaos-otel-rootfs "$DEB_PACKAGES"
R="$ROOTFS"
# The wheels for the rootfs's own python (not the host's): its version, CPython, x86_64 glibc.
PYVER="$(ls "$R/usr/lib" | grep -E '^python3\.[0-9]+$' | sort -V | tail -1 | sed 's/^python//')"
[ -n "$PYVER" ] || die "no python3 in the rootfs"
echo "$BUILDER: pip install for python $PYVER: $PY_PACKAGES" >&2
# shellcheck disable=SC2086
if ! $PIP install --quiet --no-cache-dir --disable-pip-version-check --target "$R/opt/otel" \
    --only-binary=:all: --implementation cp --python-version "$PYVER" \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
    $PY_PACKAGES >"$WORK/pip.log" 2>&1; then
  tail -30 "$WORK/pip.log" >&2
  die "pip install failed"
fi
trim_rootfs --keep-zoneinfo
import_rootfs "$TAG" 'ENV PYTHONPATH=/opt/otel' 'ENV PYTHONUNBUFFERED=1' "LABEL org.chaos-trace.otel.recipe=$SUM"
