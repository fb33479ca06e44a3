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
use crate::scene::lane_graph::LaneLocator;
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
    /// Lanes for driving-direction compliance and speed limits (`None`: the map has no lanes).
    pub lanes: Option<LaneIndex>,
    /// Stop lines and signal states (red lights, stop signs).
    pub rules: crate::metrics::traffic_rules::TrafficRules,
    /// The ego's vehicle limits.
    pub ego_params: VehicleParams,
    /// The route the IDM driver follows (and an external driver is sent): the lane-graph route
    /// from the ego's start lane to the lane its recording ends on, else its recorded path;
    /// extended straight.
    pub route: Option<Route>,
    /// The ego's recorded top speed (m/s), the IDM driver's desired speed.
    pub ego_top_speed: f64,
    /// Per agent: its route (as the ego's), for IDM traffic; `None` for agents that are not
    /// IDM-capable (see [`BatchState::new`]).
    pub agent_paths: Vec<Option<Route>>,
}

/// A traffic rule met along a route at arc length `s`: from there a speed limit (m/s), or a stop
/// line (index into [`crate::metrics::traffic_rules::TrafficRules::lines`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PathRule {
    /// The speed limit from `s` on.
    Limit {
        /// Arc length (m).
        s: f64,
        /// Limit (m/s).
        mps: f64,
    },
    /// A stop line at `s`.
    Stop {
        /// Arc length (m).
        s: f64,
        /// The stop line.
        line: usize,
    },
}

impl PathRule {
    /// Its arc length.
    pub fn s(&self) -> f64 {
        match *self {
            PathRule::Limit { s, .. } | PathRule::Stop { s, .. } => s,
        }
    }
}

/// A path a vehicle drives under IDM: the polyline, the recorded top speed (the desired speed),
/// and the rules along it in arc-length order.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// The path.
    pub line: Polyline,
    /// Recorded top speed (m/s).
    pub top_speed: f64,
    /// Speed limits and stop lines along it.
    pub rules: Vec<PathRule>,
    /// Whether it follows the lane graph (else the recording).
    pub on_lanes: bool,
}

/// A lane route joins the lane centerline this far (m) past the vehicle's projection onto it.
pub const ROUTE_JOIN_M: f64 = 5.0;
/// Start and end lanes must be this close (m) to the vehicle.
pub const ROUTE_LANE_MAX_M: f64 = 3.0;
/// Speed limits are looked up along a path every this many metres.
pub const LIMIT_STEP_M: f64 = 2.0;
/// A stop line applies to a path passing within its half width, heading this aligned (cos).
pub const STOP_ALIGN_COS: f64 = 0.7;

/// Lanes whose centerline passes within [`ROUTE_LANE_MAX_M`] of `p` heading within 60° of
/// `yaw`, with the arc length of the nearest point, nearest first (at most 4).
fn lane_candidates(locator: &LaneLocator, p: [f64; 2], yaw: f64) -> Vec<(usize, f64)> {
    locator
        .candidates(p, yaw, ROUTE_LANE_MAX_M, std::f64::consts::FRAC_PI_3)
        .into_iter()
        .take(4)
        .map(|(i, _, s)| (i, s))
        .collect()
}

/// The lane-graph route of `track` from `start` (x, y, yaw) towards its last recorded pose on a
/// lane: among the start lanes and end lanes near the recording (see [`lane_candidates`]), the
/// successor chain whose centerlines stay closest to the recorded path (smallest largest
/// distance; ties: the shorter), drawn as the start lane's centerline joined [`ROUTE_JOIN_M`]
/// ahead of the vehicle, then the chain's lanes, up to where the recording's last pose projects
/// onto it. `None` when either end is off the lanes or no chain connects them.
fn lane_route(
    scene: &Scene,
    locator: &LaneLocator,
    track: &Track,
    start: Sample,
    recorded: &[[f64; 2]],
) -> Option<Vec<[f64; 2]>> {
    let lanes = &scene.map.lanes;
    if lanes.is_empty() {
        return None;
    }
    let froms = lane_candidates(locator, [start.x, start.y], start.yaw);
    if froms.is_empty() {
        return None;
    }
    // The last recorded pose on a lane (a recording may end past the mapped area).
    let tos = (0..track.valid.len())
        .rev()
        .filter(|&i| track.valid[i])
        .map(|i| lane_candidates(locator, [track.x[i], track.y[i]], track.yaw[i]))
        .find(|c| !c.is_empty())?;
    let mut best: Option<(f64, f64, Vec<[f64; 2]>)> = None;
    for &(from, s0) in &froms {
        for &(to, _) in &tos {
            let Some(chain) =
                crate::scene::lane_graph::route_indexed(lanes, &locator.index, from, to)
            else {
                continue;
            };
            let mut pts = vec![[start.x, start.y]];
            let mut acc = 0.0;
            let first = &lanes[chain[0]].centerline;
            for w in first.windows(2) {
                acc += crate::geometry::norm(w[1][0] - w[0][0], w[1][1] - w[0][1]);
                if acc > s0 + ROUTE_JOIN_M {
                    pts.push(w[1]);
                }
            }
            for &k in &chain[1..] {
                for p in &lanes[k].centerline {
                    let l = pts[pts.len() - 1];
                    if crate::geometry::norm(p[0] - l[0], p[1] - l[1]) > 0.1 {
                        pts.push(*p);
                    }
                }
            }
            let Some(line) = Polyline::new(pts.clone()) else {
                continue;
            };
            // The largest distance of the recorded path (a point every 2 m) from this route,
            // given up once it exceeds the best route's.
            let bound = best.as_ref().map_or(f64::INFINITY, |b| b.0);
            let mut worst: f64 = 0.0;
            let mut since = f64::INFINITY;
            for (i, p) in recorded.iter().enumerate() {
                if i > 0 {
                    let q = recorded[i - 1];
                    since += crate::geometry::norm(p[0] - q[0], p[1] - q[1]);
                }
                if since < 2.0 && i + 1 < recorded.len() {
                    continue;
                }
                since = 0.0;
                worst = worst.max(line.project(*p).0);
                if worst > bound {
                    break;
                }
            }
            let len = line.length();
            if best.as_ref().is_none_or(|b| (worst, len) < (b.0, b.1)) {
                best = Some((worst, len, pts));
            }
        }
    }
    // The route ends where the recording's last pose on a lane projects onto it.
    let (_, _, pts) = best?;
    let line = Polyline::new(pts.clone())?;
    let end = recorded.last().copied().unwrap_or([start.x, start.y]);
    let s_end = line.project(end).1;
    let mut cut: Vec<[f64; 2]> = pts
        .iter()
        .zip(line.cum())
        .filter(|(_, c)| **c < s_end)
        .map(|(p, _)| *p)
        .collect();
    cut.push(line.at(s_end).0);
    (cut.len() >= 2).then_some(cut)
}

/// The rules along `line`: the speed limit of the lane it is on every [`LIMIT_STEP_M`] (a rule
/// where it changes), and every stop line it passes within half the line's width, heading along
/// it.
fn rules_along(
    line: &Polyline,
    scene: &Scene,
    locator: &LaneLocator,
    rules: &crate::metrics::traffic_rules::TrafficRules,
) -> Vec<PathRule> {
    let lanes = &scene.map.lanes;
    let mut out = Vec::new();
    if lanes.iter().any(|l| l.speed_limit_mps.is_some()) {
        let mut current: Option<f64> = None;
        let mut s = 0.0;
        while s <= line.length() {
            let (p, h) = line.at(s);
            let limit = locator
                .candidates(p, h, ROUTE_LANE_MAX_M, std::f64::consts::FRAC_PI_2)
                .first()
                .and_then(|c| lanes[c.0].speed_limit_mps);
            if let Some(l) = limit.filter(|l| current != Some(*l)) {
                out.push(PathRule::Limit { s, mps: l });
                current = Some(l);
            }
            s += LIMIT_STEP_M;
        }
    }
    for (k, l) in rules.lines.iter().enumerate() {
        let (d, s) = line.project(l.p);
        let (_, h) = line.at(s);
        let aligned = h.cos() * l.dir[0] + h.sin() * l.dir[1] >= STOP_ALIGN_COS;
        if d <= l.half_width && aligned && s > 0.0 && s < line.length() {
            out.push(PathRule::Stop { s, line: k });
        }
    }
    out.sort_by(|a, b| a.s().total_cmp(&b.s()));
    out
}

/// `track`'s route from `start_us` (see [`SceneCtx::route`]): the lane route, else the recorded
/// path; extended straight by [`PATH_EXTENSION_M`]; with its rules and the recorded top speed.
fn route_of(
    scene: &Scene,
    locator: &LaneLocator,
    track: &Track,
    start_us: i64,
    rules: &crate::metrics::traffic_rules::TrafficRules,
) -> Option<Route> {
    let ts = &scene.timestamps_us;
    let first = sample(track, ts, start_us)?;
    let (recorded, top) = path_points(track, ts, start_us, first);
    let lane = lane_route(scene, locator, track, first, &recorded);
    let on_lanes = lane.is_some();
    let mut pts = lane.unwrap_or(recorded);
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
    let line = Polyline::new(pts)?;
    let rules = rules_along(&line, scene, locator, rules);
    Some(Route {
        line,
        top_speed: top,
        rules,
        on_lanes,
    })
}

/// The recorded positions of `track` from `start_us` on (from `first`, its sample then) and its
/// recorded top speed.
fn path_points(track: &Track, ts: &[i64], start_us: i64, first: Sample) -> (Vec<[f64; 2]>, f64) {
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
    (pts, top)
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
        let rules = crate::metrics::traffic_rules::TrafficRules::new(&scene);
        let locator = LaneLocator::new(&scene.map.lanes);
        let route = route_of(&scene, &locator, &scene.ego, start_us, &rules);
        let ego_top_speed = route.as_ref().map_or(0.0, |r| r.top_speed);
        let agent_paths = scene
            .agents
            .iter()
            .map(|a| {
                // Parked vehicles (recorded top speed below IDM_MIN_SPEED_MPS) replay: no route.
                let moving = (0..ts.len())
                    .filter(|&i| ts[i] >= start_us && a.valid[i])
                    .any(|i| crate::geometry::norm(a.vx[i], a.vy[i]) >= IDM_MIN_SPEED_MPS);
                (a.class == AgentClass::Vehicle && moving)
                    .then(|| route_of(&scene, &locator, a, start_us, &rules))
                    .flatten()
                    .filter(|r| r.top_speed >= IDM_MIN_SPEED_MPS)
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
            rules,
            ego_params: VehicleParams::for_length(scene.ego.length_m),
            route,
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
    /// Rules of its route whose stop signs the agent has stopped at (see `sim::idm`'s
    /// `route_constraints`).
    pub a_cleared: Vec<u32>,
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
                let top = path.map_or(0.0, |p| p.top_speed);
                st.a_v0
                    .push((top * (1.0 + fv * p.agent_speed_sigma_frac)).max(0.1 * top));
                st.a_headway.push(
                    (idm_defaults::HEADWAY_S * (1.0 + fh * p.agent_headway_sigma_frac)).max(0.5),
                );
                st.a_cleared.push(0);
            }
            st.agent_start.push(st.a_track.len());
        }
        st
    }
}
