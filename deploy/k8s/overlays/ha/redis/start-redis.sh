#!/bin/sh
# Starts one Redis of the Sentinel set: the primary when find-primary.sh names this pod,
# else a replica of the one it names. A restarted former primary so rejoins as a replica.
set -eu
umask 077
secrets="${SECRETS_DIR:-/run/secrets}"
# ACL users with the default user off (base's ConfigMap redis-acl), each password from its
# Secret: the passwords go only into these files on the memory emptyDir, never into argv.
sh /etc/redis-acl/aclfile.sh /etc/redis-acl/users.acl "$secrets" > /tmp/users.acl
read -r replication_pw < "$secrets/redis_replication_password" || [ -n "$replication_pw" ]
self="$HOSTNAME.$SERVICE"
primary=$(sh /scripts/find-primary.sh)
{
  echo "aclfile /tmp/users.acl"
  # A replica logs in to the primary as `replication` (PSYNC and REPLCONF only); a promoted
  # replica keeps these lines for when it follows again.
  echo "masteruser replication"
  printf 'masterauth "%s"\n' "$replication_pw"
  # Sentinels and clients get this stable name, not the pod's address, which changes.
  echo "replica-announce-ip $self"
  if [ "$primary" != "$self" ]; then echo "replicaof $primary 6379"; fi
} > /tmp/redis.conf
# As Compose and the dev overlay: AOF fsynced every second, noeviction.
exec redis-server /tmp/redis.conf --dir /data --appendonly yes --appendfsync everysec \
  --save "" --maxmemory 200mb --maxmemory-policy noeviction
