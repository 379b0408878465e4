#!/usr/bin/env bash
# Installs the JavaScript tools the gateway tests drive (firebase-tools for the Auth emulator,
# socket.io-client for the stream contract test) into tests/integration/gateway/node/.
set -euo pipefail
DIR="$(cd "$(dirname "$0")/../.." && pwd)/tests/integration/gateway/node"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
cd "$DIR"
if [ -x node_modules/.bin/firebase ] && [ -d node_modules/socket.io-client ] \
   && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  exit 0
fi
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
