#!/usr/bin/env bash
# Recorder log-capture benchmark: N chatter containers print COUNT numbered lines each as fast as
# they can; the recorder (release build) records them. Prints: lines expected / captured /
# duplicated (loss check), capture throughput (lines per second between the first and the last
# captured line), the recorder's CPU time and peak RSS (/usr/bin/time), and the wall time.
#
# Usage: scripts/bench-recorder.sh [--containers N] [--count LINES_PER_CONTAINER] [--keep]
# Needs Docker, docker-compose (or docker compose), python3 with nothing extra.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
N=4
COUNT=250000
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --containers) shift; N="$1" ;;
    --count) shift; COUNT="$1" ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "bench-recorder.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done

bash "$ROOT/scripts/build-images.sh" >/dev/null
cargo build --quiet --release -p recorder -p analyzer --manifest-path "$ROOT/Cargo.toml"
REC="$ROOT/target/release/recorder"
ANA="$ROOT/target/release/analyzer"

WORK="$(mktemp -d /tmp/bench-recorder.XXXXXX)"
trap '[ "$KEEP" = 1 ] || rm -rf "$WORK"' EXIT
{
  echo 'version: "2.4"'
  echo 'services:'
  for i in $(seq 1 "$N"); do
    cat <<YML
  c$i:
    image: chaos-demo-node:latest
    command: ["chatter", "--then", "wait"]
    environment:
      ID: c$i
      RATE: "0"
      COUNT: "$COUNT"
      STDERR_EVERY: "10"
      LISTEN_PORT: "0"
    stop_grace_period: 1s
YML
  done
} > "$WORK/compose.yml"
# Record long enough for the producers to finish; the teardown read catches the tail anyway.
cat > "$WORK/scenario.toml" <<TOML
time_limit = "10m"
duration = "${BENCH_DURATION:-40s}"
output = "trace"
[compose]
files = ["compose.yml"]
[sensors]
stats_interval = "1s"
TOML

echo "containers=$N lines_per_container=$COUNT total=$((N * COUNT))"
/usr/bin/time -f "recorder: wall=%es user=%Us sys=%Ss maxrss=%MkB" \
  "$REC" run --quiet "$WORK/scenario.toml" 2> "$WORK/time.txt" > "$WORK/out.txt" || {
  cat "$WORK/out.txt" "$WORK/time.txt"; exit 1; }
grep -E '^recorder:' "$WORK/time.txt"
"$ANA" events "$WORK/trace" --source log --format jsonl | python3 -c '
import sys, json, collections
n, total = int(sys.argv[1]), int(sys.argv[2])
seen = collections.defaultdict(set); dup = 0; first = last = None; lines = 0
for l in sys.stdin:
    e = json.loads(l); p = (e.get("message") or "").split()
    if len(p) != 3 or p[0] != "line":
        continue
    k = int(p[1])
    if k in seen[p[2]]:
        dup += 1
    seen[p[2]].add(k); lines += 1
    t = e["ts_ns"]; first = t if first is None else min(first, t); last = t if last is None else max(last, t)
got = sum(len(v) for v in seen.values())
span = (last - first) / 1e9 if first is not None else 0
print(f"expected={total} captured={got} duplicates={dup} lost={total - got}")
print(f"capture span={span:.2f}s throughput={got / span if span else 0:,.0f} lines/s")
' "$N" "$((N * COUNT))"
