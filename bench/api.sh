#!/usr/bin/env bash
# `clusto serve` at scale (release, SQLite): an inventory of N servers from
# `clusto generate`, then, against one server process:
#   - wrk: GET /healthz (the reference: the HTTP stack alone) and GET of one
#     server, requests/s and p99, same run, same connections;
#   - the whole list of N servers streamed: time and the server's peak RSS;
#   - 100 watchers (bench/api_watch.py): time from a write's commit until
#     each watcher has its MODIFIED event.
# Usage: bench/api.sh [--servers 100000] [--seconds 10]
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000; SECS=10
while [ $# -gt 0 ]; do
  case "$1" in
    --servers) N=$2; shift 2;;
    --seconds) SECS=$2; shift 2;;
    *) echo "usage: $0 [--servers N] [--seconds S]"; exit 2;;
  esac
done
command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
cargo build --release --locked -q -p clusto-cli --bin clusto
C="$CARGO_TARGET_DIR/release/clusto"
work=$(mktemp -d); pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
export CLUSTO_STORE="sqlite://$work/api.db"
start=$SECONDS
"$C" generate --racks $((N / 40)) --servers-per-rack 40 > "$work/gen.yaml"
"$C" apply -f "$work/gen.yaml" >/dev/null
echo "== $N servers applied in $((SECONDS - start)) s"
port=$((20000 + RANDOM % 20000))
"$C" serve --listen "127.0.0.1:$port" --anonymous-read 2>"$work/serve.log" &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
# The object cache warms from the store at start (as an apiserver's watch
# cache lists before serving from memory); measure once it is warm.
for _ in $(seq 600); do grep -q "object cache warm" "$work/serve.log" && break; sleep 0.2; done
echo "object cache:          $(grep -o 'objects=[0-9]* elapsed=[^ ]*' "$work/serve.log" | head -1); server RSS $(awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$pid/status") MiB"
B="http://127.0.0.1:$port/apis/clusto.dev/v1alpha1"
one=$(printf 'gen-s%07d' $((N / 2 + 345)))
rss() { awk '/VmRSS/{printf "%.0f", $2/1024}' "/proc/$pid/status"; }
hwm() { awk '/VmHWM/{printf "%.0f", $2/1024}' "/proc/$pid/status"; }
curl -sf "$B/servers/$one" >/dev/null
wrkrun() { # url -> "req/s p99"
  wrk -t2 -c16 -d"${SECS}s" --latency "$1" | awk '
    /Requests\/sec/ {r=$2}
    /^ *99%/ {p=$2}
    /Non-2xx/ {bad=$NF}
    END {printf "%s req/s, p99 %s%s", r, p, (bad ? ", NON-2xx " bad : "")}'
}
echo "healthz (reference):   $(wrkrun "http://127.0.0.1:$port/healthz")"
echo "GET one server:        $(wrkrun "$B/servers/$one")"
before=$(rss)
# The peak from here on, not the warm-up's (Linux: 5 resets VmHWM).
echo 5 > "/proc/$pid/clear_refs"
t0=$(date +%s.%N)
curl -sf "$B/servers" -o "$work/list.json"
t1=$(date +%s.%N)
# Counted after the clock stops: parsing 50 MB in Python takes longer than serving it.
items=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["items"]))' "$work/list.json")
echo "list all servers:      $items items in $(python3 -c "print(f'{$t1-$t0:.2f}')") s; server RSS before $before MiB, peak during the list $(hwm) MiB"
python3 bench/api_watch.py "$B" "$C" "$one" 100
