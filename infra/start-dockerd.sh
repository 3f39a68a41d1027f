#!/usr/bin/env bash
# Makes sure a Docker engine answers: when none does (a fresh CI machine boots without one),
# installs docker.io if needed and starts dockerd in the background, waiting at most 60 s.
set -euo pipefail
cd "$(dirname "$0")/.."
docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "no Docker engine answers \`docker info\`; start Docker (or run as root to let this script start dockerd)" >&2
  exit 1
fi
infra/ensure-system-deps.sh dockerd docker-init
log=${DOCKERD_LOG:-/tmp/dockerd.log}
echo "starting dockerd (log: $log)..." >&2
# setsid: the daemon outlives this script and the make that called it.
setsid dockerd >"$log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "dockerd did not answer within 60 s; the end of its log:" >&2
tail -30 "$log" >&2
exit 1
