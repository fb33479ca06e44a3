//! nuPlan's comfort signals and `ego_is_comfortable`, computed over a whole trajectory as
//! nuPlan does after a simulation (motional/nuplan-devkit,
//! `nuplan/planning/metrics/utils/state_extractors.py` and
//! `evaluation_metrics/common/ego_*.py`):
//!
//! - acceleration (longitudinal and lateral at the box centre, or the rear-axle magnitude):
//!   Savitzky–Golay smoothing, window 8, order 2, rounded to 8 decimals (`extract_ego_acceleration`);
//! - jerk: that smoothed acceleration differentiated by a Savitzky–Golay filter of window 15,
//!   order 2, with the mean time step, rounded (`extract_ego_jerk`);
//! - yaw rate and yaw acceleration: the unwrapped heading differentiated with window **5** (nuPlan
//!   passes its `window_length=15` nowhere, so `approximate_derivatives`' default applies), order
//!   2 for the rate and order 3, second derivative, for the acceleration (`extract_ego_yaw_rate`);
//! - every window clipped to the signal's length; each signal within its bounds at every sample,
//!   strictly (`within_bound_metric_base.py`); comfortable when all six are (`ego_is_comfortable.py`).
//!
//! NAVSIM v2 (`pdm_comfort_metrics.py`) uses the same windows, bounds and strict comparison, so
//! this is its history comfort too.

use super::comfort::ComfortLimits;
use super::savgol::{savgol_filter, SavgolError};

/// nuPlan's acceleration smoothing window.
pub const ACCEL_WINDOW: usize = 8;
/// nuPlan's jerk derivative window.
pub const JERK_WINDOW: usize = 15;
/// The window `approximate_derivatives` falls back to (the yaw signals').
pub const YAW_WINDOW: usize = 5;

/// The ego states nuPlan's comfort metrics read, one entry per state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EgoSeries {
    /// Time (µs).
    pub time_us: Vec<i64>,
    /// Heading of the rear axle (rad).
    pub heading: Vec<f64>,
    /// Longitudinal acceleration at the box centre (m/s², `center_acceleration_2d.x`).
    pub center_accel_x: Vec<f64>,
    /// Lateral acceleration at the box centre (m/s², `center_acceleration_2d.y`).
    pub center_accel_y: Vec<f64>,
    /// Magnitude of the rear-axle acceleration (m/s², `dynamic_car_state.acceleration`).
    pub accel_magnitude: Vec<f64>,
}

/// Each comfort signal, sample by sample.
#[derive(Debug, Clone, PartialEq)]
pub struct ComfortSignals {
    /// `ego_lon_acceleration` (m/s²).
    pub lon_acceleration: Vec<f64>,
    /// `ego_lat_acceleration` (m/s²).
    pub lat_acceleration: Vec<f64>,
    /// `ego_jerk` (m/s³, of the acceleration magnitude).
    pub jerk: Vec<f64>,
    /// `ego_lon_jerk` (m/s³).
    pub lon_jerk: Vec<f64>,
    /// `ego_yaw_acceleration` (rad/s²).
    pub yaw_acceleration: Vec<f64>,
    /// `ego_yaw_rate` (rad/s).
    pub yaw_rate: Vec<f64>,
    /// `ego_acceleration`: the smoothed magnitude (no bounds; nuPlan reports its statistics).
    pub acceleration: Vec<f64>,
}

/// `np.round(x, 8)`.
fn round8(v: Vec<f64>) -> Vec<f64> {
    v.into_iter()
        .map(|x| (x * 1e8).round_ties_even() / 1e8)
        .collect()
}

/// `extract_ego_acceleration`: smoothed and rounded.
pub fn smoothed_acceleration(a: &[f64]) -> Result<Vec<f64>, SavgolError> {
    Ok(round8(savgol_filter(
        a,
        ACCEL_WINDOW.min(a.len()),
        2,
        0,
        1.0,
    )?))
}

/// `approximate_derivatives(y, t_s, window, poly_order, deriv)` with the mean time step.
fn derivative(
    y: &[f64],
    time_us: &[i64],
    window: usize,
    poly_order: usize,
    deriv: usize,
) -> Result<Vec<f64>, SavgolError> {
    let t: Vec<f64> = time_us.iter().map(|&t| t as f64 / 1e6).collect();
    let dx = if t.len() > 1 {
        t.windows(2).map(|w| w[1] - w[0]).sum::<f64>() / (t.len() - 1) as f64
    } else {
        1.0
    };
    savgol_filter(y, window.min(y.len()), poly_order, deriv, dx)
}

/// `extract_ego_jerk`: the derivative of the smoothed acceleration, rounded.
pub fn jerk(a: &[f64], time_us: &[i64]) -> Result<Vec<f64>, SavgolError> {
    let smooth = smoothed_acceleration(a)?;
    Ok(round8(derivative(&smooth, time_us, JERK_WINDOW, 2, 1)?))
}

/// nuPlan's `phase_unwrap`: subtracts whole turns so consecutive headings differ by under π.
pub fn phase_unwrap(h: &[f64]) -> Vec<f64> {
    let tau = std::f64::consts::TAU;
    let mut adjust = 0.0;
    let mut out = Vec::with_capacity(h.len());
    for (i, &x) in h.iter().enumerate() {
        if i > 0 {
            adjust += ((h[i] - h[i - 1]) / tau).round_ties_even();
        }
        out.push(x - tau * adjust);
    }
    out
}

/// `extract_ego_yaw_rate(deriv_order, poly_order)`, rounded.
pub fn yaw_derivative(
    heading: &[f64],
    time_us: &[i64],
    deriv: usize,
    poly_order: usize,
) -> Result<Vec<f64>, SavgolError> {
    Ok(round8(derivative(
        &phase_unwrap(heading),
        time_us,
        YAW_WINDOW,
        poly_order,
        deriv,
    )?))
}

impl ComfortSignals {
    /// Every signal of `s` (an error when the trajectory is too short for a filter: fewer
    /// than 4 states, which the yaw acceleration's cubic needs).
    pub fn of(s: &EgoSeries) -> Result<ComfortSignals, SavgolError> {
        Ok(ComfortSignals {
            lon_acceleration: smoothed_acceleration(&s.center_accel_x)?,
            lat_acceleration: smoothed_acceleration(&s.center_accel_y)?,
            jerk: jerk(&s.accel_magnitude, &s.time_us)?,
            lon_jerk: jerk(&s.center_accel_x, &s.time_us)?,
            yaw_acceleration: yaw_derivative(&s.heading, &s.time_us, 2, 3)?,
            yaw_rate: yaw_derivative(&s.heading, &s.time_us, 1, 2)?,
            acceleration: smoothed_acceleration(&s.accel_magnitude)?,
        })
    }

    /// Each of the six bounded signals within its bounds at every sample (strictly), in nuPlan's
    /// order: lon acceleration, lat acceleration, jerk, lon jerk, yaw acceleration, yaw rate.
    pub fn within_bounds(&self, l: &ComfortLimits) -> [bool; 6] {
        let within = |v: &[f64], lo: f64, hi: f64| v.iter().all(|&x| x > lo && x < hi);
        [
            within(&self.lon_acceleration, l.min_lon_accel, l.max_lon_accel),
            within(
                &self.lat_acceleration,
                -l.max_abs_lat_accel,
                l.max_abs_lat_accel,
            ),
            within(&self.jerk, -l.max_abs_mag_jerk, l.max_abs_mag_jerk),
            within(&self.lon_jerk, -l.max_abs_lon_jerk, l.max_abs_lon_jerk),
            within(
                &self.yaw_acceleration,
                -l.max_abs_yaw_accel,
                l.max_abs_yaw_accel,
            ),
            within(&self.yaw_rate, -l.max_abs_yaw_rate, l.max_abs_yaw_rate),
        ]
    }

    /// `ego_is_comfortable`.
    pub fn is_comfortable(&self, l: &ComfortLimits) -> bool {
        self.within_bounds(l).iter().all(|&b| b)
    }
}

/// nuPlan's statistics of a signal: `np.nanmax`, `np.nanmin`, `np.nanmean` and
/// `np.nanpercentile(…, 90, method="closest_observation")`.
pub fn statistics(v: &[f64]) -> Option<[f64; 4]> {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let mean = s.iter().sum::<f64>() / n as f64;
    // numpy's `_closest_observation`: index n·q − 1.5, rounded up unless it is a whole odd
    // number (then down), clipped to the samples.
    let index = n as f64 * 0.9 - 1.5;
    let prev = index.floor();
    let take_prev = index == prev && (prev as i64).rem_euclid(2) == 1;
    let idx = (if take_prev { prev } else { prev + 1.0 }).clamp(0.0, (n - 1) as f64) as usize;
    Some([s[n - 1], s[0], mean, s[idx]])
}
