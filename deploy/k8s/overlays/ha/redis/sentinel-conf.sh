#!/bin/sh
# Prints a Sentinel's config, monitoring the primary named in $1, with the same ACL users and
# logins as infra/cluster/redis-conf.ts's sentinelConf (test/k8s.test.ts compares them): it logs
# in to Redis as `sentinel` and to the other Sentinels as `admin`; its own users are admin, app
# (find the primary, follow +switch-master) and health (PING), the default user off.
set -eu
# `|| [ -n ... ]`: a file without a final newline is read but makes `read` fail.
secrets="${SECRETS_DIR:-/run/secrets}"
read -r admin_pw < "$secrets/redis_admin_password" || [ -n "$admin_pw" ]
read -r app_pw < "$secrets/redis_app_password" || [ -n "$app_pw" ]
read -r health_pw < "$secrets/redis_health_password" || [ -n "$health_pw" ]
read -r sentinel_pw < "$secrets/redis_sentinel_password" || [ -n "$sentinel_pw" ]
echo "port 26379"
echo "dir /tmp"
# Pods get new addresses when they restart: Sentinels name each other and Redis by DNS.
echo "sentinel resolve-hostnames yes"
echo "sentinel announce-hostnames yes"
echo "sentinel announce-ip $HOSTNAME.$SERVICE"
# Two of the three Sentinels must agree that the primary is down.
echo "sentinel monitor $SENTINEL_NAME $1 6379 2"
echo "sentinel auth-user $SENTINEL_NAME sentinel"
echo "sentinel auth-pass $SENTINEL_NAME $sentinel_pw"
echo "sentinel down-after-milliseconds $SENTINEL_NAME 5000"
echo "sentinel failover-timeout $SENTINEL_NAME 60000"
echo "sentinel parallel-syncs $SENTINEL_NAME 1"
echo "sentinel sentinel-user admin"
echo "sentinel sentinel-pass $admin_pw"
echo "user default off"
echo "user admin on ~* &* +@all >$admin_pw"
echo "user app on resetchannels &__sentinel__:* &+switch-master -@all +sentinel|get-master-addr-by-name" \
  "+sentinel|sentinels +sentinel|slaves +sentinel|replicas +subscribe +psubscribe +ping +info" \
  "+client|setname +role >$app_pw"
echo "user health on resetchannels -@all +ping >$health_pw"
