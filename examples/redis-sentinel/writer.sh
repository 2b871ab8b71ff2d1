#!/bin/sh
# The client of examples/redis-sentinel: writes w1, w2, ... (value = the number) to the master
# the sentinels name, one every INTERVAL seconds, and keeps writing to that node until a write
# fails (as a client holding its connection does), then asks the sentinels again. Every
# acknowledged write is logged with the node that acknowledged it:
#   ack w17 by redis-1
# After the first failed write it writes AFTER more, then reads every acknowledged key back
# from the current master and logs each one that is missing, then a summary:
#   lost w17 acked by redis-1
#   readback from redis-2: 120 acknowledged, 23 lost
# then idles. MAX_WRITES bounds the run when no write ever fails.
INTERVAL="${INTERVAL:-0.1}"
AFTER="${AFTER:-20}"
MAX_WRITES="${MAX_WRITES:-3000}"
SENTINELS="${SENTINELS:-sentinel-1 sentinel-2 sentinel-3}"
ACKED=/tmp/acked

master() {
  while :; do
    for s in $SENTINELS; do
      m="$(redis-cli -h "$s" -p 26379 SENTINEL get-master-addr-by-name mymaster 2>/dev/null | head -1)"
      if [ -n "$m" ]; then
        echo "master $m (from $s)"
        MASTER="$m"
        return
      fi
    done
    sleep 0.5
  done
}

: >"$ACKED"
master
i=0
failed=0
after=0
while [ "$i" -lt "$MAX_WRITES" ]; do
  i=$((i + 1))
  r="$(redis-cli -h "$MASTER" SET "w$i" "$i" 2>&1)"
  if [ "$r" = "OK" ]; then
    echo "ack w$i by $MASTER"
    echo "w$i $MASTER" >>"$ACKED"
    if [ "$failed" = 1 ]; then
      after=$((after + 1))
      [ "$after" -ge "$AFTER" ] && break
    fi
  else
    echo "fail w$i at $MASTER: $r"
    failed=1
    master
  fi
  sleep "$INTERVAL"
done

# read back: one GET per acknowledged key, in one connection
cut -d' ' -f1 "$ACKED" | sed 's/^/GET /' | redis-cli -h "$MASTER" >/tmp/values
n=0
lost=0
exec 3</tmp/values
while read -r key node; do
  n=$((n + 1))
  read -r v <&3 || v=""
  if [ "$v" != "${key#w}" ]; then
    echo "lost $key acked by $node"
    lost=$((lost + 1))
  fi
done <"$ACKED"
echo "readback from $MASTER: $n acknowledged, $lost lost"
exec sleep 3600
