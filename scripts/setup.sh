#!/usr/bin/env bash
# Installs what a fresh machine lacks for the tests and the demo: host tools the recorder drives
# (iptables, tc, nsenter, tcpdump, jattach), tshark for the packet reference test, Debian's
# jolokia-core and json-simple jars and a JDK for the Jolokia conformance test and the JMX agent
# (jmx-agent/build.sh), debootstrap for the ZooKeeper image (scripts/build-zookeeper-image.sh),
# Chromium for the HTML report test, the Python packages of the compatibility test, the moto S3
# server of the object-storage tests, and a running
# Docker engine. Idempotent and quiet when all is there.
#
# Usage: scripts/setup.sh [--host-tools]   (--host-tools: only what recording needs: iptables,
#                                           iproute2, util-linux, tcpdump, jattach, and the engine)
set -euo pipefail
HOST_TOOLS_ONLY=0
[ "${1:-}" = "--host-tools" ] && HOST_TOOLS_ONLY=1

need_apt=()
command -v iptables >/dev/null 2>&1 || need_apt+=(iptables)
command -v tc >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
command -v tcpdump >/dev/null 2>&1 || need_apt+=(tcpdump)
# HotSpot attach from the host: the jmx sensor's `attach = true` and `recorder jmx`.
command -v jattach >/dev/null 2>&1 || need_apt+=(jattach)
if [ "$HOST_TOOLS_ONLY" = 0 ]; then
  command -v tshark >/dev/null 2>&1 || need_apt+=(tshark)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  # The real Jolokia request handler for the live conformance test (sensor-protocols/tests/jolokia_real.rs).
  [ -f /usr/share/java/jolokia-core.jar ] || need_apt+=(libjolokia-core-java)
  # The JMX agent jar merges json-simple (jmx-agent/build.sh).
  [ -f /usr/share/java/json-simple.jar ] || need_apt+=(libjson-simple-java)
  command -v javac >/dev/null 2>&1 || need_apt+=(default-jdk-headless)
  # The ZooKeeper example's image is a debootstrapped Debian rootfs.
  command -v debootstrap >/dev/null 2>&1 || need_apt+=(debootstrap)
  # headless browser of the HTML report test (tests/integration/report_html.rs)
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if [ "$HOST_TOOLS_ONLY" = 0 ] && ! python3 -c 'import pyarrow, duckdb, pytest' >/dev/null 2>&1; then
  echo "setup: installing pyarrow duckdb pytest" >&2
  python3 -m pip install -q --disable-pip-version-check pyarrow duckdb pytest
fi

# The S3-protocol server the object-storage tests start on localhost (tests/integration/s3.rs).
if [ "$HOST_TOOLS_ONLY" = 0 ] && ! command -v moto_server >/dev/null 2>&1; then
  echo "setup: installing moto[server]" >&2
  python3 -m pip install -q --disable-pip-version-check 'moto[server]'
fi

if ! docker version >/dev/null 2>&1; then
  echo "setup: starting the Docker engine" >&2
  (service docker start || systemctl start docker) >/dev/null 2>&1 || true
  for _ in $(seq 1 30); do docker version >/dev/null 2>&1 && break; sleep 1; done
fi
