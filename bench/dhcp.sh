#!/usr/bin/env bash
# DHCP benchmark: clusto dhcpd side by side with ISC Kea and dnsmasq, driven
# by perfdhcp (4-way DORA, relay mode, MAC list of bound hosts) through the
# shared harness (../shared/dhcp): server pinned to CPU 1, perfdhcp to CPU 0.
# All traffic stays in two network namespaces. Needs root, kea-dhcp4-server,
# kea-admin (perfdhcp) and dnsmasq-base.
# Usage: bench/dhcp.sh [N ...]   (default: 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
SH=$(cd ../shared/dhcp && pwd)
SIZES=("$@"); [ ${#SIZES[@]} -gt 0 ] || SIZES=(10000 100000)
SECS=${SECS:-10}; RUNS=${RUNS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli
C="$CARGO_TARGET_DIR/release/clusto"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
bash "$SH/netns-down.sh" >/dev/null 2>&1 || true
bash "$SH/netns-up.sh" --client-ip >/dev/null
trap 'bash "$SH/netns-down.sh" >/dev/null 2>&1 || true' EXIT
echo "server,n,target_rate,achieved_rate,do_drop_pct,ra_drop_pct,do_avg_ms,ra_avg_ms,do_max_ms,ra_max_ms,server_cpu_us_per_exchange,loadavg1"
for N in "${SIZES[@]}"; do
  CFG=/tmp/dhcp/n$N
  [ -f "$CFG/hosts.csv" ] || python3 "$SH/gen_dhcp_configs.py" "$N" "$CFG" --socket udp >&2
  # The same hosts as an inventory: one IPManager, a datacenter with the
  # options, a server per reservation with its NIC MAC and address.
  store=/tmp/dhcp/clusto-$N.db
  if [ ! -f "$store.done" ]; then
    rm -f "$store"*
    python3 - "$CFG/hosts.csv" > "$CFG/clusto.yaml" <<'PY'
import sys
print("""apiVersion: clusto.dev/v1alpha1
kind: IPManager
metadata: {name: bench-net}
spec: {cidr: 10.76.0.0/14, gateway: 10.77.0.1}
---
apiVersion: clusto.dev/v1alpha1
kind: Datacenter
metadata: {name: bench-dc}
spec:
  attrs:
    dhcp: {enabled: true, dns-servers: 10.77.0.1, domain-name: dc1.example.test, tftp_server: 10.77.0.1, tftp_filename: pxelinux.0, lease-time: 3600}""")
for i, line in enumerate(open(sys.argv[1])):
    mac, ip = line.strip().split(",")[:2]
    if not mac or mac == "mac":
        continue
    print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: Server
metadata: {{name: h{i:07d}}}
spec:
  datacenter: bench-dc
  ports: [{{port: "nic-eth:1", mac: "{mac}"}}]
  addresses: [{{address: {ip}, manager: bench-net, port: "nic-eth:1"}}]""")
PY
    "$C" --store "sqlite://$store" apply -f "$CFG/clusto.yaml" | tail -n1 >&2
    touch "$store.done"
  fi
  case $N in 100000) DNSMASQ_RATE=100 ;; *) DNSMASQ_RATE=800 ;; esac
  bash "$SH/bench_dhcp.sh" kea "$N" 6000 "$SECS" "$RUNS" || true  # it exits 143: its last step waits on the server it killed
  bash "$SH/bench_dhcp.sh" dnsmasq "$N" "$DNSMASQ_RATE" "$SECS" 1 || true
  for RATE in 6000 9000; do
    export SERVER_CMD="CLUSTO_LOG=info exec $C --store sqlite://$store dhcpd --server-id 10.77.0.1"
    { bash "$SH/bench_dhcp.sh" custom "$N" "$RATE" "$SECS" "$RUNS" || true; } | sed "s/^custom,/clusto,/"
    grep -o 'DHCP index built.*' /tmp/dhcp/run/custom.log | head -n1 | sed "s/^/# N=$N /" >&2
  done
  # Resident memory once the index is built (a port of its own, no traffic).
  ip netns exec dhsrv env CLUSTO_LOG=info "$C" --store "sqlite://$store" dhcpd --server-id 10.77.0.1 \
    --listen 0.0.0.0:1067 > /tmp/dhcp/run/rss.log 2>&1 &
  pid=$!
  for _ in $(seq 1 150); do grep -q "responder ready" /tmp/dhcp/run/rss.log && break; sleep 0.2; done
  echo "# N=$N clusto dhcpd peak RSS $(( $(awk '/VmHWM/{print $2}' /proc/$pid/status) / 1024 )) MiB" >&2
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
