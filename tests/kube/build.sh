#!/usr/bin/env bash
# Builds the real Kubernetes control plane the tests use, from Go modules
# (test tooling only; the product stays Rust): kube-apiserver (k8s.io/kubernetes
# v1.37.2), etcd (go.etcd.io/etcd/server/v3 v3.7.0: the version k8s.io/kubernetes
# v1.37.2 itself requires, so one module builds both) and helm (v3.22.0), static
# (CGO_ENABLED=0), into ~/.cache/clusto-kube/bin. Idempotent: binaries that
# exist are kept, and the Go caches live beside them so only the first build pays.
set -euo pipefail
cd "$(dirname "$0")"
K8S=v1.37.2; STAGING=v0.37.2; ETCD=v3.7.0; HELM=v3.22.0
CACHE=${CLUSTO_KUBE_CACHE:-$HOME/.cache/clusto-kube}
export GOMODCACHE=$CACHE/gomod GOCACHE=$CACHE/gobuild GOFLAGS=-mod=mod CGO_ENABLED=0
BIN=$CACHE/bin; mkdir -p "$BIN"
log() { printf '== %s\n' "$*"; }

if [ ! -x "$BIN/kube-apiserver" ] || [ ! -x "$BIN/etcd" ]; then
  # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces them
  # with ./staging paths; a consumer must point each at its published version.
  # The list comes from that version's own go.mod, never typed by hand.
  mod=$(go mod download -json "k8s.io/kubernetes@$K8S" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module clusto.dev/tests/kube"
    echo
    echo "go 1.26"
    echo
    echo "require ("
    echo "	k8s.io/kubernetes $K8S"
    echo "	go.etcd.io/etcd/server/v3 $ETCD"
    echo ")"
    echo
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/k8s\.io/.*#replace \1 => \1 '"$STAGING"'#p' "$mod"
  } > go.mod
  log "go.mod: $(grep -c '^replace' go.mod) staging modules replaced"
  go mod tidy
  v=k8s.io/component-base/version
  ld="-s -w -X $v.gitVersion=$K8S -X $v.gitMajor=1 -X $v.gitMinor=37 -X $v.gitTreeState=clean"
  log "building kube-apiserver $K8S"
  go build -trimpath -ldflags "$ld" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  log "building etcd $ETCD"
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
fi
if [ ! -x "$BIN/helm" ]; then
  log "building helm $HELM"
  # Helm's version string is set by its Makefile; without it `helm version` says "v3.22".
  GOBIN=$BIN go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM" \
    "helm.sh/helm/v3/cmd/helm@$HELM"
fi
"$BIN/kube-apiserver" --version
"$BIN/etcd" --version | sed -n 1p   # reads everything: head would SIGPIPE etcd under pipefail
"$BIN/helm" version --short
