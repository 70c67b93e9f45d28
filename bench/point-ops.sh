#!/usr/bin/env bash
# Point operations at scale: each command a whole `clusto` process (release),
# median wall time of 5 runs and the largest peak RSS, on an inventory of
# 1,000 servers and one of N servers (default 100,000), on SQLite and
# PostgreSQL. With --before REV, the clusto built at git REV runs the same
# commands in the same session (the "before" columns).
# Usage: bench/point-ops.sh [--servers 100000] [--backends "sqlite postgres"] [--before REV]
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000; BACKENDS="sqlite postgres"; BEFORE=""
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    --backends) BACKENDS=$2; shift 2;;
    --before) BEFORE=$2; shift 2;;
    *) echo "usage: $0 [--servers N] [--backends 'sqlite postgres'] [--before REV]"; exit 2;;
  esac
done
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
bins=$(mktemp -d)
trap 'rm -rf "$bins"' EXIT
if [ -n "$BEFORE" ]; then
  wt=$(mktemp -d)
  git worktree add -q --detach "$wt" "$BEFORE"
  (cd "$wt" && cargo build --release --locked -q -p clusto-cli --bin clusto)
  cp "$CARGO_TARGET_DIR/release/clusto" "$bins/before"
  git worktree remove --force "$wt"
fi
cargo build --release --locked -q -p clusto-cli --bin clusto
cp "$CARGO_TARGET_DIR/release/clusto" "$bins/now"
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 bench/point_ops.py --bins "$bins" --servers "$N" --backends "$BACKENDS" \
  --pg "${CLUSTO_BENCH_PG:-postgres://postgres@127.0.0.1:5432/postgres}"
