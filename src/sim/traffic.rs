//! The traffic service: the other agents. Log replay puts every agent where its recording says;
//! IDM traffic drives the vehicles observed at the start along their routes — the lane-graph
//! route from their start lane to the lane their recording ends on, else their recorded path —
//! under the Intelligent Driver Model (as Waymax's IDM route policy does), reacting to the ego
//! and to each other, keeping to the lanes' speed limits and stopping for red lights and at stop
//! signs, while pedestrians, cyclists, static objects, parked cars and late arrivals replay.

use super::idm::{self, Body};
use super::services::TrafficService;
use crate::state::{BatchState, SceneCtx};

/// Which traffic model moves the other agents (a command-line value: `log-replay`, `idm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Traffic {
    /// Every agent follows its recording.
    #[default]
    LogReplay,
    /// Vehicles follow their recorded paths under IDM, reacting to the ego and each other; the
    /// rest replay.
    Idm,
}

impl Traffic {
    /// The service implementing this model.
    pub fn service(self) -> &'static dyn TrafficService {
        match self {
            Traffic::LogReplay => &LogReplayTraffic,
            Traffic::Idm => &IdmTraffic,
        }
    }
}

/// How far ahead (m) an IDM agent's heading looks along its path.
pub const HEADING_LOOKAHEAD_M: f64 = 2.0;

/// Every agent follows its recording.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogReplayTraffic;

fn replay(st: &mut BatchState, ctx: &SceneCtx, a: usize, t_us: i64) {
    match ctx.recorded(Some(st.a_track[a] as usize), t_us) {
        Some(s) => {
            st.a_valid[a] = true;
            st.a_x[a] = s.x;
            st.a_y[a] = s.y;
            st.a_yaw[a] = s.yaw;
            st.a_speed[a] = s.speed();
        }
        None => st.a_valid[a] = false,
    }
}

impl TrafficService for LogReplayTraffic {
    fn name(&self) -> &'static str {
        "log-replay"
    }
    fn reactive(&self) -> bool {
        false
    }
    fn advance(&self, st: &mut BatchState, scenes: &[SceneCtx], dt_us: i64) {
        for r in 0..st.len() {
            if !st.alive[r] {
                continue;
            }
            let ctx = &scenes[st.scene[r] as usize];
            let t = st.t_us[r] + dt_us;
            for a in st.agents(r) {
                replay(st, ctx, a, t);
            }
        }
    }
}

/// IDM vehicles, the rest replayed.
#[derive(Debug, Clone, Copy, Default)]
pub struct IdmTraffic;

impl TrafficService for IdmTraffic {
    fn name(&self) -> &'static str {
        "idm"
    }
    fn reactive(&self) -> bool {
        true
    }
    fn advance(&self, st: &mut BatchState, scenes: &[SceneCtx], dt_us: i64) {
        let dt_s = dt_us as f64 / 1e6;
        let mut accel: Vec<f64> = Vec::new();
        let mut bodies: Vec<Body> = Vec::new();
        for r in 0..st.len() {
            if !st.alive[r] {
                continue;
            }
            let ctx = &scenes[st.scene[r] as usize];
            let agents = st.agents(r);
            // Everyone present, the ego last; accelerations first, then everyone moves.
            bodies.clear();
            let mut index = Vec::with_capacity(agents.len());
            for a in agents.clone() {
                index.push(bodies.len());
                if st.a_valid[a] {
                    bodies.push(idm::agent_body(st, a));
                }
            }
            bodies.push(idm::ego_body(st, r, ctx));
            accel.clear();
            let ti = crate::metrics::traffic_rules::ts_index(&ctx.scene.timestamps_us, st.t_us[r]);
            for (i, a) in agents.clone().enumerate() {
                if !(st.a_idm[a] && st.a_valid[a]) {
                    accel.push(0.0);
                    continue;
                }
                let me = &bodies[index[i]];
                let others = bodies
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != index[i])
                    .map(|(_, b)| b);
                let (mut limit, mut stop) = (f64::INFINITY, None);
                if let Some(route) = ctx.agent_paths[st.a_track[a] as usize].as_ref() {
                    (limit, stop) = idm::route_constraints(
                        route,
                        &ctx.rules,
                        st.a_s[a],
                        me.len / 2.0,
                        me.speed,
                        ti,
                        &mut st.a_cleared[a],
                    );
                }
                let lead = idm::nearest_leader(idm::leader(me, others), stop);
                accel.push(idm::acceleration(
                    me.speed,
                    st.a_v0[a].min(limit),
                    st.a_headway[a],
                    lead,
                ));
            }
            let t = st.t_us[r] + dt_us;
            for (i, a) in agents.enumerate() {
                if !st.a_idm[a] {
                    replay(st, ctx, a, t);
                    continue;
                }
                let Some(path) = ctx.agent_paths[st.a_track[a] as usize]
                    .as_ref()
                    .map(|r| &r.line)
                else {
                    continue;
                };
                let v = st.a_speed[a];
                let v_next = (v + accel[i] * dt_s).max(0.0);
                st.a_s[a] += (v + v_next) / 2.0 * dt_s;
                st.a_speed[a] = v_next;
                let (p, segment_heading) = path.at(st.a_s[a]);
                st.a_x[a] = p[0];
                st.a_y[a] = p[1];
                // Heading along the chord to a point a little ahead: recorded paths are noisy,
                // and a segment's own heading jumps at every vertex.
                let (ahead, _) = path.at(st.a_s[a] + HEADING_LOOKAHEAD_M);
                let (dx, dy) = (ahead[0] - p[0], ahead[1] - p[1]);
                st.a_yaw[a] = if dx.hypot(dy) > 0.1 {
                    dy.atan2(dx)
                } else {
                    segment_heading
                };
            }
        }
    }
}
