#!/usr/bin/env bash
# Measures the slowdown the `syscall` fault's ptrace tracer costs a traced process: demo-node's
# `store --loop true` write loop (64-byte writes to a tmpfs file) untraced, traced with no call
# matching, traced with a path filter to look up, and delayed 1 ms per write. Prints a table
# (docs/faults.md and docs/performance.md quote it). Needs Docker and root; about 40 s.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUIRE_DOCKER=1 cargo test -q -p integration-tests --test integration -- \
  --ignored syscall_faults::syscall_overhead_benchmark --nocapture 2>&1 \
  | grep -E '^(write loop|  )'
