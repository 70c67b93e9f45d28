#!/usr/bin/env bash
# Declared power at scale (release): SERVERS servers on PDU outlets (net-snmp
# snmpd processes, 16 outlets each, at 127.0.2.N) and BMCS servers with a
# BMC each (OpenIPMI ipmi_sim processes at 127.0.3.N), all declared Off and
# then On; `clusto controller --once` converges each state. Figures: time to
# converge (wall, and the controller's passes without its 1.5 s quiet wait),
# power reads and writes per device (clusto's count; the simulators' count of
# switches beside it), and a no-op pass. The reference is what an operator would script without
# clusto: net-snmp's snmpget + snmpset per outlet and ipmitool's status +
# on per BMC, 32 at a time (xargs -P 32), from the same run.
# --rate is the controller's --rate (default 200 reconciles/s, its own default).
# Usage: bench/power.sh [--servers 1000] [--bmcs 100] [--rate 200]
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000; B=100; RATE=200
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    --bmcs) B=$2; shift 2;;
    --rate) RATE=$2; shift 2;;
    *) echo "usage: $0 [--servers N] [--bmcs N] [--rate RECONCILES_PER_S]"; exit 2;;
  esac
done
for t in snmpd snmpget ipmi_sim ipmitool; do
  command -v $t >/dev/null || { echo "needs $t (bash .ci/deps test)"; exit 1; }
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli --bin clusto
C="$CARGO_TARGET_DIR/release/clusto"
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
PDUS=$(( (N + 15) / 16 )); SNMP_PORT=16100; IPMI_PORT=16230
for p in $(seq 1 "$PDUS"); do
  sh tests/oob/pdu-sim.sh "$work/pdu$p" $SNMP_PORT private 127.0.2.$p >/dev/null 2>&1 & pids+=($!)
done
for b in $(seq 1 "$B"); do
  sh tests/oob/bmc-sim.sh "$work/bmc$b" $IPMI_PORT 0 127.0.3.$b >/dev/null 2>&1 & pids+=($!)
done
bound() { ss -Hlun "sport = :$1" | wc -l; }
for _ in $(seq 1 200); do
  [ "$(bound $SNMP_PORT)" -ge "$PDUS" ] && [ "$(bound $IPMI_PORT)" -ge "$B" ] && break; sleep 0.1
done
echo "simulators: $PDUS snmpd PDUs ($N outlets) and $B ipmi_sim BMCs on loopback; controller --rate $RATE"
export CLUSTO_STORE="sqlite://$work/bench.db" BENCH_BMC=oper:operpw
count() { { cat "$work"/pdu*/"$1" 2>/dev/null || true; } | wc -l; }
bmc_count() { { cat "$work"/bmc*/power.ops 2>/dev/null || true; } | { grep -c "^$1" || true; }; }
pass() {  # label: runs the controller once; prints its figures and what the simulators saw
  local w0 bw0 t0 t1 line
  w0=$(count sets); bw0=$(bmc_count set)
  t0=$(date +%s.%N); "$C" controller --once --lease-ttl 2 --rate "$RATE" 2>"$work/ctl.log"; t1=$(date +%s.%N)
  line=$(grep '^power:' "$work/ctl.log")
  read -r reads writes busy < <(echo "$line" | sed -E 's/.*; ([0-9]+) reads, ([0-9]+) writes in ([0-9.]+) s.*/\1 \2 \3/')
  printf "%-34s %6.2f s wall %6.2f s passes  %.2f reads + %.2f writes per device  (simulators: %d outlet sets, %d BMC power sets)\n" "$1" \
    "$(echo "$t1 - $t0" | bc)" "$busy" "$(echo "$reads / ($N + $B)" | bc -l)" "$(echo "$writes / ($N + $B)" | bc -l)" \
    "$(( $(count sets) - w0 ))" "$(( $(bmc_count set) - bw0 ))"
}
python3 bench/power_world.py "$N" "$B" Off $SNMP_PORT $IPMI_PORT > "$work/world.yaml"
"$C" apply -f "$work/world.yaml" >/dev/null
pass "clusto: first pass, all already Off"
python3 bench/power_world.py "$N" "$B" On $SNMP_PORT $IPMI_PORT > "$work/world.yaml"
"$C" apply -f "$work/world.yaml" >/dev/null
pass "clusto: declared Off -> On"
pass "clusto: no-op pass (all On)"
python3 bench/power_world.py "$N" "$B" Off $SNMP_PORT $IPMI_PORT > "$work/world.yaml"
"$C" apply -f "$work/world.yaml" >/dev/null
pass "clusto: declared On -> Off"
# The reference: the same change scripted with net-snmp and ipmitool.
outlets() { for s in $(seq 0 $((N - 1))); do echo "127.0.2.$((s / 16 + 1)):$SNMP_PORT .1.3.6.1.4.1.1718.3.2.3.1 $((s % 16 + 1))"; done; }
t0=$(date +%s.%N)
outlets | xargs -P 32 -L 1 sh -c 'snmpget -v2c -c private -Oqv "$0" "$1.10.1.1.$2" >/dev/null && snmpset -v2c -c private "$0" "$1.11.1.1.$2" i 1 >/dev/null'
t1=$(date +%s.%N)
printf "%-38s %8.2f s   (%d outlets: 1 snmpget + 1 snmpset each)\n" "net-snmp, 32 parallel: Off -> On" "$(echo "$t1 - $t0" | bc)" "$N"
t0=$(date +%s.%N)
seq 1 "$B" | xargs -P 32 -I{} sh -c "ipmitool -I lanplus -C 3 -H 127.0.3.{} -p $IPMI_PORT -U oper -P operpw chassis power status >/dev/null && ipmitool -I lanplus -C 3 -H 127.0.3.{} -p $IPMI_PORT -U oper -P operpw chassis power on >/dev/null"
t1=$(date +%s.%N)
printf "%-38s %8.2f s   (%d BMCs: status + on, one session each)\n" "ipmitool, 32 parallel: Off -> On" "$(echo "$t1 - $t0" | bc)" "$B"
