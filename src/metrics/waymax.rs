//! Waymax's SDC metrics as pure functions (waymo-research/waymax, `waymax/metrics/`): log
//! divergence (`imitation.py`), kinematic infeasibility by the inverse bicycle model
//! (`comfort.py`, `dynamics/bicycle_model.py` `compute_inverse`) and route progression
//! (`route.py`). Overlap is the boxes' strict separating-axis test
//! ([`crate::geometry::OrientedBox::overlaps`], as `compute_pairwise_overlaps`).

use crate::geometry::{norm, wrap_angle};

/// `KinematicsInfeasibilityMetric`'s largest acceleration (m/s²).
pub const MAX_ACCEL: f64 = 10.4;
/// Its largest steering curvature (1/m).
pub const MAX_STEERING: f64 = 0.3;
/// `_KIM_EPSILON`.
pub const EPSILON: f64 = 1e-3;
/// `compute_inverse`'s `_SPEED_LIMIT` (m/s): below it the steering is taken as 0.
pub const SPEED_LIMIT: f64 = 0.6;

/// `compute_log_divergence`: the distance between the simulated and the logged position.
pub fn log_divergence(sim: [f64; 2], log: [f64; 2]) -> f64 {
    norm(sim[0] - log[0], sim[1] - log[1])
}

/// One transition of the inverse bicycle model: (speed, yaw) before and after `dt` seconds →
/// (acceleration, steering curvature), the curvature 0 when either speed is under 0.6 m/s.
pub fn inverse_bicycle(v0: f64, yaw0: f64, v1: f64, yaw1: f64, dt: f64) -> (f64, f64) {
    let accel = (v1 - v0) / dt;
    let mut steering = wrap_angle(yaw1 - yaw0) / (v0 * dt + 0.5 * accel * dt * dt);
    if v0.abs() < SPEED_LIMIT || v1.abs() < SPEED_LIMIT {
        steering = 0.0;
    }
    (accel, steering)
}

/// `KinematicsInfeasibilityMetric`: the transition needs more than the model allows.
pub fn infeasible(accel: f64, steering: f64) -> bool {
    accel.abs() > MAX_ACCEL + EPSILON || steering.abs() > MAX_STEERING + EPSILON
}

/// `ProgressionMetric`: progress `(current − start) / (end − start)` of arc lengths along the
/// route, 1 when the log does not move; not clipped (beyond the log's end it exceeds 1).
pub fn progress_ratio(start_m: f64, end_m: f64, current_m: f64) -> f64 {
    if end_m == start_m {
        1.0
    } else {
        (current_m - start_m) / (end_m - start_m)
    }
}

#[cfg(test)]
mod tests {
    //! Waymax's own unit tests, ported (inputs and expected values from
    //! `waymax/metrics/{imitation,overlap,comfort,route}_test.py`).
    use super::*;
    use crate::geometry::OrientedBox;

    #[test]
    fn log_divergence_test() {
        // imitation_test.py: the object at (1, 1), the log at (3, 1) → 2.
        assert_eq!(log_divergence([1.0, 1.0], [3.0, 1.0]), 2.0);
    }

    #[test]
    fn overlap_test() {
        // overlap_test.py / test_utils.py: 7 boxes 2 × 1 m, yaw = 0.5·i.
        let boxes = |xy: [[f64; 2]; 7]| -> Vec<OrientedBox> {
            xy.iter()
                .enumerate()
                .map(|(i, p)| OrientedBox {
                    x: p[0],
                    y: p[1],
                    yaw: 0.5 * i as f64,
                    length: 2.0,
                    width: 1.0,
                })
                .collect()
        };
        let any_overlap = |b: &[OrientedBox]| -> Vec<bool> {
            (0..b.len())
                .map(|i| (0..b.len()).any(|j| i != j && b[i].overlaps(&b[j])))
                .collect()
        };
        let apart = boxes([
            [0.0, 0.0],
            [0.0, 2.0],
            [-3.0, 1.0],
            [3.0, 1.0],
            [3.0, -2.0],
            [-2.0, -1.5],
            [0.0, -3.0],
        ]);
        assert_eq!(any_overlap(&apart), vec![false; 7]);
        let together = boxes([
            [0.0, 0.0],
            [0.0, 1.0],
            [-1.0, 1.0],
            [1.0, 1.0],
            [1.0, -1.0],
            [-1.0, -1.0],
            [0.0, -1.0],
        ]);
        assert_eq!(any_overlap(&together), vec![true; 7]);
    }

    #[test]
    fn kinematics_infeasibility_on_a_circle() {
        // comfort_test.py: a circle of radius 1/0.3 driven in 91 steps of 0.1 s at the speed whose
        // curvature is exactly the limit, ± 0.1 m/s: slower needs more curvature (infeasible),
        // faster less (feasible). The positions are Euler-integrated; the metric at step 11.
        let (dt, steps) = (0.1, 91usize);
        for (delta_vel, expected) in [(-0.1, true), (0.1, false)] {
            let vel = std::f64::consts::TAU / steps as f64 / MAX_STEERING / dt + delta_vel;
            let yaw: Vec<f64> = (0..steps)
                .map(|i| {
                    std::f64::consts::TAU * i as f64 / steps as f64 + std::f64::consts::FRAC_PI_2
                })
                .collect();
            let t = 11;
            let (a, k) = inverse_bicycle(vel, yaw[t - 1], vel, yaw[t], dt);
            assert_eq!(infeasible(a, k), expected, "delta_vel {delta_vel}: κ {k}");
        }
    }

    #[test]
    fn kinematics_infeasibility_of_random_controls() {
        // comfort_test.py's random test: accelerations in [0.1, 7] and curvatures in [0.1, 0.4]
        // integrated by the forward model; the inverse finds them, infeasible exactly when the
        // curvature exceeds 0.3 + 1e-3. (A fixed pseudo-random sequence replaces jax.random.)
        let dt = 0.1;
        let mut rng = crate::rng::SplitMix64::new(7);
        let (mut v, mut yaw) = (2.0_f64.sqrt(), std::f64::consts::FRAC_PI_4);
        for _ in 0..90 {
            let accel = 0.1 + 6.9 * rng.uniform();
            let steering = 0.1 + 0.3 * rng.uniform();
            let new_yaw = yaw + steering * (v * dt + 0.5 * accel * dt * dt);
            let new_v = v + accel * dt;
            let (a, k) = inverse_bicycle(v, yaw, new_v, new_yaw, dt);
            assert!((a - accel).abs() < 1e-9 && (k - steering).abs() < 1e-9);
            assert_eq!(infeasible(a, k), steering > MAX_STEERING + EPSILON);
            (v, yaw) = (new_v, new_yaw);
        }
    }

    #[test]
    fn progression_test() {
        // route_test.py: the log from x = 0 to 2 along a straight path; the SDC at 0, 1, 2, 4.
        for (x, expected) in [(0.0, 0.0), (1.0, 0.5), (2.0, 1.0), (4.0, 2.0)] {
            assert_eq!(progress_ratio(0.0, 2.0, x), expected);
        }
        assert_eq!(progress_ratio(3.0, 3.0, 5.0), 1.0);
    }
}
