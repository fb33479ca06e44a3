//! The rollout trace: what one rollout produced, step by step, as plain arrays — the spine of the
//! simulate side. A stepper records each step into it (off the logs and files); the writer turns it
//! into rollout.asl records ([`super::encode`]) and metrics.parquet rows ([`super::rows`]);
//! [`super::replay`] turns a log back into traces; the renderer draws videos from it.

use crate::state::BatchState;

/// What one rollout produced: per step its time, the ego pose, every agent's pose (NaN x where
/// absent) and the metric values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutTrace {
    /// Step times (µs).
    pub times_us: Vec<i64>,
    /// Ego (x, y, yaw, speed, plan x, plan y) per step, as the metrics saw it (plan NaN
    /// without a plan).
    pub ego: Vec<[f64; 6]>,
    /// Agents (x, y, yaw, speed) per step, `n_agents` per step, in scene track order (NaN where
    /// absent).
    pub agents: Vec<[f64; 4]>,
    /// Metric values per step ([`crate::metrics::table::N_METRICS`] per step in the metric table's order, NaN: absent).
    pub metrics: Vec<f64>,
    /// The driver's plan made at a step: (step index, points x, y at t + k·dt), rounded to f32
    /// as the log stores them (so videos drawn live and from the log agree).
    pub plans: Vec<(u32, Vec<[f64; 2]>)>,
    /// Why the rollout failed (the driver could not serve it), if it did.
    pub failure: Option<String>,
    /// The driver ended the session early (`terminate_session`).
    pub terminated: bool,
    /// The rollout metrics ([`crate::metrics::rollout_table`], NaN: absent), once the rollout
    /// has ended (`sim::rollout_metrics`); empty before.
    pub rollout_metrics: Vec<f64>,
}

impl RolloutTrace {
    /// Appends rollout `r`'s state at its current step — time, ego (with the plan point for this
    /// time), every agent (NaN where absent) — and the step's metric values.
    pub fn push_step(&mut self, st: &BatchState, r: usize, metrics: &[f64]) {
        self.times_us.push(st.t_us[r]);
        self.ego.push([
            st.ego_x[r],
            st.ego_y[r],
            st.ego_yaw[r],
            st.ego_speed[r],
            st.plan_x[r],
            st.plan_y[r],
        ]);
        self.agents.extend(st.agents(r).map(|a| {
            if st.a_valid[a] {
                [st.a_x[a], st.a_y[a], st.a_yaw[a], st.a_speed[a]]
            } else {
                [f64::NAN; 4]
            }
        }));
        self.metrics.extend_from_slice(metrics);
    }
}
