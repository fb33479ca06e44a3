#!/usr/bin/env bash
# `make test`: installs or checks what the tests need (scripts/test-deps.sh), runs every test
# (unit, integration, doc), compiles the benchmarks, and ends with a summary of what could not run
# here. A check that cannot run records itself as SKIPPED (tests/util::skip); under CI=true it
# fails instead.
set -uo pipefail
cd "$(dirname "$0")/.."
CARGO=${CARGO:-cargo}
target=${CARGO_TARGET_DIR:-target}

scripts/test-deps.sh
# Python packages installed by test-deps.sh into the test environment come first on PATH.
export PATH="$PWD/target/test-venv/bin:$PATH"
rm -rf "$target/tmp/skipped"

status=0
"$CARGO" test --no-fail-fast --lib --bins --tests || status=$?
"$CARGO" test --doc || status=$?
# The benchmarks are compiled (dev profile, the tests' build) so they cannot rot; `make bench` runs them.
"$CARGO" build --benches || status=$?

echo
skipped=("$target"/tmp/skipped/*)
if [ -e "${skipped[0]}" ]; then
  echo "make test: SKIPPED ${#skipped[@]} check(s) that cannot run on this machine:"
  cat "${skipped[@]}" | sed 's/^/  SKIPPED /'
  echo "  (scripts/test-deps.sh installs what they need where it can; under CI=true they fail)"
else
  echo "make test: nothing skipped"
fi
if [ "$status" = 0 ]; then echo "make test: all tests passed"; else echo "make test: FAILED (status $status)"; fi
exit "$status"
