#!/usr/bin/env bash
# Makes sure the system packages the local cluster needs are installed: installs them with
# apt-get when running as root on Debian/Ubuntu, otherwise prints the exact command to run.
# usage: infra/ensure-system-deps.sh redis-server nginx ...
set -euo pipefail
declare -A pkg=([redis-server]=redis-server [redis-cli]=redis-tools [nginx]=nginx [dockerd]=docker.io
  [docker-init]=docker.io [docker-compose]=docker-compose [chromium]=chromium [kubectl]=kubernetes-client)
missing=()
for bin in "$@"; do
  command -v "$bin" >/dev/null 2>&1 || [ -x "/usr/sbin/$bin" ] || missing+=("${pkg[$bin]:-$bin}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${missing[*]} with apt-get..." >&2
  export DEBIAN_FRONTEND=noninteractive
  # Debian's nginx and redis packages try to start their default services; we never use
  # those (the cluster runs its own processes), so keep them from starting.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  echo "missing: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
