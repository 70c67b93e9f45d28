#!/usr/bin/env bash
# Coverage-guided fuzzing (issue 12): every libFuzzer target in fuzz/ for
# SECONDS each (default 600), from seeds bench/fuzz_seeds.py writes (the
# example manifests, a real plan file, DHCP requests, SNMP datagrams
# net-snmp's snmptrap sends, API requests). Prints one line per target:
# executions, corpus size, crashes; a crash's input stays under
# fuzz/artifacts/TARGET/ to become a regression test.
# Built with `cargo fuzz build --sanitizer none` (libfuzzer-sys + the
# stable compiler's SanitizerCoverage flags; no nightly needed).
# Exit 1 when any target crashed (CI runs a short pass: --seconds 15).
# Usage: bench/fuzz.sh [--seconds 600] [--jobs 2] [--targets "manifest query planfile dhcp snmp api"]
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=600; JOBS=2; TARGETS="manifest query planfile dhcp snmp api"
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=$2; shift 2;;
    --jobs) JOBS=$2; shift 2;;
    --targets) TARGETS=$2; shift 2;;
    *) echo "usage: $0 [--seconds N] [--jobs N] [--targets 'manifest query planfile dhcp snmp api']"; exit 2;;
  esac
done
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
repo=$PWD
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
product=${CARGO_TARGET_DIR:-$HOME/.cache/clusto-target}
CARGO_TARGET_DIR=$product cargo build --locked -q -p clusto-cli --bin clusto
python3 bench/fuzz_seeds.py "$work/seeds" "$product/debug/clusto" "$repo"
# Its own target directory: instrumented builds must not evict the product's.
export CARGO_TARGET_DIR=${CLUSTO_FUZZ_TARGET:-$HOME/.cache/clusto-fuzz-target}
(cd fuzz && cargo fuzz build --sanitizer none 2>&1 | grep -v '^ *Compiling' || true)
bin="$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release"
[ -x "$bin/manifest" ] || { echo "fuzz targets did not build"; exit 1; }
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $SECS s per target, $JOBS at a time"

one() {
  local t=$1 corpus="$work/corpus/$1" art="$repo/fuzz/artifacts/$1/"
  mkdir -p "$corpus" "$art"
  # -rss_limit_mb: a single input costing more is a finding too.
  ( cd "$work" && "$bin/$t" "$corpus" "$work/seeds/$t" -max_total_time="$SECS" \
      -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$art" \
      > "$work/$t.log" 2>&1 ) || true
  local runs units crashes
  runs=$(awk '/stat::number_of_executed_units/{print $2}' "$work/$t.log")
  units=$(find "$corpus" -type f | wc -l)
  crashes=$(find "$art" -type f \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | wc -l)
  printf '%-9s executions %10s  per second %7s  corpus %5s  crashes %s\n' "$t" "${runs:-?}" \
    "$(( ${runs:-0} / SECS ))" "$units" "$crashes"
  [ "$crashes" = 0 ] || { grep -m5 -E 'panicked|ERROR|SUMMARY' "$work/$t.log" || true; touch "$work/failed"; }
}
export -f one; export work repo bin SECS
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'one {}'
[ ! -e "$work/failed" ] || { echo "crashes found: inputs under fuzz/artifacts/"; exit 1; }
