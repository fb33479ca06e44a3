//! Metric vocabulary shared by the simulator (which emits metrics) and `aggregate` (which reduces
//! them): the metric table ([`table`]: every per-step metric, its order, aggregation, unit and
//! version), the per-step metric functions (collisions, TTC, comfort, driving direction, speed limits, red lights and stop signs), the
//! time aggregations of DESIGN §3 and the statistics used over rollouts.

pub mod comfort;
pub mod direction;
pub mod ego_step;
pub mod nuplan_comfort;
pub mod profiles;
pub mod rollout_table;
pub mod savgol;
pub mod stats;
pub mod table;
pub mod time_aggregation;
pub mod traffic_rules;
pub mod ttc;
pub mod waymax;

pub use time_aggregation::TimeAggregation;
