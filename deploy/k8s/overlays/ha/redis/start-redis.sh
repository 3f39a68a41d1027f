#!/bin/sh
# Starts one Redis of the Sentinel set: the primary when find-primary.sh names this pod,
# else a replica of the one it names. A restarted former primary so rejoins as a replica.
set -eu
umask 077
read -r pw < /run/secrets/redis_password
self="$HOSTNAME.$SERVICE"
primary=$(sh /scripts/find-primary.sh)
{
  # The password goes through this file, not argv, so `ps` never shows it.
  printf 'requirepass "%s"\nmasterauth "%s"\n' "$pw" "$pw"
  # Sentinels and clients get this stable name, not the pod's address, which changes.
  printf 'replica-announce-ip %s\n' "$self"
  if [ "$primary" != "$self" ]; then printf 'replicaof %s 6379\n' "$primary"; fi
} > /tmp/redis.conf
# As Compose and the dev overlay: AOF fsynced every second, noeviction.
exec redis-server /tmp/redis.conf --dir /data --appendonly yes --appendfsync everysec \
  --save "" --maxmemory 200mb --maxmemory-policy noeviction
