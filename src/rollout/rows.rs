//! A rollout trace as metrics.parquet rows (DESIGN §3): every value that applies, with its name and
//! time aggregation from the metric table.

use super::trace::RolloutTrace;
use crate::metrics::table::{METRICS, N_METRICS};
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
    rows.push_rollout(
        &ctx.scene.scene_id,
        rollout_id,
        &meta.run_uuid,
        &meta.run_name,
        values,
    );
}
