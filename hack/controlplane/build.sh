#!/usr/bin/env bash
# Build the upstream control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, helm) from the Go module proxy into a git-ignored cache.
#
# Each component lives in its own Go module here so version pins never collide. A component is
# rebuilt only when its key changes: the hash of its go.mod, go.sum, the pinned versions and the
# Go version. On success the last line printed is the bin directory holding all six binaries.
#
#   hack/controlplane/build.sh [--bindir-only]
#
# Environment: XYNERGY_CACHE (default <repo>/.cache), GOTOOLCHAIN (default local).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${XYNERGY_CACHE:-$repo/.cache}/controlplane"
bindir="$cache/bin"
logdir="$cache/logs"
export GOWORK=off
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=readonly -trimpath"

# shellcheck source=versions.env
source "$here/versions.env"

if [[ "${1:-}" == "--bindir-only" ]]; then
  echo "$bindir"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "controlplane build: the Go toolchain is missing (no 'go' on PATH); install Go 1.26+" >&2
  exit 2
fi

mkdir -p "$bindir" "$logdir"
goversion="$(go env GOVERSION)"

k8s_minor="$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
  k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  k8s_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# component | module dir | version | ldflags | binaries (name=package ...)
components=(
  "etcd|etcd|$ETCD_VERSION|-s -w|etcd=go.etcd.io/etcd/server/v3"
  "kubernetes|kubernetes|$KUBERNETES_VERSION|$k8s_ldflags|kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler"
  "kwok|kwok|$KWOK_VERSION|-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION|kwok=sigs.k8s.io/kwok/cmd/kwok"
  "helm|helm|$HELM_VERSION|-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION|helm=helm.sh/helm/v3/cmd/helm"
)

total=${#components[@]}
i=0
for row in "${components[@]}"; do
  i=$((i + 1))
  IFS='|' read -r name moddir version ldflags bins <<<"$row"
  key="$(cat "$here/$moddir/go.mod" "$here/$moddir/go.sum" | sha256sum | cut -c1-16)-$version-$goversion"
  stamp="$bindir/.$name.key"
  missing=0
  for b in $bins; do [[ -x "$bindir/${b%%=*}" ]] || missing=1; done
  if [[ $missing == 0 && -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    echo "[$i/$total] $name $version: cached"
    continue
  fi
  log="$logdir/$name.log"
  : >"$log"
  for b in $bins; do
    bin="${b%%=*}"
    pkg="${b#*=}"
    echo "[$i/$total] building $bin $version (log: $log)"
    cmd=(go build -ldflags "$ldflags" -o "$bindir/$bin.tmp" "$pkg")
    start=$(date +%s)
    if ! (cd "$here/$moddir" && "${cmd[@]}") >>"$log" 2>&1; then
      echo "controlplane build: $bin failed: (cd hack/controlplane/$moddir && ${cmd[*]}); log: $log" >&2
      tail -n 20 "$log" >&2 || true
      exit 1
    fi
    mv -f "$bindir/$bin.tmp" "$bindir/$bin"
    echo "[$i/$total] built $bin in $(($(date +%s) - start))s"
  done
  echo "$key" >"$stamp"
done
echo "$bindir"
