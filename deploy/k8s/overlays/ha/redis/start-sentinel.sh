#!/bin/sh
# Starts one Sentinel watching the current primary. Its config lives on an emptyDir because
# Sentinel rewrites it (what it learns about replicas and the other Sentinels).
set -eu
umask 077
read -r pw < /run/secrets/redis_password
primary=$(sh /scripts/find-primary.sh)
{
  echo "port 26379"
  echo "dir /tmp"
  # Pods get new addresses when they restart: Sentinels name each other and Redis by DNS.
  echo "sentinel resolve-hostnames yes"
  echo "sentinel announce-hostnames yes"
  echo "sentinel announce-ip $HOSTNAME.$SERVICE"
  # Two of the three Sentinels must agree that the primary is down.
  echo "sentinel monitor $SENTINEL_NAME $primary 6379 2"
  printf 'sentinel auth-pass %s "%s"\n' "$SENTINEL_NAME" "$pw"
  echo "sentinel down-after-milliseconds $SENTINEL_NAME 5000"
  echo "sentinel failover-timeout $SENTINEL_NAME 60000"
  echo "sentinel parallel-syncs $SENTINEL_NAME 1"
} > /tmp/sentinel.conf
exec redis-server /tmp/sentinel.conf --sentinel
