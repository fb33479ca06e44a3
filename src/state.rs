//! The batch state every stepper works on: rollouts × agents in structure-of-arrays form
//! (DESIGN §1, layer 2), built from scenes. One [`BatchState`] holds a chunk of a shard's rollouts —
//! from one scene or several — which are stepped together; per-agent arrays are flat with
//! `agent_start[r]..agent_start[r + 1]` the agents of rollout `r` (CSR), so a CUDA backend can take
//! the same arrays over unchanged.
//!
//! What stays the same for every rollout of a scene (the recording, paths, map look-ups) lives in
//! [`SceneCtx`], shared by reference.

use crate::config::SimConfig;
use crate::geometry::Polyline;
use crate::metrics::direction::LaneIndex;
use crate::rng::{derive_seed, SplitMix64};
use crate::scene::sampling::{sample, Sample};
use crate::scene::{AgentClass, Scene, Track};

/// How far (m) IDM paths continue straight past the end of their recording.
pub const PATH_EXTENSION_M: f64 = 100.0;
/// Recorded top speed (m/s) below which an agent is treated as parked (log replay).
pub const IDM_MIN_SPEED_MPS: f64 = 0.5;

/// Limits and geometry of the vehicle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VehicleParams {
    /// Distance between the axles (m).
    pub wheelbase_m: f64,
    /// Largest forward acceleration (m/s²).
    pub max_accel_mps2: f64,
    /// Largest braking deceleration (m/s², positive).
    pub max_decel_mps2: f64,
    /// Largest steering angle (rad).
    pub max_steer_rad: f64,
    /// Highest speed (m/s).
    pub max_speed_mps: f64,
}

impl VehicleParams {
    /// Typical passenger-car limits for a box of `length_m` (wheelbase 60 % of the length, the
    /// Pacifica's 3.089 of 5.176 m).
    pub fn for_length(length_m: f64) -> VehicleParams {
        VehicleParams {
            wheelbase_m: 0.597 * length_m,
            max_accel_mps2: 3.0,
            max_decel_mps2: 8.0,
            max_steer_rad: 0.6,
            max_speed_mps: 40.0,
        }
    }
}

/// Why a scene cannot be simulated under a configuration.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The recording is too short for the configured clocks.
    #[error(transparent)]
    Clock(#[from] crate::config::ConfigError),
    /// The ego has no recorded pose at the first simulated time.
    #[error("scene {scene}: the ego is not observed at the start time {start_us} µs")]
    EgoNotAtStart {
        /// the scene
        scene: String,
        /// the start time (µs)
        start_us: i64,
    },
}

/// Everything the rollouts of one scene share.
pub struct SceneCtx {
    /// The scene.
    pub scene: Scene,
    /// The batch's uuid (rollout ids are `{batch_uuid}-{i}`).
    pub batch_uuid: String,
    /// First simulated time (µs).
    pub start_us: i64,
    /// Steps to simulate (n_sim_steps clipped to the recording).
    pub n_steps: u32,
    /// The driver takes over from this time on.
    pub driven_from_us: i64,
    /// The ego's recorded path.
    pub gt_path: Option<Polyline>,
    /// Arc length of the recorded ego at the start.
    pub gt_start_m: f64,
    /// Drivable-area polygons.
    pub drivable: Vec<Vec<[f64; 2]>>,
    /// Lanes for driving-direction compliance (`None`: the map has no lanes).
    pub lanes: Option<LaneIndex>,
    /// The ego's vehicle limits.
    pub ego_params: VehicleParams,
    /// The route the IDM driver follows: the recorded ego path, extended straight.
    pub route: Option<Polyline>,
    /// The ego's recorded top speed (m/s), the IDM driver's desired speed.
    pub ego_top_speed: f64,
    /// Per agent: its recorded path from the start on (extended straight) and top speed, for
    /// IDM traffic; `None` for agents that are not IDM-capable (see [`BatchState::new`]).
    pub agent_paths: Vec<Option<(Polyline, f64)>>,
}

/// The recorded path of `track` from `start_us` on, extended straight by
/// [`PATH_EXTENSION_M`], with the recorded top speed; `None` when it is not observed at the start.
fn path_from(track: &Track, ts: &[i64], start_us: i64) -> Option<(Polyline, f64)> {
    let first = sample(track, ts, start_us)?;
    let mut pts = vec![[first.x, first.y]];
    let mut top: f64 = first.speed();
    for i in (0..ts.len()).filter(|&i| ts[i] > start_us && track.valid[i]) {
        let p = [track.x[i], track.y[i]];
        let last = pts[pts.len() - 1];
        if crate::geometry::norm(p[0] - last[0], p[1] - last[1]) > 0.05 {
            pts.push(p);
        }
        top = top.max(crate::geometry::norm(track.vx[i], track.vy[i]));
    }
    let end = pts[pts.len() - 1];
    let heading = if pts.len() >= 2 {
        let a = pts[pts.len() - 2];
        (end[1] - a[1]).atan2(end[0] - a[0])
    } else {
        first.yaw
    };
    pts.push([
        end[0] + heading.cos() * PATH_EXTENSION_M,
        end[1] + heading.sin() * PATH_EXTENSION_M,
    ]);
    Polyline::new(pts).map(|p| (p, top))
}

impl SceneCtx {
    /// Prepares a scene for simulation under `cfg`; the error says why it cannot run.
    pub fn new(scene: Scene, cfg: &SimConfig, batch_uuid: String) -> Result<SceneCtx, StateError> {
        let ts = &scene.timestamps_us;
        let t_first = ts[0];
        let duration = (ts[ts.len() - 1] - t_first) as u64;
        let n_steps = cfg.clip_steps(duration, &scene.scene_id)?;
        let start_us = t_first + cfg.simulation.time_start_offset_us as i64;
        if sample(&scene.ego, ts, start_us).is_none() {
            return Err(StateError::EgoNotAtStart {
                scene: scene.scene_id.clone(),
                start_us,
            });
        }
        let gt_points: Vec<[f64; 2]> = (0..ts.len())
            .filter(|&i| scene.ego.valid[i])
            .map(|i| [scene.ego.x[i], scene.ego.y[i]])
            .collect();
        let gt_path = Polyline::new(gt_points);
        let gt_start_m = gt_path
            .as_ref()
            .and_then(|p| sample(&scene.ego, ts, start_us).map(|s| p.project([s.x, s.y]).1))
            .unwrap_or(0.0);
        let route = path_from(&scene.ego, ts, start_us);
        let ego_top_speed = route.as_ref().map_or(0.0, |r| r.1);
        let agent_paths = scene
            .agents
            .iter()
            .map(|a| {
                (a.class == AgentClass::Vehicle)
                    .then(|| path_from(a, ts, start_us))
                    .flatten()
                    .filter(|(_, top)| *top >= IDM_MIN_SPEED_MPS)
            })
            .collect();
        Ok(SceneCtx {
            batch_uuid,
            start_us,
            n_steps,
            driven_from_us: start_us + cfg.simulation.force_gt_duration_us,
            gt_path,
            gt_start_m,
            drivable: scene.map.drivable_polygons(),
            lanes: LaneIndex::new(&scene.map),
            ego_params: VehicleParams::for_length(scene.ego.length_m),
            route: route.map(|r| r.0),
            ego_top_speed,
            agent_paths,
            scene,
        })
    }

    /// The recorded sample of track `k` (`None`: the ego) at `t_us`.
    pub fn recorded(&self, k: Option<usize>, t_us: i64) -> Option<Sample> {
        let track = k.map_or(&self.scene.ego, |k| &self.scene.agents[k]);
        sample(track, &self.scene.timestamps_us, t_us)
    }
}

/// The values a rollout's seed drew (recorded in rollout.asl).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct EgoPerturbation {
    /// Position offset x at the takeover (m).
    pub dx_m: f64,
    /// Position offset y at the takeover (m).
    pub dy_m: f64,
    /// Heading offset (rad).
    pub dyaw_rad: f64,
    /// Relative speed change.
    pub dspeed_frac: f64,
}

/// IDM parameters shared by agents and the IDM driver (nuPlan's IDM agent defaults).
pub mod idm_defaults {
    /// Time headway (s).
    pub const HEADWAY_S: f64 = 1.5;
    /// Minimum gap (m).
    pub const MIN_GAP_M: f64 = 1.0;
    /// Comfortable acceleration (m/s²).
    pub const ACCEL_MPS2: f64 = 1.0;
    /// Comfortable deceleration (m/s²).
    pub const DECEL_MPS2: f64 = 2.0;
}

/// A chunk of rollouts, structure of arrays.
#[derive(Debug, Clone, Default)]
pub struct BatchState {
    /// Scene of each rollout (index into the shard's [`SceneCtx`] list).
    pub scene: Vec<u32>,
    /// Index of each rollout within its scene's batch.
    pub rollout: Vec<u32>,
    /// Seed of each rollout.
    pub seed: Vec<u64>,
    /// The perturbation each rollout drew.
    pub perturbation: Vec<EgoPerturbation>,
    /// Still stepping.
    pub alive: Vec<bool>,
    /// Steps recorded so far.
    pub step: Vec<u32>,
    /// Current time (µs).
    pub t_us: Vec<i64>,
    /// Ego centre x (m).
    pub ego_x: Vec<f64>,
    /// Ego centre y (m).
    pub ego_y: Vec<f64>,
    /// Ego heading (rad).
    pub ego_yaw: Vec<f64>,
    /// Ego speed (m/s).
    pub ego_speed: Vec<f64>,
    /// The driver controls the ego (after the takeover, for drivers that drive).
    pub ego_controlled: Vec<bool>,
    /// Where the last plan put the ego at the current time (NaN: no plan).
    pub plan_x: Vec<f64>,
    /// See `plan_x`.
    pub plan_y: Vec<f64>,
    /// Agents of rollout `r`: `agent_start[r]..agent_start[r + 1]` (length rollouts + 1).
    pub agent_start: Vec<usize>,
    /// Scene track index of each agent.
    pub a_track: Vec<u32>,
    /// Present at the current time.
    pub a_valid: Vec<bool>,
    /// Centre x (m).
    pub a_x: Vec<f64>,
    /// Centre y (m).
    pub a_y: Vec<f64>,
    /// Heading (rad).
    pub a_yaw: Vec<f64>,
    /// Speed along the heading (m/s).
    pub a_speed: Vec<f64>,
    /// Box length (m).
    pub a_len: Vec<f64>,
    /// Box width (m).
    pub a_wid: Vec<f64>,
    /// Static object (never moves).
    pub a_static: Vec<bool>,
    /// Driven by IDM along its recorded path (else log replay).
    pub a_idm: Vec<bool>,
    /// Arc length along the IDM path (m).
    pub a_s: Vec<f64>,
    /// IDM desired speed (m/s).
    pub a_v0: Vec<f64>,
    /// IDM time headway (s).
    pub a_headway: Vec<f64>,
}

impl BatchState {
    /// Rollouts in the chunk.
    pub fn len(&self) -> usize {
        self.scene.len()
    }

    /// True when the chunk is empty.
    pub fn is_empty(&self) -> bool {
        self.scene.is_empty()
    }

    /// Agents of rollout `r`.
    pub fn agents(&self, r: usize) -> std::ops::Range<usize> {
        self.agent_start[r]..self.agent_start[r + 1]
    }

    /// Builds the chunk `members` = (scene index, rollout index) at each scene's start time.
    /// With `idm_traffic`, vehicles observed at the start that move in their recording
    /// (≥ 0.5 m/s) follow their recorded path under IDM; every other agent is replayed.
    pub fn new(
        scenes: &[SceneCtx],
        members: &[(u32, u32)],
        cfg: &SimConfig,
        idm_traffic: bool,
    ) -> BatchState {
        let p = &cfg.drivekit.perturbation;
        let mut st = BatchState {
            agent_start: vec![0],
            ..BatchState::default()
        };
        for &(si, ri) in members {
            let ctx = &scenes[si as usize];
            let seed = derive_seed(p.seed, &ctx.scene.scene_id, u64::from(ri));
            let mut rng = SplitMix64::new(seed);
            let pert = EgoPerturbation {
                dx_m: rng.normal() * p.ego_position_sigma_m,
                dy_m: rng.normal() * p.ego_position_sigma_m,
                dyaw_rad: rng.normal() * p.ego_heading_sigma_rad,
                dspeed_frac: rng.normal() * p.ego_speed_sigma_frac,
            };
            let ego = ctx.recorded(None, ctx.start_us);
            st.scene.push(si);
            st.rollout.push(ri);
            st.seed.push(seed);
            st.perturbation.push(pert);
            st.alive.push(ego.is_some() && ctx.n_steps > 0);
            st.step.push(0);
            st.t_us.push(ctx.start_us);
            let e = ego.unwrap_or(Sample {
                x: 0.0,
                y: 0.0,
                yaw: 0.0,
                vx: 0.0,
                vy: 0.0,
            });
            st.ego_x.push(e.x);
            st.ego_y.push(e.y);
            st.ego_yaw.push(e.yaw);
            st.ego_speed.push(e.speed());
            st.ego_controlled.push(false);
            st.plan_x.push(f64::NAN);
            st.plan_y.push(f64::NAN);
            for (k, a) in ctx.scene.agents.iter().enumerate() {
                // Two draws per agent whatever its mode, so seeds mean the same in every mode.
                let (fv, fh) = (rng.normal(), rng.normal());
                let s = ctx.recorded(Some(k), ctx.start_us);
                let path = idm_traffic
                    .then(|| ctx.agent_paths[k].as_ref())
                    .flatten()
                    .filter(|_| s.is_some());
                st.a_track.push(k as u32);
                st.a_valid.push(s.is_some());
                let s = s.unwrap_or(Sample {
                    x: 0.0,
                    y: 0.0,
                    yaw: 0.0,
                    vx: 0.0,
                    vy: 0.0,
                });
                st.a_x.push(s.x);
                st.a_y.push(s.y);
                st.a_yaw.push(s.yaw);
                st.a_speed.push(s.speed());
                st.a_len.push(a.length_m);
                st.a_wid.push(a.width_m);
                st.a_static.push(a.class == AgentClass::Static);
                st.a_idm.push(path.is_some());
                st.a_s.push(0.0);
                let top = path.map_or(0.0, |p| p.1);
                st.a_v0
                    .push((top * (1.0 + fv * p.agent_speed_sigma_frac)).max(0.1 * top));
                st.a_headway.push(
                    (idm_defaults::HEADWAY_S * (1.0 + fh * p.agent_headway_sigma_frac)).max(0.5),
                );
            }
            st.agent_start.push(st.a_track.len());
        }
        st
    }
}
