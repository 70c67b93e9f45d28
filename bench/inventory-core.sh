#!/usr/bin/env bash
# Inventory-core benchmark: clusto (release, SQLite, public Rust API) and the
# original Python clusto 0.7.9 on the same workload, side by side in one run.
# Usage: bench/inventory-core.sh [-R 50] [-S 2000]
set -euo pipefail
cd "$(dirname "$0")/.."
R=50; S=2000
while [ $# -gt 0 ]; do case "$1" in -R) R=$2; shift 2;; -S) S=$2; shift 2;; *) echo "usage: $0 [-R N] [-S N]"; exit 2;; esac; done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-bench --bin inventory-core
out=$(mktemp -d)
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
for txn in all rack; do
  "$CARGO_TARGET_DIR/release/inventory-core" -R "$R" -S "$S" --txn "$txn" --db "$out/rs.db" > "$out/rs-$txn.json"
done
PY=$(../shared/bench/setup-clusto-original.sh)
/usr/bin/time -f '%M' -o "$out/py-rss" "$PY" ../shared/bench/clusto_original.py -R "$R" -S "$S" --db "$out/py.db" > "$out/py.json"
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
rs_all = json.load(open(f"{d}/rs-all.json"))
rs_rack = json.load(open(f"{d}/rs-rack.json"))
py = json.load(open(f"{d}/py.json"))
py_rss = int(open(f"{d}/py-rss").read().strip()) / 1024
def row(name, a, b):
    ratio = f"{b / a:,.0f}x" if a and b else "-"
    print(f"| {name} | {a:.4f} | {b:.4f} | {ratio} |")
print(f"\nR={py['R']} racks, S={py['S']} servers; clusto-rs SQLite file, original SQLite file (txn=rack, unversioned)\n")
print("| step | clusto-rs (s) | original 0.7.9 (s) | speed-up |")
print("|---|---:|---:|---:|")
row("build, one transaction (rs) vs per-rack (orig)", rs_all["a_build_s"], py["a_build_s"])
row("build, one revision per rack (both per rack)", rs_rack["a_build_s"], py["a_build_s"])
row("1,000 attribute lookups (rs: SQL query each)", rs_rack["b_get_by_attr_s"], py["b_get_by_attr_s"])
row("pick4 first run (rs: incl. inventory load)", rs_rack["c_pick4_first_with_load_s"], py["c_pick4_first_s"])
row("pick4 mean", rs_rack["c_pick4_mean_s"], py["c_pick4_mean_s"])
row("1,000 get_by_name", rs_rack["get_by_name_x1000_s"], py["get_by_name_x1000_s"])
row("1,000 merged-attribute reads", rs_rack["d_merged_read_s"], py["d_merged_read_s"])
print(f"| peak RSS (MiB) | {rs_rack['peak_rss_mib']:.1f} | {py_rss:.1f} | |")
print(f"\nclusto-rs extra: query 'kind:server and in:dc1 and in:unallocated' in SQL {rs_rack['c_query_sql_s']*1000:.2f} ms "
      f"({rs_rack['c_query_sql_matches']} matches); cold load of the whole inventory (new handle) {rs_rack['load_inventory_s']*1000:.1f} ms; "
      f"one merged read with a cold load (new process equivalent) {rs_rack['d_merged_read_with_load_per_read_ms']:.1f} ms; revisions {rs_rack['revisions']}")
print(f"checks: rs lookups correct {rs_rack['b_get_by_attr_correct']}/1000, orig {py['b_get_by_attr_correct']}/1000; "
      f"merged enabled rs {rs_rack['d_merged_read_enabled']}, orig {py['d_merged_read_enabled']}; "
      f"pick4 rs {rs_rack['c_pick4_result']} orig {py['c_pick4_result']}")
PY
rm -rf "$out"
