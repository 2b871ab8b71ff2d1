#!/usr/bin/env bash
# Trace benchmarks (docs/performance.md, section "Trace"):
#   writer throughput (events/s into the append-only log), finalize time per million events,
#   reader throughput and peak RSS over an N-event trace (keys only and all columns),
#   and the same scans by DuckDB with the ratio ours/DuckDB.
# Usage: scripts/bench-trace.sh [N_EVENTS]   (default 20000000; needs ~10 GB free in $BENCH_DIR)
# Needs: a release build (done here), /usr/bin/time, python3 with duckdb (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-20000000}"
OUT="${BENCH_DIR:-/var/tmp/trace-bench}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build -q --release -p analyzer
A="$TARGET/release/analyzer"
rm -rf "$OUT"; mkdir -p "$OUT"
T="$OUT/t"

rss() { awk -F': ' '/Maximum resident set size/ {printf "%.1f MB", $2/1024}' "$1"; }
secs() { awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$1"; }

echo "== trace benchmark: $N events, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "-- write (generator -> TraceWriter log) and finalize (external sort -> events.parquet)"
/usr/bin/time -v "$A" generate "$T" --events "$N" --bench --packet-rate 0 2> "$OUT/gen.time"
echo "   peak RSS of write+finalize: $(rss "$OUT/gen.time")"
du -sh "$T"/events.parquet | awk '{print "   events.parquet: " $1}'

echo "-- read, keys only (ts_ns, seq, source): analyzer events --count"
/usr/bin/time -v "$A" events "$T" --count > "$OUT/read-keys.out" 2> "$OUT/read-keys.time"
KS=$(secs "$OUT/read-keys.time")
echo "   $(cat "$OUT/read-keys.out") events in ${KS}s = $(awk -v n="$N" -v s="$KS" 'BEGIN{printf "%.2f M events/s", n/s/1e6}'), peak RSS $(rss "$OUT/read-keys.time")"

echo "-- read, all columns: analyzer events --count --touch-all"
/usr/bin/time -v "$A" events "$T" --count --touch-all > "$OUT/read-all.out" 2> "$OUT/read-all.time"
AS=$(secs "$OUT/read-all.time")
echo "   $(cat "$OUT/read-all.out") in ${AS}s = $(awk -v n="$N" -v s="$AS" 'BEGIN{printf "%.2f M events/s", n/s/1e6}'), peak RSS $(rss "$OUT/read-all.time")"

echo "-- DuckDB, same scans (threads=1 and default)"
python3 - "$T/events.parquet" "$KS" "$AS" <<'PY'
import sys, time, duckdb
path, ks, as_ = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
q_keys = "select count(*), sum(ts_ns), sum(seq), count(source) from read_parquet(?)"
q_all = ("select count(*), sum(length(source) + length(kind) + coalesce(length(service),0) + coalesce(length(container),0)"
         " + coalesce(length(message),0) + coalesce(length(data),0)) from read_parquet(?)")
for threads in (1, None):
    con = duckdb.connect()
    if threads:
        con.execute(f"set threads={threads}")
    nthreads = threads or con.execute("select current_setting('threads')").fetchone()[0]
    label = f"threads={nthreads}"
    for name, q, ours in (("keys", q_keys, ks), ("all columns", q_all, as_)):
        t0 = time.perf_counter(); r = con.execute(q, [path]).fetchone(); dt = time.perf_counter() - t0
        print(f"   duckdb {label:<10} {name:<12} {dt:7.2f}s  rows={r[0]}  ours/duckdb time ratio = {ours/dt:.2f}")
PY
echo "== results in $OUT (remove it when done)"
