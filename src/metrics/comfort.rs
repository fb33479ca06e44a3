//! nuPlan's comfort check (`ego_is_comfortable`), per step: longitudinal acceleration and jerk,
//! lateral acceleration, yaw rate and yaw acceleration, and jerk magnitude, each within nuPlan's
//! thresholds. nuPlan smooths the whole trajectory with a Savitzky–Golay filter after the fact;
//! a simulator needs the value as it goes, so drivekit differentiates with least-squares slopes
//! over a trailing window of five control steps (0.4 s at 10 Hz), which damps recording noise the
//! same way. The trajectory is comfortable when every step is (time aggregation `min`).

/// nuPlan's comfort thresholds (`ego_is_comfortable_statistics.yaml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ComfortLimits {
    /// Lowest longitudinal acceleration (m/s²).
    pub min_lon_accel: f64,
    /// Highest longitudinal acceleration (m/s²).
    pub max_lon_accel: f64,
    /// Largest |lateral acceleration| (m/s²).
    pub max_abs_lat_accel: f64,
    /// Largest |yaw rate| (rad/s).
    pub max_abs_yaw_rate: f64,
    /// Largest |yaw acceleration| (rad/s²).
    pub max_abs_yaw_accel: f64,
    /// Largest |longitudinal jerk| (m/s³).
    pub max_abs_lon_jerk: f64,
    /// Largest jerk magnitude (m/s³).
    pub max_abs_mag_jerk: f64,
}

impl Default for ComfortLimits {
    fn default() -> Self {
        ComfortLimits {
            min_lon_accel: -4.05,
            max_lon_accel: 2.40,
            max_abs_lat_accel: 4.89,
            max_abs_yaw_rate: 0.95,
            max_abs_yaw_accel: 1.93,
            max_abs_lon_jerk: 4.13,
            max_abs_mag_jerk: 8.37,
        }
    }
}

/// Samples in the trailing window.
pub const WINDOW: usize = 5;

/// A fixed window of the last [`WINDOW`] values, oldest first once full.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ring {
    v: [f64; WINDOW],
    n: usize,
}

impl Ring {
    fn push(&mut self, x: f64) {
        if self.n < WINDOW {
            self.v[self.n] = x;
            self.n += 1;
        } else {
            self.v.copy_within(1.., 0);
            self.v[WINDOW - 1] = x;
        }
    }

    fn last(&self) -> f64 {
        self.v[self.n.saturating_sub(1)]
    }

    /// Least-squares slope per second over a full window (`None` until full).
    fn slope(&self, dt_s: f64) -> Option<f64> {
        if self.n < WINDOW {
            return None;
        }
        let c = (WINDOW as f64 - 1.0) / 2.0;
        let (mut num, mut den) = (0.0, 0.0);
        for (i, y) in self.v.iter().enumerate() {
            let d = i as f64 - c;
            num += d * y;
            den += d * d;
        }
        Some(num / den / dt_s)
    }
}

/// Per-rollout comfort state: the ego's recent speeds and headings and their derivatives.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ComfortTracker {
    speed: Ring,
    yaw: Ring,
    lon_accel: Ring,
    lat_accel: Ring,
    yaw_rate: Ring,
}

impl ComfortTracker {
    /// Adds the ego's speed (m/s) and heading (rad) at the next control step and tells whether
    /// the motion so far is comfortable (true until enough steps exist to judge).
    pub fn push(&mut self, speed: f64, yaw: f64, dt_s: f64, lim: &ComfortLimits) -> bool {
        // Unwrap the heading against the previous sample so ±π crossings are not spins.
        let yaw = if self.yaw.n == 0 {
            yaw
        } else {
            let prev = self.yaw.last();
            prev + crate::geometry::wrap_angle(yaw - prev)
        };
        self.speed.push(speed);
        self.yaw.push(yaw);
        let (Some(a), Some(w)) = (self.speed.slope(dt_s), self.yaw.slope(dt_s)) else {
            return true;
        };
        let lat = speed * w;
        self.lon_accel.push(a);
        self.lat_accel.push(lat);
        self.yaw_rate.push(w);
        let mut ok = (lim.min_lon_accel..=lim.max_lon_accel).contains(&a)
            && lat.abs() <= lim.max_abs_lat_accel
            && w.abs() <= lim.max_abs_yaw_rate;
        if let (Some(jl), Some(jlat), Some(yaw_acc)) = (
            self.lon_accel.slope(dt_s),
            self.lat_accel.slope(dt_s),
            self.yaw_rate.slope(dt_s),
        ) {
            ok &= jl.abs() <= lim.max_abs_lon_jerk
                && crate::geometry::norm(jl, jlat) <= lim.max_abs_mag_jerk
                && yaw_acc.abs() <= lim.max_abs_yaw_accel;
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cruising_is_comfortable_and_hard_braking_is_not() {
        let lim = ComfortLimits::default();
        let mut c = ComfortTracker::default();
        assert!((0..20).all(|_| c.push(10.0, 0.0, 0.1, &lim)));
        // Braking at 6 m/s² exceeds −4.05.
        let mut c = ComfortTracker::default();
        let verdicts: Vec<bool> = (0..10)
            .map(|k| c.push(20.0 - 0.6 * k as f64, 0.0, 0.1, &lim))
            .collect();
        assert!(
            verdicts[..4].iter().all(|v| *v),
            "undecided before the window fills"
        );
        assert!(!verdicts[4], "{verdicts:?}");
        // A steady turn at 10 m/s with 0.5 rad/s: lateral 5 m/s² > 4.89.
        let mut c = ComfortTracker::default();
        let last = (0..10)
            .map(|k| c.push(10.0, 0.05 * k as f64, 0.1, &lim))
            .last();
        assert_eq!(last, Some(false));
    }

    #[test]
    fn heading_wraps_without_a_spin() {
        let lim = ComfortLimits::default();
        let mut c = ComfortTracker::default();
        let yaws = [3.10, 3.12, 3.135, -3.135, -3.12, -3.10, -3.08];
        assert!(yaws.iter().all(|y| c.push(5.0, *y, 0.1, &lim)));
    }
}
