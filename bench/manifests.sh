#!/usr/bin/env bash
# Declarative path at scale (issue: plan/apply): a generated datacenter of
# RACKS x PER_RACK servers (5 attributes, a pool and an address each) applied
# to an empty SQLite store, then a no-op plan, then a plan with one changed
# attribute. Prints wall time, peak RSS and SQL statements per step.
# Usage: bench/manifests.sh [RACKS=2500] [PER_RACK=40]
set -euo pipefail
cd "$(dirname "$0")/.."
RACKS=${1:-2500}; PER=${2:-40}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli
C="$CARGO_TARGET_DIR/release/clusto"
d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
"$C" generate --racks "$RACKS" --servers-per-rack "$PER" > "$d/dc.yaml"
store="sqlite://$d/bench.db"
# The parse cache (large unchanged files are not parsed again) lives with
# this run; the cold rows switch it off.
export CLUSTO_CACHE_DIR="$d/cache"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "manifests: $((RACKS * PER)) servers in $RACKS racks, $(du -m "$d/dc.yaml" | cut -f1) MB of YAML"
run() { # label, command...
  local label=$1; shift
  /usr/bin/time -f '%e %M' -o "$d/time" env CLUSTO_LOG=info "$@" > "$d/out" 2> "$d/err"
  read -r secs kb < "$d/time"
  local stmts; stmts=$(grep -o 'statements=[0-9]*' "$d/err" | cut -d= -f2 || true)
  local rows; rows=$(grep -o ' rows=[0-9]*' "$d/err" | cut -d= -f2 || true)
  printf '| %s | %s | %.0f | %s | %s | %s |\n' "$label" "$secs" "$((kb / 1024))" "${stmts:--}" "${rows:--}" "$(tail -n1 "$d/out")"
}
echo
echo "| step | wall s | peak RSS MiB | SQL statements | rows written | result |"
echo "|---|---:|---:|---:|---:|---|"
run "apply into an empty store" "$C" --store "$store" apply -f "$d/dc.yaml"
run "no-op plan (parse cached by the apply)" "$C" --store "$store" plan -f "$d/dc.yaml"
run "no-op plan, cold (CLUSTO_NO_CACHE=1)" env CLUSTO_NO_CACHE=1 "$C" --store "$store" plan -f "$d/dc.yaml"
sed -i '0,/role: role-3/s//role: role-changed/' "$d/dc.yaml"
run "plan, one attribute changed" "$C" --store "$store" plan -f "$d/dc.yaml"
run "apply, one attribute changed" "$C" --store "$store" apply -f "$d/dc.yaml"
