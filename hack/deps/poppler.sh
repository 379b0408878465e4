#!/usr/bin/env bash
# Installs poppler-utils (Debian: pdftoppm, pdftotext) for the analytics reports' tests, which
# render the PDF reports' pages to images and read their text back; only when missing.
set -euo pipefail
if command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
command -v pdftoppm >/dev/null && command -v pdftotext >/dev/null
