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

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::fsutil;
use crate::metrics::table::{self, N_METRICS};
use crate::metrics_file::{self, MetricsBuilder};
use crate::rollout::asl::{self, Record};
use crate::rollout::convert::yaw_of;
use crate::rollout::proto::{ActorPoses, Entry, RolloutMetadata};
use crate::run_dir::{self, RunMetadata};
use crate::runner::push_trace_rows;
use crate::scene::{AgentClass, Map, Scene, Track};
use crate::sim::evaluation::{EvalMemory, Evaluator};
use crate::sim::services::EvaluationService;
use crate::sim::stepper::RolloutTrace;
use crate::sim_config::SimConfig;
use crate::state::{BatchState, SceneCtx};

/// Marker written after a batch was evaluated.
pub const EVALUATED: &str = "_evaluated";

/// Why a run cannot be evaluated at all.
#[derive(Debug, thiserror::Error)]
pub enum EvaluateError {
    /// Not a run dir, or its configuration is unusable.
    #[error("{path}: {message}")]
    Run {
        /// the path
        path: PathBuf,
        /// what is wrong
        message: String,
    },
    /// `--metrics` names a metric drivekit does not compute.
    #[error("--metrics: unknown metric `{0}` (known: {known})", known = table::names().join(", "))]
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

/// Rebuilds a scene without a map from a log's first rollout_metadata: the recorded ego path and
/// the actors' boxes.
fn scene_from_log(md: &RolloutMetadata) -> Scene {
    let traj = md
        .ego_rig_recorded_ground_truth_trajectory
        .clone()
        .unwrap_or_default();
    let n = traj.poses.len();
    let defs = md.actor_definitions.clone().unwrap_or_default().actor_aabb;
    let size = |id: &str| {
        defs.iter()
            .find(|a| a.actor_id == id)
            .and_then(|a| a.aabb)
            .map_or((4.5, 2.0, 1.6), |b| {
                (
                    f64::from(b.size_x),
                    f64::from(b.size_y),
                    f64::from(b.size_z),
                )
            })
    };
    let mut ego = Track::empty("EGO".into(), AgentClass::Vehicle, size("EGO"), n);
    for (i, p) in traj.poses.iter().enumerate() {
        let pose = p.pose.unwrap_or_default();
        let v = pose.vec.unwrap_or_default();
        ego.valid[i] = true;
        ego.x[i] = f64::from(v.x);
        ego.y[i] = f64::from(v.y);
        ego.yaw[i] = yaw_of(&pose);
    }
    let agents = defs
        .iter()
        .filter(|a| a.actor_id != "EGO")
        .map(|a| {
            let class = match a.actor_label.as_str() {
                "pedestrian" => AgentClass::Pedestrian,
                "cyclist" => AgentClass::Cyclist,
                "static" => AgentClass::Static,
                "other" => AgentClass::Other,
                _ => AgentClass::Vehicle,
            };
            Track::empty(a.actor_id.clone(), class, size(&a.actor_id), n)
        })
        .collect();
    let session = md.session_metadata.clone().unwrap_or_default();
    Scene {
        scene_id: session.scene_id,
        source: "rebuilt from rollout.asl (no map)".into(),
        timestamps_us: traj.poses.iter().map(|p| p.timestamp_us as i64).collect(),
        map: Map::default(),
        ego,
        agents,
    }
}

/// A rollout being re-evaluated.
struct Replay {
    index: u32,
    st: BatchState,
    memory: Vec<EvalMemory>,
    trace: RolloutTrace,
    /// Previous step's positions for speeds from poses (AlpaSim logs), by agent slot; ego last.
    prev: Vec<Option<[f64; 2]>>,
    prev_t: Option<i64>,
}

fn set_step(rp: &mut Replay, poses: &ActorPoses, slots: &HashMap<String, usize>, exact: &mut bool) {
    let st = &mut rp.st;
    let t = poses.timestamp_us as i64;
    let dt = rp.prev_t.map(|p| (t - p) as f64 / 1e6).filter(|d| *d > 0.0);
    st.t_us[0] = t;
    st.a_valid.iter_mut().for_each(|v| *v = false);
    let n_agents = st.a_track.len();
    for a in &poses.actor_poses {
        let slot = if a.actor_id == "EGO" {
            n_agents
        } else {
            match slots.get(a.actor_id.as_str()) {
                Some(s) => *s,
                None => continue,
            }
        };
        let s = &a.drivekit_state;
        let (x, y, yaw, speed, plan) = if s.len() >= 4 {
            (s[0], s[1], s[2], s[3], (s.len() >= 6).then(|| [s[4], s[5]]))
        } else {
            *exact = false;
            let pose = a.actor_pose.unwrap_or_default();
            let v = pose.vec.unwrap_or_default();
            let (x, y) = (f64::from(v.x), f64::from(v.y));
            let speed = match (rp.prev[slot], dt) {
                (Some(p), Some(dt)) => crate::geometry::norm(x - p[0], y - p[1]) / dt,
                _ => 0.0,
            };
            (x, y, yaw_of(&pose), speed, None)
        };
        rp.prev[slot] = Some([x, y]);
        if slot == n_agents {
            st.ego_x[0] = x;
            st.ego_y[0] = y;
            st.ego_yaw[0] = yaw;
            st.ego_speed[0] = speed;
            let p = plan.unwrap_or([f64::NAN; 2]);
            st.plan_x[0] = p[0];
            st.plan_y[0] = p[1];
        } else {
            st.a_valid[slot] = true;
            st.a_x[slot] = x;
            st.a_y[slot] = y;
            st.a_yaw[slot] = yaw;
            st.a_speed[slot] = speed;
        }
    }
    rp.prev_t = Some(t);
}

/// A batch's rollouts replayed from its log through the evaluation service.
pub struct ReplayedBatch {
    /// The scene context (from the scene file, or rebuilt from the log).
    pub ctx: SceneCtx,
    /// (rollout index, trace with every metric) in log order.
    pub rollouts: Vec<(u32, RolloutTrace)>,
    /// The log carried drivekit's full-precision state.
    pub exact: bool,
    /// Why reading stopped early (truncated or corrupt log), naming file and byte.
    pub stopped: Option<String>,
    /// Warnings (scene rebuilt without a map, approximations).
    pub warnings: Vec<String>,
    /// Time reading and decoding the log.
    pub read: Duration,
    /// Time computing metrics.
    pub compute: Duration,
}

/// Replays one batch dir's log: every rollout's per-step state, fed to the simulator's
/// evaluation service. A log that ends early or turns corrupt keeps what came before
/// (`stopped` says where).
pub fn replay_batch(
    dir: &Path,
    scenes_dir: Option<&Path>,
    cfg: &SimConfig,
) -> Result<ReplayedBatch, String> {
    let t_read = Instant::now();
    let mut read = Duration::ZERO;
    let mut compute = Duration::ZERO;
    let scene_id = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let batch_uuid = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reader = asl::open_in_batch(dir).map_err(|e| e.to_string())?;
    let log_name = reader_name(dir);
    let mut ctxs: Vec<SceneCtx> = Vec::new();
    let mut warnings = Vec::new();
    let evaluator = Evaluator::new(cfg);
    let mut done: Vec<(u32, RolloutTrace)> = Vec::new();
    let mut current: Option<Replay> = None;
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut exact = true;
    let mut stopped = None;
    let mut values = vec![f64::NAN; N_METRICS];
    read += t_read.elapsed();
    let mut records = reader.into_iter();
    loop {
        let t0 = Instant::now();
        let next = records.next();
        read += t0.elapsed();
        let Some(record) = next else { break };
        let entry = match record {
            Ok(Record::Entry(_, e)) => e,
            Ok(Record::Truncated(at)) => {
                stopped = Some(format!("{log_name}: truncated at byte {at}"));
                break;
            }
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        };
        match entry.entry {
            Some(Entry::RolloutMetadata(md)) => {
                if ctxs.is_empty() {
                    let scene = match scenes_dir {
                        Some(d) => {
                            let path = d.join(format!("{scene_id}.{}", crate::scene::EXTENSION));
                            Scene::load(&path).map_err(|e| e.to_string())?
                        }
                        None => {
                            warnings.push(format!(
                                "{scene_id}: no scene given (--scenes): rebuilt from the log without a map; offroad and driving_direction_compliance skipped"
                            ));
                            scene_from_log(&md)
                        }
                    };
                    slots = scene
                        .agents
                        .iter()
                        .enumerate()
                        .map(|(i, a)| (a.id.clone(), i))
                        .collect();
                    ctxs.push(
                        SceneCtx::new(scene, cfg, batch_uuid.clone())
                            .map_err(|e| format!("{log_name}: {e}"))?,
                    );
                }
                if let Some(rp) = current.take() {
                    done.push((rp.index, rp.trace));
                }
                let index = md.rollout_index.max(0) as u32;
                let st = BatchState::new(&ctxs, &[(0, index)], cfg, false);
                let n = st.a_track.len();
                current = Some(Replay {
                    index,
                    st,
                    memory: vec![EvalMemory::default()],
                    trace: RolloutTrace::default(),
                    prev: vec![None; n + 1],
                    prev_t: None,
                });
            }
            Some(Entry::ActorPoses(poses)) => {
                let Some(rp) = current.as_mut() else {
                    return Err(format!("{log_name}: poses before any rollout_metadata"));
                };
                let t1 = Instant::now();
                set_step(rp, &poses, &slots, &mut exact);
                rp.st.alive[0] = true;
                evaluator.evaluate(&rp.st, &ctxs, &mut rp.memory, &mut values);
                rp.trace.push_step(&rp.st, 0, &values);
                compute += t1.elapsed();
            }
            Some(Entry::DriverEgoTrajectory(traj)) => {
                if let Some(rp) = current.as_mut() {
                    let k = rp.trace.times_us.len().saturating_sub(1) as u32;
                    let pts = traj
                        .poses
                        .iter()
                        .map(|p| {
                            let v = p.pose.and_then(|p| p.vec).unwrap_or_default();
                            [f64::from(v.x), f64::from(v.y)]
                        })
                        .collect();
                    rp.trace.plans.push((k, pts));
                }
            }
            _ => {}
        }
    }
    if let Some(rp) = current.take() {
        done.push((rp.index, rp.trace));
    }
    let Some(ctx) = ctxs.pop() else {
        return Err(stopped.unwrap_or_else(|| format!("{log_name}: no rollout in the log")));
    };
    if !exact {
        warnings.push(format!(
            "{scene_id}: the log has no drivekit state (an AlpaSim log?): speeds come from f32 pose differences and plan_deviation is absent"
        ));
    }
    Ok(ReplayedBatch {
        ctx,
        rollouts: done,
        exact,
        stopped,
        warnings,
        read,
        compute,
    })
}

/// Re-evaluates one batch dir and rewrites its metrics.parquet and `_evaluated`.
fn evaluate_batch(
    dir: &Path,
    opts: &EvaluateOptions,
    cfg: &SimConfig,
    meta: &RunMetadata,
    selected: &BTreeSet<&'static str>,
) -> Result<BatchResult, String> {
    let b = replay_batch(dir, opts.scenes_dir.as_deref(), cfg)?;
    if let Some(e) = b.stopped {
        return Err(format!("{e}; the batch is left as it was"));
    }
    let mut compute = b.compute;
    let aggregations: Vec<&'static str> = table::METRICS
        .iter()
        .map(|m| m.time_aggregation.as_str())
        .collect();
    let mut rows = MetricsBuilder::new();
    let rollouts = b.rollouts.len();
    for (index, mut trace) in b.rollouts {
        // Metrics not selected do not apply (their rows come from the previous file).
        for row in trace.metrics.chunks_exact_mut(N_METRICS) {
            for (v, m) in row.iter_mut().zip(table::names()) {
                if !selected.contains(m) {
                    *v = f64::NAN;
                }
            }
        }
        let rid = format!("{}-{index}", b.ctx.batch_uuid);
        push_trace_rows(&mut rows, &b.ctx, &rid, meta, &aggregations, &trace);
    }
    let (warning, read, exact) = (b.warnings.into_iter().last(), b.read, b.exact);
    let t2 = Instant::now();
    let mut batches = vec![rows.finish()];
    if selected.len() < N_METRICS {
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
    metrics_file::write_metrics_file(&target, &batches).map_err(|e| e.to_string())?;
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
    compute += t2.elapsed();
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
        .filter_map(|m| table::lookup(m.as_str()?).map(|d| d.name))
        .collect()
}

fn reader_name(dir: &Path) -> String {
    let plain = dir.join(asl::FILE_NAME);
    if plain.exists() {
        plain.display().to_string()
    } else {
        dir.join(asl::XZ_FILE_NAME).display().to_string()
    }
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
    let run_err = |path: &Path, message: String| EvaluateError::Run {
        path: path.to_path_buf(),
        message,
    };
    let cfg_path = opts.run_dir.join(run_dir::WIZARD_CONFIG);
    let cfg = SimConfig::load(&cfg_path).map_err(|e| run_err(&cfg_path, e.to_string()))?;
    let meta_path = opts.run_dir.join(run_dir::RUN_METADATA);
    let meta: RunMetadata = fs::read_to_string(&meta_path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_norway::from_str(&t).map_err(|e| e.to_string()))
        .map_err(|e| run_err(&meta_path, e))?;
    let selected: BTreeSet<&'static str> = match &opts.metrics {
        None => table::names().into_iter().collect(),
        Some(list) => list
            .iter()
            .map(|m| {
                table::lookup(m)
                    .map(|d| d.name)
                    .ok_or_else(|| EvaluateError::UnknownMetric(m.clone()))
            })
            .collect::<Result<_, _>>()?,
    };
    let rollouts_dir = opts.run_dir.join(run_dir::ROLLOUTS);
    let mut dirs = Vec::new();
    for scene in fs::read_dir(&rollouts_dir)
        .map_err(|e| run_err(&rollouts_dir, e.to_string()))?
        .flatten()
    {
        if let Ok(rd) = fs::read_dir(scene.path()) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    dirs.sort();
    let mut out = EvaluateOutcome::default();
    let mut todo = Vec::new();
    for d in dirs {
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
