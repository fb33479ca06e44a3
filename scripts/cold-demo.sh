#!/usr/bin/env bash
# Measures a cold `make demo` (docs/performance.md, "Build time"): a fresh clone of this
# checkout's HEAD, built with an empty cargo cache (every crate downloaded and compiled), timed.
# Usage: scripts/cold-demo.sh [WORK_DIR]   (default: a new temporary directory)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d)}
git clone -q "$src" "$work/clone"
mkdir -p "$work/cargo-home"
cd "$work/clone"
start=$(date +%s%N)
CARGO_HOME="$work/cargo-home" make demo >"$work/demo.log" 2>&1
end=$(date +%s%N)
ms=$(( (end - start) / 1000000 ))
echo "cold make demo: $((ms / 60000)) m $(( (ms % 60000) / 1000 )) s (log: $work/demo.log)"
