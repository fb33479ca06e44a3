//! nuPlan's time to collision (`time_to_collision_within_bound.py` in motional/nuplan-devkit):
//! the ego and the tracks ahead of it are projected at constant speed along their headings in
//! steps of `step_s` up to (not including) `horizon_s`; the TTC is the first projected time at
//! which the ego box overlaps a track box, infinity when none does.
//!
//! The rules kept from nuPlan: TTC is 0 while the ego is in an at-fault collision; infinity when
//! the ego is stopped (speed ≤ 5 mm/s) or no track qualifies; a track the ego has ever collided
//! with is ignored from that collision on; a track qualifies when its centre lies within 20° of
//! the ego's heading seen from the rear axle; static objects have speed 0; only tracks whose boxes
//! swept over the horizon overlap the ego's swept box are projected step by step.
//!
//! The per-step metric (`time_to_collision_s`, computed by the CPU and CUDA backends alike)
//! admits the tracks ahead only; nuPlan also admits tracks beside the ego (not behind it) while the
//! ego is between or off its lanes or inside an intersection, which
//! [`time_to_collision_admitting`] does for the rollout metric
//! `nuplan_time_to_collision_within_bound`.

use crate::geometry::{BoxFrame, OrientedBox};

/// nuPlan's angle tolerance for "ahead" (deg).
pub const AHEAD_TOLERANCE_DEG: f64 = 20.0;
/// nuPlan's angle tolerance for "behind" (deg).
pub const BEHIND_TOLERANCE_DEG: f64 = 150.0;

/// TTC settings (nuPlan's defaults for scoring: 0.1 s steps, 3 s horizon).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TtcParams {
    /// Projection step (s).
    pub step_s: f64,
    /// Projection horizon (s, exclusive).
    pub horizon_s: f64,
    /// Ego speed at or below which it counts as stopped (m/s).
    pub stopped_speed_mps: f64,
}

impl Default for TtcParams {
    fn default() -> Self {
        TtcParams {
            step_s: 0.1,
            horizon_s: 3.0,
            stopped_speed_mps: 5e-3,
        }
    }
}

/// A box moving at `speed` along its heading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mover {
    /// The box now.
    pub bx: OrientedBox,
    /// Speed along the heading (m/s; 0 for static objects).
    pub speed: f64,
}

impl Mover {
    fn step(&self, dt: f64) -> [f64; 2] {
        let (s, c) = self.bx.yaw.sin_cos();
        [c * self.speed * dt, s * self.speed * dt]
    }

    /// The box swept from now to `horizon`: centred half-way, longer by the distance covered.
    fn swept(&self, dt: f64, n: f64) -> OrientedBox {
        let d = self.step(dt);
        OrientedBox {
            x: self.bx.x + d[0] * n / 2.0,
            y: self.bx.y + d[1] * n / 2.0,
            length: self.bx.length + crate::geometry::norm(d[0] * n, d[1] * n),
            ..self.bx
        }
    }
}

/// Cosine of the angle between `heading` and the direction from `from` to `to` (NaN when the
/// points coincide).
fn relative_cos(from: [f64; 2], heading: f64, to: [f64; 2]) -> f64 {
    let (dx, dy) = (to[0] - from[0], to[1] - from[1]);
    let (s, c) = heading.sin_cos();
    (c * dx + s * dy) / crate::geometry::norm(dx, dy)
}

/// True when `to` lies within 20° of `heading` seen from `from` (nuPlan's `is_agent_ahead`;
/// compared on the cosine, which is what `acos` would be inverted from).
pub fn is_ahead(from: [f64; 2], heading: f64, to: [f64; 2]) -> bool {
    relative_cos(from, heading, to) > AHEAD_TOLERANCE_DEG.to_radians().cos()
}

/// True when `to` lies more than 150° off `heading` seen from `from` (nuPlan's `is_agent_behind`).
pub fn is_behind(from: [f64; 2], heading: f64, to: [f64; 2]) -> bool {
    relative_cos(from, heading, to) < BEHIND_TOLERANCE_DEG.to_radians().cos()
}

/// The ego's TTC (s) at one instant: `rear_axle` is the ego's rear-axle position, `tracks` the
/// tracks not yet collided with, `at_fault_now` whether the ego is in an at-fault collision.
pub fn time_to_collision<'a>(
    ego: &Mover,
    rear_axle: [f64; 2],
    tracks: impl IntoIterator<Item = &'a Mover>,
    at_fault_now: bool,
    p: &TtcParams,
) -> f64 {
    time_to_collision_admitting(ego, rear_axle, tracks, at_fault_now, false, p)
}

/// [`time_to_collision`] with nuPlan's full admission: with `admit_beside`, tracks that are not
/// behind the ego count too (nuPlan admits them while the ego is off its route's lanes, between
/// lanes or in an intersection: `extract_tracks_info_excluding_collided_tracks`).
pub fn time_to_collision_admitting<'a>(
    ego: &Mover,
    rear_axle: [f64; 2],
    tracks: impl IntoIterator<Item = &'a Mover>,
    at_fault_now: bool,
    admit_beside: bool,
    p: &TtcParams,
) -> f64 {
    if at_fault_now {
        return 0.0;
    }
    if ego.speed <= p.stopped_speed_mps {
        return f64::INFINITY;
    }
    let n = p.horizon_s / p.step_s;
    let ego_swept = ego.swept(p.step_s, n);
    let relevant: Vec<(BoxFrame, [f64; 2])> = tracks
        .into_iter()
        .filter(|t| {
            let c = [t.bx.x, t.bx.y];
            is_ahead(rear_axle, ego.bx.yaw, c)
                || (admit_beside && !is_behind(rear_axle, ego.bx.yaw, c))
        })
        .filter(|t| ego_swept.overlaps(&t.swept(p.step_s, n)))
        .map(|t| (t.bx.frame(), t.step(p.step_s)))
        .collect();
    if relevant.is_empty() {
        return f64::INFINITY;
    }
    let ego_d = ego.step(p.step_s);
    let ego_f = ego.bx.frame();
    // np.arange(step, horizon, step), float quirks included: ceil((horizon − step) / step) values
    // step + i·step (with a 5 s horizon that count is 50, so 5.0 itself is tried).
    let count = ((p.horizon_s - p.step_s) / p.step_s).ceil().max(0.0) as u32;
    for i in 0..count {
        let k = f64::from(i + 1);
        let e = ego_f.translated([ego_d[0] * k, ego_d[1] * k]);
        if relevant
            .iter()
            .any(|(f, d)| e.overlaps(&f.translated([d[0] * k, d[1] * k])))
        {
            return p.step_s + f64::from(i) * p.step_s;
        }
    }
    f64::INFINITY
}

#[cfg(test)]
mod tests {
    use super::*;

    fn car(x: f64, y: f64, yaw: f64, speed: f64) -> Mover {
        Mover {
            bx: OrientedBox {
                x,
                y,
                yaw,
                length: 4.0,
                width: 2.0,
            },
            speed,
        }
    }

    #[test]
    fn closing_on_a_stopped_car_ahead() {
        // Gap 10 m between bumpers, closing at 10 m/s: contact after 1.0 s, overlap just after.
        let ego = car(0.0, 0.0, 0.0, 10.0);
        let lead = car(14.0, 0.0, 0.0, 0.0);
        let ttc = time_to_collision(&ego, [-1.0, 0.0], [&lead], false, &TtcParams::default());
        assert!((ttc - 1.1).abs() < 1e-9, "{ttc}");
        // Same speed ahead: never.
        let lead = car(14.0, 0.0, 0.0, 10.0);
        let ttc = time_to_collision(&ego, [-1.0, 0.0], [&lead], false, &TtcParams::default());
        assert!(ttc.is_infinite());
        // Beyond the 3 s horizon (30 m gap at 10 m/s): inf; within a 5 s horizon: found.
        let far = car(34.0, 0.0, 0.0, 0.0);
        let p5 = TtcParams {
            horizon_s: 5.0,
            ..TtcParams::default()
        };
        assert!(
            time_to_collision(&ego, [-1.0, 0.0], [&far], false, &TtcParams::default())
                .is_infinite()
        );
        let ttc = time_to_collision(&ego, [-1.0, 0.0], [&far], false, &p5);
        assert!((ttc - 3.1).abs() < 1e-9, "{ttc}");
    }

    #[test]
    fn stopped_ego_behind_tracks_and_at_fault_rules() {
        let lead = car(14.0, 0.0, 0.0, 0.0);
        let p = TtcParams::default();
        let stopped = car(0.0, 0.0, 0.0, 0.001);
        assert!(time_to_collision(&stopped, [-1.0, 0.0], [&lead], false, &p).is_infinite());
        assert_eq!(
            time_to_collision(&stopped, [-1.0, 0.0], [&lead], true, &p),
            0.0
        );
        // A car behind closing in is not ahead: nuPlan ignores it.
        let ego = car(0.0, 0.0, 0.0, 1.0);
        let chaser = car(-10.0, 0.0, 0.0, 20.0);
        assert!(time_to_collision(&ego, [-1.0, 0.0], [&chaser], false, &p).is_infinite());
        assert!(is_behind([-1.0, 0.0], 0.0, [-10.0, 0.0]));
        assert!(!is_ahead([-1.0, 0.0], 0.0, [10.0, 5.0]), "26.6° off");
    }
}
