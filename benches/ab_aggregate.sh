#!/usr/bin/env bash
# Interleaved A/B of two (or more) `aggregate` binaries on one run directory: each round runs
# every binary once, cold (the run's aggregate/ removed first), in the order given, so a
# machine whose speed drifts over minutes slows every binary alike. Prints, per binary, the
# wall and CPU (user + sys) seconds of each run, their medians, and the largest peak RSS (MB).
#
#   benches/ab_aggregate.sh RUN_DIR ROUNDS LABEL=BINARY [LABEL=BINARY ...]
#   e.g. benches/ab_aggregate.sh target/bench-runs/run-2000-polars 6 \
#          main=/tmp/aggregate.main new=target/release/aggregate
#
# Needs GNU time (/usr/bin/time, Debian package `time`).
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
run=$1 rounds=$2
shift 2
[ -d "$run" ] || { echo "ab_aggregate: $run is not a directory" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "ab_aggregate: needs GNU time at /usr/bin/time (apt install time)" >&2; exit 2; }
for spec in "$@"; do
  bin=${spec#*=}
  [ "$bin" != "$spec" ] && [ -x "$bin" ] || { echo "ab_aggregate: '$spec' is not LABEL=EXECUTABLE" >&2; exit 2; }
done
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for _ in $(seq "$rounds"); do
  for spec in "$@"; do
    label=${spec%%=*} bin=${spec#*=}
    rm -rf "$run/aggregate"
    /usr/bin/time -o "$log" -a -f "$label %e %U %S %M" "$bin" "$run" --quiet >/dev/null
  done
done
awk '
  function median(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  { order[$1] = order[$1] ? order[$1] : ++k; w[$1] = w[$1] " " $2; c[$1] = c[$1] " " sprintf("%.2f", $3 + $4)
    if ($5 > m[$1]) m[$1] = $5 }
  END {
    for (l in order) byk[order[l]] = l
    for (i = 1; i <= k; i++) { l = byk[i]
      printf "%s: wall median %.2f s (%s ), cpu median %.2f s (%s ), peak RSS %.0f MB\n", l, median(w[l]), w[l], median(c[l]), c[l], m[l] / 1024 }
  }' "$log"
