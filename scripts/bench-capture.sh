#!/usr/bin/env bash
# Capture-loss benchmark: two of the project's own containers (demo-node chatter `tx` and `rx` on
# one compose network), recorded by the real `recorder run` with the pcap sensor capturing inside
# both containers' network namespaces and on the network's bridge. Once the three captures are
# listening, a bounded burst of UDP messages is sent from tx to rx (`docker exec` of demo-node
# chatter in the tx container: PEER_COUNT messages, PEER_INTERVAL apart; 0 = as fast as possible).
# Traffic goes only between the two containers. Prints, per run: messages sent (sender's own
# `send` lines), messages received by rx (its `recv` log lines in the trace), the UDP tx->rx packets
# in packets.parquet per capture, tcpdump's kernel drop counts, and rx's UDP RcvbufErrors (messages
# the receiving application lost to a full socket buffer: not capture loss).
#
# Usage: scripts/bench-capture.sh [--runs "COUNT:INTERVAL ..."] [--keep]
#   --runs   space-separated runs, default "20000:100us 100000:0"
#   --keep   keep the work directory (traces) and print its path
# Needs: docker + docker-compose, tcpdump and nsenter on the host, root, python3.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUNS="20000:100us 100000:0"
KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) shift; RUNS="${1:?--runs needs a value}" ;;
    --keep) KEEP=1 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "bench-capture.sh: unknown argument: $1" >&2; exit 64 ;;
  esac
  shift
done

for tool in docker tcpdump nsenter python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-capture.sh: $tool not found" >&2; exit 5; }
done
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || { echo "bench-capture.sh: no Docker engine" >&2; exit 5; }

bash "$ROOT/scripts/build-images.sh" >/dev/null
cargo build --quiet -p recorder -p analyzer --manifest-path "$ROOT/Cargo.toml"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
RECORDER="$TARGET_DIR/debug/recorder"
ANALYZER="$TARGET_DIR/debug/analyzer"
IMAGE="${DEMO_NODE_IMAGE:-chaos-demo-node:latest}"

WORK="$(mktemp -d /tmp/bench-capture.XXXXXX)"
PROJECTS=()
REC_PID=""
cleanup() {
  # a recorder still running (the script failed or was interrupted): SIGTERM makes it tear down
  if [ -n "$REC_PID" ] && kill -0 "$REC_PID" 2>/dev/null; then
    kill -TERM "$REC_PID" 2>/dev/null || true
    wait "$REC_PID" 2>/dev/null || true
  fi
  for p in "${PROJECTS[@]:-}"; do
    [ -n "$p" ] && "$RECORDER" cleanup --project "$p" >/dev/null 2>&1 || true
  done
  if [ "$KEEP" = 1 ]; then echo "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

cat >"$WORK/compose.yml" <<EOF
version: "2.4"
services:
  tx:
    image: $IMAGE
    command: ["chatter", "--then", "wait"]
    environment: { ID: tx, COUNT: "1", LISTEN_PORT: "0" }
    stop_grace_period: 2s
    networks: [net]
  rx:
    image: $IMAGE
    command: ["chatter", "--then", "wait"]
    environment: { ID: rx, COUNT: "1", LISTEN_PORT: "7000" }
    stop_grace_period: 2s
    networks: [net]
networks:
  net: {}
EOF

printf '%-8s %-9s %9s %9s %9s %9s | %-12s %9s %9s %9s\n' \
  count interval sent recv rx_bufdrop send_s capture udp_tx_rx captured k_drops
for run in $RUNS; do
  count="${run%%:*}"
  interval="${run#*:}"
  project="ctkbenchcap$$$(date +%s%N | tail -c 7)"
  PROJECTS+=("$project")
  dir="$WORK/$project"
  mkdir -p "$dir"
  cp "$WORK/compose.yml" "$dir/compose.yml"
  cat >"$dir/scenario.toml" <<EOF
time_limit = "120s"
duration = "${BENCH_RECORD:-25s}"
output = "trace"
[compose]
files = ["compose.yml"]
project = "$project"
[sensors]
stats = false
[sensors.pcap]
services = ["tx", "rx"]
networks = ["net"]
snaplen = 96
EOF
  "$RECORDER" run --quiet "$dir/scenario.toml" >"$dir/recorder.out" 2>&1 &
  rec=$!
  REC_PID=$rec
  # wait until the three captures are listening (their files exist), bounded
  for _ in $(seq 1 600); do
    n=$( (find "$dir/trace/pcap" -name '*.pcap' 2>/dev/null || true) | wc -l)
    [ "$n" -ge 3 ] && break
    kill -0 "$rec" 2>/dev/null || break
    sleep 0.1
  done
  sleep 0.5
  tx=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=tx")
  if [ -z "$tx" ]; then
    echo "bench-capture.sh: tx container of $project not found; recorder said:" >&2
    cat "$dir/recorder.out" >&2
    exit 5
  fi
  t0=$(date +%s.%N)
  docker exec "$tx" /demo-node chatter --id burst --count 1 --peers rx --peer-count "$count" \
    --peer-interval "$interval" --listen-port 7000 >"$dir/sender.log" 2>&1 || true
  t1=$(date +%s.%N)
  # rx's UDP counters (its network namespace's /proc/net/snmp): RcvbufErrors = datagrams the
  # kernel dropped because rx's socket buffer was full (the application, not the capture)
  rxid=$(docker ps -q --filter "label=com.docker.compose.project=$project" \
    --filter "label=com.docker.compose.service=rx")
  rxpid=$(docker inspect -f '{{.State.Pid}}' "$rxid" 2>/dev/null || echo 0)
  if [ "$rxpid" != 0 ]; then cp "/proc/$rxpid/net/snmp" "$dir/rx-snmp.txt" 2>/dev/null || true; fi
  if ! wait "$rec"; then
    echo "bench-capture.sh: recorder run exited non-zero; output:" >&2
    cat "$dir/recorder.out" >&2
  fi
  REC_PID=""
  "$ANALYZER" events "$dir/trace" --source packet --format jsonl >"$dir/packets.jsonl"
  "$ANALYZER" events "$dir/trace" --source recorder --kind capture --format jsonl >"$dir/captures.jsonl"
  "$ANALYZER" events "$dir/trace" --source log --service rx --grep '^recv rx seq=' --format jsonl >"$dir/recv.jsonl"
  python3 - "$dir" "$count" "$interval" "$t0" "$t1" <<'PY'
import json, sys, collections
d, count, interval, t0, t1 = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
sent = sum(1 for l in open(f"{d}/sender.log") if l.startswith("send burst seq="))
errors = sum(1 for l in open(f"{d}/sender.log") if l.startswith("send-error"))
recv = len({json.loads(l)["message"] for l in open(f"{d}/recv.jsonl") if "from=burst" in l})
bufdrop = "?"
try:
    udp_lines = [l.split() for l in open(f"{d}/rx-snmp.txt") if l.startswith("Udp:")]
    bufdrop = dict(zip(udp_lines[0][1:], udp_lines[1][1:])).get("RcvbufErrors", "?")
except (OSError, IndexError):
    pass
udp = collections.Counter()
for l in open(f"{d}/packets.jsonl"):
    p = json.loads(l)["data"]
    if p["protocol"] == "udp" and p["dst_port"] == 7000 and p["src_service"] == "tx" and p["dst_service"] == "rx":
        udp[p["capture"]] += 1
stats = {}
for l in open(f"{d}/captures.jsonl"):
    e = json.loads(l)["data"]
    if e.get("phase") == "stopped":
        stats[e["capture"]] = e.get("stats") or {}
first = True
for cap in sorted(stats):
    s = stats[cap]
    name = cap.rsplit("_", 2)[-2] if cap.count("_") >= 2 else cap
    left = (f"{count:<8} {interval:<9} {sent:>9} {recv:>9} {bufdrop:>9} {t1 - t0:>9.2f}" if first
            else " " * 58)
    print(f"{left} | {name:<12} {udp[cap]:>9} {s.get('captured', '?'):>9} {s.get('dropped_by_kernel', '?'):>9}")
    first = False
if errors:
    print(f"  ({errors} send errors)")
PY
done
