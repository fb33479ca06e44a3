#!/bin/bash
# Submits a drivekit evaluation to Slurm: an array job simulating SHARDS shards (one task each)
# into RUN, then an aggregation job that starts once every task succeeded. Prints both job ids.
#
#   RUN=runs/X SCENES=fixtures/scenes SHARDS=8 [THROTTLE=4] [ARRAY=3-17:2] [BASELINE=runs/Y] \
#   [SIM_FLAGS="--driver idm --traffic idm"] [DRIVEKIT_BIN=target/release] [PARTITION=debug] \
#   [PARTIAL=0] pipelines/slurm/submit.sh
#
# ARRAY overrides the index range (stepped arrays work: the shard index is (ID − MIN) / STEP);
# THROTTLE limits concurrent tasks (%N). Task logs go to RUN/txt-logs/slurm-<job>_<task>.out.
# Each task also reduces its shard (`aggregate --partial`) for the final aggregate to merge;
# PARTIAL=0 skips that.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${RUN:?set RUN to the run directory}"
: "${SCENES:?set SCENES to the scene directory}"
SHARDS=${SHARDS:-1}
DRIVEKIT_BIN=$(cd "${DRIVEKIT_BIN:-target/release}" && pwd)
RUN=$(mkdir -p "$RUN/txt-logs" && cd "$RUN" && pwd)
SCENES=$(cd "$SCENES" && pwd)
array=${ARRAY:-0-$((SHARDS - 1))}
[ -n "${THROTTLE:-}" ] && array="$array%$THROTTLE"
part=()
[ -n "${PARTITION:-}" ] && part=(--partition "$PARTITION")
export DRIVEKIT_BIN RUN SCENES SIM_FLAGS="${SIM_FLAGS:-}" BASELINE="${BASELINE:-}" PARTIAL="${PARTIAL:-1}"
sim=$(sbatch --parsable "${part[@]}" --export=ALL --array="$array" \
  --output="$RUN/txt-logs/slurm-%A_%a.out" "$here/simulate_array.sbatch")
sim=${sim%%;*}
agg=$(sbatch --parsable "${part[@]}" --export=ALL --dependency="afterok:$sim" \
  --output="$RUN/txt-logs/slurm-aggregate-%j.out" "$here/aggregate.sbatch")
agg=${agg%%;*}
echo "simulate array job: $sim"
echo "aggregate job: $agg (after $sim)"
