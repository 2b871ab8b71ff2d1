#!/usr/bin/env bash
# HTML report benchmark (docs/performance.md, "HTML report"): generates a synthetic trace of
# N events (the split-brain scenario with its experiment, plus packets), writes its report with a
# release build and opens it in headless Chromium: report size, time and peak memory of
# `analyzer report`, and the time the browser needs to show it (`data-render-ms`: navigation
# start to the page drawn, measured by the page itself; and the wall time of `--dump-dom`).
#
# Usage: scripts/bench-report.sh [N_EVENTS]   (default 1000000; ~20 GB free in $BENCH_DIR per
#                                              20 M events while the trace is finalized)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
DIR="${BENCH_DIR:-/var/tmp/report-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p analyzer
A="$CARGO_TARGET_DIR/release/analyzer"
mkdir -p "$DIR"
T="$DIR/trace-$N"
if [ ! -f "$T/events.parquet" ]; then
  rm -rf "$T"
  "$A" generate "$T" --events "$N" --scenario split-brain --auto-down 10 \
    --experiment AutoDownSplitBrain --packet-rate 200 > /dev/null
fi
echo "== report benchmark: $N events, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%Y-%m-%dT%H:%M:%SZ)"
"$A" info "$T" | head -3
H="$DIR/report-$N.html"
# the recorded experiment accepts; ClusterSurvivesPartition fails on the partition, so the
# report holds a failure and the events around its decision
/usr/bin/time -v "$A" report "$T" --spec specs/akka.spec --spec specs/split-brain.spec \
  --experiment AutoDownSplitBrain --experiment ClusterSurvivesPartition -o "$H" \
  2> "$DIR/report.time" || true
echo "-- analyzer report: $(grep 'Elapsed (wall' "$DIR/report.time" | awk '{print $NF}') wall," \
  "peak RSS $(grep 'Maximum resident' "$DIR/report.time" | awk '{printf "%.0f MB", $NF/1024}')," \
  "file $(du -h "$H" | cut -f1)"
PROFILE="$(mktemp -d)"
trap 'rm -rf "$PROFILE"' EXIT
start=$(date +%s.%N)
chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$PROFILE" \
  --dump-dom about:blank > /dev/null 2>&1
end=$(date +%s.%N)
echo "-- chromium baseline (about:blank): --dump-dom wall $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f s", b-a}')"
for run in 1 2 3; do
  start=$(date +%s.%N)
  dom=$(chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$PROFILE" \
    --dump-dom "file://$(realpath "$H")" 2>/dev/null)
  end=$(date +%s.%N)
  ms=$(grep -o 'data-render-ms="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || echo "?")
  errs=$(grep -c '<div id="errors" hidden="">' <<<"$dom" || true)
  echo "-- chromium run $run: page drawn after ${ms} ms; --dump-dom wall $(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.2f s", b-a}'); no script error: $([ "$errs" = 1 ] && echo yes || echo NO)"
done
