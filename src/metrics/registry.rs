//! The metrics the simulator emits (DESIGN §3), by name, with the time aggregation `aggregate`
//! applies to each. Writers take names and aggregations from here, so the two never disagree.

use super::TimeAggregation::{self, *};

/// One metric of DESIGN §3.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Column value of `name` in metrics.parquet.
    pub name: &'static str,
    /// How it reduces over a trajectory.
    pub time_aggregation: TimeAggregation,
    /// What it measures.
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    time_aggregation: TimeAggregation,
    doc: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        time_aggregation,
        doc,
    }
}

/// Every metric drivekit emits.
pub const METRICS: &[MetricDef] = &[
    def(
        "collision_front",
        Max,
        "a track touches the ego's front edge (at fault)",
    ),
    def("collision_lateral", Max, "side contact (at fault)"),
    def(
        "collision_rear",
        Max,
        "contact behind the ego's rear axle (not at fault)",
    ),
    def("collision_any", Max, "any contact"),
    def(
        "offroad",
        Max,
        "an ego box corner outside the drivable area (0.3 m tolerance)",
    ),
    def(
        "min_distance_to_obstacle_m",
        Min,
        "distance to the nearest track's outline",
    ),
    def(
        "dist_to_gt_trajectory",
        Max,
        "lateral distance to the recorded ego path",
    ),
    def(
        "dist_to_gt_location",
        Max,
        "distance to the recorded ego position at the same time",
    ),
    def(
        "progress",
        Last,
        "metres along the recorded path since the start",
    ),
    def(
        "progress_rel_to_total",
        Last,
        "progress over the recorded path's length",
    ),
    def("dist_traveled_m", Last, "distance driven by the ego"),
    def(
        "gt_dist_traveled_m",
        Last,
        "distance driven by the recorded ego",
    ),
    def(
        "plan_deviation",
        Mean,
        "distance between the executed and the planned pose",
    ),
    def(
        "eval_relevant",
        Max,
        "1 from the first step the policy drives",
    ),
    def(
        "time_to_collision_s",
        Min,
        "nuPlan's time to collision (inf when none)",
    ),
    def(
        "ego_is_comfortable",
        Min,
        "1 within nuPlan's comfort thresholds",
    ),
    def(
        "driving_direction_compliance",
        Min,
        "nuPlan's driving direction score (1 / 0.5 / 0)",
    ),
    def(
        "ego_is_making_progress",
        Last,
        "1 while the ego moves or has moved",
    ),
];

/// The definition of `name`.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// The time aggregation of a registered metric; panics on an unregistered name (a bug).
pub fn aggregation_of(name: &str) -> &'static str {
    lookup(name)
        .unwrap_or_else(|| panic!("metric `{name}` is not in metrics::registry"))
        .time_aggregation
        .as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_documented() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len());
        assert!(METRICS.iter().all(|m| !m.doc.is_empty()));
        assert_eq!(aggregation_of("offroad"), "max");
        assert!(lookup("img_is_black").is_none());
    }
}
