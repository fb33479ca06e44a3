//! The rollout metrics: what each benchmark's score needs, measured once per rollout over its whole
//! trajectory (from the first driven step to the end), each to its peer's definition
//! (docs/scores.md). The simulator computes them on the host from the finished rollout trace
//! (`sim::rollout_metrics`), for every backend alike, and writes each as one metrics.parquet row
//! at the rollout's first driven timestamp with time aggregation `max`: AlpaSim's modifier chain
//! always keeps that row, so `aggregate` (drivekit's or AlpaSim's) reads the value unchanged while
//! the per-step metrics are still cut at the first incident.
//!
//! The score profiles (`crate::metrics::profiles`) combine them per rollout. Bump a metric's
//! `version` when its definition changes (it feeds [`super::table::metrics_version`]).

/// One rollout metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RolloutMetricDef {
    /// Its `name` in metrics.parquet.
    pub name: &'static str,
    /// Unit (`"1"` for flags, ratios and scores).
    pub unit: &'static str,
    /// Version of its definition.
    pub version: u32,
    /// What it measures, and whose definition.
    pub doc: &'static str,
}

macro_rules! rollout_table {
    ($($index:ident = $name:literal, $unit:literal, $version:literal, $doc:literal;)*) => {
        /// Every rollout metric, in slot order.
        pub const ROLLOUT_METRICS: [RolloutMetricDef; N_ROLLOUT_METRICS] = [$(RolloutMetricDef {
            name: $name,
            unit: $unit,
            version: $version,
            doc: $doc,
        }),*];

        /// Number of rollout metrics.
        pub const N_ROLLOUT_METRICS: usize = [$($name),*].len();

        /// Slot of each rollout metric (in [`crate::rollout::trace::RolloutTrace::rollout_metrics`]).
        #[allow(missing_docs)]
        pub mod rindex {
            rollout_table!(@index 0usize; $($index)*);
        }
    };
    (@index $i:expr; $head:ident $($rest:ident)*) => {
        pub const $head: usize = $i;
        rollout_table!(@index $i + 1usize; $($rest)*);
    };
    (@index $i:expr;) => {};
}

rollout_table! {
    EGO_ROUTE_PROGRESS_M = "ego_route_progress_m", "m", 1,
        "the ego's progress along the recorded ego's path, first driven step to the end (nuPlan's and NAVSIM's ego progress)";
    EXPERT_ROUTE_PROGRESS_M = "expert_route_progress_m", "m", 1,
        "the recorded ego's progress along its path over the same time (nuPlan's expert progress; NAVSIM's reference)";
    NUPLAN_NO_EGO_AT_FAULT_COLLISIONS = "nuplan_no_ego_at_fault_collisions", "1", 1,
        "nuPlan's no_ego_at_fault_collisions: 1 − n/(t+1) per class multiplied (VRU t 0, vehicle t 0, object t 1)";
    NUPLAN_DRIVABLE_AREA_COMPLIANCE = "nuplan_drivable_area_compliance", "1", 1,
        "nuPlan's drivable_area_compliance: 0 when a box corner leaves the drivable area by 0.3 m or more";
    NUPLAN_DRIVING_DIRECTION_COMPLIANCE = "nuplan_driving_direction_compliance", "1", 1,
        "nuPlan's driving_direction_compliance: 1 / 0.5 / 0 for under 2 m / 6 m / more against the lane in 1 s";
    NUPLAN_EGO_PROGRESS_ALONG_EXPERT_ROUTE = "nuplan_ego_progress_along_expert_route", "1", 1,
        "nuPlan's ego_progress_along_expert_route: min(1, max(ego, 2 m) / max(expert, 2 m)), 0 below −2 m";
    NUPLAN_EGO_IS_MAKING_PROGRESS = "nuplan_ego_is_making_progress", "1", 1,
        "nuPlan's ego_is_making_progress: the progress ratio at least 0.2";
    NUPLAN_TIME_TO_COLLISION_WITHIN_BOUND = "nuplan_time_to_collision_within_bound", "1", 1,
        "nuPlan's time_to_collision_within_bound: TTC above 0.95 s at every step, with nuPlan's track admission";
    NUPLAN_SPEED_LIMIT_COMPLIANCE = "nuplan_speed_limit_compliance", "1", 1,
        "nuPlan's speed_limit_compliance: 1 − Σ overspeed·dt / (2.23 m/s · duration), at least 0 (absent without limits)";
    NUPLAN_EGO_IS_COMFORTABLE = "nuplan_ego_is_comfortable", "1", 1,
        "nuPlan's ego_is_comfortable: its six Savitzky–Golay signals strictly within bounds (NAVSIM's C and HC too)";
    NAVSIM_NO_AT_FAULT_COLLISIONS = "navsim_no_at_fault_collisions", "1", 1,
        "NAVSIM's NC: 0 after an at-fault collision with an agent, 0.5 with static objects only, else 1";
    NAVSIM_TIME_TO_COLLISION_WITHIN_BOUND = "navsim_time_to_collision_within_bound", "1", 1,
        "NAVSIM's TTC: 0 when the ego projected 0, 0.3, 0.6 or 0.9 s ahead overlaps an admitted track there";
    NAVSIM_TRAFFIC_LIGHT_COMPLIANCE = "navsim_traffic_light_compliance", "1", 1,
        "NAVSIM v2's TLC: 0 after running a red light (1 in scenes without signals)";
    NAVSIM_LANE_KEEPING = "navsim_lane_keeping", "1", 1,
        "NAVSIM v2's LK: 0 after 2 s in a row over 0.5 m off the route's centre line outside intersections";
    CARLA_ROUTE_COMPLETION = "carla_route_completion", "%", 1,
        "CARLA's route completion: percent of the route driven before the route ended";
    CARLA_COLLISIONS_PEDESTRIAN = "carla_collisions_pedestrian", "count", 1,
        "CARLA's collisions with pedestrians (any fault)";
    CARLA_COLLISIONS_VEHICLE = "carla_collisions_vehicle", "count", 1,
        "CARLA's collisions with vehicles and cyclists (any fault)";
    CARLA_COLLISIONS_LAYOUT = "carla_collisions_layout", "count", 1,
        "CARLA's collisions with static and other objects (any fault)";
    CARLA_RED_LIGHT = "carla_red_light", "count", 1, "CARLA's red lights run";
    CARLA_STOP_SIGN = "carla_stop_sign", "count", 1, "CARLA's stop signs run";
    CARLA_OUTSIDE_ROUTE_LANES = "carla_outside_route_lanes", "%", 1,
        "CARLA's outside_route_lanes: percent of the distance driven off every lane or against it (absent without lanes)";
    CARLA_MIN_SPEED_INFRACTIONS = "carla_min_speed_infractions", "count", 1,
        "CARLA's min_speed_infractions: route quarters driven slower than the other vehicles on average";
    CARLA_AGENT_BLOCKED = "carla_agent_blocked", "1", 1,
        "CARLA's ActorBlockedTest: the ego below 0.1 m/s for over 180 s (ends the route)";
    CARLA_ROUTE_DEVIATION = "carla_route_deviation", "1", 1,
        "CARLA's InRouteTest: 30 m from the route, or over 30 % of it driven 15 m away (ends the route)";
    WAYMAX_LOG_DIVERGENCE = "waymax_log_divergence", "m", 1,
        "Waymax's log_divergence: distance to the logged ego position, averaged over the steps";
    WAYMAX_OVERLAP = "waymax_overlap", "1", 1, "Waymax's overlap: 1 when the ego box ever overlaps another";
    WAYMAX_OFFROAD = "waymax_offroad", "1", 1, "Waymax's offroad: 1 when the ego ever leaves the drivable area";
    WAYMAX_KINEMATIC_INFEASIBILITY = "waymax_kinematic_infeasibility", "1", 1,
        "Waymax's kinematic_infeasibility: 1 when a step needs |a| > 10.4 m/s² or |curvature| > 0.3 /m";
    WAYMAX_ROUTE_PROGRESS_RATIO = "waymax_route_progress_ratio", "1", 1,
        "Waymax's sdc_progression: progress along the logged route over the log's final progress";
}

/// The definition of `name`.
pub fn lookup(name: &str) -> Option<&'static RolloutMetricDef> {
    ROLLOUT_METRICS.iter().find(|m| m.name == name)
}
