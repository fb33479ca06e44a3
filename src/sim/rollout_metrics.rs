//! The rollout metrics ([`crate::metrics::rollout_table`]) of one finished rollout, from its
//! trace and scene: the peers' whole-trajectory statistics that nuPlan, NAVSIM, the CARLA
//! leaderboard and Waymax score with. Computed on the host after the rollout for every backend
//! (the trace holds the same poses and step metrics whichever backend stepped it), and again by
//! `evaluate` from a log. Each definition, its source and how drivekit's differs: docs/scores.md.
//!
//! Everything is measured from the first driven step (`eval_relevant`) to the end; collisions
//! are classified when they start, as the per-step metrics do, with nuPlan's fault rule for side
//! contacts (at fault only while the ego is between lanes or off them).

use crate::geometry::{norm, wrap_angle, OrientedBox};
use crate::metrics::comfort::ComfortLimits;
use crate::metrics::ego_step::{
    classify, rear_axle, CollisionClass, TrackBox, REAR_AXLE_BEHIND_CENTRE_FRAC,
};
use crate::metrics::nuplan_comfort::{ComfortSignals, EgoSeries};
use crate::metrics::rollout_table::{rindex, N_ROLLOUT_METRICS};
use crate::metrics::table::{index, N_METRICS};
use crate::metrics::ttc::{self, Mover, TtcParams};
use crate::metrics::waymax;
use crate::rollout::trace::RolloutTrace;
use crate::scene::AgentClass;
use crate::state::SceneCtx;

/// nuPlan's progress threshold (m, `score_progress_threshold`).
pub const NUPLAN_PROGRESS_THRESHOLD_M: f64 = 2.0;
/// nuPlan's `ego_is_making_progress` ratio.
pub const NUPLAN_MAKING_PROGRESS_RATIO: f64 = 0.2;
/// nuPlan's `least_min_ttc` (s).
pub const NUPLAN_LEAST_MIN_TTC_S: f64 = 0.95;
/// nuPlan's speed-limit normaliser (m/s, `max_overspeed_value_threshold`).
pub const NUPLAN_MAX_OVERSPEED_MPS: f64 = 2.23;
/// NAVSIM's TTC projection times (s): `np.arange(0, 10, 3)` steps of 0.1 s.
pub const NAVSIM_TTC_TIMES_S: [f64; 4] = [0.0, 0.3, 0.6, 0.9];
/// NAVSIM's stopped-ego speed for TTC (m/s).
pub const NAVSIM_STOPPED_MPS: f64 = 5e-3;
/// NAVSIM v2's lane-keeping limit (m) and window (s).
pub const NAVSIM_LANE_KEEPING_M: f64 = 0.5;
/// NAVSIM v2's lane-keeping window (s).
pub const NAVSIM_LANE_KEEPING_S: f64 = 2.0;
/// CARLA's ActorBlockedTest speed (m/s) and time (s).
pub const CARLA_BLOCKED_MPS: f64 = 0.1;
/// CARLA's ActorBlockedTest time (s).
pub const CARLA_BLOCKED_S: f64 = 180.0;
/// CARLA's InRouteTest distances (m): off route at once, and counted as away.
pub const CARLA_OFFROUTE_MAX_M: f64 = 30.0;
/// CARLA's InRouteTest distance counted as away from the route (m).
pub const CARLA_OFFROUTE_MIN_M: f64 = 15.0;
/// CARLA's InRouteTest share of the route driven away that ends it (%).
pub const CARLA_MAX_ROUTE_PERCENTAGE: f64 = 30.0;
/// CARLA's MinimumSpeedRouteTest checkpoints.
pub const CARLA_MIN_SPEED_CHECKPOINTS: usize = 4;
/// CARLA's OutsideRouteLanesTest: a lane against the ego's heading by more than this (deg).
pub const CARLA_MAX_VEHICLE_ANGLE_DEG: f64 = 120.0;
/// nuPlan's object groups for collisions (`collision_utils.py`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    Vru,
    Vehicle,
    Object,
}

fn group(c: AgentClass) -> Group {
    match c {
        AgentClass::Pedestrian | AgentClass::Cyclist => Group::Vru,
        AgentClass::Vehicle => Group::Vehicle,
        AgentClass::Static | AgentClass::Other => Group::Object,
    }
}

/// Bounding-circle radius of a box.
fn radius(length: f64, width: f64) -> f64 {
    0.5 * norm(length, width)
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// One collision, when it started.
struct Contact {
    step: usize,
    agent: usize,
    class: CollisionClass,
    /// The ego between lanes or off them at that step (nuPlan's fault rule for side contacts).
    between_lanes: bool,
    /// The first contact with this agent (nuPlan and NAVSIM count each track once).
    first: bool,
}

impl Contact {
    fn nuplan_at_fault(&self) -> bool {
        match self.class {
            CollisionClass::Front | CollisionClass::StoppedTrack { .. } => true,
            CollisionClass::Lateral => self.between_lanes,
            CollisionClass::StoppedEgo | CollisionClass::Rear => false,
        }
    }
}

/// The rollout metrics of `trace` (NaN where one does not apply), in the rollout table's order.
pub fn rollout_metrics(ctx: &SceneCtx, trace: &RolloutTrace) -> Vec<f64> {
    let mut out = vec![f64::NAN; N_ROLLOUT_METRICS];
    let n = trace.times_us.len();
    if n == 0 || trace.metrics.len() != n * N_METRICS {
        return out;
    }
    let m = |k: usize, i: usize| trace.metrics[k * N_METRICS + i];
    let k0 = (0..n)
        .find(|&k| m(k, index::EVAL_RELEVANT) > 0.0)
        .unwrap_or(0);
    let agents = &ctx.scene.agents;
    let n_agents = agents.len();
    if trace.agents.len() != n * n_agents {
        return out;
    }
    let ego = &ctx.scene.ego;
    let ego_box = |k: usize| OrientedBox {
        x: trace.ego[k][0],
        y: trace.ego[k][1],
        yaw: trace.ego[k][2],
        length: ego.length_m,
        width: ego.width_m,
    };
    let agent_box = |k: usize, j: usize| -> Option<TrackBox> {
        let p = trace.agents[k * n_agents + j];
        (!p[0].is_nan()).then(|| TrackBox {
            id: j,
            bx: OrientedBox {
                x: p[0],
                y: p[1],
                yaw: p[2],
                length: agents[j].length_m,
                width: agents[j].width_m,
            },
            speed: p[3],
            is_static: agents[j].class == AgentClass::Static,
        })
    };
    let dt_s = if n > 1 {
        (trace.times_us[n - 1] - trace.times_us[0]) as f64 / 1e6 / (n - 1) as f64
    } else {
        0.1
    };
    let offroad_at = |k: usize| m(k, index::OFFROAD) > 0.0;

    // Where the ego is on the lanes, per step.
    let lanes = ctx.lanes.as_ref();
    let between_lanes: Vec<bool> = (0..n)
        .map(|k| {
            lanes.is_some_and(|l| !l.in_common_or_connected(&ego_box(k).corners())) || offroad_at(k)
        })
        .collect();
    let rear_in_intersection: Vec<bool> = (0..n)
        .map(|k| {
            lanes.is_some_and(|l| {
                l.containing(rear_axle(&ego_box(k)))
                    .iter()
                    .any(|&i| l.is_intersection(i))
            })
        })
        .collect();

    // Collisions, replayed from the start so contacts under way at the first driven step keep
    // their class.
    let mut contacts: Vec<Contact> = Vec::new();
    let mut ongoing: Vec<usize> = Vec::new();
    // The step of each agent's first contact: it counts as collided from then on.
    let mut first_contact: Vec<Option<usize>> = vec![None; n_agents];
    let mut overlap_any = false;
    let ego_r = radius(ego.length_m, ego.width_m);
    let agent_r: Vec<f64> = agents
        .iter()
        .map(|a| radius(a.length_m, a.width_m))
        .collect();
    let mut now = Vec::new();
    #[allow(clippy::needless_range_loop)] // k indexes the trace and the per-step lane flags
    for k in 0..n {
        let eb = ego_box(k);
        now.clear();
        for (j, &r) in agent_r.iter().enumerate() {
            let Some(t) = agent_box(k, j) else { continue };
            // Boxes whose bounding circles are apart cannot overlap.
            if norm(t.bx.x - eb.x, t.bx.y - eb.y) > ego_r + r || !eb.overlaps(&t.bx) {
                continue;
            }
            now.push(j);
            if k >= k0 {
                overlap_any = true;
            }
            if !ongoing.contains(&j) {
                contacts.push(Contact {
                    step: k,
                    agent: j,
                    class: classify(&eb, trace.ego[k][3], &t),
                    between_lanes: between_lanes[k],
                    first: first_contact[j].is_none(),
                });
                first_contact[j].get_or_insert(k);
            }
        }
        std::mem::swap(&mut ongoing, &mut now);
    }
    let collided_at = |k: usize, j: usize| first_contact[j].is_some_and(|s| s <= k);
    let counted: Vec<&Contact> = contacts.iter().filter(|c| c.step >= k0).collect();

    // nuPlan's no_ego_at_fault_collisions.
    let mut groups = [0u32; 3];
    for c in counted.iter().filter(|c| c.first && c.nuplan_at_fault()) {
        groups[group(agents[c.agent].class) as usize] += 1;
    }
    let class_score = |n: u32, threshold: f64| (1.0 - f64::from(n) / (threshold + 1.0)).max(0.0);
    out[rindex::NUPLAN_NO_EGO_AT_FAULT_COLLISIONS] = if groups.iter().all(|&g| g == 0) {
        1.0
    } else {
        class_score(groups[0], 0.0) * class_score(groups[1], 0.0) * class_score(groups[2], 1.0)
    };
    // NAVSIM's NC: the lowest score of the at-fault first contacts.
    out[rindex::NAVSIM_NO_AT_FAULT_COLLISIONS] = counted
        .iter()
        .filter(|c| c.first && c.nuplan_at_fault())
        .map(|c| match agents[c.agent].class {
            AgentClass::Vehicle | AgentClass::Pedestrian | AgentClass::Cyclist => 0.0,
            AgentClass::Static | AgentClass::Other => 0.5,
        })
        .fold(1.0, f64::min);

    // Drivable area, driving direction (step metrics over the driven steps).
    let driven = k0..n;
    let applies = |i: usize| driven.clone().any(|k| !m(k, i).is_nan());
    if applies(index::OFFROAD) {
        let off = driven.clone().any(offroad_at);
        out[rindex::NUPLAN_DRIVABLE_AREA_COMPLIANCE] = flag(!off);
        out[rindex::WAYMAX_OFFROAD] = flag(off);
    }
    if applies(index::DRIVING_DIRECTION_COMPLIANCE) {
        out[rindex::NUPLAN_DRIVING_DIRECTION_COMPLIANCE] = driven
            .clone()
            .map(|k| m(k, index::DRIVING_DIRECTION_COMPLIANCE))
            .filter(|v| !v.is_nan())
            .fold(1.0, f64::min);
    }
    out[rindex::WAYMAX_OVERLAP] = flag(overlap_any);

    // Progress along the recorded ego's path.
    let last = n - 1;
    if !m(k0, index::PROGRESS).is_nan() && !m(last, index::PROGRESS).is_nan() {
        let ego_p = m(last, index::PROGRESS) - m(k0, index::PROGRESS);
        out[rindex::EGO_ROUTE_PROGRESS_M] = ego_p;
        let expert = m(last, index::GT_DIST_TRAVELED_M) - m(k0, index::GT_DIST_TRAVELED_M);
        if !expert.is_nan() {
            out[rindex::EXPERT_ROUTE_PROGRESS_M] = expert;
            let th = NUPLAN_PROGRESS_THRESHOLD_M;
            let ratio = if ego_p < -th {
                0.0
            } else {
                (ego_p.max(th) / expert.max(th)).min(1.0)
            };
            out[rindex::NUPLAN_EGO_PROGRESS_ALONG_EXPERT_ROUTE] = ratio;
            out[rindex::NUPLAN_EGO_IS_MAKING_PROGRESS] =
                flag(ratio >= NUPLAN_MAKING_PROGRESS_RATIO);
        }
        out[rindex::WAYMAX_ROUTE_PROGRESS_RATIO] = m(last, index::PROGRESS_REL_TO_TOTAL);
    }

    // nuPlan's TTC with its full track admission.
    let p = TtcParams::default();
    let at_fault_steps: Vec<usize> = counted
        .iter()
        .filter(|c| c.first && c.nuplan_at_fault())
        .map(|c| c.step)
        .collect();
    let mut ttc_ok = true;
    let mut movers: Vec<Mover> = Vec::with_capacity(n_agents);
    for k in driven.clone() {
        let eb = ego_box(k);
        let ego_speed = trace.ego[k][3].abs();
        movers.clear();
        // Tracks that cannot reach the ego within the horizon (bounding circles moving at their
        // speeds) cannot collide with it: nuPlan's swept-box filter drops them too.
        movers.extend(
            (0..n_agents)
                .filter(|&j| !collided_at(k, j))
                .filter_map(|j| agent_box(k, j).map(|t| (j, t)))
                .filter(|(j, t)| {
                    let reach = (ego_speed + t.speed.abs()) * p.horizon_s + ego_r + agent_r[*j];
                    norm(t.bx.x - eb.x, t.bx.y - eb.y) <= reach
                })
                .map(|(_, t)| Mover {
                    bx: t.bx,
                    speed: if t.is_static { 0.0 } else { t.speed },
                }),
        );
        let ttc = ttc::time_to_collision_admitting(
            &Mover {
                bx: eb,
                speed: trace.ego[k][3],
            },
            rear_axle(&eb),
            &movers,
            at_fault_steps.contains(&k),
            between_lanes[k] || rear_in_intersection[k],
            &p,
        );
        if ttc <= NUPLAN_LEAST_MIN_TTC_S {
            ttc_ok = false;
            break;
        }
    }
    out[rindex::NUPLAN_TIME_TO_COLLISION_WITHIN_BOUND] = flag(ttc_ok);

    // NAVSIM's TTC: the ego moved on at constant velocity, the tracks where they really are then.
    let mut navsim_ttc_ok = true;
    'steps: for k in driven.clone() {
        let speed = trace.ego[k][3];
        if speed < NAVSIM_STOPPED_MPS {
            continue;
        }
        let eb = ego_box(k);
        let axle = rear_axle(&eb);
        let (s, c) = eb.yaw.sin_cos();
        for t in NAVSIM_TTC_TIMES_S {
            let kf = k + (t / dt_s).round() as usize;
            if kf >= n {
                break;
            }
            let moved = OrientedBox {
                x: eb.x + c * speed * t,
                y: eb.y + s * speed * t,
                ..eb
            };
            for j in (0..n_agents).filter(|&j| !collided_at(k, j)) {
                let Some(a) = agent_box(kf, j) else { continue };
                let centre = [a.bx.x, a.bx.y];
                if norm(centre[0] - moved.x, centre[1] - moved.y) > ego_r + agent_r[j] {
                    continue;
                }
                let admitted = ttc::is_ahead(axle, eb.yaw, centre)
                    || ((between_lanes[k] || rear_in_intersection[k])
                        && !ttc::is_behind(axle, eb.yaw, centre));
                if admitted && moved.overlaps(&a.bx) {
                    navsim_ttc_ok = false;
                    break 'steps;
                }
            }
        }
    }
    out[rindex::NAVSIM_TIME_TO_COLLISION_WITHIN_BOUND] = flag(navsim_ttc_ok);

    // nuPlan's speed-limit compliance.
    if applies(index::SPEED_LIMIT_VIOLATION) {
        let over: Vec<f64> = driven
            .clone()
            .map(|k| m(k, index::SPEED_LIMIT_VIOLATION))
            .map(|v| if v.is_nan() { 0.0 } else { v })
            .collect();
        let t = &trace.times_us[k0..];
        let duration = (t[t.len() - 1] - t[0]) as f64 * 1e-6;
        out[rindex::NUPLAN_SPEED_LIMIT_COMPLIANCE] =
            if over.iter().all(|&v| v == 0.0) || duration <= 0.0 {
                1.0
            } else {
                let dt = duration / (t.len() - 1) as f64;
                let loss =
                    over.iter().sum::<f64>() * dt / (NUPLAN_MAX_OVERSPEED_MPS.max(1e-3) * duration);
                (1.0 - loss).max(0.0)
            };
    }

    // nuPlan's comfort over the driven states.
    if let Ok(signals) = ComfortSignals::of(&ego_series(ctx, trace, k0)) {
        out[rindex::NUPLAN_EGO_IS_COMFORTABLE] =
            flag(signals.is_comfortable(&ComfortLimits::default()));
    }

    // NAVSIM v2's traffic lights and lane keeping.
    out[rindex::NAVSIM_TRAFFIC_LIGHT_COMPLIANCE] =
        flag(!driven.clone().any(|k| m(k, index::RAN_RED_LIGHT) > 0.0));
    if let Some(route) = ctx.route.as_ref() {
        let needed = (NAVSIM_LANE_KEEPING_S / dt_s - 1e-9).ceil().max(1.0) as usize;
        let mut run = 0usize;
        let mut kept = true;
        for k in driven.clone() {
            let e = trace.ego[k];
            let in_intersection = lanes.is_some_and(|l| {
                l.locate([e[0], e[1]], e[2])
                    .is_some_and(|(i, _, _)| l.is_intersection(i))
            });
            if in_intersection {
                continue;
            }
            if route.line.project([e[0], e[1]]).0 > NAVSIM_LANE_KEEPING_M {
                run += 1;
            } else {
                run = 0;
            }
            if run >= needed {
                kept = false;
                break;
            }
        }
        out[rindex::NAVSIM_LANE_KEEPING] = flag(kept);
    }

    carla(ctx, trace, k0, &counted, &mut out);
    waymax(trace, k0, dt_s, &mut out);
    out
}

/// The ego states nuPlan's comfort metrics read, from the driven steps: the heading, the
/// rear-axle acceleration as the speed's forward difference (what the kinematic bicycle applied
/// over the step) with no lateral part (nuPlan's kinematic bicycle sets it to 0), and the centre's
/// longitudinal acceleration shifted from the rear axle as nuPlan's `get_acceleration_shifted`
/// does (`+ d·(ω² + α)`, ω and α the heading's forward differences).
pub fn ego_series(ctx: &SceneCtx, trace: &RolloutTrace, k0: usize) -> EgoSeries {
    let e = &trace.ego[k0..];
    let t = &trace.times_us[k0..];
    let n = e.len();
    let fwd = |v: &dyn Fn(usize) -> f64| -> Vec<f64> {
        (0..n)
            .map(|k| {
                let k = k.min(n.saturating_sub(2));
                if n < 2 {
                    0.0
                } else {
                    (v(k + 1) - v(k)) / ((t[k + 1] - t[k]) as f64 / 1e6)
                }
            })
            .collect()
    };
    let accel = fwd(&|k| e[k][3]);
    let omega = {
        let unwrapped = crate::metrics::nuplan_comfort::phase_unwrap(
            &e.iter().map(|s| s[2]).collect::<Vec<_>>(),
        );
        fwd(&|k| unwrapped[k])
    };
    let alpha = fwd(&|k| omega[k]);
    let d = REAR_AXLE_BEHIND_CENTRE_FRAC * ctx.scene.ego.length_m;
    EgoSeries {
        time_us: t.to_vec(),
        heading: e.iter().map(|s| s[2]).collect(),
        center_accel_x: (0..n)
            .map(|k| accel[k] + d * (omega[k] * omega[k] + alpha[k]))
            .collect(),
        center_accel_y: vec![0.0; n],
        accel_magnitude: accel.iter().map(|a| a.abs()).collect(),
    }
}

/// The CARLA leaderboard's route criteria: completion until the route ends (blocked, deviated),
/// collisions by class (every new contact, any fault), red lights and stop signs run, distance
/// outside the lanes, and route quarters driven slower than the traffic.
fn carla(ctx: &SceneCtx, trace: &RolloutTrace, k0: usize, counted: &[&Contact], out: &mut [f64]) {
    let n = trace.times_us.len();
    let m = |k: usize, i: usize| trace.metrics[k * N_METRICS + i];
    let mut end = n;
    let mut blocked_since: Option<i64> = None;
    let mut away_m = 0.0;
    let route_len = ctx
        .gt_path
        .as_ref()
        .map(|p| p.length() - ctx.gt_start_m)
        .unwrap_or(0.0);
    let (mut blocked, mut deviated) = (false, false);
    for k in k0..n {
        let t = trace.times_us[k];
        if trace.ego[k][3] < CARLA_BLOCKED_MPS {
            let since = *blocked_since.get_or_insert(t);
            if (t - since) as f64 / 1e6 > CARLA_BLOCKED_S {
                blocked = true;
            }
        } else {
            blocked_since = None;
        }
        let d = m(k, index::DIST_TO_GT_TRAJECTORY);
        if k > k0 && d >= CARLA_OFFROUTE_MIN_M {
            let adv = m(k, index::PROGRESS) - m(k - 1, index::PROGRESS);
            if adv > 0.0 {
                away_m += adv;
            }
        }
        if d >= CARLA_OFFROUTE_MAX_M
            || (route_len > 0.0 && 100.0 * away_m / route_len > CARLA_MAX_ROUTE_PERCENTAGE)
        {
            deviated = true;
        }
        if blocked || deviated {
            end = k + 1;
            break;
        }
    }
    out[rindex::CARLA_AGENT_BLOCKED] = flag(blocked);
    out[rindex::CARLA_ROUTE_DEVIATION] = flag(deviated);
    let rc = (k0..end)
        .map(|k| m(k, index::PROGRESS_REL_TO_TOTAL))
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, f64::max);
    if !rc.is_nan() {
        out[rindex::CARLA_ROUTE_COMPLETION] = (100.0 * rc).clamp(0.0, 100.0);
    }
    let (mut ped, mut veh, mut layout) = (0.0, 0.0, 0.0);
    for c in counted.iter().filter(|c| c.step < end) {
        match ctx.scene.agents[c.agent].class {
            AgentClass::Pedestrian => ped += 1.0,
            AgentClass::Vehicle | AgentClass::Cyclist => veh += 1.0,
            AgentClass::Static | AgentClass::Other => layout += 1.0,
        }
    }
    out[rindex::CARLA_COLLISIONS_PEDESTRIAN] = ped;
    out[rindex::CARLA_COLLISIONS_VEHICLE] = veh;
    out[rindex::CARLA_COLLISIONS_LAYOUT] = layout;
    let onsets = |i: usize| {
        (k0..end)
            .filter(|&k| m(k, i) > 0.0 && (k == 0 || m(k - 1, i).is_nan() || m(k - 1, i) <= 0.0))
            .count() as f64
    };
    out[rindex::CARLA_RED_LIGHT] = onsets(index::RAN_RED_LIGHT);
    out[rindex::CARLA_STOP_SIGN] = onsets(index::RAN_STOP_SIGN);
    if let Some(lanes) = ctx.lanes.as_ref() {
        let (mut total, mut wrong) = (0.0, 0.0);
        for k in (k0 + 1)..end {
            let (a, b) = (trace.ego[k - 1], trace.ego[k]);
            let step = norm(b[0] - a[0], b[1] - a[1]);
            total += step;
            let outside = match lanes.locate([b[0], b[1]], b[2]) {
                None => true,
                Some((_, _, h)) => {
                    wrap_angle(b[2] - h).abs() > CARLA_MAX_VEHICLE_ANGLE_DEG.to_radians()
                }
            };
            if outside {
                wrong += step;
            }
        }
        out[rindex::CARLA_OUTSIDE_ROUTE_LANES] = if total > 0.0 {
            100.0 * wrong / total
        } else {
            0.0
        };
    }
    // Minimum speed: per route quarter, the ego's mean speed over the mean speed of the other
    // vehicles present (ticks without any are skipped); under 100 % is an infraction.
    let agents = &ctx.scene.agents;
    let n_agents = agents.len();
    let (mut ego_sum, mut bg_sum, mut ticks) = (0.0, 0.0, 0usize);
    let mut checkpoint = 1usize;
    let mut infractions = 0.0;
    let mut close = |ego_sum: &mut f64, bg_sum: &mut f64, ticks: &mut usize| {
        let value = if *ticks == 0 || *bg_sum <= 0.0 {
            100.0
        } else {
            ((*ego_sum / *ticks as f64) / (*bg_sum / *ticks as f64) * 100.0 * 100.0).round() / 100.0
        };
        if value < 100.0 {
            infractions += 1.0;
        }
        (*ego_sum, *bg_sum, *ticks) = (0.0, 0.0, 0);
    };
    let mut last_progress = 0.0;
    for k in k0..end {
        let speeds: Vec<f64> = (0..n_agents)
            .filter(|&j| agents[j].class == AgentClass::Vehicle)
            .map(|j| trace.agents[k * n_agents + j])
            .filter(|p| !p[0].is_nan())
            .map(|p| p[3].abs())
            .collect();
        if !speeds.is_empty() {
            ego_sum += trace.ego[k][3].abs();
            bg_sum += speeds.iter().sum::<f64>() / speeds.len() as f64;
            ticks += 1;
        }
        let progress = m(k, index::PROGRESS_REL_TO_TOTAL);
        if !progress.is_nan() {
            last_progress = progress;
            while checkpoint <= CARLA_MIN_SPEED_CHECKPOINTS
                && progress >= checkpoint as f64 / CARLA_MIN_SPEED_CHECKPOINTS as f64
            {
                close(&mut ego_sum, &mut bg_sum, &mut ticks);
                checkpoint += 1;
            }
        }
    }
    if checkpoint <= CARLA_MIN_SPEED_CHECKPOINTS && last_progress > 0.95 {
        close(&mut ego_sum, &mut bg_sum, &mut ticks);
    }
    out[rindex::CARLA_MIN_SPEED_INFRACTIONS] = infractions;
}

/// Waymax's SDC metrics: mean log divergence, kinematic infeasibility by its inverse bicycle model.
fn waymax(trace: &RolloutTrace, k0: usize, dt_s: f64, out: &mut [f64]) {
    let n = trace.times_us.len();
    let d: Vec<f64> = (k0..n)
        .map(|k| trace.metrics[k * N_METRICS + index::DIST_TO_GT_LOCATION])
        .filter(|v| !v.is_nan())
        .collect();
    if !d.is_empty() {
        out[rindex::WAYMAX_LOG_DIVERGENCE] = d.iter().sum::<f64>() / d.len() as f64;
    }
    let mut infeasible = false;
    for k in (k0 + 1)..n {
        let (a, b) = (trace.ego[k - 1], trace.ego[k]);
        let dt = (trace.times_us[k] - trace.times_us[k - 1]) as f64 / 1e6;
        let dt = if dt > 0.0 { dt } else { dt_s };
        let (accel, steering) = waymax::inverse_bicycle(a[3], a[2], b[3], b[2], dt);
        if waymax::infeasible(accel, steering) {
            infeasible = true;
            break;
        }
    }
    out[rindex::WAYMAX_KINEMATIC_INFEASIBILITY] = flag(infeasible);
}
