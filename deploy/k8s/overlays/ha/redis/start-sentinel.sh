#!/bin/sh
# Starts one Sentinel watching the current primary. Its config lives on an emptyDir because
# Sentinel rewrites it (what it learns about replicas and the other Sentinels); it holds
# passwords (sentinel-conf.sh), so 0600 and never in argv.
set -eu
umask 077
primary=$(sh /scripts/find-primary.sh)
sh /scripts/sentinel-conf.sh "$primary" > /tmp/sentinel.conf
exec redis-server /tmp/sentinel.conf --sentinel
