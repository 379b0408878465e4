#!/usr/bin/env bash
# Installs the daemonless image tools (Debian): mmdebstrap builds the base root filesystem from
# Debian packages, umoci assembles the OCI image. Only when missing; `make images` and
# tests/integration/test_image.py use them (the test skips without them).
set -euo pipefail
if command -v mmdebstrap >/dev/null 2>&1 && command -v umoci >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends mmdebstrap umoci >/dev/null
command -v mmdebstrap >/dev/null && command -v umoci >/dev/null
