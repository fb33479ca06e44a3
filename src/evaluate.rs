//! `evaluate runs/X`: score rollouts again from their logs, without simulating again. Every
//! complete batch's rollout.asl (or rollout.asl.xz) is read record by record, paired with its
//! scene, and the per-step state is handed to the same evaluation service the simulator uses
//! ([`crate::sim::evaluation::Evaluator`]); metrics.parquet is rewritten (atomically, the previous
//! file kept as `metrics.parquet.prev` until the new one is in place) and `_evaluated` records the
//! metric-code version, so a rerun skips batches already scored by this version.
//!
//! drivekit's logs carry the full-precision state the metrics used (ActorPose extension field
//! 1001), so a fresh run evaluates to the same bytes. Logs written by AlpaSim carry f32 poses
//! only: speeds are then differences of consecutive poses and plan deviation is absent, an
//! approximation reported as a warning. Without the scene file (`--scenes`), the scene is rebuilt
//! from the log (recorded ego path, actor boxes) and the metrics that need a map are skipped with a
//! warning.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::SimConfig;
use crate::fsutil;
use crate::metrics::rollout_table::ROLLOUT_METRICS;
use crate::metrics::table::{self, N_METRICS};
use crate::metrics_file::{self, MetricsBuilder};
use crate::rollout::replay::replay_log;
use crate::rollout::rows::push_trace_rows;
use crate::run_dir::{self, RunMetadata};
use crate::sim::evaluation::score_trace;

/// Marker written after a batch was evaluated.
pub const EVALUATED: &str = "_evaluated";

/// Why a run cannot be evaluated at all.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// The run's wizard-config.yaml is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The run's run_metadata.yaml is unusable.
    #[error(transparent)]
    Metadata(#[from] crate::run_dir::MetadataError),
    /// Not a run dir: rollouts/ cannot be listed.
    #[error("{path}: {source} (is this a run directory?)")]
    Rollouts {
        /// rollouts/
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// `--metrics` names a metric drivekit does not compute.
    #[error("--metrics: unknown metric `{0}` (known: {known})", known = table::all_names().join(", "))]
    UnknownMetric(String),
}

/// Settings of an evaluation.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// The run dir.
    pub run_dir: PathBuf,
    /// Directory of the scenes (`<scene_id>.dkscene`); `None`: rebuild scenes from the logs.
    pub scenes_dir: Option<PathBuf>,
    /// Recompute only these metrics (the others keep their rows); `None`: all.
    pub metrics: Option<Vec<String>>,
    /// Re-evaluate batches already evaluated by this version.
    pub force: bool,
    /// Progress bar (on a terminal only).
    pub progress: bool,
}

/// What an evaluation did.
#[derive(Debug, Clone, Default)]
pub struct EvaluateOutcome {
    /// Batches evaluated now.
    pub evaluated: usize,
    /// Batches already evaluated by this version (skipped).
    pub up_to_date: usize,
    /// Batches not complete (failed or interrupted simulations), left alone.
    pub not_complete: usize,
    /// Batches that could not be evaluated: (batch dir, error naming file and offset).
    pub failed: Vec<(PathBuf, String)>,
    /// Warnings (approximations, missing maps), one per batch at most.
    pub warnings: Vec<String>,
    /// Rollouts evaluated.
    pub rollouts: usize,
    /// Time spent reading and decoding logs (summed over threads).
    pub read: Duration,
    /// Time spent computing metrics (summed over threads).
    pub compute: Duration,
}

/// One batch's result.
struct BatchResult {
    rollouts: usize,
    warning: Option<String>,
    read: Duration,
    compute: Duration,
}

/// Re-evaluates one batch dir and rewrites its metrics.parquet and `_evaluated`.
fn evaluate_batch(
    dir: &Path,
    opts: &EvaluateOptions,
    cfg: &SimConfig,
    meta: &RunMetadata,
    selected: &BTreeSet<&'static str>,
) -> Result<BatchResult, String> {
    crate::fsutil::remove_stale_temps(dir);
    let b = replay_log(dir, opts.scenes_dir.as_deref(), cfg).map_err(|e| e.to_string())?;
    if let Some(e) = b.stopped {
        return Err(format!("{e}; the batch is left as it was"));
    }
    // A log cut at a record boundary reads cleanly but holds fewer rollouts, or shorter ones,
    // than the batch scored: rewriting would drop the rest.
    let target = dir.join(run_dir::METRICS);
    let previous = rollout_ends(&target);
    if let Ok((had, _)) = &previous {
        let replayed: BTreeMap<String, i64> = b
            .rollouts
            .iter()
            .map(|(i, t)| {
                let end = t.times_us.last().copied().unwrap_or(i64::MIN);
                (format!("{}-{i}", b.ctx.batch_uuid), end)
            })
            .collect();
        // drivekit's ids name the rollout; other writers' ids (AlpaSim's) are only counted.
        let ours = had.keys().all(|id| id.starts_with(&b.ctx.batch_uuid));
        let short: Vec<String> = if ours {
            had.iter()
                .filter(|(id, end)| replayed.get(*id).is_none_or(|r| r < *end))
                .map(|(id, _)| id.clone())
                .collect()
        } else {
            had.keys().skip(replayed.len()).cloned().collect()
        };
        if !short.is_empty() {
            return Err(format!(
                "{} holds {} of the {} rollouts of {} in full (missing or cut: {}); the batch is left as it was",
                crate::rollout::replay::log_name(dir),
                had.len() - short.len(),
                had.len(),
                target.display(),
                short.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let t_compute = Instant::now();
    let mut rows = MetricsBuilder::new();
    let rollouts = b.rollouts.len();
    for (index, mut trace) in b.rollouts {
        score_trace(&b.ctx, cfg, index, &mut trace);
        trace.rollout_metrics = crate::sim::rollout_metrics::rollout_metrics(&b.ctx, &trace);
        // Metrics not selected do not apply (their rows come from the previous file).
        for row in trace.metrics.chunks_exact_mut(N_METRICS) {
            for (v, m) in row.iter_mut().zip(table::names()) {
                if !selected.contains(m) {
                    *v = f64::NAN;
                }
            }
        }
        for (v, m) in trace.rollout_metrics.iter_mut().zip(ROLLOUT_METRICS.iter()) {
            if !selected.contains(m.name) {
                *v = f64::NAN;
            }
        }
        let rid = format!("{}-{index}", b.ctx.batch_uuid);
        push_trace_rows(&mut rows, &b.ctx, &rid, meta, &trace);
    }
    let (warning, read, exact) = (b.warnings.into_iter().last(), b.read, b.exact);
    let mut batches = vec![rows.finish()];
    if selected.len() < table::all_names().len() {
        // The metrics not recomputed keep their previous rows.
        batches.push(kept_rows(&dir.join(run_dir::METRICS), selected)?);
    }
    let target = dir.join(run_dir::METRICS);
    let prev = dir.join(format!("{}.prev", run_dir::METRICS));
    let _ = fs::remove_file(&prev);
    if target.exists() {
        fs::hard_link(&target, &prev)
            .or_else(|_| fs::copy(&target, &prev).map(|_| ()))
            .map_err(|e| format!("{}: {e}", prev.display()))?;
    }
    // The scene's tags: from the scene file when given, else kept from the previous file.
    let tags = if b.ctx.scene.tags.is_empty() {
        previous.map(|(_, tags)| tags).unwrap_or_default()
    } else {
        b.ctx.scene.tags.clone()
    };
    metrics_file::write_metrics_file_tagged(&target, &batches, &tags).map_err(|e| e.to_string())?;
    let _ = fs::remove_file(&prev);
    // The metrics this version has scored: those of an earlier `--metrics` pass stay current.
    let mut scored = scored_metrics(dir);
    scored.extend(selected.iter().copied());
    let marker = serde_json::json!({
        "metrics_version": table::metrics_version(),
        "metrics": scored.iter().collect::<Vec<_>>(),
        "exact": exact,
        "scene": if opts.scenes_dir.is_some() { "scene file" } else { "rebuilt from the log" },
    });
    fsutil::write_atomic(
        &dir.join(EVALUATED),
        serde_json::to_string_pretty(&marker)
            .expect("plain data")
            .as_bytes(),
    )
    .map_err(|e| format!("{}: {e}", dir.display()))?;
    let compute = t_compute.elapsed();
    Ok(BatchResult {
        rollouts,
        warning,
        read,
        compute,
    })
}

/// The metrics of batch `dir` that the current [`table::metrics_version`] has scored (from its
/// `_evaluated` marker; none when it is absent, unreadable or from another version).
fn scored_metrics(dir: &Path) -> BTreeSet<&'static str> {
    let marker = fs::read_to_string(dir.join(EVALUATED))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    let Some(v) = marker.filter(|v| v["metrics_version"] == table::metrics_version().as_str())
    else {
        return BTreeSet::new();
    };
    v["metrics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| table::canonical(m.as_str()?))
        .collect()
}

/// The rollout ids a metrics file has rows of, with each one's last timestamp, and the scene
/// tags in its footer.
type RolloutEnds = (BTreeMap<String, i64>, Vec<String>);

fn rollout_ends(path: &Path) -> Result<RolloutEnds, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int64Type};
    let mut ends: BTreeMap<String, i64> = BTreeMap::new();
    let reader = metrics_file::open_metrics_file(path).map_err(|e| e.to_string())?;
    let tags = reader.scene_tags().to_vec();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        let d = batch
            .column(metrics_file::col::ROLLOUT_ID)
            .as_dictionary::<Int32Type>();
        let v = d.values().as_string::<i32>();
        let ts = batch
            .column(metrics_file::col::TIMESTAMPS_US)
            .as_primitive::<Int64Type>();
        for (k, t) in d.keys().iter().zip(ts.iter()) {
            if let (Some(k), Some(t)) = (k, t) {
                let e = ends.entry(v.value(k as usize).to_string()).or_insert(t);
                *e = (*e).max(t);
            }
        }
    }
    Ok((ends, tags))
}

/// The rows of `path` whose metric is not in `selected`, as one record batch.
fn kept_rows(
    path: &Path,
    selected: &BTreeSet<&'static str>,
) -> Result<arrow_array::RecordBatch, String> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, BooleanArray, Float64Array, Int64Array};
    let mut b = MetricsBuilder::new();
    for batch in metrics_file::open_metrics_file(path).map_err(|e| e.to_string())? {
        let batch = batch.map_err(|e| e.to_string())?;
        let s = |i: usize| {
            let d = batch.column(i).as_dictionary::<Int32Type>();
            let v = d.values().as_string::<i32>().clone();
            let keys = d.keys().clone();
            move |row: usize| v.value(keys.value(row) as usize).to_string()
        };
        let (name, agg, clip, rollout, uuid, run_name) = (s(0), s(4), s(5), s(6), s(7), s(8));
        let ts = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .cloned();
        let vals = batch
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .cloned();
        let valid = batch
            .column(3)
            .as_any()
            .downcast_ref::<BooleanArray>()
            .cloned();
        let (Some(ts), Some(vals), Some(valid)) = (ts, vals, valid) else {
            return Err(format!("{}: unexpected column types", path.display()));
        };
        for row in 0..batch.num_rows() {
            let n = name(row);
            if selected.contains(n.as_str()) {
                continue;
            }
            b.push(&metrics_file::MetricRow {
                name: &n,
                timestamps_us: ts.value(row),
                value: (!vals.is_null(row)).then(|| vals.value(row)),
                valid: valid.value(row),
                time_aggregation: &agg(row),
                clipgt_id: &clip(row),
                rollout_id: &rollout(row),
                run_uuid: &uuid(row),
                run_name: &run_name(row),
            });
        }
    }
    Ok(b.finish())
}

/// Evaluates every complete batch of a run.
pub fn run(opts: &EvaluateOptions) -> Result<EvaluateOutcome, EvaluateError> {
    let cfg_file = opts.run_dir.join(run_dir::WIZARD_CONFIG);
    let cfg = SimConfig::load(&cfg_file)?;
    let meta = RunMetadata::load(&opts.run_dir.join(run_dir::RUN_METADATA))?;
    let selected: BTreeSet<&'static str> = match &opts.metrics {
        None => table::all_names().into_iter().collect(),
        Some(list) => list
            .iter()
            .map(|m| table::canonical(m).ok_or_else(|| EvaluateError::UnknownMetric(m.clone())))
            .collect::<Result<_, _>>()?,
    };
    let rollouts_dir = opts.run_dir.join(run_dir::ROLLOUTS);
    let mut dirs = Vec::new();
    for scene in fs::read_dir(&rollouts_dir)
        .map_err(|e| EvaluateError::Rollouts {
            path: rollouts_dir.clone(),
            source: e,
        })?
        .flatten()
    {
        if let Ok(rd) = fs::read_dir(scene.path()) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    dirs.sort();
    let mut out = EvaluateOutcome::default();
    out.warnings.extend(
        cfg.warnings
            .iter()
            .map(|w| crate::config::in_file(w, &cfg_file)),
    );
    let mut todo = Vec::new();
    for d in dirs {
        if let Some(why) = run_dir::writes_outside(&opts.run_dir, &d) {
            out.failed.push((d, why));
            continue;
        }
        if !matches!(run_dir::batch_state(&d), run_dir::BatchState::Complete) {
            out.not_complete += 1;
            continue;
        }
        // Up to date when every selected metric was scored by this metric version.
        let current = scored_metrics(&d).is_superset(&selected);
        if current && !opts.force {
            out.up_to_date += 1;
        } else {
            todo.push(d);
        }
    }
    let bar = crate::report::progress::bar(todo.len() as u64, "batches", opts.progress);
    let results: Vec<(PathBuf, Result<BatchResult, String>)> = todo
        .into_par_iter()
        .map(|d| {
            let r = evaluate_batch(&d, opts, &cfg, &meta, &selected);
            bar.inc(1);
            (d, r)
        })
        .collect();
    bar.finish_and_clear();
    for (d, r) in results {
        match r {
            Ok(b) => {
                out.evaluated += 1;
                out.rollouts += b.rollouts;
                out.read += b.read;
                out.compute += b.compute;
                out.warnings.extend(b.warning);
            }
            Err(e) => out.failed.push((d, e)),
        }
    }
    Ok(out)
}
