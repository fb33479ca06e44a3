//! The controller service: pure-pursuit steering towards a point of the plan one look-ahead
//! distance away (measured from the rear axle) and a speed command reaching the plan's next
//! speed, both fed to the kinematic bicycle ([`super::vehicle`]) with its limits. Egos the driver
//! does not control (log replay, or before the takeover) follow their recording; a gap in the
//! recording ends the rollout.

use super::services::{ControllerService, Plans, PLAN_POINTS};
use super::vehicle::{self, VehicleState};
use crate::state::{BatchState, SceneCtx};

/// Shortest look-ahead (m).
pub const MIN_LOOKAHEAD_M: f64 = 3.0;
/// Look-ahead time (s): the look-ahead grows with speed.
pub const LOOKAHEAD_S: f64 = 0.8;

/// Pure pursuit + speed tracking on the kinematic bicycle.
#[derive(Debug, Clone, Copy, Default)]
pub struct PurePursuit;

impl ControllerService for PurePursuit {
    fn control(&self, st: &mut BatchState, scenes: &[SceneCtx], plans: &Plans, dt_us: i64) {
        let dt_s = dt_us as f64 / 1e6;
        for r in 0..st.len() {
            if !st.alive[r] {
                continue;
            }
            let ctx = &scenes[st.scene[r] as usize];
            if !plans.active[r] {
                st.plan_x[r] = f64::NAN;
                st.plan_y[r] = f64::NAN;
                match ctx.recorded(None, st.t_us[r] + dt_us) {
                    Some(s) => {
                        st.ego_x[r] = s.x;
                        st.ego_y[r] = s.y;
                        st.ego_yaw[r] = s.yaw;
                        st.ego_speed[r] = s.speed();
                    }
                    None => st.alive[r] = false,
                }
                continue;
            }
            let p = &ctx.ego_params;
            let (x, y, yaw, v) = (st.ego_x[r], st.ego_y[r], st.ego_yaw[r], st.ego_speed[r]);
            let (s, c) = yaw.sin_cos();
            let back = p.wheelbase_m / 2.0;
            let rear = [x - c * back, y - s * back];
            let lookahead = (v * LOOKAHEAD_S).max(MIN_LOOKAHEAD_M);
            let base = r * PLAN_POINTS;
            let k = (0..PLAN_POINTS)
                .find(|&k| {
                    crate::geometry::norm(plans.x[base + k] - rear[0], plans.y[base + k] - rear[1])
                        >= lookahead
                })
                .unwrap_or(PLAN_POINTS - 1);
            let (dx, dy) = (plans.x[base + k] - rear[0], plans.y[base + k] - rear[1]);
            let (lx, ly) = (dx * c + dy * s, -dx * s + dy * c);
            let ld = crate::geometry::norm(lx, ly);
            let steer = if ld > 1e-6 {
                (2.0 * p.wheelbase_m * (ly / ld) / ld).atan()
            } else {
                0.0
            };
            let accel = (plans.v[base] - v) / dt_s;
            let next = vehicle::step(
                VehicleState {
                    x,
                    y,
                    yaw,
                    speed: v,
                },
                accel,
                steer,
                p,
                dt_s,
            );
            st.ego_x[r] = next.x;
            st.ego_y[r] = next.y;
            st.ego_yaw[r] = next.yaw;
            st.ego_speed[r] = next.speed;
            st.plan_x[r] = plans.x[base];
            st.plan_y[r] = plans.y[base];
        }
    }
}
