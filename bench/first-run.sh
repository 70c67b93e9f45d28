#!/usr/bin/env bash
# README's first command from a fresh clone: a cold release build and install
# (`cargo install --locked --path crates/clusto-cli`) with an empty target
# directory, timed, with the crates that took longest. Give revisions to
# compare (default: HEAD), e.g. `bench/first-run.sh HEAD 3dad179` for the
# build with the AWS SDK. Nothing else should compile meanwhile: the figure is
# wall time on this machine's cores. The crates.io download cache is kept
# (network time is not the build's).
set -euo pipefail
cd "$(dirname "$0")/.."
revs=("$@"); [ ${#revs[@]} -gt 0 ] || revs=(HEAD)
work=$(mktemp -d /tmp/clusto-first-run.XXXXXX)
trap 'rm -rf "$work"' EXIT
printf '%-12s %10s  %s\n' revision seconds "longest crates (s, summed over rustc jobs)"
for rev in "${revs[@]}"; do
  dir="$work/$rev"
  git worktree add -q --detach "$dir/src" "$rev"
  start=$(date +%s)
  CARGO_TARGET_DIR="$dir/target" cargo install -q --locked --path "$dir/src/crates/clusto-cli" \
    --root "$dir/inst" --timings >/dev/null 2>"$dir/log" || { cat "$dir/log"; exit 1; }
  secs=$(( $(date +%s) - start ))
  top=$(python3 - "$dir/target/cargo-timings" <<'PY'
import glob, json, re, sys
f = sorted(glob.glob(sys.argv[1] + "/cargo-timing-*.html"))[-1]
units = json.loads(re.search(r"const UNIT_DATA = (\[.*?\]);\n", open(f).read(), re.S).group(1))
units.sort(key=lambda u: -u["duration"])
print(", ".join(f"{u['name']} {u['duration']:.0f}" for u in units[:5]))
PY
)
  printf '%-12s %10s  %s\n' "$(git rev-parse --short "$rev")" "$secs" "$top"
  git worktree remove --force "$dir/src"
done
echo "target: <= 480 s (issue 11); before: 1203 s (20 min 3 s, the issue's measurement)"
