#!/usr/bin/env bash
# Stops what up.sh started in STATE_DIR (by the PIDs it recorded) and removes
# the directory (unless --keep).
set -uo pipefail
D=${1:?usage: down.sh STATE_DIR [--keep]}
for p in apiserver etcd; do
  f="$D/$p.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill "$pid" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -9 "$pid" 2>/dev/null
  rm -f "$f"
done
[ "${2:-}" = --keep ] || rm -rf "$D"
