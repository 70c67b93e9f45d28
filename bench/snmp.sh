#!/usr/bin/env bash
# SNMP discovery at scale (release): an inventory of N servers in racks of
# 40, each rack with a switch at its own loopback address (127.64.x.y) and
# every server cabled to its switch port with its MAC; plus empty racks
# whose layout slots discovery fills. Then `clusto snmptrapd` receives:
#   - the no-op stream: learnt MACs of known servers (10 records per v2c
#     trap), paced at 5,000 and at 20,000 records/s, counted by its metrics;
#   - new servers: one v2c INFORM per server, paced at 200/s and 400/s, each timed
#     from send to the Response clusto sends after the commit;
#   - the same no-op stream to net-snmp's own snmptrapd logging to a file,
#     as the receive-rate reference.
# Usage: bench/snmp.sh [--servers 100000] [--new 2000] [--backends "sqlite postgres"] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000; NEW=2000; BACKENDS="sqlite"; SECS=10; HOT_RACKS=100
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    --new) NEW=$2; shift 2;;
    --backends) BACKENDS=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    *) echo "usage: $0 [--servers N] [--new N] [--backends 'sqlite postgres'] [--seconds S]"; exit 2;;
  esac
done
command -v snmptrapd >/dev/null || { echo "needs net-snmp's snmptrapd (bash .ci/deps test)"; exit 1; }
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli --bin clusto -p clusto-bench --bin snmp-load
C="$CARGO_TARGET_DIR/release/clusto"; L="$CARGO_TARGET_DIR/release/snmp-load"
PG=${CLUSTO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}
work=$(mktemp -d); pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
RACKS=$((N / 40)); PER=$(( (NEW + 39) / 40 )); EMPTY=$((2 * PER))
python3 bench/snmp_inventory.py "$RACKS" "$EMPTY" > "$work/dc.yaml"
echo "inventory: $N servers in $RACKS racks (+ $EMPTY empty racks for 2 × $NEW new servers), switches at 127.64.x.y"
for b in $BACKENDS; do
  case $b in
    sqlite) STORE="sqlite://$work/bench.db";;
    postgres) db="clusto_snmp_bench_$$"; psql "$PG" -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
              STORE="${PG%/*}/$db";;
  esac
  export CLUSTO_STORE=$STORE
  /usr/bin/time -f "%e s %M KiB" -o "$work/apply.time" "$C" apply -f "$work/dc.yaml" --apply-set bench >/dev/null
  echo "== $b: apply $(cat "$work/apply.time")"
  CLUSTO_LOG=warn "$C" snmptrapd --listen 127.0.0.1:11162 --metrics 127.0.0.1:19469 2>"$work/trapd.log" &
  tp=$!; pids+=("$tp")
  for _ in $(seq 100); do curl -sf 127.0.0.1:19469/readyz >/dev/null && break; sleep 0.1; done
  cpu0=$(awk '{print $14+$15}' /proc/$tp/stat)
  for rate in 5000 20000; do
    echo "clusto noop @${rate}/s: $("$L" noop 127.0.0.1:11162 $HOT_RACKS $rate "$SECS" http://127.0.0.1:19469/metrics)"
  done
  echo "clusto new  @200/s:  $("$L" new 127.0.0.1:11162 "$RACKS" "$NEW" 200)"
  echo "clusto new  @400/s:  $("$L" new 127.0.0.1:11162 $((RACKS + PER)) "$NEW" 400)"
  cpu1=$(awk '{print $14+$15}' /proc/$tp/stat)
  echo "clusto: RSS $(awk '/VmHWM/{print $2, $3}' /proc/$tp/status) peak, CPU $(( (cpu1 - cpu0) / $(getconf CLK_TCK) )) s over the runs"
  curl -s 127.0.0.1:19469/metrics | grep -E '^clusto_snmp_(records|traps)_total' | sed 's/^/  /'
  echo "  created: $("$C" query 'name:disc-*' | wc -l) servers named disc-*; fsck: $("$C" fsck >/dev/null 2>&1 && echo clean || echo VIOLATIONS)"
  kill "$tp"; wait "$tp" 2>/dev/null || true
  [ "$b" = postgres ] && psql "$PG" -qc "DROP DATABASE IF EXISTS $db" >/dev/null
done
# The reference: net-snmp's snmptrapd receiving the same no-op stream and
# logging each trap as one line.
printf 'disableAuthorization yes\ndoNotRetainNotificationLogs yes\n' > "$work/snmptrapd.conf"
snmptrapd -f -n -C -c "$work/snmptrapd.conf" -M /dev/null -m '' -Lf "$work/traps.log" \
  -F 'TRAP %b\n' -p "$work/snmptrapd.pid" udp:127.0.0.1:11163 2>/dev/null &
sp=$!; pids+=("$sp"); sleep 1
cpu0=$(awk '{print $14+$15}' /proc/$sp/stat)
for rate in 5000 20000; do
  echo "net-snmp snmptrapd noop @${rate}/s: $("$L" noop 127.0.0.1:11163 $HOT_RACKS $rate "$SECS" "$work/traps.log")"
done
cpu1=$(awk '{print $14+$15}' /proc/$sp/stat)
echo "net-snmp snmptrapd: RSS $(awk '/VmHWM/{print $2, $3}' /proc/$sp/status) peak, CPU $(( (cpu1 - cpu0) / $(getconf CLK_TCK) )) s"
