#!/usr/bin/env bash
# Writers and followers at scale (release): an inventory of N servers from
# `clusto generate` (each server given a NIC MAC), plus a libvirt VMManager
# with 20 of them as hosts and 1,000 VMs; then, per backend:
#   - 8 long-running writer tasks (own connections) doing point `attr set`s;
#   - dhcpd's index: one host's answer changed, time until the patched index
#     answers it, and the refresh's CPU;
#   - the VM controller's view: one VM's spec changed, time until its view
#     shows it, and the follow's CPU.
# Usage: bench/follow.sh [--servers 100000] [--backends "sqlite postgres"] [--seconds 10]
#                        [--steps "writers dhcp controller"]
# (without `controller` in --steps no VMs are applied: `--steps dhcp` at
# 1,000,000 servers measures the responder alone)
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000; BACKENDS="sqlite postgres"; SECS=10; STEPS="writers dhcp controller"
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    --backends) BACKENDS=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    --steps) STEPS=$2; shift 2;;
    *) echo "usage: $0 [--servers N] [--backends 'sqlite postgres'] [--seconds S] [--steps 'writers dhcp controller']"; exit 2;;
  esac
done
has() { case " $STEPS " in *" $1 "*) return 0;; *) return 1;; esac; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin follow
C="$CARGO_TARGET_DIR/release/clusto"; F="$CARGO_TARGET_DIR/release/follow"
PG=${CLUSTO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
# Written as files of 100,000 documents: each under the 128 MiB a manifest
# file may be (1,000,000 servers with their MACs are 380 MiB).
mkdir "$work/gen"
"$C" generate --racks $((N / 40)) --servers-per-rack 40 | python3 -c '
import sys, re
gen = sys.argv[1]
part, docs = 0, 0
out = open(f"{gen}/part-0000.yaml", "w")
for line in sys.stdin:
    if line == "---\n":
        docs += 1
        if docs == 100000:
            out.close()
            part, docs = part + 1, 0
            out = open(f"{gen}/part-{part:04d}.yaml", "w")
            continue
    out.write(line)
    m = re.match(r"metadata: \{name: gen-s(\d+)\}", line)
    if m:
        i = int(m.group(1))
        # spec: follows the metadata line; the port goes right under it.
        out.write(next(sys.stdin))
        out.write("  ports:\n    - {port: \"nic-eth:1\", mac: \"02:%02x:%02x:%02x:%02x:%02x\", osPort: eth0}\n"
                  % (0xAA, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255))
out.close()
' "$work/gen"
python3 - "$N" > "$work/vms.yaml" <<'PY'
import sys
n = int(sys.argv[1])
hosts = [f"gen-s{i:07d}" for i in range(0, n, max(1, n // 20))][:20]
print(f"""apiVersion: clusto.dev/v1alpha1
kind: VMManager
metadata: {{name: bench-vmm}}
spec:
  backend: libvirt
  libvirt: {{uri: "test:///default", pool: default}}
  hosts: [{", ".join(hosts)}]""")
for v in range(1000):
    print(f"""---
apiVersion: clusto.dev/v1alpha1
kind: VirtualMachine
metadata: {{name: bench-vm{v:04d}}}
spec: {{manager: bench-vmm, cpus: 1, memoryMiB: 512, diskGiB: 1}}""")
PY
for b in $BACKENDS; do
  case $b in
    sqlite) url="sqlite://$work/follow.db";;
    postgres)
      psql "$PG" -qAt -c "DROP DATABASE IF EXISTS clusto_bench_follow WITH (FORCE)" >/dev/null
      psql "$PG" -qAt -c "CREATE DATABASE clusto_bench_follow" >/dev/null
      url="${PG%/*}/clusto_bench_follow";;
  esac
  start=$SECONDS
  /usr/bin/time -f '%e s, %M KiB' -o "$work/apply-time" "$C" --store "$url" apply -f "$work/gen" >/dev/null
  echo "== $b: $N servers applied: $(cat "$work/apply-time")"
  if has controller; then
    # Room for 50 VMs on each of the 20 hosts.
    for h in $(sed -n 's/^  hosts: \[\(.*\)\]$/\1/p' "$work/vms.yaml" | tr -d ','); do
      for kv in memory=65536 cpucount=64 disk=1000; do
        "$C" --store "$url" attr set "$h" "system.${kv%%=*}" "${kv#*=}" >/dev/null
      done
    done
    "$C" --store "$url" apply -f "$work/vms.yaml" >/dev/null
    echo "== $b: $N servers, 1,000 VMs applied in $((SECONDS - start)) s"
  fi
  if has writers; then echo "writers:    $("$F" --store "$url" writers --tasks 8 --seconds "$SECS")"; fi
  if has dhcp; then echo "dhcp:       $("$F" --store "$url" dhcp)"; fi
  if has controller; then echo "controller: $("$F" --store "$url" controller)"; fi
  [ "$b" = postgres ] && psql "$PG" -qAt -c "DROP DATABASE IF EXISTS clusto_bench_follow WITH (FORCE)" >/dev/null
  rm -f "$work"/follow.db*
done
