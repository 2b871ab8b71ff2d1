#!/usr/bin/env bash
# Fault timing accuracy of `recorder run` (release build): a timed schedule against two chatter
# containers `a` and `b` (numbered lines, UDP messages to each other every 100 ms) cycling through
# pause a, unpause a, loss 10% on a, partition between [a] and [b], bandwidth 10mbit on b (each
# network fault reverted 100 ms later), one fault every SLOT ms. Reads the fault events back from
# the trace and prints, per action and overall, p50/p99 of (started_ns - intended_ns) "start" and
# (ended_ns - intended_ns) "end" in milliseconds, with the build type and the load average.
#
# Usage: scripts/bench-faults.sh [--rounds N] [--slot MS] [--keep]     (default 40 rounds, 250 ms)
#        PROFILE=debug scripts/bench-faults.sh ...   (the debug recorder instead, for comparison)
# Needs Docker, docker-compose (or docker compose), root (iptables/tc in the containers' network
# namespaces), python3. Builds the demo image (scripts/build-images.sh) and the release recorder.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS=40
SLOT=250
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) shift; ROUNDS="$1" ;;
    --slot) shift; SLOT="$1" ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "bench-faults.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done

bash "$ROOT/scripts/build-images.sh" >/dev/null
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = debug ]; then
  cargo build --quiet -p recorder --manifest-path "$ROOT/Cargo.toml"
else
  cargo build --quiet --release -p recorder --manifest-path "$ROOT/Cargo.toml"
fi
REC="$ROOT/target/$PROFILE/recorder"
# Reading a small trace back does not need a release analyzer: use whichever exists.
ANA="$ROOT/target/release/analyzer"
if [ ! -x "$ANA" ]; then
  cargo build --quiet -p analyzer --manifest-path "$ROOT/Cargo.toml"
  ANA="$ROOT/target/debug/analyzer"
fi

WORK="$(mktemp -d /tmp/bench-faults.XXXXXX)"
trap '[ "$KEEP" = 1 ] || rm -rf "$WORK"' EXIT
svc() {
  cat <<YML
  $1:
    image: chaos-demo-node:latest
    command: ["chatter", "--then", "wait"]
    environment:
      ID: $1
      RATE: "10"
      PEERS: "$2:7000"
      PEER_INTERVAL: "100ms"
      LISTEN_PORT: "7000"
    networks: [middle]
    stop_grace_period: 1s
YML
}
{
  echo 'version: "2.4"'
  echo 'services:'
  svc a b
  svc b a
  echo 'networks:'
  echo '  middle: {}'
} > "$WORK/compose.yml"
python3 - "$ROUNDS" "$SLOT" > "$WORK/scenario.toml" <<'PY'
import sys
rounds, slot = int(sys.argv[1]), int(sys.argv[2])
print('time_limit = "30m"\noutput = "trace"\nseed = 1\n')
print('[compose]\nfiles = ["compose.yml"]\n')
print('[sensors]\nstats_interval = "1s"\n')
plan = [
    ('pause', '"a"', None, None),
    ('unpause', '"a"', None, None),
    ('loss', '"a"', '{ percent = 10 }', '100ms'),
    ('partition', '{ between = [["a"], ["b"]] }', None, '100ms'),
    ('bandwidth', '"b"', '{ rate = "10mbit" }', '100ms'),
]
k = 0
for _ in range(rounds):
    for action, target, params, dur in plan:
        print('[[schedule]]')
        print(f'at = "{2000 + k * slot}ms"')
        print(f'fault = "{action}"')
        print(f'target = {target}')
        if params:
            print(f'params = {params}')
        if dur:
            print(f'duration = "{dur}"')
        print()
        k += 1
PY

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
"$REC" run --quiet "$WORK/scenario.toml" > "$WORK/out.txt" 2> "$WORK/err.txt" || {
  cat "$WORK/out.txt" "$WORK/err.txt"; exit 1; }
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "build: $PROFILE recorder; rounds=$ROUNDS slot=${SLOT}ms; load average before: $LOAD_BEFORE, after: $LOAD_AFTER"
"$ANA" events "$WORK/trace" --source fault --format jsonl | python3 -c '
import sys, json, collections
by = collections.defaultdict(lambda: ([], []))
failed = 0
for l in sys.stdin:
    e = json.loads(l); d = e.get("data") or {}
    if isinstance(d, str):
        d = json.loads(d)
    if d.get("phase") == "failed":
        failed += 1
    if d.get("phase") != "applied":
        continue
    i, s, t = d["intended_ns"], d["started_ns"], d["ended_ns"]
    for k in (e["kind"], "all"):
        by[k][0].append((s - i) / 1e6); by[k][1].append((t - i) / 1e6)
def q(v, p):
    v = sorted(v); return v[round((len(v) - 1) * p)]
print("%-10s %5s %10s %10s %10s %10s %10s" % ("action", "n", "start p50", "start p99", "end p50", "end p99", "end max"))
for k in sorted(by, key=lambda k: (k == "all", k)):
    s, t = by[k]
    print(f"{k:<10} {len(s):>5} {q(s,.5):>10.2f} {q(s,.99):>10.2f} {q(t,.5):>10.2f} {q(t,.99):>10.2f} {max(t):>10.2f}")
print(f"failed faults: {failed}")
'
