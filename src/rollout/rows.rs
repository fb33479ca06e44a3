//! A rollout trace as metrics.parquet rows (DESIGN §3): every per-step value that applies, with its
//! name and time aggregation from the metric table, and the rollout metrics (one row each).

use super::trace::RolloutTrace;
use crate::metrics::rollout_table::ROLLOUT_METRICS;
use crate::metrics::table::{index, METRICS, N_METRICS};
use crate::metrics_file::MetricsBuilder;
use crate::run_dir::RunMetadata;
use crate::state::SceneCtx;

/// Appends a rollout's metric rows (every value that applies) to `rows`.
pub fn push_trace_rows(
    rows: &mut MetricsBuilder,
    ctx: &SceneCtx,
    rollout_id: &str,
    meta: &RunMetadata,
    trace: &RolloutTrace,
) {
    let values = trace.times_us.iter().enumerate().flat_map(|(k, &t)| {
        trace.metrics[k * N_METRICS..(k + 1) * N_METRICS]
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan()) // does not apply at this step
            .map(move |(m, &v)| (METRICS[m].name, METRICS[m].time_aggregation.as_str(), t, v))
    });
    // The rollout metrics: one row each at the first driven step (the first step when none is),
    // time aggregation max — AlpaSim's modifier chain always keeps that row.
    let first = (0..trace.times_us.len())
        .find(|&k| trace.metrics[k * N_METRICS + index::EVAL_RELEVANT] > 0.0)
        .or((!trace.times_us.is_empty()).then_some(0))
        .map(|k| trace.times_us[k]);
    let rollout = first.into_iter().flat_map(|t| {
        trace
            .rollout_metrics
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_nan())
            .map(move |(i, &v)| (ROLLOUT_METRICS[i].name, ROLLOUT_AGGREGATION, t, v))
    });
    rows.push_rollout(
        &ctx.scene.scene_id,
        rollout_id,
        &meta.run_uuid,
        &meta.run_name,
        values.chain(rollout),
    );
}

/// The time aggregation of every rollout metric's single row.
pub const ROLLOUT_AGGREGATION: &str = "max";
