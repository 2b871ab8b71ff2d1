#!/usr/bin/env bash
# Monitor engine throughput, end to end from Parquet: `analyzer check` over a generated trace
# for (a) guard-only machines, (b) regex guards, (c) 100 per-key instances with timeouts, and a
# baseline (read + dispatch, no handler work). Prints events/s per case (one core: check is
# single-threaded). Usage: scripts/bench-monitor.sh [EVENTS]  (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000000}"
cargo build --release -p analyzer >/dev/null
A=target/release/analyzer
T="${TMPDIR:-/tmp}/bench-monitor-$N"
[ -f "$T/events.parquet" ] || { rm -rf "$T"; "$A" generate "$T" --events "$N" >/dev/null; }
COUNT=$("$A" check "$T" --spec monitor/benches/specs/baseline.spec --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["traces"][0]["report"]["events"])')
echo "trace: $T ($COUNT events)"
for c in baseline guards regex keyed; do
  best=""
  for _ in 1 2 3; do
    s=$(date +%s.%N)
    "$A" check "$T" --spec "monitor/benches/specs/$c.spec" --context 0 >/dev/null || true
    e=$(date +%s.%N)
    t=$(echo "$e - $s" | bc -l)
    if [ -z "$best" ] || (( $(echo "$t < $best" | bc -l) )); then best=$t; fi
  done
  printf "%-9s %8.3f s  %12.0f events/s\n" "$c" "$best" "$(echo "$COUNT / $best" | bc -l)"
done
/usr/bin/time -f "peak RSS (keyed): %M KiB" "$A" check "$T" --spec monitor/benches/specs/keyed.spec --context 0 >/dev/null || true
