#!/usr/bin/env bash
# Floods (issue 12): garbage at dhcpd's and snmptrapd's ports at the highest
# rate one sender in a second network namespace reaches, while real clients
# on the same link are served. Prints, per daemon, the flood's rate, what the
# daemon counted, and the real clients' success rate with and without the
# flood. Namespaces clusto-fl-srv / clusto-fl-cli are created and removed here.
#   DHCP: 50 hosts; bench/dhcp_relay_client.py relays DISCOVERs for them from
#         10.0.0.2 at 200/s; success = OFFERs received.
#   SNMP: the switch r1-sw1 (10.0.0.2, community s3cret) sends v2c INFORMs
#         with one learnt-MAC record each through net-snmp's snmpinform
#         (one try, 2 s timeout); success = the daemon's Response (sent after
#         the commit).
#   Flood: bench/src/bin/flood.rs from 10.0.0.3 (random bytes, mutated real
#         packets, well-formed requests from strangers).
# Exit 1 when a daemon died or a real client's success rate under the flood
# fell below --min percent (CI: a debug build, a short run, a low bar).
# Usage: bench/flood.sh [--seconds 10] [--min 99] [--debug]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=10; MIN=99; PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2;;
    --min) MIN=$2; shift 2;;
    --debug) PROFILE=debug; shift;;
    *) echo "usage: $0 [--seconds N] [--min PERCENT] [--debug]"; exit 2;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
if [ "$PROFILE" = release ]; then
  cargo build --release --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin flood
else
  cargo build --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin flood
fi
C="$CARGO_TARGET_DIR/$PROFILE/clusto"; F="$CARGO_TARGET_DIR/$PROFILE/flood"
failed=0
judge() {  # NAME OK SENT ALIVE
  python3 -c "import sys; sys.exit(0 if 100 * $2 >= $MIN * max($3, 1) else 1)" \
    || { echo "   $1: success under the flood below $MIN %"; failed=1; }
  [ "$4" = yes ] || { echo "   $1: the daemon died"; failed=1; }
}
S=clusto-fl-srv; K=clusto-fl-cli
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del $S 2>/dev/null || true; ip netns del $K 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ip netns add $S; ip netns add $K
ip link add fl-srv netns $S type veth peer name fl-cli netns $K
ip -n $S addr add 10.0.0.1/24 dev fl-srv; ip -n $K addr add 10.0.0.2/24 dev fl-cli
ip -n $K addr add 10.0.0.3/24 dev fl-cli
for n in $S $K; do ip -n $n link set lo up; done
ip -n $S link set fl-srv up; ip -n $K link set fl-cli up
in_s() { ip netns exec $S "$@"; }
in_k() { ip netns exec $K "$@"; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg); $SECS s per run"

metric() {  # URL NAME → the sum of its samples (every label set)
  in_s curl -sf "$1" | awk -v m="$2" '{n = $1; sub(/\{.*/, "", n)} n == m {s += $2} END {printf "%d\n", s}'
}

# --- DHCP --------------------------------------------------------------------
export CLUSTO_STORE="sqlite://$work/dhcp.db"
python3 bench/dhcp_hosts.py "$work/macs" 50 > "$work/dhcp.yaml"
"$C" apply -f "$work/dhcp.yaml" >/dev/null
ip netns exec $S "$C" dhcpd --listen 10.0.0.1:67 --server-id 10.0.0.1 --metrics 127.0.0.1:11467 2>"$work/dhcpd.log" &
pids+=($!); dhcpd=$!
for _ in $(seq 100); do in_s curl -sf 127.0.0.1:11467/readyz >/dev/null && break; sleep 0.1; done
M=http://127.0.0.1:11467/metrics
dhcp_run() {  # flood? → "sent answered flood_json"
  local fl=""
  if [ "$1" = yes ]; then in_k "$F" dhcp 10.0.0.1:67 "$SECS" 10.0.0.3 > "$work/flood.json" & fl=$!; fi
  in_k python3 bench/dhcp_relay_client.py "$work/macs" 10.0.0.1:67 10.0.0.2 200 "$SECS" > "$work/client"
  [ -z "$fl" ] || wait "$fl"
  read -r sent answered < "$work/client"; echo "$sent $answered"
}
read -r s0 a0 < <(dhcp_run no)
before=$(metric $M clusto_dhcp_ignored_total)
read -r s1 a1 < <(dhcp_run yes)
after=$(metric $M clusto_dhcp_ignored_total)
kill -0 $dhcpd 2>/dev/null && alive=yes || alive=NO
judge dhcpd "$a1" "$s1" "$alive"
echo "== dhcpd: without flood $a0 of $s0 answered; under flood $(cat "$work/flood.json") → $a1 of $s1 answered ($(python3 -c "print(f'{100*$a1/max($s1,1):.2f}')") %), ignored (counted) $((after - before)), still running: $alive"

# --- SNMP --------------------------------------------------------------------
export CLUSTO_STORE="sqlite://$work/snmp.db"
"$C" apply -f crates/clusto-snmp/tests/data/discovery.yaml >/dev/null
ip netns exec $S "$C" snmptrapd --listen 10.0.0.1:162 --metrics 127.0.0.1:11469 2>"$work/snmptrapd.log" &
pids+=($!); trapd=$!
for _ in $(seq 100); do in_s curl -sf 127.0.0.1:11469/readyz >/dev/null && break; sleep 0.1; done
snmp_run() {  # flood? → "sent acknowledged"
  local fl="" sent=0 ok=0 end=$((SECONDS + SECS))
  if [ "$1" = yes ]; then in_k "$F" snmp 10.0.0.1:162 "$SECS" 10.0.0.3 > "$work/flood.json" & fl=$!; fi
  while [ $SECONDS -lt $end ]; do
    rec=$(printf '01000A02770000%04X%04X' $((sent % 65536)) $((sent % 40 + 1)))
    sent=$((sent + 1))
    in_k snmpinform -m '' -v 2c -c s3cret -r 0 -t 2 --clientaddr=10.0.0.2 10.0.0.1:162 '' \
      1.3.6.1.4.1.9.9.215.2.0.1 1.3.6.1.4.1.9.9.215.1.1.8.1.2.1 x "$rec" >/dev/null 2>&1 && ok=$((ok + 1))
  done
  [ -z "$fl" ] || wait "$fl"
  echo "$sent $ok"
}
M=http://127.0.0.1:11469/metrics
read -r s0 a0 < <(snmp_run no)
before=$(metric $M clusto_snmp_traps_total)
read -r s1 a1 < <(snmp_run yes)
after=$(metric $M clusto_snmp_traps_total)
kill -0 $trapd 2>/dev/null && alive=yes || alive=NO
judge snmptrapd "$a1" "$s1" "$alive"
echo "== snmptrapd: without flood $a0 of $s0 INFORMs acknowledged; under flood $(cat "$work/flood.json") → $a1 of $s1 acknowledged ($(python3 -c "print(f'{100*$a1/max($s1,1):.2f}')") %), datagrams counted $((after - before)), still running: $alive"
exit "$failed"
