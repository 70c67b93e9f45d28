#!/usr/bin/env bash
# Builds clusto's container image without a daemon, as an OCI image layout
# (umoci): a minimal root filesystem holding the binary, exactly the shared
# libraries it links (from ldd, libvirt's among them) and a non-root user
# (65532) — no shell, no package manager. The Dockerfile beside this script
# builds the same image for Docker users.
#   image/build.sh [--binary PATH] [--out DIR] [--tag TAG]
# Defaults: the release binary in $CARGO_TARGET_DIR, $CARGO_TARGET_DIR/oci/clusto,
# the crate version. Copy it to a registry with skopeo:
#   skopeo copy oci:DIR:TAG docker://REGISTRY/clusto:TAG
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
BIN=$TARGET/release/clusto
OUT=$TARGET/oci/clusto
TAG=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
while [ $# -gt 0 ]; do
  case "$1" in
    --binary) BIN=$2; shift 2;;
    --out) OUT=$2; shift 2;;
    --tag) TAG=$2; shift 2;;
    *) echo "usage: $0 [--binary PATH] [--out DIR] [--tag TAG]" >&2; exit 2;;
  esac
done
[ -x "$BIN" ] || { echo "$BIN: no such binary (cargo build --release -p clusto-cli)" >&2; exit 1; }
command -v umoci >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends umoci >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
umoci init --layout "$OUT"
umoci new --image "$OUT:$TAG"
umoci unpack --image "$OUT:$TAG" "$work/bundle" >/dev/null
root=$work/bundle/rootfs
install -D -m 0755 "$BIN" "$root/usr/local/bin/clusto"
# The dynamic loader and every library the binary needs, at the paths
# the loader looks for them.
ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u |
  while read -r lib; do cp -L --parents "$lib" "$root"; done
mkdir -p "$root/etc" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
echo 'nonroot:x:65532:65532:clusto:/data:/sbin/nologin' > "$root/etc/passwd"
echo 'nonroot:x:65532:' > "$root/etc/group"
chown 65532:65532 "$root/data"
umoci repack --image "$OUT:$TAG" "$work/bundle"
umoci config --image "$OUT:$TAG" \
  --config.entrypoint /usr/local/bin/clusto --config.user 65532:65532 --config.workingdir /data \
  --config.env CLUSTO_STORE=sqlite:///data/clusto.db \
  --config.label "org.opencontainers.image.title=clusto" \
  --config.label "org.opencontainers.image.version=$TAG" \
  --config.label "org.opencontainers.image.source=https://github.com/clusto/clusto"
umoci gc --layout "$OUT"
echo "$OUT:$TAG"
