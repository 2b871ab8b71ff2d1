#!/usr/bin/env bash
# Measures the pass-through path of an `http` fault: sequential HTTP requests from the host to
# demo-node `web` in a container, directly and through the fault's proxy (a fault whose route
# matches nothing), on one keep-alive connection and on a new connection per request. Prints a
# Markdown table (docs/performance.md, "HTTP fault proxy"). Needs Docker and root, like the
# integration tests.
#
# Usage: scripts/bench-http-fault.sh [REQUESTS]    (default 4000 keep-alive requests per row)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export BENCH_REQUESTS="${1:-4000}"
cd "$ROOT"
cargo test -q -p integration-tests --test integration -- --ignored --nocapture \
  http_dns_faults::bench_http_passthrough_overhead 2>&1 | grep '^|'
