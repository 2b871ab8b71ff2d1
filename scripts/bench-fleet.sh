#!/usr/bin/env bash
# Fleet benchmarks (docs/performance.md, section "Fleet"):
#   N generated traces of E events each (the split-brain scenario, distinct seeds) judged by
#   `analyzer check` against the AutoDownSplitBrain experiment with -j 1 and -j 2: traces/s,
#   events/s, the scaling, peak RSS; the same fleet uploaded to a local moto S3 server and judged
#   from s3:// with -j 2; `analyzer diff` of two D-event traces: time and peak RSS.
# Usage: scripts/bench-fleet.sh [N_TRACES] [EVENTS] [DIFF_EVENTS]
#        (defaults 1000 100000 1000000; about 1.3 MB of disk per 100k-event trace in $BENCH_DIR)
# Needs: a release build (done here), /usr/bin/time, python3 with boto3 and moto_server
#        (scripts/setup.sh); set SKIP_S3=1 to leave out the S3 part.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000}"
E="${2:-100000}"
D="${3:-1000000}"
OUT="${BENCH_DIR:-/var/tmp/fleet-bench}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p analyzer
A="$TARGET/release/analyzer"
SPECS=(--spec specs/akka.spec --spec specs/split-brain.spec --experiment AutoDownSplitBrain)
rm -rf "$OUT"; mkdir -p "$OUT/fleet"

rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f MB", $2/1024}' "$1"; }
secs() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }
rate() { awk -v n="$1" -v s="$2" -v u="$3" 'BEGIN{printf "%.2f %s", n/s, u}'; }

echo "== fleet benchmark: $N traces x $E events, diff of 2 x $D events; $(nproc) cores; $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "-- generating the fleet (2 generators at a time)"
t0=$(date +%s)
seq 1 "$N" | xargs -P 2 -I{} "$A" generate "$OUT/fleet/run-{}" --scenario split-brain \
  --auto-down 10 --experiment AutoDownSplitBrain --events "$E" --duration 70 --seed {} > /dev/null
echo "   generated in $(( $(date +%s) - t0 ))s; $(du -sh "$OUT/fleet" | cut -f1) on disk"
EV=$({ "$A" check "$OUT/fleet/run-1" "${SPECS[@]}" || true; } | awk '/^trace /{gsub(/\(/,"",$3); print $3; exit}')
TOTAL=$(( EV * N ))
echo "   $EV events per trace, $TOTAL in all"

for j in 1 2; do
  echo "-- check -j $j (local disk, page cache warm)"
  "$A" check "$OUT/fleet" "${SPECS[@]}" -j "$j" > /dev/null || true   # warm the cache
  /usr/bin/time -v "$A" check "$OUT/fleet" "${SPECS[@]}" -j "$j" > "$OUT/check-$j.out" 2> "$OUT/check-$j.time" || true
  S=$(secs "$OUT/check-$j.time")
  echo "   ${S}s: $(rate "$N" "$S" traces/s), $(rate "$TOTAL" "$S" events/s), peak RSS $(rss "$OUT/check-$j.time")"
  { grep '^summary:' "$OUT/check-$j.out" || true; } | sed 's/^/   /'
  eval "S$j=$S"
done
echo "   scaling -j 2 / -j 1: $(awk -v a="$S1" -v b="$S2" 'BEGIN{printf "%.2fx", a/b}')"

if [ "${SKIP_S3:-0}" != 1 ]; then
  echo "-- the same fleet from a local moto S3 server (-j 2)"
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  moto_server -H 127.0.0.1 -p "$PORT" > "$OUT/moto.out" 2> "$OUT/moto.log" &
  MOTO=$!
  trap 'kill $MOTO 2>/dev/null || true' EXIT
  for _ in $(seq 1 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.2; done
  export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
  t0=$(date +%s)
  python3 - "$OUT/fleet" "$AWS_ENDPOINT_URL" <<'PY'
import os, sys, boto3
from concurrent.futures import ThreadPoolExecutor
root, ep = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=ep, region_name="us-east-1")
s3.create_bucket(Bucket="fleet")
files = [os.path.join(b, f) for b, _, fs in os.walk(root) for f in fs]
with ThreadPoolExecutor(8) as ex:
    list(ex.map(lambda p: s3.upload_file(p, "fleet", "runs/" + os.path.relpath(p, root)), files))
PY
  echo "   uploaded in $(( $(date +%s) - t0 ))s"
  /usr/bin/time -v "$A" check s3://fleet/runs/ "${SPECS[@]}" -j 2 > "$OUT/check-s3.out" 2> "$OUT/check-s3.time" || true
  S=$(secs "$OUT/check-s3.time")
  echo "   ${S}s: $(rate "$N" "$S" traces/s), $(rate "$TOTAL" "$S" events/s), peak RSS $(rss "$OUT/check-s3.time")"
  { grep '^summary:' "$OUT/check-s3.out" || true; } | sed 's/^/   /'
  R=$(grep -cE '"(GET|HEAD) /fleet/runs/' "$OUT/moto.log" || true)
  echo "   requests: $R for trace files ($(awk -v r="$R" -v n="$N" 'BEGIN{printf "%.1f", r/n}') per trace), $(grep -c '" 206 ' "$OUT/moto.log" || true) ranged GETs (206), $(grep -c 'GET /fleet/runs/[^ ]*events.parquet HTTP/1.1" 200' "$OUT/moto.log" || true) whole events.parquet downloads"
  kill "$MOTO" 2>/dev/null || true
fi

echo "-- diff of two $D-event traces (auto-down 10 s vs 2 s)"
"$A" generate "$OUT/good" --scenario split-brain --auto-down 10 --experiment AutoDownSplitBrain --events "$D" --duration 100 --seed 1 > /dev/null
"$A" generate "$OUT/bad" --scenario split-brain --auto-down 2 --experiment AutoDownSplitBrain --events "$D" --duration 100 --seed 2 > /dev/null
/usr/bin/time -v "$A" diff "$OUT/good" "$OUT/bad" --spec specs/akka.spec --spec specs/split-brain.spec > "$OUT/diff.out" 2> "$OUT/diff.time"
S=$(secs "$OUT/diff.time")
echo "   ${S}s for $(( 2 * D )) events: $(rate $(( 2 * D )) "$S" events/s), peak RSS $(rss "$OUT/diff.time")"
head -3 "$OUT/diff.out" | sed 's/^/   /'
