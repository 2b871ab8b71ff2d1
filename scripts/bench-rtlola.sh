#!/usr/bin/env bash
# Side-by-side with the RTLola interpreter on the same events: `analyzer check` (from Parquet)
# and `rtlola-cli monitor` (from the CSV export of the same trace) judge the same property
# (monitor/benches/specs/rtlola-count.spec and monitor/benches/rtlola/count.lola).
# Needs rtlola-cli: CARGO_TARGET_DIR=/tmp/rtlola-target cargo install rtlola-cli --root /tmp/rtlola-root
# Usage: scripts/bench-rtlola.sh [EVENTS]  (default 2000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-2000000}"
RTLOLA="${RTLOLA:-/tmp/rtlola-root/bin/rtlola-cli}"
cargo build --release -p analyzer >/dev/null
A=target/release/analyzer
T="${TMPDIR:-/tmp}/bench-monitor-$N"
[ -f "$T/events.parquet" ] || { rm -rf "$T"; "$A" generate "$T" --events "$N" >/dev/null; }
CSV="$T.csv"
[ -f "$CSV" ] || "$A" events "$T" --format csv > "$CSV"
echo "events: $(($(wc -l < "$CSV") - 1)) rows in $CSV"
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
ours=$(t "$A" check "$T" --spec monitor/benches/specs/rtlola-count.spec --context 0)
export_s=$(t "$A" events "$T" --format csv)
rtl=$(t "$RTLOLA" monitor --csv-in "$CSV" --offline absolute-rfc3339 --csv-time-column 2 -v violations monitor/benches/rtlola/count.lola)
printf "analyzer check (Parquet):   %8.3f s\n" "$ours"
printf "analyzer events --format csv: %6.3f s (export, not part of either run)\n" "$export_s"
printf "rtlola-cli monitor (CSV):   %8.3f s\n" "$rtl"
printf "ratio rtlola / analyzer:    %8.1f x\n" "$(echo "$rtl / $ours" | bc -l)"
