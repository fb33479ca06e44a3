//! Kinematic bicycle model of the ego, referenced at the box centre, with acceleration and
//! steering limits. Integrated in sub-steps of at most 10 ms so a 500 ms control step stays
//! accurate on curves.

pub use crate::state::VehicleParams;

/// Longest integration sub-step (s).
pub const SUBSTEP_S: f64 = 0.01;

/// Pose and speed of the box centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VehicleState {
    /// x (m).
    pub x: f64,
    /// y (m).
    pub y: f64,
    /// Heading (rad).
    pub yaw: f64,
    /// Speed along the heading (m/s, ≥ 0).
    pub speed: f64,
}

/// Advances `s` by `dt_s` under `accel` (m/s²) and `steer` (rad), both clamped to the limits.
/// Speed never goes negative (the model brakes to a stop, it does not reverse).
pub fn step(s: VehicleState, accel: f64, steer: f64, p: &VehicleParams, dt_s: f64) -> VehicleState {
    let a = accel.clamp(-p.max_decel_mps2, p.max_accel_mps2);
    let delta = steer.clamp(-p.max_steer_rad, p.max_steer_rad);
    // Centre reference half-way along the wheelbase: slip angle β = atan(tan δ / 2).
    let beta = (delta.tan() / 2.0).atan();
    let n = (dt_s / SUBSTEP_S).ceil().max(1.0) as usize;
    let h = dt_s / n as f64;
    let mut s = s;
    for _ in 0..n {
        let v = s.speed;
        s.x += v * (s.yaw + beta).cos() * h;
        s.y += v * (s.yaw + beta).sin() * h;
        s.yaw += v / (p.wheelbase_m / 2.0) * beta.sin() * h;
        s.speed = (v + a * h).clamp(0.0, p.max_speed_mps);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(speed: f64) -> VehicleState {
        VehicleState {
            x: 0.0,
            y: 0.0,
            yaw: 0.0,
            speed,
        }
    }

    #[test]
    fn straight_at_constant_speed() {
        let p = VehicleParams::for_length(5.0);
        let s = step(start(10.0), 0.0, 0.0, &p, 0.5);
        assert!((s.x - 5.0).abs() < 1e-12 && s.y == 0.0 && s.yaw == 0.0);
    }

    #[test]
    fn limits_clamp_inputs_and_speed_stays_non_negative() {
        let p = VehicleParams::for_length(5.0);
        let s = step(start(0.0), 100.0, 0.0, &p, 1.0);
        assert!((s.speed - 3.0).abs() < 1e-9, "accel clamped to 3 m/s²");
        let s = step(start(2.0), -100.0, 0.0, &p, 1.0);
        assert_eq!(s.speed, 0.0, "brakes to a stop, never reverses");
    }

    #[test]
    fn steady_turn_follows_the_bicycle_radius() {
        // Circle radius R = (L/2) / sin β for the centre reference; after a full period the car
        // is back where it started.
        let p = VehicleParams::for_length(5.0);
        let delta: f64 = 0.3;
        let beta = (delta.tan() / 2.0).atan();
        let r = (p.wheelbase_m / 2.0) / beta.sin();
        let v = 5.0;
        let period = 2.0 * std::f64::consts::PI * r / v;
        let mut s = start(v);
        let steps = 400;
        for _ in 0..steps {
            s = step(s, 0.0, delta, &p, period / steps as f64);
        }
        assert!(
            s.x.hypot(s.y) < 0.05,
            "closed the circle to {:.3} m",
            s.x.hypot(s.y)
        );
    }
}
