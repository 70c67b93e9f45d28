#!/usr/bin/env bash
# VM controller benchmark: 1,000 VirtualMachine objects converged from an
# empty backend, then a no-op resync, on libvirt's test driver (in-process)
# and on EC2 emulated by moto (a local moto_server on loopback).
# Usage: bench/vm.sh [N]   (default 1000); RATE and WORKERS override the
# controller's defaults (200 reconciles/s, 16 requests in flight).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-bench --bin vm-converge
B="$CARGO_TARGET_DIR/release/vm-converge"
MOTO=${MOTO_SERVER:-$HOME/.cache/moto-venv/bin/moto_server}
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$B" libvirt "$N"
# A real libvirtd (qemu:///system, 64 MiB TCG domains without an OS) for a
# smaller count: LIBVIRTD_N (default 20; 0 skips). Needs `bash .ci/deps test`.
LN=${LIBVIRTD_N:-20}
if [ "$LN" -gt 0 ]; then
  pool=clusto-bench-$$; pdir=/tmp/$pool; mkdir -p "$pdir"
  virsh -c qemu:///system pool-create-as "$pool" dir --target "$pdir" >/dev/null
  "$B" libvirtd "$LN" "$pool" | tail -n +2 || true
  virsh -c qemu:///system pool-destroy "$pool" >/dev/null; rm -rf "$pdir"
fi
tmp=$(mktemp -d)
printf '[bench]\naws_access_key_id = testing\naws_secret_access_key = testing\n' > "$tmp/credentials"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$MOTO" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
"$B" ec2 "$N" "http://127.0.0.1:$port" "$tmp/credentials" | tail -n +2
echo "moto_server peak RSS: $(awk '/VmHWM/{printf "%.1f MiB", $2/1024}' /proc/$moto_pid/status)"
