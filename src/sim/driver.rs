//! Built-in drivers (the policy under test). Today: log replay (the expert: the ego is its
//! recording) and constant velocity (after the takeover the ego keeps its heading and speed,
//! nuPlan's simplest baseline), both driving the [`vehicle`](super::vehicle) model where they
//! control the ego.

use super::vehicle::{self, VehicleParams, VehicleState};

/// Which built-in driver controls the ego.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Driver {
    /// The ego follows its recording exactly.
    #[default]
    LogReplay,
    /// After the takeover: no acceleration, no steering.
    ConstantVelocity,
}

impl Driver {
    /// Name used on the command line and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Driver::LogReplay => "log-replay",
            Driver::ConstantVelocity => "constant-velocity",
        }
    }

    /// The ego's next state after one control step of `dt_s`, for drivers that control it
    /// (`None` for log replay, whose ego is the recording).
    pub fn advance(self, s: VehicleState, p: &VehicleParams, dt_s: f64) -> Option<VehicleState> {
        match self {
            Driver::LogReplay => None,
            Driver::ConstantVelocity => Some(vehicle::step(s, 0.0, 0.0, p, dt_s)),
        }
    }
}
