#!/usr/bin/env bash
# GETs a path (default /healthz) from this container's operator listener (OPS_PORT) and prints
# the HTTP status (0: no answer); exits 0 only on 200. It is the image's HEALTHCHECK, which
# Compose and the Swarm stack inherit, and the drivers' probe of one replica (/readyz).
# bash's /dev/tcp, not `node -e fetch(...)`: a whole Node process per check took 3-8 s to start
# on a loaded host, and in Swarm a task enters DNS only at its first passing check.
path=${1:-/healthz}
status=0
# A refused connect fails at once. A frozen app (SIGSTOP, a blocked event loop) still gets its
# connection accepted by the kernel but never answers: the read gives up after PROBE_TIMEOUT_S,
# so probes cannot pile up inside a container whose app hangs.
if { exec 3<>"/dev/tcp/127.0.0.1/${OPS_PORT:-9091}"; } 2>/dev/null; then
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
  # The status line: "HTTP/1.1 200 OK".
  read -r -t "${PROBE_TIMEOUT_S:-5}" _ status _ <&3 || status=0
  status=${status%$'\r'}
  exec 3<&-
else
  echo "probe: nothing listens on 127.0.0.1:${OPS_PORT:-9091}" >&2
fi
echo "${status:-0}"
[ "$status" = 200 ]
