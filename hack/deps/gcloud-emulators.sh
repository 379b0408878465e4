#!/usr/bin/env bash
# Installs the gcloud emulators the integration tests start (Firestore for the CRM, Pub/Sub for
# the analytics ingest) and the Java 17 runtime they need, only when missing. Uses Google's
# Debian repository for google-cloud-cli.
set -euo pipefail
# platform directory under the SDK root -> the Debian package that provides it
declare -A EMULATORS=(
  [cloud-firestore-emulator]=google-cloud-cli-firestore-emulator
  [pubsub-emulator]=google-cloud-cli-pubsub-emulator
)
have_emulators() {
  command -v gcloud >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || return 1
  local root dir
  root="$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null)"
  for dir in "${!EMULATORS[@]}"; do
    [ -d "$root/platform/$dir" ] || return 1
  done
}
if have_emulators; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy google-cloud-cli 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends ca-certificates curl gnupg >/dev/null
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg |
    $SUDO gpg --dearmor --yes -o /usr/share/keyrings/cloud.google.gpg
  echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" |
    $SUDO tee /etc/apt/sources.list.d/google-cloud-sdk.list >/dev/null
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends \
  openjdk-17-jre-headless google-cloud-cli "${EMULATORS[@]}" >/dev/null
have_emulators
