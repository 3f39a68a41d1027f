#!/bin/sh
# Prints the host name of the current Redis primary: what the first Sentinel that answers
# says, or, when none does (the set's first start), the first of $PEERS (pod 0).
for peer in $PEERS; do
  answer=$(redis-cli -h "$peer" -p 26379 --raw SENTINEL get-master-addr-by-name "$SENTINEL_NAME" 2>/dev/null |
    head -n 1)
  if [ -n "$answer" ]; then
    echo "$answer"
    exit 0
  fi
done
echo "${PEERS%% *}"
