#!/bin/sh
# Prints Redis's aclfile: users.acl (a copy of infra/redis/users.acl) without its comments, each
# user whose password file is mounted in SECRETS_DIR given it (` >password`), as Compose's Redis
# does; a user without one stays, but nobody can log in as it (dev's replication and sentinel).
# Usage: aclfile.sh USERS_ACL SECRETS_DIR > aclfile. Shell built-ins only, as on any Redis image.
set -eu
while read -r kw name rest; do
  [ "$kw" = user ] || continue
  pw=
  f="$2/redis_${name}_password"
  if [ -e "$f" ]; then
    read -r pw < "$f" || true
    # A mounted but empty secret would leave its user unusable, silently: refuse to start.
    [ -n "$pw" ] || { echo "aclfile.sh: $f is empty" >&2; exit 1; }
  fi
  printf '%s %s %s%s\n' "$kw" "$name" "$rest" "${pw:+ >$pw}"
done < "$1"
