#!/usr/bin/env bash
# OTLP receiver throughput without loss: otlp/examples/otlp_bench.rs (release) on loopback, each
# run N spans from C exporters in batches of B (one request in flight per exporter, a refused
# request retried after 10 ms) through the receiver's bounded queue into a trace writer; prints
# spans/s until the last span is in the event log, the refused requests, and fails when the
# finalized trace does not hold every span sent. Nothing leaves the machine.
#
# Usage: scripts/bench-otlp.sh [--runs "PROTOCOL:CLIENTS:BATCH:SPANS ..."]
#   default runs: "grpc:1:512:500000 grpc:4:512:1000000 http:4:512:1000000 grpc:4:64:500000"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="grpc:1:512:500000 grpc:4:512:1000000 http:4:512:1000000 grpc:4:64:500000"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) shift; RUNS="${1:?--runs needs a value}" ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "bench-otlp.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done
cargo build --quiet --release -p otlp --example otlp_bench --manifest-path "$ROOT/Cargo.toml"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/otlp_bench"
for r in $RUNS; do
  IFS=: read -r proto clients batch spans <<<"$r"
  "$BIN" --protocol "$proto" --clients "$clients" --batch "$batch" --spans "$spans"
done
