#!/usr/bin/env bash
# The side-by-side of issue #21 in one run (docs/performance.md, "Side by side with DuckDB and
# RTLola"): on one generated trace, best of 3 each,
#   - `analyzer check` against DuckDB (PyPI `duckdb`) with the same number of threads, for the
#     guard-only, regex and keyed specs of monitor/benches/specs/ and their SQL counterparts;
#   - `analyzer check` against `rtlola-cli` 0.1.2 (crates.io) on the counting property of
#     scripts/bench-rtlola.sh (RTLola reads the CSV export; the export is not timed);
#   - `analyzer finalize` of the unfinalized log against DuckDB's
#     `COPY (... ORDER BY ts_ns, seq) TO ... (FORMAT parquet, COMPRESSION zstd)` of the same events;
#   - peak RSS of `check` (every case) and `finalize` on a larger trace.
# "1 thread" runs the analyzer pinned to one CPU (`taskset -c 0`: it then uses one thread) and
# DuckDB with `threads=1`; "N threads" gives both every core. Each line prints its ratio against
# the issue's goal.
#
# Usage: scripts/bench-compare.sh [EVENTS] [RSS_EVENTS]
#   EVENTS      events of the compared trace (default 5000000)
#   RSS_EVENTS  events of the peak-RSS trace (default 20000000; 0 skips that part)
# Environment: ANALYZER (a built binary; default: `cargo build --release -p analyzer` here),
#   BENCH_DIR (default /var/tmp/bench-compare; generated traces are kept there and reused by the
#   next run: remove it to regenerate; about 0.36 GB per million events of RSS_EVENTS (the
#   log and the working copy finalize turns into a trace) and 0.4 GB per million of EVENTS:
#   20 M and 5 M events need about 9 GB), RTLOLA (a `rtlola-cli` binary; default: installed once with
#   `cargo install rtlola-cli --version 0.1.2` under RTLOLA_ROOT, default
#   ~/.cache/chaos-trace/rtlola-0.1.2), RUNS (default 3).
# Needs: cargo, python3, taskset (util-linux), /usr/bin/time.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-5000000}"
RSS_N="${2:-20000000}"
OUT="${BENCH_DIR:-/var/tmp/bench-compare}"
RUNS="${RUNS:-3}"
if [ -z "${ANALYZER:-}" ]; then
  cargo build -q --release -p analyzer
  ANALYZER="${CARGO_TARGET_DIR:-target}/release/analyzer"
fi
ANALYZER="$(realpath "$ANALYZER")"
RTLOLA_ROOT="${RTLOLA_ROOT:-$HOME/.cache/chaos-trace/rtlola-0.1.2}"
RTLOLA="${RTLOLA:-$RTLOLA_ROOT/bin/rtlola-cli}"
if [ ! -x "$RTLOLA" ]; then
  echo "installing rtlola-cli 0.1.2 into $RTLOLA_ROOT" >&2
  CARGO_TARGET_DIR="$RTLOLA_ROOT/target" cargo install -q rtlola-cli --version 0.1.2 --locked \
    --root "$RTLOLA_ROOT"
fi
python3 -c 'import duckdb' 2>/dev/null ||
  python3 -m pip install -q --disable-pip-version-check duckdb
mkdir -p "$OUT"

# the compared trace (finalized), the same events as an unfinalized log, and the CSV export
T="$OUT/trace-$N"
L="$OUT/log-$N"
CSV="$OUT/trace-$N.csv"
[ -f "$T/events.parquet" ] || { rm -rf "$T"; "$ANALYZER" generate "$T" --events "$N" >/dev/null; }
[ -f "$L/events.arrows" ] || { rm -rf "$L"; "$ANALYZER" generate "$L" --events "$N" --unfinalized >/dev/null; }
[ -s "$CSV" ] || "$ANALYZER" events "$T" --format csv >"$CSV"
RL=""
if [ "$RSS_N" != 0 ]; then
  RL="$OUT/log-$RSS_N"
  [ -f "$RL/events.arrows" ] || { rm -rf "$RL"; "$ANALYZER" generate "$RL" --events "$RSS_N" --unfinalized >/dev/null; }
fi

echo "== bench-compare: $N events ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)), best of $RUNS, $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "   analyzer: $ANALYZER"
python3 - "$ANALYZER" "$T" "$L" "$CSV" "$OUT" "$RTLOLA" "$RUNS" "$RL" "$RSS_N" <<'PY'
import os, shutil, subprocess, sys, time
import duckdb

A, T, L, CSV, OUT, RTLOLA, RUNS, RL, RSS_N = sys.argv[1:]
RUNS = int(RUNS)
SPECS = "monitor/benches/specs"
ncores = len(os.sched_getaffinity(0))
threads = [1] if ncores == 1 else [1, ncores]
pin = lambda n: [] if n == ncores else ["taskset", "-c", ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:n])]

def run(cmd, ok=(0, 1, 2)):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode not in ok:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.decode()[-2000:]}")
    return dt

def best(f):
    return min(f() for _ in range(RUNS))

def duck(n, q):
    con = duckdb.connect()
    con.execute(f"set threads={n}")
    def once():
        t0 = time.perf_counter()
        con.execute(q).fetchall()
        return time.perf_counter() - t0
    return best(once)

rows = []
def line(case, n, ours, other_name, other, goal):
    # ratio: the other tool's time over ours (above 1: we are faster)
    ratio = other / ours
    ok = "met" if ratio >= goal else "MISSED"
    rows.append(f"{case:<9} {n:>7}  {ours:8.3f} s  {other_name:<7} {other:8.3f} s  {ratio:7.2f}x  goal >= {goal:<5} {ok}")
    print(rows[-1], flush=True)

print(f"{'case':<9} {'threads':>7}  {'analyzer':>10}  {'other':<7} {'time':>10}  {'ratio':>8}  (other / analyzer)")
P = f"read_parquet('{T}/events.parquet')"
RE = r"processed request (\d+) in (\d+) us"
sql = {
    "guards": f"select count(*) from {P} where kind = 'oom' and service <> 'nobody'",
    "regex": f"select count(*) from {P} where source = 'log' and regexp_matches(message, '{RE}') "
             f"and cast(regexp_extract(message, '{RE}', 2) as bigint) > 1000000000",
    "keyed": f"select seq % 100 as k, count(*), min(ts_ns), max(ts_ns) from {P} group by k",
}
goals = {"guards": 1.0, "regex": 1.0, "keyed": 0.75}
for case in ("guards", "regex", "keyed"):
    for n in threads:
        ours = best(lambda: run(pin(n) + [A, "check", T, "--spec", f"{SPECS}/{case}.spec", "--context", "0"]))
        line(case, n, ours, "duckdb", duck(n, sql[case]), goals[case])

rtl = best(lambda: run([RTLOLA, "monitor", "--csv-in", CSV, "--offline", "absolute-rfc3339",
                        "--csv-time-column", "2", "-v", "violations", "monitor/benches/rtlola/count.lola"]))
for n in threads:
    ours = best(lambda: run(pin(n) + [A, "check", T, "--spec", f"{SPECS}/rtlola-count.spec", "--context", "0"]))
    line("rtlola", n, ours, "rtlola", rtl, 25.0)

work = os.path.join(OUT, "finalize-work")
def finalize_once(n, log):
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(log, work)
    # (the copy is set-up: its pages are written back before the clock starts, not during)
    os.sync()
    dt = run(pin(n) + [A, "finalize", work], ok=(0,))
    return dt
dst = os.path.join(OUT, "duckdb-sorted.parquet")
copy = (f"copy (select * from {P} order by ts_ns, seq) to '{dst}' "
        f"(format parquet, compression zstd)")
for n in threads:
    ours = best(lambda: finalize_once(n, L))
    line("finalize", n, ours, "duckdb", duck(n, copy), 1.0)
shutil.rmtree(work, ignore_errors=True)
os.remove(dst)

if RL:
    def rss(cmd):
        r = subprocess.run(["/usr/bin/time", "-f", "%M %e"] + cmd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
        kib, secs = r.stderr.strip().splitlines()[-1].split()
        return int(kib) / 1024, float(secs)
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(RL, work)
    mb, secs = rss([A, "finalize", work])
    print(f"peak RSS, {RSS_N} events: finalize {mb:6.1f} MB ({secs:.1f} s)  goal < 200 MB {'met' if mb < 200 else 'MISSED'}")
    for case in ("guards", "regex", "keyed", "rtlola-count"):
        mb, secs = rss([A, "check", work, "--spec", f"{SPECS}/{case}.spec", "--context", "0"])
        print(f"peak RSS, {RSS_N} events: check {case:<12} {mb:6.1f} MB ({secs:.1f} s)  goal < 200 MB {'met' if mb < 200 else 'MISSED'}")
    shutil.rmtree(work, ignore_errors=True)
PY
