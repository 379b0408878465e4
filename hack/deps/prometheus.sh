#!/usr/bin/env bash
# Installs Prometheus and promtool (Debian's prometheus package) for the ScalingPolicy
# integration tests and bench, only when missing. Tests start their own server on a free port.
set -euo pipefail
if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package starts a system service on some machines; stop it (tests use their own).
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
