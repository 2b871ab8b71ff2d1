#!/bin/sh
# A sentinel of examples/redis-sentinel: watches the master `redis-1` (quorum 2), declares it
# down after 2 s without an answer, and names masters and replicas by host name.
cat >/tmp/sentinel.conf <<CONF
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor mymaster redis-1 6379 2
sentinel down-after-milliseconds mymaster 2000
sentinel failover-timeout mymaster 10000
sentinel parallel-syncs mymaster 1
CONF
exec redis-sentinel /tmp/sentinel.conf
