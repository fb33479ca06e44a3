//! The CPU backend: the services of a simulation step (DESIGN §7) — sensor clocks, drivers,
//! controller + kinematic bicycle, traffic (log replay or IDM), evaluation — and the stepper that
//! moves a [`crate::state::BatchState`] chunk through them.

pub mod controller;
pub mod driver;
pub mod evaluation;
pub mod external;
pub mod idm;
pub mod rollout_metrics;
pub mod sensor;
pub mod services;
pub mod stepper;
pub mod traffic;
pub mod vehicle;
