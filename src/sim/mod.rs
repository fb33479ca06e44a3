//! The CPU stepper. Today: log replay — every actor, the ego included, follows its recording
//! sampled at the simulation clock — which is the reference the policy drivers, the vehicle
//! model and reactive traffic of issue #4 build on, and the mode in which every metric must read
//! "no deviation" on real scenes.

pub mod driver;
pub mod replay;
pub mod vehicle;
