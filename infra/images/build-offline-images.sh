#!/usr/bin/env bash
# Builds local stand-ins for the three official base images (node, redis, nginx) from this
# machine's own binaries, for hosts that reach no container registry. Each image is a root
# folder with the binaries, the shared libraries `ldd` names, a shell, and /etc/passwd, fed to
# `docker import`; it takes seconds. Prints the image variables to use, one per line:
#   NODE_IMAGE=esc-offline/node:24  REDIS_IMAGE=...  NGINX_IMAGE=...
# usage: infra/images/build-offline-images.sh [--force]
# An image is rebuilt only when what goes into it changed (a hash kept in its commit message),
# so the app image built on top keeps its layer cache across runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/.cache/offline-images"
force=${1:-}

NODE_TAG=esc-offline/node:24
REDIS_TAG=esc-offline/redis:7
NGINX_TAG=esc-offline/nginx:1

die() { echo "build-offline-images: $*" >&2; exit 1; }
trap 'echo "build-offline-images: failed at line $LINENO" >&2' ERR
command -v docker >/dev/null || die "docker CLI not found"
export PATH="$("$root/infra/node-env.sh"):$PATH"
"$root/infra/ensure-system-deps.sh" redis-server redis-cli nginx >&2

bin_path() { # the real file behind a command name, wherever the distribution put it
  local p
  p=$(command -v "$1" 2>/dev/null || true)
  [ -n "$p" ] || for d in /usr/sbin /sbin /usr/bin; do [ -x "$d/$1" ] && p="$d/$1" && break; done
  [ -n "$p" ] || die "$1 not found"
  readlink -f "$p"
}

# Copies a binary to DEST inside the root folder, with every shared library it links, each at
# the path ldd reports (the dynamic loader looks there: Debian's multiarch dirs are built in).
add_binary() { # rootfs src dest
  local rootfs=$1 src=$2 dest=$3 lib
  install -D -m 0755 "$src" "$rootfs$dest"
  for lib in $(ldd "$src" | grep -oE '/[^ ]+\.so[^ ]*' | sort -u); do
    # Keep the mode: the kernel refuses a dynamic loader (ld-linux) without its x bit.
    [ -e "$rootfs$lib" ] || install -D -m "$(stat -L -c %a "$lib")" "$(readlink -f "$lib")" "$rootfs$lib"
  done
}

# The bare minimum of a distribution: a shell (dash: the healthchecks are sh scripts), env
# (npm's scripts use #!/usr/bin/env node), users and name-service config, and /tmp.
base_root() { # rootfs
  local rootfs=$1
  rm -rf "$rootfs"
  mkdir -p "$rootfs"/{etc,tmp,root,run,usr/local/bin,var/tmp}
  chmod 1777 "$rootfs/tmp" "$rootfs/var/tmp"
  chmod 0700 "$rootfs/root"
  add_binary "$rootfs" "$(bin_path dash)" /bin/sh
  add_binary "$rootfs" "$(bin_path env)" /usr/bin/env
  # The official images' users and ids: node 1000, redis 999 (alpine), nginx 101 (alpine).
  cat > "$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
node:x:1000:1000::/home/node:/bin/sh
redis:x:999:1000::/data:/sbin/nologin
nginx:x:101:101::/nonexistent:/sbin/nologin
nobody:x:65534:65534::/nonexistent:/sbin/nologin
EOF
  cat > "$rootfs/etc/group" <<'EOF'
root:x:0:
nginx:x:101:
node:x:1000:
redis:x:999:
nogroup:x:65534:
EOF
  printf 'hosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
}

# Imports the root folder unless an image with the same inputs exists already.
import_root() { # rootfs tag hash change...
  local rootfs=$1 tag=$2 hash=$3
  shift 3
  local changes=()
  for c in "$@"; do changes+=(--change "$c"); done
  local old
  old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
  tar --numeric-owner --sort=name --mtime=@0 -C "$rootfs" -c . \
    | docker import -m "esc-offline $hash" "${changes[@]}" - "$tag" >/dev/null
  echo "built $tag" >&2
  # The previous build is now untagged; drop it unless something still uses it.
  [ -z "$old" ] || docker image rm "$old" >/dev/null 2>&1 || true
}

up_to_date() { # tag hash
  [ "$force" != "--force" ] &&
    [ "$(docker image inspect --format '{{.Comment}}' "$1" 2>/dev/null || true)" = "esc-offline $2" ]
}

script_hash=$(sha256sum "$0" | cut -c1-12)

# --- node: Node 24 (the binary infra/node-env.sh bootstraps) plus npm and bash, as in
# node:24-*-slim (bash is Essential in Debian): the app's HEALTHCHECK is a bash script (probe.sh).
node_bin=$(readlink -f "$(command -v node)")
# npm is the package that provides the `npm` command (/usr/bin/npm -> .../npm/bin/npm-cli.js).
npm_dir=$(dirname "$(dirname "$(bin_path npm)")")
[ -f "$npm_dir/bin/npm-cli.js" ] || die "npm's package not found (looked in $npm_dir)"
node_hash="$script_hash-$("$node_bin" -v)-npm$(node -p "require('$npm_dir/package.json').version")"
if ! up_to_date "$NODE_TAG" "$node_hash"; then
  r="$work/node"
  base_root "$r"
  add_binary "$r" "$node_bin" /usr/local/bin/node
  add_binary "$r" "$(bin_path bash)" /bin/bash
  mkdir -p "$r/usr/local/lib/node_modules" "$r/home/node"
  cp -a "$npm_dir" "$r/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$r/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$r/usr/local/bin/npx"
  chown -R 1000:1000 "$r/home/node"
  import_root "$r" "$NODE_TAG" "$node_hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "ENV NODE_VERSION=$("$node_bin" -v | tr -d v)" 'CMD ["node"]'
fi

# --- redis: Debian's redis-server 7.0 and redis-cli, in /usr/local/bin as in redis:*-alpine.
redis_bin=$(bin_path redis-server)
redis_hash="$script_hash-$(redis-server --version | grep -oE 'v=[0-9.]+')"
if ! up_to_date "$REDIS_TAG" "$redis_hash"; then
  r="$work/redis"
  base_root "$r"
  # Named redis-server: the binary picks its mode from argv[0] (Debian links it to redis-check-rdb).
  add_binary "$r" "$redis_bin" /usr/local/bin/redis-server
  add_binary "$r" "$(bin_path redis-cli)" /usr/local/bin/redis-cli
  mkdir -p "$r/data" && chown 999:1000 "$r/data"
  # The official image starts as root and drops to redis in its entrypoint; this one has no
  # entrypoint, so it runs as redis from the start.
  import_root "$r" "$REDIS_TAG" "$redis_hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'USER redis' 'WORKDIR /data' 'VOLUME /data' 'EXPOSE 6379' 'CMD ["redis-server"]'
fi

# --- nginx: Debian's nginx 1.22 (the config under nginx/ is written for it and for 1.28).
nginx_bin=$(bin_path nginx)
nginx_hash="$script_hash-$("$nginx_bin" -v 2>&1 | grep -oE '[0-9.]+$')"
if ! up_to_date "$NGINX_TAG" "$nginx_hash"; then
  r="$work/nginx"
  base_root "$r"
  add_binary "$r" "$nginx_bin" /usr/sbin/nginx
  mkdir -p "$r/etc/nginx" "$r/var/log/nginx" "$r/var/lib/nginx" "$r/var/cache/nginx" "$r/usr/share/nginx"
  import_root "$r" "$NGINX_TAG" "$nginx_hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'EXPOSE 8080' 'CMD ["nginx", "-g", "daemon off;"]'
fi

rm -rf "$work"
echo "NODE_IMAGE=$NODE_TAG"
echo "REDIS_IMAGE=$REDIS_TAG"
echo "NGINX_IMAGE=$NGINX_TAG"
