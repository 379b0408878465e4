#!/usr/bin/env bash
# Build the upstream control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, helm) from the Go module proxy into a git-ignored cache.
#
# Two Go modules, each built by ONE `go build -o <dir>/ pkg...` so shared packages compile once
# and compiles and links of different binaries run in parallel:
#   shared/  kube-apiserver, kube-controller-manager, kube-scheduler, kwok, helm on one set of
#            Kubernetes libraries (k8s.io/* staging modules replaced to the Kubernetes pin);
#   etcd/    etcd on its own, because Kubernetes' module graph selects etcd v3.7 and the pin is v3.6.
# The groups build one after the other (each go build already keeps every core busy), so the
# second takes the standard library and any identical package from the Go cache. Links are
# stripped (-s -w) and the compiler emits no DWARF (-dwarf=false) that the strip would throw away.
# A group is rebuilt only when its key changes: the hash of its go.mod, go.sum and flags (which
# carry the pinned versions) plus the Go version. On success the last line printed is the bin directory holding all six binaries.
#
#   hack/controlplane/build.sh [--bindir-only]
#
# Environment: XYNERGY_CACHE (default <repo>/.cache), GOTOOLCHAIN (default local); GOCACHE and
# GOMODCACHE are honoured as usual. Each group's log and go action graph (per-package timings)
# are written to <cache>/controlplane/logs/.
set -euo pipefail
shopt -s extglob

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
gcflags="all=-dwarf=false"

k8s_minor="$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
shared_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  shared_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1"
  shared_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=clean"
  shared_ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
shared_ldflags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
shared_ldflags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

# group (= module dir) | pins (module=version ...) | ldflags | binaries (name=package ...)
groups=(
  "etcd|go.etcd.io/etcd/server/v3=$ETCD_VERSION|-s -w|etcd=go.etcd.io/etcd/server/v3"
  "shared|k8s.io/kubernetes=$KUBERNETES_VERSION sigs.k8s.io/kwok=$KWOK_VERSION helm.sh/helm/v3=$HELM_VERSION|$shared_ldflags|kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler kwok=sigs.k8s.io/kwok/cmd/kwok helm=helm.sh/helm/v3/cmd/helm"
)

# check_pins DIR PINS: fail unless the module in DIR resolves each pinned module to its pin.
check_pins() {
  local dir="$1" pin mod want got
  for pin in $2; do
    mod="${pin%%=*}" want="${pin#*=}"
    got="$(cd "$here/$dir" && go list -m -f '{{.Version}}' "$mod" 2>/dev/null || echo none)"
    if [[ "$got" != "$want" ]]; then
      echo "controlplane build: hack/controlplane/$dir/go.mod has $mod $got but versions.env pins $want;" \
        "run (cd hack/controlplane/$dir && go get $mod@$want && go mod tidy)" >&2
      return 1
    fi
  done
}

# set_build_cmd NAME LDFLAGS BINS: the one go build command of a group, into build_cmd and pkgs.
set_build_cmd() {
  local b out="$bindir/.stage-$1/"
  pkgs=()
  for b in $3; do pkgs+=("${b#*=}"); done
  [[ "$1" == etcd ]] && out+=etcd # go would name the .../server/v3 main package "server"
  build_cmd=(go build -gcflags "$gcflags" -ldflags "$2" -debug-actiongraph="$logdir/$1.actiongraph.json"
    -o "$out" "${pkgs[@]}")
}

# build_group NAME BINS: run build_cmd into a staging dir, move the binaries into bindir and
# print the ones that failed (nothing on success).
build_group() {
  local name="$1" bins="$2" stage="$bindir/.stage-$1" log="$logdir/$1.log" b
  rm -rf "$stage" && mkdir -p "$stage"
  {
    echo "+ go list -deps (download modules, count packages): $(date -u +%FT%TZ)"
    (cd "$here/$name" && go list -deps "${pkgs[@]}" | grep -c .) || true
    echo "+ go build: $(date -u +%FT%TZ)"
  } >"$log" 2>&1
  (cd "$here/$name" && "${build_cmd[@]}") >>"$log" 2>&1 || true
  echo "+ done: $(date -u +%FT%TZ)" >>"$log"
  local failed=()
  for b in $bins; do
    if [[ -x "$stage/${b%%=*}" ]]; then mv -f "$stage/${b%%=*}" "$bindir/${b%%=*}"; else failed+=("${b%%=*}"); fi
  done
  rm -rf "$stage"
  echo "${failed[*]}"
}

total=${#groups[@]}
i=0
for row in "${groups[@]}"; do # every pin is checked before any build starts
  IFS='|' read -r name pins _ <<<"$row"
  check_pins "$name" "$pins"
done
for row in "${groups[@]}"; do
  i=$((i + 1))
  IFS='|' read -r name pins ldflags bins <<<"$row"
  key="$(cat "$here/$name/go.mod" "$here/$name/go.sum" <(echo "$pins|$ldflags|$gcflags") | sha256sum | cut -c1-16)-$goversion"
  stamp="$bindir/.$name.key"
  missing=0
  for b in $bins; do [[ -x "$bindir/${b%%=*}" ]] || missing=1; done
  if [[ $missing == 0 && -f "$stamp" && "$(cat "$stamp")" == "$key" ]]; then
    echo "[$i/$total] $name (${pins//=/ }): cached"
    continue
  fi
  rm -f "$stamp"
  echo "[$i/$total] building ${bins//=+([^ ])/} (${pins//=/ }) (log: $logdir/$name.log)"
  start=$(date +%s)
  set_build_cmd "$name" "$ldflags" "$bins"
  failed="$(build_group "$name" "$bins")"
  if [[ -n "$failed" ]]; then
    echo "controlplane build: $failed failed: (cd hack/controlplane/$name && ${build_cmd[*]@Q}); log: $logdir/$name.log" >&2
    grep -v '^+ ' "$logdir/$name.log" | tail -n 20 >&2 || true
    exit 1
  fi
  echo "$key" >"$stamp"
  echo "[$i/$total] built ${bins//=+([^ ])/} in $(($(date +%s) - start))s"
done
echo "$bindir"
