//! A batch's rollout.asl read back into traces: per rollout, every step's time, ego state, agent
//! poses and the driver's plans — what the stepper recorded, without the metrics (the evaluation
//! service scores them again: `crate::sim::evaluation::score_trace`).
//!
//! drivekit's logs carry the full-precision state the metrics used (ActorPose extension field
//! 1001), so the trace comes back exactly as it was recorded (tested: trace → log → trace). Logs
//! written by AlpaSim carry f32 poses only: speeds are then differences of consecutive poses and
//! the plan point at each step is absent ([`ReplayedLog::exact`] is false). Without the scene file,
//! the scene is rebuilt from the log (the recorded ego path and the actors' boxes, no map).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::asl::{self, AslError, Record};
use super::convert::yaw_of;
use super::proto::{ActorPoses, Entry, RolloutMetadata};
use super::trace::RolloutTrace;
use crate::config::SimConfig;
use crate::scene::{AgentClass, Map, Scene, SceneError, Track};
use crate::state::SceneCtx;

/// Why a batch's log cannot be replayed at all (a log that ends early still replays what it
/// holds: [`ReplayedLog::stopped`]).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The log cannot be opened or its first record read.
    #[error(transparent)]
    Log(#[from] AslError),
    /// The scene file named by the batch cannot be loaded.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// The scene cannot be prepared for this configuration.
    #[error("{log}: {message}")]
    Context {
        /// the log
        log: String,
        /// why (from [`SceneCtx::new`])
        message: String,
    },
    /// The log ended or turned corrupt before its first rollout.
    #[error("{0}")]
    Stopped(String),
    /// Pose records before any rollout_metadata, or no rollout at all.
    #[error("{log}: {message}")]
    Structure {
        /// the log
        log: String,
        /// what is wrong
        message: String,
    },
}

/// A batch's log, replayed.
pub struct ReplayedLog {
    /// The scene context (from the scene file, or rebuilt from the log).
    pub ctx: SceneCtx,
    /// (rollout index, its trace without metrics) in log order.
    pub rollouts: Vec<(u32, RolloutTrace)>,
    /// The log carried drivekit's full-precision state.
    pub exact: bool,
    /// Why reading stopped early (truncated or corrupt log), naming file and byte.
    pub stopped: Option<String>,
    /// Warnings (scene rebuilt without a map, approximations).
    pub warnings: Vec<String>,
    /// Time reading and decoding the log.
    pub read: Duration,
}

/// The log file of batch `dir` as shown in messages (rollout.asl, else rollout.asl.xz).
pub fn log_name(dir: &Path) -> String {
    let plain = dir.join(asl::FILE_NAME);
    if plain.exists() {
        plain.display().to_string()
    } else {
        dir.join(asl::XZ_FILE_NAME).display().to_string()
    }
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
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id: session.scene_id,
        source: "rebuilt from rollout.asl (no map)".into(),
        timestamps_us: traj.poses.iter().map(|p| p.timestamp_us as i64).collect(),
        map: Map::default(),
        ego,
        agents,
    }
}

/// A rollout being read: its trace and what speeds from poses need.
struct Reading {
    index: u32,
    trace: RolloutTrace,
    /// Previous step's positions by agent slot (ego last), for speeds from poses (AlpaSim logs).
    prev: Vec<Option<[f64; 2]>>,
    prev_t: Option<i64>,
}

impl Reading {
    fn new(index: u32, n_agents: usize) -> Reading {
        Reading {
            index,
            trace: RolloutTrace::default(),
            prev: vec![None; n_agents + 1],
            prev_t: None,
        }
    }

    /// Appends one ActorPoses record as a step of the trace.
    fn push(&mut self, poses: &ActorPoses, slots: &HashMap<String, usize>, exact: &mut bool) {
        let n_agents = self.prev.len() - 1;
        let t = poses.timestamp_us as i64;
        let dt = self
            .prev_t
            .map(|p| (t - p) as f64 / 1e6)
            .filter(|d| *d > 0.0);
        let tr = &mut self.trace;
        tr.times_us.push(t);
        let mut ego = [0.0, 0.0, 0.0, 0.0, f64::NAN, f64::NAN];
        let base = tr.agents.len();
        tr.agents.resize(base + n_agents, [f64::NAN; 4]);
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
                let speed = match (self.prev[slot], dt) {
                    (Some(p), Some(dt)) => crate::geometry::norm(x - p[0], y - p[1]) / dt,
                    _ => 0.0,
                };
                (x, y, yaw_of(&pose), speed, None)
            };
            self.prev[slot] = Some([x, y]);
            if slot == n_agents {
                let p = plan.unwrap_or([f64::NAN; 2]);
                ego = [x, y, yaw, speed, p[0], p[1]];
            } else {
                tr.agents[base + slot] = [x, y, yaw, speed];
            }
        }
        tr.ego.push(ego);
        self.prev_t = Some(t);
    }
}

/// Replays batch `dir`'s log (rollout.asl, or .xz) with its scene from `scenes_dir` (or rebuilt
/// from the log). A log that ends early or turns corrupt keeps what came before (`stopped` says
/// where).
pub fn replay_log(
    dir: &Path,
    scenes_dir: Option<&Path>,
    cfg: &SimConfig,
) -> Result<ReplayedLog, ReplayError> {
    let t_read = Instant::now();
    let scene_id = dir
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let batch_uuid = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reader = asl::open_in_batch(dir)?;
    let log = log_name(dir);
    let mut ctx: Option<SceneCtx> = None;
    let mut warnings = Vec::new();
    let mut done: Vec<(u32, RolloutTrace)> = Vec::new();
    let mut current: Option<Reading> = None;
    let mut slots: HashMap<String, usize> = HashMap::new();
    let mut exact = true;
    let mut stopped = None;
    for record in reader {
        let entry = match record {
            Ok(Record::Entry(_, e)) => e,
            Ok(Record::Truncated(at)) => {
                stopped = Some(format!("{log}: truncated at byte {at}"));
                break;
            }
            Err(e) => {
                stopped = Some(e.to_string());
                break;
            }
        };
        match entry.entry {
            Some(Entry::RolloutMetadata(md)) => {
                if ctx.is_none() {
                    let scene = match scenes_dir {
                        Some(d) => {
                            let path: PathBuf =
                                d.join(format!("{scene_id}.{}", crate::scene::EXTENSION));
                            Scene::load(&path)?
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
                    ctx = Some(SceneCtx::new(scene, cfg, batch_uuid.clone()).map_err(|e| {
                        ReplayError::Context {
                            log: log.clone(),
                            message: e.to_string(),
                        }
                    })?);
                }
                if let Some(rp) = current.take() {
                    done.push((rp.index, rp.trace));
                }
                current = Some(Reading::new(md.rollout_index.max(0) as u32, slots.len()));
            }
            Some(Entry::ActorPoses(poses)) => {
                let Some(rp) = current.as_mut() else {
                    return Err(ReplayError::Structure {
                        log,
                        message: "poses before any rollout_metadata".into(),
                    });
                };
                rp.push(&poses, &slots, &mut exact);
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
    let Some(ctx) = ctx else {
        return Err(match stopped {
            Some(why) => ReplayError::Stopped(why),
            None => ReplayError::Structure {
                log,
                message: "no rollout in the log".into(),
            },
        });
    };
    if !exact {
        warnings.push(format!(
            "{scene_id}: the log has no drivekit state (an AlpaSim log?): speeds come from f32 pose differences and plan_deviation is absent"
        ));
    }
    Ok(ReplayedLog {
        ctx,
        rollouts: done,
        exact,
        stopped,
        warnings,
        read: t_read.elapsed(),
    })
}
