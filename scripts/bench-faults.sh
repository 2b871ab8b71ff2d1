#!/usr/bin/env bash
# Fault timing accuracy: schedules faults (pause, unpause, loss, partition, bandwidth) every 100 ms
# against two chatter containers and prints p50/p99 of (started - intended) and (ended - intended)
# per action, in milliseconds. Needs a Docker engine, root (nsenter/iptables/tc) and the demo image
# (built by the test itself via scripts/build-images.sh). BENCH_ROUNDS (default 100) rounds of 5.
# Usage: scripts/bench-faults.sh            (debug build, like the tests)
#        PROFILE=release scripts/bench-faults.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE_FLAG=()
if [ "${PROFILE:-debug}" = release ]; then PROFILE_FLAG=(--release); fi
cargo test "${PROFILE_FLAG[@]}" -p integration-tests --test integration -- \
  --ignored --exact faults::bench_fault_timing --nocapture --test-threads=1
