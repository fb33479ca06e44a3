//! The one metric table: every per-step metric drivekit emits (DESIGN §3), in the order of the
//! per-step value rows — the evaluation service writes `values[r * N_METRICS + index]`, the CUDA
//! kernels write the same slots (their `DK_M_*` indices are generated from this table), and
//! metrics.parquet lists the rows in this order. Each entry has its time aggregation, unit,
//! version and kind; the evaluator, the kernels, the backend comparison, the fixtures and
//! `evaluate`'s metric version all derive from it, so the order exists once.
//!
//! Bump a metric's `version` whenever its definition changes: [`metrics_version`] changes with it,
//! so `evaluate runs/X` rescores batches scored by the old definition.

use super::TimeAggregation::{self, *};

/// How two backends' values of a metric are compared (`cuda::check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flag or a score (0/1, 0/0.5/1): equal or not.
    Event,
    /// A measured quantity: equal within a tolerance.
    Continuous,
}

/// One metric of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    /// Its `name` in metrics.parquet.
    pub name: &'static str,
    /// How it reduces over a trajectory.
    pub time_aggregation: TimeAggregation,
    /// Unit of its values (`"1"` for flags, ratios and scores).
    pub unit: &'static str,
    /// Version of its definition (bump when it changes).
    pub version: u32,
    /// Flag/score or measured quantity.
    pub kind: Kind,
    /// What it measures.
    pub doc: &'static str,
}

/// Defines the table, one index constant per metric (its slot in a step's value row) and the C
/// `#define`s the kernels use for the same slots.
macro_rules! metric_table {
    ($($index:ident = $name:literal, $agg:ident, $unit:literal, $version:literal, $kind:ident, $doc:literal;)*) => {
        /// Every metric, in value-row order.
        pub const METRICS: [MetricDef; N_METRICS] = [$(MetricDef {
            name: $name,
            time_aggregation: $agg,
            unit: $unit,
            version: $version,
            kind: Kind::$kind,
            doc: $doc,
        }),*];

        /// Number of metrics per step.
        pub const N_METRICS: usize = [$($name),*].len();

        /// Slot of each metric in a step's value row (`values[r * N_METRICS + index::X]`).
        #[allow(missing_docs)]
        pub mod index {
            metric_table!(@index 0usize; $($index)*);
        }

        /// The C declarations of the slots for the kernels: `#define DK_M_<NAME> <index>`.
        pub fn c_defines() -> String {
            let mut s = String::new();
            $(s.push_str(&format!("#define DK_M_{} {}\n", stringify!($index), index::$index));)*
            s
        }
    };
    (@index $i:expr; $head:ident $($rest:ident)*) => {
        pub const $head: usize = $i;
        metric_table!(@index $i + 1usize; $($rest)*);
    };
    (@index $i:expr;) => {};
}

metric_table! {
    COLLISION_FRONT = "collision_front", Max, "1", 1, Event,
        "a track touches the ego's front edge (at fault)";
    COLLISION_LATERAL = "collision_lateral", Max, "1", 1, Event, "side contact (at fault)";
    COLLISION_REAR = "collision_rear", Max, "1", 1, Event,
        "contact behind the ego's rear axle (not at fault)";
    COLLISION_ANY = "collision_any", Max, "1", 1, Event, "any contact";
    OFFROAD = "offroad", Max, "1", 1, Event,
        "an ego box corner outside the drivable area (0.3 m tolerance)";
    MIN_DISTANCE_TO_OBSTACLE_M = "min_distance_to_obstacle_m", Min, "m", 1, Continuous,
        "distance to the nearest track's outline";
    DIST_TO_GT_TRAJECTORY = "dist_to_gt_trajectory", Max, "m", 1, Continuous,
        "lateral distance to the recorded ego path";
    DIST_TO_GT_LOCATION = "dist_to_gt_location", Max, "m", 1, Continuous,
        "distance to the recorded ego position at the same time";
    PROGRESS = "progress", Last, "m", 1, Continuous,
        "metres along the recorded path since the start";
    PROGRESS_REL_TO_TOTAL = "progress_rel_to_total", Last, "1", 1, Continuous,
        "progress over the recorded path's length";
    DIST_TRAVELED_M = "dist_traveled_m", Last, "m", 1, Continuous, "distance driven by the ego";
    GT_DIST_TRAVELED_M = "gt_dist_traveled_m", Last, "m", 1, Continuous,
        "distance driven by the recorded ego";
    PLAN_DEVIATION = "plan_deviation", Mean, "m", 1, Continuous,
        "distance between the executed and the planned pose";
    EVAL_RELEVANT = "eval_relevant", Max, "1", 1, Event, "1 from the first step the policy drives";
    TIME_TO_COLLISION_S = "time_to_collision_s", Min, "s", 1, Continuous,
        "nuPlan's time to collision (inf when none)";
    EGO_IS_COMFORTABLE = "ego_is_comfortable", Min, "1", 1, Event,
        "1 within nuPlan's comfort thresholds";
    DRIVING_DIRECTION_COMPLIANCE = "driving_direction_compliance", Min, "1", 1, Event,
        "nuPlan's driving direction score (1 / 0.5 / 0)";
    EGO_IS_MAKING_PROGRESS = "ego_is_making_progress", Last, "1", 1, Event,
        "1 while the ego moves or has moved";
    SPEED_LIMIT_VIOLATION = "speed_limit_violation", Max, "m/s", 1, Continuous,
        "speed over the limit of the lane the ego is on (nuPlan's speed_limit_compliance)";
    RAN_RED_LIGHT = "ran_red_light", Max, "1", 1, Event,
        "the ego's tail crosses a red light's stop line (CARLA's RunningRedLightTest)";
    RAN_STOP_SIGN = "ran_stop_sign", Max, "1", 1, Event,
        "the ego leaves a stop sign without stopping (CARLA's RunningStopTest)";
}

/// The definition of `name`.
pub fn lookup(name: &str) -> Option<&'static MetricDef> {
    METRICS.iter().find(|m| m.name == name)
}

/// The time aggregation of a metric of the table; panics on a name that is not in it (a bug).
pub fn aggregation_of(name: &str) -> &'static str {
    lookup(name)
        .unwrap_or_else(|| panic!("metric `{name}` is not in metrics::table"))
        .time_aggregation
        .as_str()
}

/// Every metric's name, in value-row order.
pub fn names() -> [&'static str; N_METRICS] {
    METRICS.map(|m| m.name)
}

/// Every metric drivekit writes: the per-step ones, then the rollout metrics
/// ([`super::rollout_table`]).
pub fn all_names() -> Vec<&'static str> {
    METRICS
        .iter()
        .map(|m| m.name)
        .chain(super::rollout_table::ROLLOUT_METRICS.iter().map(|m| m.name))
        .collect()
}

/// `name` as drivekit spells it, when it is a per-step or a rollout metric.
pub fn canonical(name: &str) -> Option<&'static str> {
    lookup(name)
        .map(|m| m.name)
        .or_else(|| super::rollout_table::lookup(name).map(|m| m.name))
}

/// The version of the metric definitions (`evaluate`'s `_evaluated` marker): drivekit's version,
/// the highest per-step metric version and the rollout table's, so bumping any metric's version
/// (or adding the rollout table, `r` in the marker) changes it.
pub fn metrics_version() -> String {
    let v = METRICS.iter().map(|m| m.version).max().unwrap_or(0);
    let r = super::rollout_table::ROLLOUT_METRICS
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    format!("{}+metrics.{v}.r{r}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_documented_and_indexed_in_order() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), N_METRICS);
        assert!(METRICS
            .iter()
            .all(|m| !m.doc.is_empty() && !m.unit.is_empty()));
        assert_eq!(METRICS[index::OFFROAD].name, "offroad");
        assert_eq!(
            METRICS[index::EGO_IS_MAKING_PROGRESS].name,
            "ego_is_making_progress"
        );
        assert_eq!(index::RAN_STOP_SIGN, N_METRICS - 1);
        assert_eq!(aggregation_of("offroad"), "max");
        assert!(lookup("img_is_black").is_none());
        assert!(c_defines().contains("#define DK_M_TIME_TO_COLLISION_S 14\n"));
        assert_eq!(
            metrics_version(),
            concat!(env!("CARGO_PKG_VERSION"), "+metrics.1.r1")
        );
    }
}
