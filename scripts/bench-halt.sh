#!/usr/bin/env bash
# Halt latency of `recorder run` (docs/scenario.md "Halt conditions"): RUNS recordings of two
# chatter containers `a` and `b` with a timed schedule (partition between [a] and [b] at 1s,
# bandwidth 10mbit on a at 1.5s, pause b at 2s, none reverted by the schedule) and the halt
# condition `notPaused(b)`, which fails on b's `pause` Docker event. Reads each trace's
# `recorder`/`halt` event and prints p50/p99/max over the runs of `latency_ms` (the deciding
# event's timestamp -> every fault reverted) and `revert_ms` (the halt decided -> every fault
# reverted), with the build type and the load average.
#
# Usage: scripts/bench-halt.sh [--runs N] [--keep]     (default 20 runs)
#        PROFILE=release scripts/bench-halt.sh ...     (the release recorder; default debug)
# Needs Docker, docker-compose (or docker compose), root (iptables/tc in the containers' network
# namespaces), python3. Builds the demo image (scripts/build-images.sh) and the binaries into
# $CARGO_TARGET_DIR (default target/).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS=20
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) shift; RUNS="$1" ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "bench-halt.sh: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done

bash "$ROOT/scripts/build-images.sh" >/dev/null
PROFILE="${PROFILE:-debug}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$PROFILE" = release ]; then
  cargo build --quiet --release -p recorder -p analyzer --manifest-path "$ROOT/Cargo.toml"
else
  cargo build --quiet -p recorder -p analyzer --manifest-path "$ROOT/Cargo.toml"
fi
REC="$TARGET/$PROFILE/recorder"
ANA="$TARGET/$PROFILE/analyzer"

WORK="$(mktemp -d /tmp/bench-halt.XXXXXX)"
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
} >"$WORK/compose.yml"
cat >"$WORK/halt.spec" <<'SPEC'
monitor notPaused(svc: str) {
  state up {
    on docker "pause" from svc => fail "the service was paused"
    on end => accept
  }
}
SPEC

for i in $(seq 1 "$RUNS"); do
  project="ctkbenchhalt$$x$i"
  cat >"$WORK/scenario-$i.toml" <<TOML
time_limit = "120s"
duration = "30s"
output = "trace-$i"

[compose]
files = ["compose.yml"]
project = "$project"

[[schedule]]
at = "1s"
fault = "partition"
target = { between = [["a"], ["b"]] }

[[schedule]]
at = "1.5s"
fault = "bandwidth"
target = "a"
params = { rate = "10mbit" }

[[schedule]]
at = "2s"
fault = "pause"
target = "b"

[halt]
specs = ["halt.spec"]
monitors = ["notPaused(b)"]
cool_down = "1s"
TOML
  code=0
  "$REC" run --quiet "$WORK/scenario-$i.toml" >"$WORK/run-$i.out" 2>&1 || code=$?
  if [ "$code" != 6 ]; then
    echo "bench-halt.sh: run $i exited $code, not 6 (halted):" >&2
    cat "$WORK/run-$i.out" >&2
    exit 1
  fi
  "$ANA" events "$WORK/trace-$i" --source recorder --kind halt --format jsonl >>"$WORK/halts.jsonl"
done

python3 - "$WORK/halts.jsonl" "$PROFILE" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
print(f"runs: {len(rows)}  build: {sys.argv[2]}  load average: {os.getloadavg()[0]:.2f}")
for key in ("latency_ms", "revert_ms"):
    v = [r["data"][key] for r in rows]
    print(f"{key:>10}: p50 {pct(v, 50):7.1f}  p99 {pct(v, 99):7.1f}  max {max(v):7.1f}  min {min(v):7.1f}")
print("faults reverted per halt:", sorted({len(r["data"]["reverted"]) for r in rows}))
PY
