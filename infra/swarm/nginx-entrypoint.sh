# nginx's command in the Swarm stack: writes the upstream block, then runs nginx in the foreground.
# Swarm gives a replaced task a new address, and `tasks.app` (the app service is endpoint_mode
# dnsrr: one DNS record per healthy task) changes with it. Two ways to follow it, by version:
# - nginx >= 1.27.3: `resolve` on the upstream server; nginx re-queries Docker's DNS every
#   second (resolver valid=1s) and keeps the upstream's keep-alive pool, zone and max_fails.
# - older nginx (Debian's 1.22 in the offline stand-in): a watcher loop queries `tasks.app`
#   every second and, when the set of addresses changed, runs `nginx -s reload`: a graceful
#   swap of workers that re-resolves the name. A resolver with a variable proxy_pass host would
#   need no watcher, but a proxy_pass whose host is a variable bypasses the upstream block, so every request
#   would pay a new TCP connection to a replica (no keep-alive pool) and lose max_fails.
# Only shell built-ins plus getent and sleep: the stand-in image has nothing else.
set -u
# nginx.conf includes /tmp/upstream.conf; UPSTREAM_CONF moves it for the test (nginx-entrypoint.test.ts).
UPSTREAM=${UPSTREAM_CONF:-/tmp/upstream.conf}
NAME=tasks.app

v=$(nginx -v 2>&1)
v=${v##*/}
major=${v%%.*}
rest=${v#*.}
minor=${rest%%.*}
patch=${rest#*.}
patch=${patch%%[!0-9]*}
# nginx >= 1.27.3 re-resolves an upstream server by itself (`resolve`).
version=$(( major * 1000000 + minor * 1000 + ${patch:-0} ))
if [ "$version" -ge 1027003 ]; then
  mode=resolve
else
  mode=watch
fi

server_line="server $NAME:3000 max_fails=1 fail_timeout=2s;"
[ "$mode" = resolve ] && server_line="server $NAME:3000 resolve max_fails=1 fail_timeout=2s;"
printf '%s\n' \
  "# Written by nginx-entrypoint.sh (nginx $v, mode $mode)." \
  "resolver 127.0.0.11 valid=1s ipv6=off;" \
  "resolver_timeout 2s;" \
  "upstream app {" \
  "  zone app 64k;" \
  "  $server_line" \
  "  keepalive 64;" \
  "  keepalive_timeout 60s;" \
  "  keepalive_requests 10000;" \
  "}" > "$UPSTREAM"

# The distinct IPv4 addresses of $NAME, space-separated, in the order DNS gave them.
addresses() {
  list=""
  for ip in $(getent ahostsv4 "$NAME" 2>/dev/null | while read -r a _; do echo "$a"; done); do
    case " $list " in *" $ip "*) ;; *) list="$list $ip" ;; esac
  done
  echo "$list"
}

# True when the two lists hold the same addresses (DNS shuffles the order).
same() {
  n1=0
  n2=0
  for a in $1; do n1=$((n1 + 1)); done
  for a in $2; do
    n2=$((n2 + 1))
    case " $1 " in *" $a "*) ;; *) return 1 ;; esac
  done
  [ "$n1" -eq "$n2" ]
}

if [ "$mode" = watch ]; then
  # A plain server line must resolve when nginx loads it: wait for a first healthy task.
  i=0
  current=$(addresses)
  while [ -z "$current" ]; do
    i=$((i + 1))
    [ "$i" -le 300 ] || { echo "nginx-entrypoint: $NAME has no address after 300 s" >&2; exit 1; }
    sleep 1
    current=$(addresses)
  done
  (
    while sleep 1; do
      now=$(addresses)
      # No task at all: keep the old config (nginx would refuse one that resolves to nothing).
      if [ -n "$now" ] && ! same "$current" "$now"; then
        echo "nginx-entrypoint: $NAME is now$now (was$current); reloading nginx" >&2
        nginx -s reload && current=$now
      fi
    done
  ) &
fi

echo "nginx-entrypoint: nginx $v, upstream mode $mode" >&2
exec nginx -g 'daemon off;'
