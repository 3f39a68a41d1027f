#!/bin/sh
# Prints the host name of the current Redis primary: what the first Sentinel that answers
# says, or, when none does (the set's first start), the first of $PEERS (pod 0).
# Shell built-ins and redis-cli only, so it runs on any image that has redis-cli.
# It asks as the `app` user, whose Sentinel ACL allows this lookup and little else; the password
# goes to redis-cli in its environment (REDISCLI_AUTH), not in argv.
# Without it every Sentinel would seem silent and this pod would claim the primary: fail instead.
read -r REDISCLI_AUTH < "${SECRETS_DIR:-/run/secrets}/redis_app_password" || [ -n "$REDISCLI_AUTH" ] || exit 1
export REDISCLI_AUTH
for peer in $PEERS; do
  # The answer is two lines, host then port.
  set -- $(redis-cli -h "$peer" -p 26379 --user app --raw SENTINEL get-master-addr-by-name "$SENTINEL_NAME" 2>/dev/null)
  if [ $# -eq 2 ]; then
    echo "$1"
    exit 0
  fi
done
echo "${PEERS%% *}"
