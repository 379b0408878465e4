#!/usr/bin/env bash
# Builds the operator's OCI image without a container daemon (what the Dockerfile describes,
# for machines with no Docker):
#   1. base layer: a Debian root filesystem from Debian's packages (mmdebstrap, essential variant
#      + python3 and CA certificates), with a non-root user 65532 and no docs/man/locales;
#   2. app layer: the project's wheel and its dependencies (pip wheel, versions pinned by
#      hack/image/constraints.txt) installed under /opt/xynergy;
#   3. an OCI image layout assembled with umoci (one layer each, config: user 65532, entrypoint
#      python3 -m controllers).
# Output: $OUT/oci (image layout, tag $TAG) and $OUT/packages.lock (the Debian packages in it).
# The base rootfs is reused while hack/image/base-packages.txt and the suite are unchanged.
# Needs root (or run it under `unshare --map-root-user`), mmdebstrap and umoci
# (hack/deps/image-tools.sh installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$ROOT/.cache/image}
SUITE=${SUITE:-bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
TAG=${TAG:-operator-$(cd "$ROOT" && "$PYTHON" -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')}
UID_GID=65532
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}

for tool in mmdebstrap umoci; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool is missing (bash hack/deps/image-tools.sh)" >&2; exit 2; }
done
mkdir -p "$OUT"
say() { echo "image: $*" >&2; }

# 1. base root filesystem, cached by its inputs
packages=$(grep -v '^#' "$ROOT/hack/image/base-packages.txt" | xargs | tr ' ' ',')
key=$(printf '%s %s %s' "$SUITE" "$MIRROR" "$packages" | sha256sum | cut -c1-16)
base=$OUT/base-$key
if [ ! -f "$base/.done" ]; then
  say "building the base rootfs ($SUITE: $packages)"
  rm -rf "$base" && mkdir -p "$base"
  mmdebstrap --quiet --variant=essential --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook="echo 'xynergy:x:$UID_GID:$UID_GID:xynergy:/nonexistent:/usr/sbin/nologin' >> \"\$1/etc/passwd\"" \
    --customize-hook="echo 'xynergy:x:$UID_GID:' >> \"\$1/etc/group\"" \
    --customize-hook='chroot "$1" dpkg-query -W -f="\${Package}=\${Version}\n" > "$1/.packages.lock"' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    "$SUITE" "$base/rootfs" "$MIRROR"
  mv "$base/rootfs/.packages.lock" "$base/packages.lock"
  touch "$base/.done"
fi
cp "$base/packages.lock" "$OUT/packages.lock"

# 2. the app: wheels (pinned), installed into /opt/xynergy/lib
say "building wheels"
rm -rf "$OUT/wheels" "$OUT/app" && mkdir -p "$OUT/wheels" "$OUT/app/lib"
"$PYTHON" -m pip wheel --quiet --wheel-dir "$OUT/wheels" \
  --constraint "$ROOT/hack/image/constraints.txt" "$ROOT"
"$PYTHON" -m pip install --quiet --no-index --find-links "$OUT/wheels" --no-warn-script-location \
  --target "$OUT/app/lib" xynergy
rm -rf "$OUT/app/lib/bin"  # console scripts point at the build machine's Python

# 3. the OCI image
say "assembling $OUT/oci:$TAG"
rm -rf "$OUT/oci"
umoci init --layout "$OUT/oci"
umoci new --image "$OUT/oci:$TAG"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
umoci insert --image "$OUT/oci:$TAG" --history.created "$created" \
  --history.created_by "mmdebstrap $SUITE essential + $packages" "$base/rootfs" /
umoci insert --image "$OUT/oci:$TAG" --history.created "$created" \
  --history.created_by "pip install xynergy (hack/image/constraints.txt)" "$OUT/app" /opt/xynergy
umoci config --image "$OUT/oci:$TAG" --no-history --created "$created" \
  --os linux --architecture amd64 \
  --config.user "$UID_GID:$UID_GID" --config.workingdir /opt/xynergy \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env PYTHONPATH=/opt/xynergy/lib \
  --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.entrypoint python3 --config.entrypoint -m --config.cmd controllers \
  --config.label org.opencontainers.image.title=xynergy-operator \
  --config.label "org.opencontainers.image.version=$TAG"
umoci gc --layout "$OUT/oci"
say "done: $OUT/oci:$TAG"
