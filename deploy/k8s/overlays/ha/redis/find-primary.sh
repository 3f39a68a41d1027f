#!/bin/sh
# Prints the host name of the current Redis primary: what the first Sentinel that answers
# says, or, when none does (the set's first start), the first of $PEERS (pod 0).
# Shell built-ins and redis-cli only, so it runs on any image that has redis-cli.
for peer in $PEERS; do
  # The answer is two lines, host then port.
  set -- $(redis-cli -h "$peer" -p 26379 --raw SENTINEL get-master-addr-by-name "$SENTINEL_NAME" 2>/dev/null)
  if [ $# -eq 2 ]; then
    echo "$1"
    exit 0
  fi
done
echo "${PEERS%% *}"
