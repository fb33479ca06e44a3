//! The evaluation service: every metric of DESIGN §3 per rollout and step, from the batch state
//! and the scene (collisions with nuPlan's classes, offroad, TTC, comfort, driving direction,
//! path distances, progress, speed over the lane's limit, red lights and stop signs run). What a metric needs from earlier steps lives in [`EvalMemory`].

use super::services::EvaluationService;
use crate::config::SimConfig;
use crate::geometry::OrientedBox;
use crate::metrics::comfort::{ComfortLimits, ComfortTracker};
use crate::metrics::direction::DirectionTracker;
use crate::metrics::ego_step::{self, ContactMemory, StepInput, TrackBox};
use crate::metrics::table::{index, N_METRICS};
use crate::metrics::ttc::TtcParams;
use crate::rollout::trace::RolloutTrace;
use crate::state::{BatchState, SceneCtx};

/// nuPlan's ego_is_making_progress threshold: progress along the expert route over the expert's.
pub const MAKING_PROGRESS_RATIO: f64 = 0.2;
/// Below this expert progress (m) every ego counts as making progress.
pub const MAKING_PROGRESS_MIN_EXPERT_M: f64 = 2.0;

/// What the metrics carry from step to step, per rollout.
#[derive(Debug, Clone, Default)]
pub struct EvalMemory {
    contacts: ContactMemory,
    comfort: ComfortTracker,
    direction: DirectionTracker,
    traveled_m: f64,
    prev: Option<[f64; 2]>,
    rules: crate::metrics::traffic_rules::RuleMemory,
}

/// The evaluation settings of a configuration, for every backend (the CPU [`Evaluator`] and the
/// CUDA kernels' arguments take them from here).
#[derive(Debug, Clone, Copy)]
pub struct EvalParams {
    /// TTC projection (`evaluation.ttc_step_s`, `evaluation.ttc_horizon_s`).
    pub ttc: TtcParams,
    /// nuPlan's comfort thresholds.
    pub comfort: ComfortLimits,
    /// Control step (s): the comfort derivatives' and driving direction's time base.
    pub dt_s: f64,
}

impl EvalParams {
    /// The settings of `cfg`.
    pub fn new(cfg: &SimConfig) -> EvalParams {
        EvalParams {
            ttc: TtcParams {
                step_s: cfg.drivekit.evaluation.ttc_step_s,
                horizon_s: cfg.drivekit.evaluation.ttc_horizon_s,
                ..TtcParams::default()
            },
            comfort: ComfortLimits::default(),
            dt_s: cfg.simulation.control_timestep_us as f64 / 1e6,
        }
    }
}

/// The CPU evaluation service.
#[derive(Debug, Clone, Copy)]
pub struct Evaluator {
    ttc: TtcParams,
    comfort: ComfortLimits,
    dt_s: f64,
}

impl Evaluator {
    /// With the configuration's evaluation settings ([`EvalParams`]).
    pub fn new(cfg: &SimConfig) -> Evaluator {
        let p = EvalParams::new(cfg);
        Evaluator {
            ttc: p.ttc,
            comfort: p.comfort,
            dt_s: p.dt_s,
        }
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl EvaluationService for Evaluator {
    fn evaluate(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        memory: &mut [EvalMemory],
        out: &mut [f64],
    ) {
        let mut tracks: Vec<TrackBox> = Vec::new();
        for r in (0..st.len()).filter(|&r| st.alive[r]) {
            let ctx = &scenes[st.scene[r] as usize];
            let mem = &mut memory[r];
            let t = st.t_us[r];
            let ego = OrientedBox {
                x: st.ego_x[r],
                y: st.ego_y[r],
                yaw: st.ego_yaw[r],
                length: ctx.scene.ego.length_m,
                width: ctx.scene.ego.width_m,
            };
            tracks.clear();
            tracks.extend(st.agents(r).filter(|&a| st.a_valid[a]).map(|a| TrackBox {
                id: st.a_track[a] as usize,
                bx: OrientedBox {
                    x: st.a_x[a],
                    y: st.a_y[a],
                    yaw: st.a_yaw[a],
                    length: st.a_len[a],
                    width: st.a_wid[a],
                },
                speed: st.a_speed[a],
                is_static: st.a_static[a],
            }));
            let recorded = ctx.recorded(None, t);
            let m = ego_step::step(
                &StepInput {
                    ego,
                    ego_speed: st.ego_speed[r],
                    tracks: &tracks,
                    drivable: &ctx.drivable,
                    gt_path: ctx.gt_path.as_ref(),
                    gt_here: recorded.map(|s| [s.x, s.y]),
                    ttc: &self.ttc,
                },
                &mut mem.contacts,
            );
            if let Some(p) = mem.prev {
                mem.traveled_m += crate::geometry::norm(ego.x - p[0], ego.y - p[1]);
            }
            mem.prev = Some([ego.x, ego.y]);
            let gt_len = ctx.gt_path.as_ref().map_or(0.0, |p| p.length()) - ctx.gt_start_m;
            let progress = m.progress_m.map(|s| s - ctx.gt_start_m);
            let gt_traveled = ctx
                .gt_path
                .as_ref()
                .zip(recorded)
                .map(|(p, s)| p.project([s.x, s.y]).1 - ctx.gt_start_m);
            let comfortable =
                mem.comfort
                    .push(st.ego_speed[r], st.ego_yaw[r], self.dt_s, &self.comfort);
            let direction = ctx.lanes.as_ref().map(|lanes| {
                mem.direction
                    .push(lanes, [ego.x, ego.y], ego.yaw, self.dt_s)
            });
            let ti = crate::metrics::traffic_rules::ts_index(&ctx.scene.timestamps_us, t);
            let (ran_red, ran_stop) = crate::metrics::traffic_rules::check(
                &ctx.rules,
                &mut mem.rules,
                [ego.x, ego.y],
                ego.yaw,
                ego.length,
                st.ego_speed[r],
                ti,
            );
            let over_limit = ctx
                .lanes
                .as_ref()
                .filter(|l| l.has_speed_limits())
                .and_then(|lanes| {
                    let (i, _, _) = lanes.locate([ego.x, ego.y], ego.yaw)?;
                    lanes
                        .speed_limit(i)
                        .map(|limit| (st.ego_speed[r] - limit).max(0.0))
                });
            let making_progress = match (progress, gt_traveled) {
                (Some(p), Some(g)) if g >= MAKING_PROGRESS_MIN_EXPERT_M => {
                    p / g >= MAKING_PROGRESS_RATIO
                }
                _ => true,
            };
            let nan = f64::NAN;
            let row = &mut out[r * N_METRICS..(r + 1) * N_METRICS];
            row[index::COLLISION_FRONT] = flag(m.collision_front);
            row[index::COLLISION_LATERAL] = flag(m.collision_lateral);
            row[index::COLLISION_REAR] = flag(m.collision_rear);
            row[index::COLLISION_ANY] = flag(m.collision_any);
            row[index::OFFROAD] = m.offroad.map_or(nan, flag);
            row[index::MIN_DISTANCE_TO_OBSTACLE_M] = m.min_distance_to_obstacle_m;
            row[index::DIST_TO_GT_TRAJECTORY] = m.dist_to_gt_trajectory.unwrap_or(nan);
            row[index::DIST_TO_GT_LOCATION] = m.dist_to_gt_location.unwrap_or(nan);
            row[index::PROGRESS] = progress.unwrap_or(nan);
            row[index::PROGRESS_REL_TO_TOTAL] =
                progress.map_or(nan, |p| if gt_len > 0.0 { p / gt_len } else { 1.0 });
            row[index::DIST_TRAVELED_M] = mem.traveled_m;
            row[index::GT_DIST_TRAVELED_M] = gt_traveled.unwrap_or(nan);
            row[index::PLAN_DEVIATION] =
                crate::geometry::norm(ego.x - st.plan_x[r], ego.y - st.plan_y[r]);
            row[index::EVAL_RELEVANT] = flag(t >= ctx.driven_from_us);
            row[index::TIME_TO_COLLISION_S] = m.time_to_collision_s;
            row[index::EGO_IS_COMFORTABLE] = flag(comfortable);
            row[index::DRIVING_DIRECTION_COMPLIANCE] = direction.unwrap_or(nan);
            row[index::EGO_IS_MAKING_PROGRESS] = flag(making_progress);
            row[index::SPEED_LIMIT_VIOLATION] = over_limit.unwrap_or(nan);
            row[index::RAN_RED_LIGHT] = if ctx.rules.has_signals() {
                flag(ran_red)
            } else {
                nan
            };
            row[index::RAN_STOP_SIGN] = if ctx.rules.has_stop_signs() {
                flag(ran_stop)
            } else {
                nan
            };
        }
    }
}

/// Scores a recorded trace (a replayed log, `crate::rollout::replay`) again: every step's state
/// through the evaluation service in order, as the simulator evaluated it, into `trace.metrics`
/// (replacing what it held). `index` is the rollout's index in its batch.
pub fn score_trace(ctx: &SceneCtx, cfg: &SimConfig, index: u32, trace: &mut RolloutTrace) {
    let scenes = std::slice::from_ref(ctx);
    let evaluator = Evaluator::new(cfg);
    let mut st = BatchState::new(scenes, &[(0, index)], cfg, false);
    let n_agents = st.a_track.len();
    let mut memory = [EvalMemory::default()];
    let mut values = [f64::NAN; N_METRICS];
    trace.metrics.clear();
    trace.metrics.reserve(trace.times_us.len() * N_METRICS);
    for (k, &t) in trace.times_us.iter().enumerate() {
        st.t_us[0] = t;
        let e = trace.ego[k];
        (st.ego_x[0], st.ego_y[0], st.ego_yaw[0], st.ego_speed[0]) = (e[0], e[1], e[2], e[3]);
        (st.plan_x[0], st.plan_y[0]) = (e[4], e[5]);
        for (a, p) in trace.agents[k * n_agents..(k + 1) * n_agents]
            .iter()
            .enumerate()
        {
            st.a_valid[a] = !p[0].is_nan();
            if st.a_valid[a] {
                (st.a_x[a], st.a_y[a], st.a_yaw[a], st.a_speed[a]) = (p[0], p[1], p[2], p[3]);
            }
        }
        st.alive[0] = true;
        evaluator.evaluate(&st, scenes, &mut memory, &mut values);
        trace.metrics.extend_from_slice(&values);
    }
}
