//! The traffic service: the other agents. Log replay puts every agent where its recording says;
//! IDM traffic drives the vehicles observed at the start along their recorded paths under the
//! Intelligent Driver Model (as Waymax's IDM route policy does), reacting to the ego and to each
//! other, while pedestrians, cyclists, static objects, parked cars and late arrivals replay.

use super::idm::{self, Body};
use super::services::TrafficService;
use crate::state::{BatchState, SceneCtx};

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
        for r in 0..st.len() {
            if !st.alive[r] {
                continue;
            }
            let ctx = &scenes[st.scene[r] as usize];
            let agents = st.agents(r);
            let body = |st: &BatchState, a: usize| Body {
                x: st.a_x[a],
                y: st.a_y[a],
                yaw: st.a_yaw[a],
                speed: st.a_speed[a],
                len: st.a_len[a],
                wid: st.a_wid[a],
            };
            let ego = Body {
                x: st.ego_x[r],
                y: st.ego_y[r],
                yaw: st.ego_yaw[r],
                speed: st.ego_speed[r],
                len: ctx.scene.ego.length_m,
                wid: ctx.scene.ego.width_m,
            };
            // Accelerations first, from everyone's current pose; then everyone moves.
            accel.clear();
            for a in agents.clone() {
                if !(st.a_idm[a] && st.a_valid[a]) {
                    accel.push(0.0);
                    continue;
                }
                let me = body(st, a);
                let others = agents
                    .clone()
                    .filter(|&b| b != a && st.a_valid[b])
                    .map(|b| body(st, b))
                    .chain(std::iter::once(ego));
                let lead = idm::leader(&me, others);
                accel.push(idm::acceleration(
                    me.speed,
                    st.a_v0[a],
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
                let Some((path, _)) = ctx.agent_paths[st.a_track[a] as usize].as_ref() else {
                    continue;
                };
                let v = st.a_speed[a];
                let v_next = (v + accel[i] * dt_s).max(0.0);
                st.a_s[a] += (v + v_next) / 2.0 * dt_s;
                st.a_speed[a] = v_next;
                let (p, heading) = path.at(st.a_s[a]);
                st.a_x[a] = p[0];
                st.a_y[a] = p[1];
                st.a_yaw[a] = heading;
            }
        }
    }
}
