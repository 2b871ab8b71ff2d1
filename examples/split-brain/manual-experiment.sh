#!/usr/bin/env bash
# The split-brain experiment by hand, without the recorder: up, cluster forms, pause right-a
# (left-a sees it unreachable), unpause (whole again), partition the middle network with iptables
# inside every container's network namespace, observe the split into {left-a,left-b},{right-a},
# {right-b}; always `down -v` at the end. Needs root (nsenter/iptables), docker, curl, python3.
# Usage: examples/split-brain/manual-experiment.sh [PROJECT]
set -euo pipefail
cd "$(dirname "$0")"
P="${1:-splitbrain$$}"
COMPOSE="docker-compose"
docker compose version >/dev/null 2>&1 && COMPOSE="docker compose"
cleanup() { $COMPOSE -p "$P" down -v --remove-orphans -t 2 >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

cid() { docker ps -q --filter "label=com.docker.compose.project=$P" --filter "label=com.docker.compose.service=$1"; }
# The container's address on its left/right network (the host reaches it over that bridge even
# while the middle network is cut).
addr() {
  docker inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}' "$(cid "$1")" \
    | tr ' ' '\n' | grep = | grep -v '_middle=' | head -1 | cut -d= -f2
}
# One line per node: "<node> up=[...] unreachable=[...] leader=<node>"
view() {
  curl -s -m 2 -X POST -H 'Content-Type: application/json' \
    -d '[{"type":"read","mbean":"akka:type=Cluster","attribute":["ClusterStatus","Leader"]}]' \
    "http://$(addr "$1"):8778/jolokia" | python3 -c '
import json, sys
h = lambda a: a.split("@")[1].split(":")[0]
try:
    r = json.load(sys.stdin)[0]
    cs = json.loads(r["value"]["ClusterStatus"])
    up = sorted(h(m["address"]) for m in cs["members"] if m["status"] == "Up")
    un = sorted(h(u["node"]) for u in cs["unreachable"])
    print(sys.argv[1], "up=" + ",".join(up), "unreachable=" + ",".join(un), "leader=" + (h(r["value"]["Leader"]) if r["value"]["Leader"] else "-"))
except Exception as e:
    print(sys.argv[1], "error", type(e).__name__)' "$1"
}
wait_for() { # wait_for SECONDS NODE EXPECTED-SUBSTRING
  local end=$((SECONDS + $1))
  while [ $SECONDS -lt $end ]; do
    v="$(view "$2")"
    if [[ "$v" == *"$3"* ]]; then echo "  ok  $v"; return 0; fi
    sleep 0.5
  done
  echo "  FAILED waiting for '$3' at $2; last: $v" >&2
  return 1
}

start=$SECONDS
echo "== up ($P)"
$COMPOSE -p "$P" up -d >/dev/null 2>&1
echo "== cluster forms"
for n in left-a left-b right-a right-b; do wait_for 30 "$n" "up=left-a,left-b,right-a,right-b unreachable= leader=left-a"; done
echo "== pause right-a (GC pause)"
docker pause "$(cid right-a)" >/dev/null
wait_for 15 left-a "unreachable=right-a "
echo "== unpause right-a"
docker unpause "$(cid right-a)" >/dev/null
wait_for 15 left-a "up=left-a,left-b,right-a,right-b unreachable= "
wait_for 15 right-a "up=left-a,left-b,right-a,right-b unreachable= "
echo "== partition the middle network (iptables DROP of the middle subnet in every node)"
SUB="$(docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' "${P}_middle")"
for n in left-a left-b right-a right-b; do
  pid="$(docker inspect -f '{{.State.Pid}}' "$(cid "$n")")"
  nsenter -t "$pid" -n iptables -I INPUT -s "$SUB" -j DROP
  nsenter -t "$pid" -n iptables -I OUTPUT -d "$SUB" -j DROP
done
wait_for 30 left-a "up=left-a,left-b unreachable= leader=left-a"
wait_for 10 left-b "up=left-a,left-b unreachable= leader=left-a"
wait_for 10 right-a "up=right-a unreachable= leader=right-a"
wait_for 10 right-b "up=right-b unreachable= leader=right-b"
echo "== split brain observed in $((SECONDS - start)) s; tearing down"
