//! The Intelligent Driver Model (Treiber, Hennecke & Helbing 2000) and the leader search shared
//! by IDM traffic and the IDM driver.

use crate::state::idm_defaults::{ACCEL_MPS2, DECEL_MPS2, MIN_GAP_M};

/// Strongest braking IDM may command (m/s²); the vehicle model clamps further.
pub const MAX_BRAKE_MPS2: f64 = 8.0;
/// How far ahead a leader is looked for (m).
pub const LOOKAHEAD_M: f64 = 80.0;
/// Extra lateral margin for "in my lane" (m).
pub const LATERAL_MARGIN_M: f64 = 0.3;

/// IDM acceleration at speed `v` with desired speed `v0`, time headway `headway_s`, and an
/// optional leader `(gap_m, leader_speed)`.
pub fn acceleration(v: f64, v0: f64, headway_s: f64, leader: Option<(f64, f64)>) -> f64 {
    let free = if v0 > 0.0 {
        1.0 - (v / v0).powi(4)
    } else {
        -1.0
    };
    let a = match leader {
        None => ACCEL_MPS2 * free,
        Some((gap, vl)) => {
            let dv = v - vl;
            let s_star = MIN_GAP_M
                + (v * headway_s + v * dv / (2.0 * (ACCEL_MPS2 * DECEL_MPS2).sqrt())).max(0.0);
            if gap <= 0.0 {
                -MAX_BRAKE_MPS2
            } else {
                ACCEL_MPS2 * (free - (s_star / gap).powi(2))
            }
        }
    };
    a.clamp(-MAX_BRAKE_MPS2, ACCEL_MPS2)
}

/// A stop sign is passed once the vehicle has stood (below
/// [`crate::metrics::traffic_rules::STOP_SPEED_MPS`]) with its front within this far (m) of the
/// line — its centre then within CARLA's 4 m for a car.
pub const STOP_CLEAR_M: f64 = 1.5;
/// Slower than this (m/s) within [`STOP_CLEAR_M`] of a stop sign's line, the vehicle brakes to
/// a standstill (IDM alone only creeps up to a standing obstacle).
pub const STOP_HOLD_MPS: f64 = 2.0;
/// Stop lines this far (m) behind the front bumper are behind the vehicle: it goes on.
pub const STOP_PASSED_M: f64 = 0.5;

/// What the rules of a route ask of a vehicle whose centre is at arc length `s` (front bumper
/// at `s + half_len`) at timestamp index `ti`: the speed limit in force (∞: none), and the gap
/// (m, front bumper to the line) to the first stop line ahead that holds it — a red signal, or a
/// stop sign it has not yet stopped at (0 within [`STOP_CLEAR_M`] of it below
/// [`STOP_HOLD_MPS`]: full braking). `cleared` counts the rules whose stop signs are done
/// (updated here: a sign is done once the vehicle stands within [`STOP_CLEAR_M`] of it).
pub fn route_constraints(
    route: &crate::state::Route,
    traffic: &crate::metrics::traffic_rules::TrafficRules,
    s: f64,
    half_len: f64,
    speed: f64,
    ti: usize,
    cleared: &mut u32,
) -> (f64, Option<f64>) {
    use crate::state::PathRule;
    let mut limit = f64::INFINITY;
    let mut stop = None;
    let front = s + half_len;
    for (i, rule) in route.rules.iter().enumerate() {
        match *rule {
            PathRule::Limit { s: at, mps } => {
                if at <= s {
                    limit = mps;
                }
            }
            PathRule::Stop { s: at, line } => {
                let gap = at - front;
                if stop.is_some() || !(-STOP_PASSED_M..=LOOKAHEAD_M).contains(&gap) {
                    continue;
                }
                let l = &traffic.lines[line];
                if l.signal >= 0 {
                    if traffic.red_at(l.signal, ti) {
                        stop = Some(gap);
                    }
                } else if (i as u32) >= *cleared {
                    if speed < crate::metrics::traffic_rules::STOP_SPEED_MPS && gap < STOP_CLEAR_M {
                        *cleared = i as u32 + 1;
                    } else if speed < STOP_HOLD_MPS && gap < STOP_CLEAR_M {
                        stop = Some(0.0);
                    } else {
                        stop = Some(gap);
                    }
                }
            }
        }
    }
    (limit, stop)
}

/// The nearer of a leader and a stop line (a standing leader).
pub fn nearest_leader(leader: Option<(f64, f64)>, stop_gap: Option<f64>) -> Option<(f64, f64)> {
    match (leader, stop_gap) {
        (Some(l), Some(g)) if g < l.0 => Some((g, 0.0)),
        (None, Some(g)) => Some((g, 0.0)),
        (l, _) => l,
    }
}

/// A box moving along its heading, as the leader search sees it (with its heading's cosine and
/// sine, computed once per step rather than once per pair).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Body {
    /// Centre x (m).
    pub x: f64,
    /// Centre y (m).
    pub y: f64,
    /// cos(heading).
    pub c: f64,
    /// sin(heading).
    pub s: f64,
    /// Speed (m/s).
    pub speed: f64,
    /// Length (m).
    pub len: f64,
    /// Width (m).
    pub wid: f64,
}

impl Body {
    /// A body at (x, y) with heading `yaw`.
    pub fn new(x: f64, y: f64, yaw: f64, speed: f64, len: f64, wid: f64) -> Body {
        let (s, c) = yaw.sin_cos();
        Body {
            x,
            y,
            c,
            s,
            speed,
            len,
            wid,
        }
    }
}

/// Agent `a` of a batch state as a body.
pub fn agent_body(st: &crate::state::BatchState, a: usize) -> Body {
    Body::new(
        st.a_x[a],
        st.a_y[a],
        st.a_yaw[a],
        st.a_speed[a],
        st.a_len[a],
        st.a_wid[a],
    )
}

/// Rollout `r`'s ego as a body.
pub fn ego_body(st: &crate::state::BatchState, r: usize, ctx: &crate::state::SceneCtx) -> Body {
    Body::new(
        st.ego_x[r],
        st.ego_y[r],
        st.ego_yaw[r],
        st.ego_speed[r],
        ctx.scene.ego.length_m,
        ctx.scene.ego.width_m,
    )
}

/// The nearest body ahead of `me` in its lane: some part of its box lies within my half-width
/// plus a margin across my heading, and its near end less than [`LOOKAHEAD_M`] ahead (a crossing
/// car is measured by its extent across my heading, not its centre). Returns (bumper gap, its
/// speed along my heading).
pub fn leader<'a>(me: &Body, others: impl Iterator<Item = &'a Body>) -> Option<(f64, f64)> {
    let (s, c) = (me.s, me.c);
    let mut best: Option<(f64, f64)> = None;
    for o in others {
        let (dx, dy) = (o.x - me.x, o.y - me.y);
        let ahead = dx * c + dy * s;
        if ahead <= 0.0 || ahead > LOOKAHEAD_M {
            continue;
        }
        // cos and sin of (its heading − mine).
        let dc = o.c * c + o.s * s;
        let ds = o.s * c - o.c * s;
        let half_along = o.len / 2.0 * dc.abs() + o.wid / 2.0 * ds.abs();
        let half_across = o.len / 2.0 * ds.abs() + o.wid / 2.0 * dc.abs();
        let side = -dx * s + dy * c;
        if side.abs() - half_across > me.wid / 2.0 + LATERAL_MARGIN_M {
            continue;
        }
        let gap = ahead - me.len / 2.0 - half_along;
        if best.is_none_or(|b| gap < b.0) {
            best = Some((gap, o.speed * dc));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_road_approaches_the_desired_speed_and_a_close_leader_brakes() {
        assert!((acceleration(0.0, 10.0, 1.5, None) - ACCEL_MPS2).abs() < 1e-12);
        assert!(acceleration(10.0, 10.0, 1.5, None).abs() < 1e-12);
        assert!(acceleration(12.0, 10.0, 1.5, None) < 0.0);
        // 5 m behind a stopped car at 10 m/s: full braking.
        assert_eq!(
            acceleration(10.0, 10.0, 1.5, Some((5.0, 0.0))),
            -MAX_BRAKE_MPS2
        );
        // Far behind a car at the same speed: almost free.
        let a = acceleration(10.0, 15.0, 1.5, Some((200.0, 10.0)));
        assert!(a > 0.5, "{a}");
    }

    #[test]
    fn leader_is_the_nearest_body_ahead_in_lane() {
        let me = Body::new(0.0, 0.0, 0.0, 10.0, 4.0, 2.0);
        let at = |x: f64, y: f64| Body { x, y, ..me };
        let l = leader(
            &me,
            [at(30.0, 0.0), at(12.0, 0.5), at(8.0, 3.5), at(-6.0, 0.0)].iter(),
        );
        assert_eq!(
            l,
            Some((8.0, 10.0)),
            "12 m ahead minus two half-lengths; 3.5 m aside is another lane"
        );
        assert_eq!(leader(&me, [at(100.0, 0.0)].iter()), None);
    }
}
