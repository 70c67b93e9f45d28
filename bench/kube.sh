#!/usr/bin/env bash
# `clusto controller --kube` at scale (release, SQLite store, the real
# kube-apiserver + etcd from tests/kube on this machine):
#   - N Server custom resources (in 250-server racks of one datacenter)
#     created through the apiserver, 32 at a time → all in the store and
#     Ready: wall time, apiserver requests the controller made per resource,
#     the controller's peak RSS;
#   - a no-op resync (the controller restarted: it lists everything again):
#     revisions written and apiserver writes (Lease renewals aside);
#   - beside it, the same objects as one manifest file through `clusto apply`
#     (exported from the synced store, applied to a fresh one).
# Usage: bench/kube.sh [--servers 10000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    *) echo "usage: $0 [--servers N]"; exit 2;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin kube-load
C="$CARGO_TARGET_DIR/release/clusto"
L="$CARGO_TARGET_DIR/release/kube-load"
bash tests/kube/build.sh >/dev/null
HELM=${CLUSTO_KUBE_CACHE:-$HOME/.cache/clusto-kube}/bin/helm
work=$(mktemp -d); pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  tests/kube/down.sh "$work/kube" >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
KC=$(tests/kube/up.sh "$work/kube")
TOKEN=$(cut -d, -f1 "$work/kube/tokens.csv")
SERVER=$(awk '/server:/{print $2}' "$KC")
# The chart as users install it (its CRDs and the finalizer admission
# policy); no kubelet runs here, so its Deployment runs nothing and the
# controller measured is the process started below.
HELM_CACHE_HOME=$work/helm HELM_CONFIG_HOME=$work/helm HELM_DATA_HOME=$work/helm \
  "$HELM" install clusto charts/clusto --kubeconfig "$KC" --namespace default --no-hooks \
  --set controller.replicas=0 >/dev/null
# The apiserver takes the new admission policy up asynchronously: wait until
# a dry-run create comes back with the finalizer, so the load measures it.
for _ in $(seq 60); do
  curl -sk -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -X POST "$SERVER/apis/clusto.dev/v1alpha1/namespaces/default/datacenters?dryRun=All" \
    -d '{"apiVersion":"clusto.dev/v1alpha1","kind":"Datacenter","metadata":{"name":"probe"},"spec":{}}' |
    grep -q '"clusto.dev/store"' && break
  sleep 0.5
done
export CLUSTO_STORE="sqlite://$work/k.db"

# Requests the apiserver served, by verb, for clusto.dev resources and the
# events the controller records (Leases counted apart).
requests() {
  curl -sk -H "Authorization: Bearer $TOKEN" "$SERVER/metrics" | python3 -c '
import re, sys, collections
by = collections.Counter()
for line in sys.stdin:
    if not line.startswith("apiserver_request_total{"):
        continue
    labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", line))
    n = float(line.rsplit(" ", 1)[1])
    if labels.get("group") == "clusto.dev" or labels.get("resource") == "events":
        by[labels["verb"]] += n
    elif labels.get("resource") == "leases":
        by["LEASE"] += n
print(" ".join(f"{k}={int(v)}" for k, v in sorted(by.items())))'
}

start_controller() {
  "$C" controller --kube --kubeconfig "$KC" --lease-namespace default --lease-seconds 15 2>>"$work/ctl.log" &
  pid=$!
}
start_controller
before=$(requests)
out=$("$L" "$KC" default "$N")
after=$(requests)
hwm=$(awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status")
# CPU seconds (user+system) each process used: where the wall time went.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14+$15)/hz}' "/proc/$1/stat"; }
echo "   CPU seconds: controller $(cpu "$pid"), kube-apiserver $(cpu "$(cat "$work/kube/apiserver.pid")"), etcd $(cpu "$(cat "$work/kube/etcd.pid")") (the load's own share is in the apiserver's)"
python3 - "$N" "$out" "$before" "$after" "$hwm" <<'EOF'
import json, sys
n = int(sys.argv[1]); out = json.loads(sys.argv[2]); hwm = sys.argv[5]
parse = lambda s: {k: int(v) for k, v in (p.split("=") for p in s.split())}
b, a = parse(sys.argv[3]), parse(sys.argv[4])
d = {k: a.get(k, 0) - b.get(k, 0) for k in a}
racks = -(-n // 40)
# The load's own requests: one create per resource, its polling lists.
ctl = sum(v for k, v in d.items() if k not in ("POST", "LEASE")) - out["lists"]
ctl += d.get("POST", 0) - (n + racks + 1)
print(f"== {n} Server CRs (+{racks} racks, 1 datacenter) created in {out['created_s']:.1f} s; "
      f"all in the store and Ready after {out['ready_s']:.1f} s")
print(f"   controller requests: {ctl} for {n + racks + 1} resources = {ctl / (n + racks + 1):.2f} per resource "
      f"({', '.join(f'{k} {v}' for k, v in sorted(d.items()))}; the load: {n + racks + 1} POST, {out['lists']} LIST)")
print(f"   controller peak RSS: {hwm} MiB")
EOF
rev() { "$C" history --limit 1 -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); i=d["items"] if isinstance(d,dict) else d; print(i[0].get("revision", i[0].get("rev")))'; }
head_before=$(rev)
kill "$pid"; wait "$pid" 2>/dev/null || true
before=$(requests)
t0=$(date +%s.%N)
start_controller
sleep 20
after=$(requests)
python3 - "$before" "$after" "$head_before" "$(rev)" <<'EOF'
import sys
parse = lambda s: {k: int(v) for k, v in (p.split("=") for p in s.split())}
b, a = parse(sys.argv[1]), parse(sys.argv[2])
d = {k: a.get(k, 0) - b.get(k, 0) for k in a}
writes = sum(v for k, v in d.items() if k in ("POST", "PUT", "PATCH", "APPLY", "DELETE"))
print(f"== no-op resync (controller restarted, 20 s): store head {sys.argv[3]} -> {sys.argv[4]}, "
      f"apiserver writes {writes} (reads: {', '.join(f'{k} {v}' for k, v in sorted(d.items()) if k not in ('POST','PUT','PATCH','APPLY','DELETE','LEASE'))}; Lease requests {d.get('LEASE', 0)})")
EOF
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
"$C" export > "$work/export.yaml"
t0=$(date +%s.%N)
CLUSTO_STORE="sqlite://$work/peer.db" "$C" apply -f "$work/export.yaml" --apply-set peer >/dev/null
t1=$(date +%s.%N)
echo "== peer: the same objects as one manifest file, clusto apply -f: $(python3 -c "print(f'{$t1-$t0:.1f}')") s"
