#!/usr/bin/env bash
# The clusto built at git REV (default c0c76df, before the store-at-scale
# work) and the current one, side by side in one run: each applies the same
# `clusto generate` inventory into its own SQLite file, then runs whole-
# inventory and point commands, one process each (wall time, peak RSS).
# Usage: bench/before-after.sh [--before REV] [--servers 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
REV=c0c76df; N=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --before) REV=$2; shift 2;;
    --servers) N=$2; shift 2;;
    *) echo "usage: $0 [--before REV] [--servers N]"; exit 2;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
wt=$(mktemp -d); git worktree add -q --detach "$wt" "$REV"
(cd "$wt" && cargo build --release --locked -q -p clusto-cli --bin clusto)
cp "$CARGO_TARGET_DIR/release/clusto" "$work/before"; git worktree remove --force "$wt"
cargo build --release --locked -q -p clusto-cli --bin clusto
cp "$CARGO_TARGET_DIR/release/clusto" "$work/now"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
"$work/now" generate --racks $((N / 40)) --servers-per-rack 40 > "$work/gen.yaml"
S=$(printf 'gen-s%07d' $((N / 2 + 5)))
t() { /usr/bin/time -f '%e %M' -o "$work/t" "$@" >/dev/null 2>&1; awk '{printf "%.2f s, %.0f MiB", $1, $2/1024}' "$work/t"; }
for b in before now; do
  echo "$b apply: $(t "$work/$b" --store "sqlite://$work/$b.db" apply -f "$work/gen.yaml")"
done
for b in before now; do
  C=("$work/$b" --store "sqlite://$work/$b.db")
  echo "$b no-op plan: $(t "${C[@]}" plan -f "$work/gen.yaml")"
  echo "$b get server S: $(t "${C[@]}" get server "$S")"
  echo "$b attr get S --merged: $(t "${C[@]}" attr get "$S" --merged)"
  echo "$b attr set S: $(t "${C[@]}" attr set "$S" owner alice)"
  echo "$b ip allocate: $(t "${C[@]}" ip allocate gen-net "$S")"
  echo "$b get server (all): $(t "${C[@]}" get server -o name)"
  echo "$b history: $(t "${C[@]}" history)"
done
