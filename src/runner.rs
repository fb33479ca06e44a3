//! The shard loop of `simulate run`: picks this shard's scenes, runs each scene's batch of
//! rollouts, and writes per batch `rollout.asl`, `metrics.parquet` and — last, synced —
//! `_complete`; per run `wizard-config.yaml`, `run_metadata.yaml` and `txt-logs/`.
//!
//! Resume: a batch dir with `_complete` is kept; one without is deleted and simulated again. A
//! scene that cannot be loaded or simulated gets `_failed.json` (DESIGN §2), so `aggregate`
//! counts its rollouts as failed, and the other scenes still run. Batch uuids derive from the
//! scene id, so a rerun finds the same directories.
//!
//! Today's driver and traffic are log replay (see [`crate::sim`]).

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::fixtures::uuid_from;
use crate::fsutil::{self, Durability};
use crate::geometry::{OrientedBox, Polyline};
use crate::metrics::ego_step::{self, ContactMemory, StepInput};
use crate::metrics::registry;
use crate::metrics_file::{self, MetricRow, MetricsBuilder};
use crate::rollout_log::asl::AslWriter;
use crate::rollout_log::proto;
use crate::run_dir::{self, FailedBatch, RunMetadata};
use crate::scene::{Scene, Track};
use crate::sim::driver::Driver;
use crate::sim::replay::{sample, Sample};
use crate::sim::vehicle::{VehicleParams, VehicleState};
use crate::sim_config::SimConfig;

/// Which part of the scene list this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// Why a shard could not run at all (per-scene problems become `_failed.json` instead).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A `--shard` or Slurm setting that does not describe a shard.
    #[error("shard {0}: expected i/n with 0 ≤ i < n (e.g. --shard 0/4), or Slurm's SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT")]
    BadShard(String),
    /// No scenes to run.
    #[error("{0}: no .dkscene files (import scenes with `simulate import`)")]
    NoScenes(PathBuf),
    /// I/O on the run dir.
    #[error("{path}: {source}")]
    Io {
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

impl Shard {
    /// Parses `i/n`.
    pub fn parse(s: &str) -> Result<Shard, RunnerError> {
        let bad = || RunnerError::BadShard(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From Slurm's array variables: index = (ID − MIN) / STEP, count = COUNT; `None` outside
    /// an array job. A stepped array like `--array=3-7:2` (IDs 3, 5, 7; COUNT 3) works.
    pub fn from_slurm(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, RunnerError> {
        let Some(id) = get("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let num = |k: &str, default: i64| -> Result<i64, RunnerError> {
            match get(k) {
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| RunnerError::BadShard(format!("{k}={v}"))),
                None => Ok(default),
            }
        };
        let id: i64 = id
            .trim()
            .parse()
            .map_err(|_| RunnerError::BadShard(format!("SLURM_ARRAY_TASK_ID={id}")))?;
        let (min, step, count) = (
            num("SLURM_ARRAY_TASK_MIN", 0)?,
            num("SLURM_ARRAY_TASK_STEP", 1)?,
            num("SLURM_ARRAY_TASK_COUNT", 1)?,
        );
        if step <= 0 || id < min || (id - min) % step != 0 || count <= 0 {
            return Err(RunnerError::BadShard(format!(
                "SLURM_ARRAY_TASK_ID={id} MIN={min} STEP={step} COUNT={count}"
            )));
        }
        let index = ((id - min) / step) as usize;
        if index >= count as usize {
            return Err(RunnerError::BadShard(format!(
                "task index {index} ≥ SLURM_ARRAY_TASK_COUNT={count}"
            )));
        }
        Ok(Some(Shard {
            index,
            count: count as usize,
        }))
    }

    /// The scenes (sorted ids) of this shard: dealt round-robin.
    pub fn pick<'a>(&self, sorted: &'a [String]) -> Vec<&'a String> {
        sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, s)| s)
            .collect()
    }
}

/// Settings of one shard run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory of `.dkscene` files.
    pub scenes_dir: PathBuf,
    /// Run directory to write.
    pub run_dir: PathBuf,
    /// Resolved configuration.
    pub config: SimConfig,
    /// This process's shard.
    pub shard: Shard,
    /// run_name for run_metadata.yaml (when the run dir has none yet).
    pub run_name: String,
    /// The policy under test.
    pub driver: Driver,
}

/// What a shard run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutcome {
    /// Batches simulated now.
    pub simulated: usize,
    /// Batches already complete (resume).
    pub skipped_complete: usize,
    /// Batches that failed (with `_failed.json`).
    pub failed: Vec<(String, String)>,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RunnerError + '_ {
    move |e| RunnerError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Runs one shard.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, RunnerError> {
    let mut ids: Vec<String> = fs::read_dir(&opts.scenes_dir)
        .map_err(io_err(&opts.scenes_dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == crate::scene::EXTENSION))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    ids.sort();
    if !opts.config.scenes.scene_ids.is_empty() {
        // Listed scenes run even when their file is missing: they fail visibly.
        ids = opts.config.scenes.scene_ids.clone();
        ids.sort();
        ids.dedup();
    }
    if ids.is_empty() {
        return Err(RunnerError::NoScenes(opts.scenes_dir.clone()));
    }
    let run = &opts.run_dir;
    fs::create_dir_all(run.join(run_dir::ROLLOUTS)).map_err(io_err(run))?;
    let mut resolved = opts.config.clone();
    resolved.scenes.scene_ids = ids.clone();
    fsutil::write_atomic(
        &run.join(run_dir::WIZARD_CONFIG),
        resolved.to_yaml().as_bytes(),
    )
    .map_err(io_err(run))?;
    let meta = run_metadata(run, &opts.run_name)?;
    let logs = run.join("txt-logs");
    fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let log_path = logs.join(format!(
        "shard-{}-of-{}.log",
        opts.shard.index, opts.shard.count
    ));
    let mut log = fs::File::create(&log_path).map_err(io_err(&log_path))?;

    // Scenes run in parallel (each writes only its own batch dir); results are logged in order.
    let results: Vec<Result<SceneResult, RunnerError>> = opts
        .shard
        .pick(&ids)
        .into_par_iter()
        .map(|scene_id| run_scene(opts, &meta, scene_id))
        .collect();
    let mut outcome = RunOutcome::default();
    for (scene_id, r) in opts.shard.pick(&ids).into_iter().zip(results) {
        match r? {
            SceneResult::Kept => {
                outcome.skipped_complete += 1;
                let _ = writeln!(log, "{scene_id}: complete, kept");
            }
            SceneResult::Simulated => {
                outcome.simulated += 1;
                let _ = writeln!(
                    log,
                    "{scene_id}: {} rollouts simulated",
                    opts.config.n_rollouts
                );
            }
            SceneResult::Failed(error) => {
                let _ = writeln!(log, "{scene_id}: FAILED: {error}");
                outcome.failed.push((scene_id.clone(), error));
            }
        }
    }
    Ok(outcome)
}

enum SceneResult {
    Kept,
    Simulated,
    Failed(String),
}

/// Runs (or keeps, or fails) one scene's batch.
fn run_scene(
    opts: &RunOptions,
    meta: &RunMetadata,
    scene_id: &str,
) -> Result<SceneResult, RunnerError> {
    let batch_uuid = uuid_from(0, scene_id);
    let dir = opts
        .run_dir
        .join(run_dir::ROLLOUTS)
        .join(scene_id)
        .join(&batch_uuid);
    match run_dir::batch_state(&dir) {
        run_dir::BatchState::Complete => return Ok(SceneResult::Kept),
        _ if dir.exists() => fs::remove_dir_all(&dir).map_err(io_err(&dir))?,
        _ => {}
    }
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = opts
        .scenes_dir
        .join(format!("{scene_id}.{}", crate::scene::EXTENSION));
    let result = Scene::load(&path)
        .map_err(|e| e.to_string())
        .and_then(|scene| {
            simulate_batch(&scene, &opts.config, opts.driver, meta, &batch_uuid, &dir)
                .map_err(|e| e.to_string())
        });
    match result {
        Ok(()) => Ok(SceneResult::Simulated),
        Err(error) => {
            let failed = FailedBatch {
                error: error.clone(),
                scene_id: scene_id.to_string(),
                batch_uuid: batch_uuid.clone(),
                rollout_ids: (0..opts.config.n_rollouts)
                    .map(|i| format!("{batch_uuid}-{i}"))
                    .collect(),
            };
            let bytes = serde_json::to_vec_pretty(&failed).expect("plain data");
            fsutil::write_atomic(&dir.join(run_dir::FAILED), &bytes).map_err(io_err(&dir))?;
            Ok(SceneResult::Failed(error))
        }
    }
}

/// Reads the run's metadata, or creates it (first shard wins; the others read it).
fn run_metadata(run: &Path, run_name: &str) -> Result<RunMetadata, RunnerError> {
    let path = run.join(run_dir::RUN_METADATA);
    if !path.exists() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let meta = RunMetadata {
            run_name: run_name.to_string(),
            run_uuid: uuid_from(nanos as u64 ^ u64::from(std::process::id()), run_name),
        };
        let text = serde_norway::to_string(&meta).expect("plain data");
        let tmp = fsutil::temp_path(&path);
        fs::write(&tmp, text).map_err(io_err(&tmp))?;
        // hard_link fails if another shard created the file meanwhile: then its metadata wins.
        let _ = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
    }
    let text = fs::read_to_string(&path).map_err(io_err(&path))?;
    serde_norway::from_str(&text).map_err(|e| RunnerError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })
}

fn bx(t: &Track, s: &Sample) -> OrientedBox {
    OrientedBox {
        x: s.x,
        y: s.y,
        yaw: s.yaw,
        length: t.length_m,
        width: t.width_m,
    }
}

fn pose(s: &Sample) -> proto::Pose {
    let (h, _) = (s.yaw / 2.0).sin_cos();
    proto::Pose {
        vec: Some(proto::Vec3 {
            x: s.x as f32,
            y: s.y as f32,
            z: 0.0,
        }),
        quat: Some(proto::Quat {
            w: (s.yaw / 2.0).cos() as f32,
            x: 0.0,
            y: 0.0,
            z: h as f32,
        }),
    }
}

/// The metrics written per step, in row order (aggregations from [`registry`]).
const METRICS: [&str; 14] = [
    "collision_front",
    "collision_lateral",
    "collision_rear",
    "collision_any",
    "offroad",
    "min_distance_to_obstacle_m",
    "dist_to_gt_trajectory",
    "dist_to_gt_location",
    "progress",
    "progress_rel_to_total",
    "dist_traveled_m",
    "gt_dist_traveled_m",
    "eval_relevant",
    "ego_is_making_progress",
];

/// Simulates every rollout of one scene and writes the batch dir (DESIGN §2, 3, 5).
fn simulate_batch(
    scene: &Scene,
    cfg: &SimConfig,
    driver: Driver,
    meta: &RunMetadata,
    batch_uuid: &str,
    dir: &Path,
) -> std::io::Result<()> {
    let ts = &scene.timestamps_us;
    let t_first = ts[0];
    let duration = (ts[ts.len() - 1] - t_first) as u64;
    let steps = cfg
        .clip_steps(duration, &scene.scene_id)
        .map_err(std::io::Error::other)? as usize;
    let start_us = t_first + cfg.time_start_offset_us as i64;
    let ctl = cfg.control_timestep_us as i64;
    let clock: Vec<i64> = (0..steps).map(|k| start_us + k as i64 * ctl).collect();
    let gt_points: Vec<[f64; 2]> = (0..ts.len())
        .filter(|&i| scene.ego.valid[i])
        .map(|i| [scene.ego.x[i], scene.ego.y[i]])
        .collect();
    let gt_path = Polyline::new(gt_points);
    let gt_total = gt_path.as_ref().map_or(0.0, Polyline::length);
    let drivable: Vec<Vec<[f64; 2]>> = scene.map.drivable_polygons();
    let driven_from_us = start_us + cfg.force_gt_duration_us;

    let mut rows = MetricsBuilder::new();
    let asl_path = dir.join("rollout.asl");
    let asl_tmp = fsutil::TempFile::for_target(&asl_path);
    let mut asl = AslWriter::create(asl_tmp.path())?;
    let definitions = proto::ActorDefinitions {
        actor_aabb: std::iter::once(&scene.ego)
            .chain(&scene.agents)
            .map(|t| proto::ActorAabb {
                actor_id: t.id.clone(),
                aabb: Some(proto::Aabb {
                    size_x: t.length_m as f32,
                    size_y: t.width_m as f32,
                    size_z: t.height_m as f32,
                }),
                actor_label: format!("{:?}", t.class).to_lowercase(),
            })
            .collect(),
    };
    let recorded = proto::Trajectory {
        poses: (0..ts.len())
            .filter(|&i| scene.ego.valid[i])
            .map(|i| proto::PoseAtTime {
                pose: Some(pose(&Sample {
                    x: scene.ego.x[i],
                    y: scene.ego.y[i],
                    yaw: scene.ego.yaw[i],
                    vx: 0.0,
                    vy: 0.0,
                })),
                timestamp_us: ts[i] as u64,
            })
            .collect(),
    };
    // The same for every rollout of the batch.
    let gt_start = gt_path
        .as_ref()
        .and_then(|p| sample(&scene.ego, ts, start_us).map(|s| p.project([s.x, s.y]).1))
        .unwrap_or(0.0);
    let params = VehicleParams::for_length(scene.ego.length_m);
    let dt_s = cfg.control_timestep_us as f64 / 1e6;
    for r in 0..cfg.n_rollouts as usize {
        let rollout_id = format!("{batch_uuid}-{r}");
        asl.write(&proto::LogEntry {
            entry: Some(proto::Entry::RolloutMetadata(proto::RolloutMetadata {
                session_metadata: Some(proto::SessionMetadata {
                    session_uuid: rollout_id.clone(),
                    scene_id: scene.scene_id.clone(),
                    batch_size: cfg.n_rollouts,
                    n_sim_steps: steps as u32,
                    start_timestamp_us: start_us as u64,
                    control_timestep_us: cfg.control_timestep_us,
                }),
                actor_definitions: Some(definitions.clone()),
                force_gt_duration: cfg.force_gt_duration_us as u64,
                rollout_index: r as i32,
                ego_rig_recorded_ground_truth_trajectory: Some(recorded.clone()),
            })),
        })?;
        let mut memory = ContactMemory::default();
        let mut traveled = 0.0;
        let mut prev: Option<[f64; 2]> = None;
        let mut state: Option<VehicleState> = None;
        for &t in &clock {
            // The recording at t: the ego before the takeover, the reference after it.
            let recorded_s = sample(&scene.ego, ts, t);
            let ego_s = match state {
                // A driver in control: the vehicle model's state.
                Some(v) => Sample {
                    x: v.x,
                    y: v.y,
                    yaw: v.yaw,
                    vx: v.speed * v.yaw.cos(),
                    vy: v.speed * v.yaw.sin(),
                },
                // The recording drives (log replay, or before the takeover); a gap ends the rollout.
                None => {
                    let Some(r) = recorded_s else { break };
                    r
                }
            };
            // From the takeover on, the driver moves the vehicle model for the next step.
            if t >= driven_from_us {
                let current = state.unwrap_or(VehicleState {
                    x: ego_s.x,
                    y: ego_s.y,
                    yaw: ego_s.yaw,
                    speed: ego_s.speed(),
                });
                state = driver.advance(current, &params, dt_s);
            }
            let ego = bx(&scene.ego, &ego_s);
            let mut tracks = Vec::new();
            let mut poses = vec![proto::ActorPose {
                actor_id: "EGO".into(),
                actor_pose: Some(pose(&ego_s)),
            }];
            for (k, a) in scene.agents.iter().enumerate() {
                if let Some(s) = sample(a, ts, t) {
                    tracks.push((k, bx(a, &s)));
                    poses.push(proto::ActorPose {
                        actor_id: a.id.clone(),
                        actor_pose: Some(pose(&s)),
                    });
                }
            }
            asl.write(&proto::LogEntry {
                entry: Some(proto::Entry::ActorPoses(proto::ActorPoses {
                    timestamp_us: t as u64,
                    actor_poses: poses,
                })),
            })?;
            let m = ego_step::step(
                &StepInput {
                    ego,
                    tracks: &tracks,
                    drivable: &drivable,
                    gt_path: gt_path.as_ref(),
                    gt_here: recorded_s.map(|r| [r.x, r.y]),
                },
                &mut memory,
            );
            if let Some(p) = prev {
                traveled += (ego.x - p[0]).hypot(ego.y - p[1]);
            }
            prev = Some([ego.x, ego.y]);
            let progress = m.progress_m.map(|s| s - gt_start);
            let gt_traveled = gt_path
                .as_ref()
                .zip(recorded_s)
                .map(|(p, r)| p.project([r.x, r.y]).1 - gt_start);
            let b = |v: bool| Some(if v { 1.0 } else { 0.0 });
            let values: [Option<f64>; 14] = [
                b(m.collision_front),
                b(m.collision_lateral),
                b(m.collision_rear),
                b(m.collision_any),
                m.offroad.and_then(b),
                Some(m.min_distance_to_obstacle_m),
                m.dist_to_gt_trajectory,
                m.dist_to_gt_location,
                progress,
                progress.map(|p| {
                    if gt_total - gt_start > 0.0 {
                        p / (gt_total - gt_start)
                    } else {
                        1.0
                    }
                }),
                Some(traveled),
                gt_traveled,
                b(t >= driven_from_us),
                b(ego_s.speed() > 0.1 || traveled > 0.0),
            ];
            for (name, v) in METRICS.iter().zip(values) {
                // A metric that does not apply (no map, no recording) is simply absent.
                if name == &"offroad" && m.offroad.is_none() {
                    continue;
                }
                if v.is_none()
                    && matches!(
                        *name,
                        "dist_to_gt_trajectory"
                            | "progress"
                            | "progress_rel_to_total"
                            | "gt_dist_traveled_m"
                    )
                {
                    continue;
                }
                rows.push(&MetricRow {
                    name,
                    timestamps_us: t,
                    value: v,
                    valid: v.is_some(),
                    time_aggregation: registry::aggregation_of(name),
                    clipgt_id: &scene.scene_id,
                    rollout_id: &rollout_id,
                    run_uuid: &meta.run_uuid,
                    run_name: &meta.run_name,
                });
            }
        }
    }
    let mut file = asl.finish()?.into_inner().map_err(|e| e.into_error())?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    asl_tmp.persist(&asl_path)?;
    metrics_file::write_metrics_file(&dir.join(run_dir::METRICS), &[rows.finish()])
        .map_err(std::io::Error::other)?;
    fsutil::write_atomic_as(&dir.join(run_dir::COMPLETE), Durability::Synced, b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_parse_and_deal_round_robin() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "x/2", "1", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let ids: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
        assert_eq!(
            Shard { index: 1, count: 2 }.pick(&ids),
            vec![&ids[1], &ids[3]]
        );
    }

    #[test]
    fn stepped_slurm_arrays_map_to_shard_indices() {
        // --array=3-7:2 → IDs 3, 5, 7, COUNT 3.
        let env = |id: &'static str| {
            move |k: &str| match k {
                "SLURM_ARRAY_TASK_ID" => Some(id.to_string()),
                "SLURM_ARRAY_TASK_MIN" => Some("3".into()),
                "SLURM_ARRAY_TASK_STEP" => Some("2".into()),
                "SLURM_ARRAY_TASK_COUNT" => Some("3".into()),
                _ => None,
            }
        };
        assert_eq!(
            Shard::from_slurm(env("3")).unwrap(),
            Some(Shard { index: 0, count: 3 })
        );
        assert_eq!(
            Shard::from_slurm(env("7")).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_slurm(env("4")).is_err());
        assert_eq!(Shard::from_slurm(|_| None).unwrap(), None);
    }
}
