//! One trajectory (one rollout of one scene) as AlpaSim's wide table — rows are timestamps,
//! columns are metrics — and the modifier chain and reduction over time of DESIGN §4.3–4.5.
//!
//! Every modifier of AlpaSim's chain keeps a contiguous range of rows or drops the whole
//! trajectory, so the chain is tracked as a `[start, end)` row range rather than by copying rows.

use serde::{Deserialize, Serialize};

use crate::metrics::TimeAggregation;

/// Names of the columns the modifier chain reads or adds.
pub mod names {
    /// Rows before its first positive value are dropped.
    pub const EVAL_RELEVANT: &str = "eval_relevant";
    /// Any-class collision flag.
    pub const COLLISION_ANY: &str = "collision_any";
    /// At-fault front collision flag.
    pub const COLLISION_FRONT: &str = "collision_front";
    /// At-fault lateral collision flag.
    pub const COLLISION_LATERAL: &str = "collision_lateral";
    /// Not-at-fault rear collision flag.
    pub const COLLISION_REAR: &str = "collision_rear";
    /// Box outside the drivable area.
    pub const OFFROAD: &str = "offroad";
    /// Trajectories with any positive value are dropped whole.
    pub const IMG_IS_BLACK: &str = "img_is_black";
    /// Lateral distance to the recorded path; rows after the first ≥ threshold are dropped.
    pub const DIST_TO_GT_TRAJECTORY: &str = "dist_to_gt_trajectory";
    /// Distance travelled by the ego (m).
    pub const DIST_TRAVELED_M: &str = "dist_traveled_m";
    /// Distance travelled by the recorded ego (m).
    pub const GT_DIST_TRAVELED_M: &str = "gt_dist_traveled_m";
    /// Progress relative to the recorded route.
    pub const PROGRESS_REL_TO_TOTAL: &str = "progress_rel_to_total";
    /// Derived: progress used by the scene score.
    pub const PROGRESS_CLIPPED_REL: &str = "progress_clipped_rel";
    /// Derived: collision_any or offroad.
    pub const OFFROAD_OR_COLLISION: &str = "offroad_or_collision";
    /// Derived: collision_front or collision_lateral.
    pub const COLLISION_AT_FAULT: &str = "collision_at_fault";
    /// Derived: collision_at_fault or offroad.
    pub const OFFROAD_OR_COLLISION_AT_FAULT: &str = "offroad_or_collision_at_fault";
    /// Derived: time since the first kept row over 20 s.
    pub const DURATION_FRAC_20S: &str = "duration_frac_20s";
}

/// The derived columns the chain adds, with their time aggregation, in AlpaSim's order.
pub const DERIVED: [(&str, TimeAggregation); 4] = [
    (names::OFFROAD_OR_COLLISION, TimeAggregation::Max),
    (names::COLLISION_AT_FAULT, TimeAggregation::Max),
    (names::OFFROAD_OR_COLLISION_AT_FAULT, TimeAggregation::Max),
    (names::DURATION_FRAC_20S, TimeAggregation::Last),
];

/// The modifiers of the chain, in the order they run; index into [`ModifierCounts`].
pub const MODIFIERS: [&str; 5] = [
    "RemoveTimestepsBeforeEvent(eval_relevant > 0)",
    "AddCombinedEvent(offroad_or_collision, collision_at_fault, offroad_or_collision_at_fault, duration_frac_20s)",
    "RemoveTrajectoryWithEvent(img_is_black > 0)",
    "RemoveTimestepsAfterEvent(offroad_or_collision > 0)",
    "RemoveTimestepsAfterEvent(dist_to_gt_trajectory >= {max_dist})",
];

/// Rows and trajectories each modifier removed or touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifierCount {
    /// Rows removed.
    pub rows: u64,
    /// Trajectories that lost at least one row.
    pub trajectories: u64,
}

/// One count per entry of [`MODIFIERS`].
pub type ModifierCounts = [ModifierCount; 5];

/// Adds `b` into `a` element-wise.
pub fn add_counts(a: &mut ModifierCounts, b: &ModifierCounts) {
    for (x, y) in a.iter_mut().zip(b) {
        x.rows += y.rows;
        x.trajectories += y.trajectories;
    }
}

/// Settings of the chain.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChainParams {
    /// Rows after the first `dist_to_gt_trajectory >= max_dist_to_gt_m` are dropped (AlpaSim: 4.0).
    pub max_dist_to_gt_m: f64,
}

impl Default for ChainParams {
    fn default() -> Self {
        ChainParams {
            max_dist_to_gt_m: crate::config::DEFAULT_MAX_DIST_TO_GT_M,
        }
    }
}

/// One trajectory in wide form. `columns[i]` belongs to metric `i` of the caller's metric list and
/// has one entry per timestamp (`None` = null).
#[derive(Debug, Clone, PartialEq)]
pub struct WideTrajectory {
    /// Sorted, unique.
    pub timestamps_us: Vec<i64>,
    /// One column per metric of the batch, `None` where the metric is absent for this trajectory.
    pub columns: Vec<Option<Vec<Option<f64>>>>,
}

/// The reduced values of one trajectory after the chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reduced {
    /// False when the chain dropped the whole trajectory (img_is_black).
    pub kept: bool,
    /// One value per metric of the caller's list, followed by the [`DERIVED`] values and, when
    /// `progress_rel_to_total` exists and `progress_clipped_rel` does not, `progress_clipped_rel`.
    pub values: Vec<Option<f64>>,
    /// offroad_or_collision and offroad_or_collision_at_fault recomputed as if `offroad` were a
    /// column of 0.0 — what AlpaSim does when no rollout of the run has an offroad metric. Only
    /// filled when this trajectory has no offroad column.
    pub values_if_offroad_zero: Option<[Option<f64>; 2]>,
    /// Rows removed per modifier.
    pub counts: ModifierCounts,
}

/// polars' `col > x` on floats: null stays null, NaN compares greater than every number.
fn gt(v: Option<f64>, x: f64) -> Option<bool> {
    v.map(|v| v.is_nan() || v > x)
}

/// polars' `col >= x` on floats.
fn ge(v: Option<f64>, x: f64) -> Option<bool> {
    v.map(|v| v.is_nan() || v >= x)
}

/// Kleene OR, as polars' `|` on nullable booleans.
fn or(a: Option<bool>, b: Option<bool>) -> Option<bool> {
    match (a, b) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    }
}

fn as_f64(b: Option<bool>) -> Option<f64> {
    b.map(|b| if b { 1.0 } else { 0.0 })
}

/// First row in `range` whose event is true (null counts as false).
fn first_event(
    range: std::ops::Range<usize>,
    event: impl Fn(usize) -> Option<bool>,
) -> Option<usize> {
    range.into_iter().find(|&i| event(i) == Some(true))
}

/// Column indices the chain needs, resolved once per batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainColumns {
    eval_relevant: Option<usize>,
    collision_any: Option<usize>,
    collision_front: Option<usize>,
    collision_lateral: Option<usize>,
    offroad: Option<usize>,
    img_is_black: Option<usize>,
    dist_to_gt: Option<usize>,
    progress_rel_to_total: Option<usize>,
    add_progress_clipped_rel: bool,
}

impl ChainColumns {
    /// Resolves the chain's columns in a batch's metric list.
    pub fn resolve(metric_names: &[String]) -> ChainColumns {
        let find = |n: &str| metric_names.iter().position(|m| m == n);
        let progress_rel_to_total = find(names::PROGRESS_REL_TO_TOTAL);
        ChainColumns {
            eval_relevant: find(names::EVAL_RELEVANT),
            collision_any: find(names::COLLISION_ANY),
            collision_front: find(names::COLLISION_FRONT),
            collision_lateral: find(names::COLLISION_LATERAL),
            offroad: find(names::OFFROAD),
            img_is_black: find(names::IMG_IS_BLACK),
            dist_to_gt: find(names::DIST_TO_GT_TRAJECTORY),
            progress_rel_to_total,
            add_progress_clipped_rel: progress_rel_to_total.is_some()
                && find(names::PROGRESS_CLIPPED_REL).is_none(),
        }
    }

    /// Names (and aggregations) of the values [`reduce`] appends after the batch's own metrics.
    pub fn extra_columns(&self) -> Vec<(&'static str, TimeAggregation)> {
        let mut out = DERIVED.to_vec();
        if self.add_progress_clipped_rel {
            out.push((names::PROGRESS_CLIPPED_REL, TimeAggregation::Last));
        }
        out
    }
}

/// The rows the modifier chain keeps of one trajectory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cut {
    /// First kept row (the first `eval_relevant > 0`, else 0).
    pub start: usize,
    /// The whole trajectory is dropped (an `img_is_black > 0` among the kept rows).
    pub dropped: bool,
    /// End (exclusive) after the cut at the first offroad or collision.
    pub event_end: usize,
    /// End (exclusive) after the cut at the first `dist_to_gt_trajectory ≥ max` too.
    pub end: usize,
}

/// `traj`'s value of column `c` at row `i` (null where the column is absent).
fn value_at(traj: &WideTrajectory, c: Option<usize>, i: usize) -> Option<f64> {
    c.and_then(|c| traj.columns[c].as_ref())
        .and_then(|col| col[i])
}

/// The derived `offroad_or_collision > 0` at row `i` (offroad taken as 0 when `offroad_zero`).
fn offroad_or_collision(
    traj: &WideTrajectory,
    cols: &ChainColumns,
    i: usize,
    offroad_zero: bool,
) -> Option<bool> {
    let off = if offroad_zero {
        Some(false)
    } else {
        gt(value_at(traj, cols.offroad, i), 0.0)
    };
    or(gt(value_at(traj, cols.collision_any, i), 0.0), off)
}

/// Where the chain cuts `traj` (steps 1, 3, 4 and 5 of the module docs); [`reduce`] reduces over
/// `start..end`, and the run report marks the same rows.
pub fn cut(traj: &WideTrajectory, cols: &ChainColumns, params: &ChainParams) -> Cut {
    let n = traj.timestamps_us.len();
    let value = |c: Option<usize>, i: usize| value_at(traj, c, i);
    // 1. keep rows from the first eval_relevant > 0 on (all rows if never).
    let start = first_event(0..n, |i| gt(value(cols.eval_relevant, i), 0.0)).unwrap_or(0);
    // 3. drop the whole trajectory on any img_is_black > 0 among the kept rows.
    let dropped = first_event(start..n, |i| gt(value(cols.img_is_black, i), 0.0)).is_some();
    // 4. keep rows up to and including the first offroad_or_collision > 0.
    let mut end = n;
    if let Some(i) = first_event(start..end, |i| offroad_or_collision(traj, cols, i, false)) {
        end = i + 1;
    }
    let event_end = end;
    // 5. keep rows up to and including the first dist_to_gt_trajectory >= max.
    if let Some(i) = first_event(start..end, |i| {
        ge(value(cols.dist_to_gt, i), params.max_dist_to_gt_m)
    }) {
        end = i + 1;
    }
    Cut {
        start,
        dropped,
        event_end,
        end,
    }
}

/// Runs the modifier chain on one trajectory and reduces every column over the kept rows.
///
/// `aggs[i]` is the time aggregation of metric `i`; `cols` comes from [`ChainColumns::resolve`]
/// on the same metric list.
pub fn reduce(
    traj: &WideTrajectory,
    aggs: &[TimeAggregation],
    cols: &ChainColumns,
    params: &ChainParams,
) -> Reduced {
    let n = traj.timestamps_us.len();
    let value = |c: Option<usize>, i: usize| value_at(traj, c, i);
    let mut counts = ModifierCounts::default();
    let touched = |removed: usize| ModifierCount {
        rows: removed as u64,
        trajectories: u64::from(removed > 0),
    };

    let c = cut(traj, cols, params);
    counts[0] = touched(c.start);
    if c.dropped {
        counts[2] = touched(n - c.start);
        return Reduced {
            kept: false,
            values: Vec::new(),
            values_if_offroad_zero: None,
            counts,
        };
    }
    counts[3] = touched(n - c.event_end);
    counts[4] = touched(c.event_end - c.end);
    let (start, end) = (c.start, c.end);
    let has_offroad = cols
        .offroad
        .and_then(|c| traj.columns[c].as_ref())
        .is_some();
    let oc = |i: usize, offroad_zero: bool| offroad_or_collision(traj, cols, i, offroad_zero);
    let at_fault = |i: usize| -> Option<bool> {
        or(
            gt(value(cols.collision_front, i), 0.0),
            gt(value(cols.collision_lateral, i), 0.0),
        )
    };
    let oc_at_fault = |i: usize, offroad_zero: bool| -> Option<bool> {
        let off = if offroad_zero {
            Some(false)
        } else {
            gt(value(cols.offroad, i), 0.0)
        };
        // collision_at_fault is materialised as 0.0/1.0/null before AlpaSim compares it with 0.
        or(gt(as_f64(at_fault(i)), 0.0), off)
    };

    // Reduce over [start, end).
    let mut values = Vec::with_capacity(aggs.len() + 5);
    for (c, agg) in traj.columns.iter().zip(aggs) {
        values.push(c.as_ref().and_then(|col| agg.reduce(&col[start..end])));
    }
    let derived_max = |f: &dyn Fn(usize) -> Option<bool>| -> Option<f64> {
        let col: Vec<Option<f64>> = (start..end).map(|i| as_f64(f(i))).collect();
        TimeAggregation::Max.reduce(&col)
    };
    values.push(derived_max(&|i| oc(i, false)));
    values.push(derived_max(&at_fault));
    values.push(derived_max(&|i| oc_at_fault(i, false)));
    let t0 = traj.timestamps_us.get(start).copied().unwrap_or(0);
    values.push((end > start).then(|| (traj.timestamps_us[end - 1] - t0) as f64 / 20e6));
    if cols.add_progress_clipped_rel {
        let col = cols
            .progress_rel_to_total
            .and_then(|c| traj.columns[c].as_ref());
        values.push(col.and_then(|col| TimeAggregation::Last.reduce(&col[start..end])));
    }
    let values_if_offroad_zero = (!has_offroad).then(|| {
        [
            derived_max(&|i| oc(i, true)),
            derived_max(&|i| oc_at_fault(i, true)),
        ]
    });
    Reduced {
        kept: true,
        values,
        values_if_offroad_zero,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TimeAggregation::*;

    /// Builds a trajectory at t = 0, 100000, … from (name, agg, values) triples.
    fn build(
        cols: &[(&str, TimeAggregation, Vec<Option<f64>>)],
    ) -> (WideTrajectory, Vec<String>, Vec<TimeAggregation>) {
        let n = cols[0].2.len();
        let traj = WideTrajectory {
            timestamps_us: (0..n as i64).map(|i| i * 100_000).collect(),
            columns: cols.iter().map(|c| Some(c.2.clone())).collect(),
        };
        let names = cols.iter().map(|c| c.0.to_string()).collect();
        let aggs = cols.iter().map(|c| c.1).collect();
        (traj, names, aggs)
    }

    fn run(cols: &[(&str, TimeAggregation, Vec<Option<f64>>)]) -> (Reduced, Vec<String>) {
        let (traj, names, aggs) = build(cols);
        let cc = ChainColumns::resolve(&names);
        let mut all = names.clone();
        all.extend(cc.extra_columns().iter().map(|(n, _)| n.to_string()));
        (reduce(&traj, &aggs, &cc, &ChainParams::default()), all)
    }

    fn get(r: &Reduced, names: &[String], n: &str) -> Option<f64> {
        r.values[names.iter().position(|x| x == n).unwrap()]
    }

    fn s(v: &[f64]) -> Vec<Option<f64>> {
        v.iter().map(|&x| Some(x)).collect()
    }

    #[test]
    fn rows_before_eval_relevant_are_dropped() {
        let (r, n) = run(&[
            ("eval_relevant", Max, s(&[0.0, 0.0, 1.0, 1.0, 1.0])),
            ("speed", Mean, s(&[100.0, 100.0, 1.0, 2.0, 3.0])),
        ]);
        assert_eq!(get(&r, &n, "speed"), Some(2.0));
        assert_eq!(
            r.counts[0],
            ModifierCount {
                rows: 2,
                trajectories: 1
            }
        );
        // duration_frac_20s counts from the first kept row: (400000 − 200000) / 20e6.
        assert_eq!(get(&r, &n, "duration_frac_20s"), Some(0.01));
    }

    #[test]
    fn never_eval_relevant_keeps_all_rows() {
        let (r, n) = run(&[
            ("eval_relevant", Max, s(&[0.0, 0.0, 0.0])),
            ("speed", Mean, s(&[1.0, 2.0, 3.0])),
        ]);
        assert_eq!(get(&r, &n, "speed"), Some(2.0));
        assert_eq!(r.counts[0].rows, 0);
    }

    #[test]
    fn rows_after_first_collision_or_offroad_are_dropped_inclusive() {
        let (r, n) = run(&[
            ("collision_any", Max, s(&[0.0, 0.0, 1.0, 0.0, 0.0])),
            ("offroad", Max, s(&[0.0, 0.0, 0.0, 0.0, 1.0])),
            ("speed", Mean, s(&[1.0, 2.0, 3.0, 50.0, 50.0])),
            ("progress", Last, s(&[0.1, 0.2, 0.3, 0.4, 0.5])),
        ]);
        assert_eq!(get(&r, &n, "speed"), Some(2.0));
        assert_eq!(get(&r, &n, "progress"), Some(0.3));
        assert_eq!(get(&r, &n, "offroad"), Some(0.0), "offroad at t4 was cut");
        assert_eq!(get(&r, &n, "offroad_or_collision"), Some(1.0));
        assert_eq!(
            r.counts[3],
            ModifierCount {
                rows: 2,
                trajectories: 1
            }
        );
    }

    #[test]
    fn rows_after_dist_to_gt_threshold_are_dropped_inclusive() {
        let (r, n) = run(&[
            ("dist_to_gt_trajectory", Max, s(&[0.5, 3.9, 4.0, 7.0])),
            ("speed", Mean, s(&[1.0, 2.0, 3.0, 100.0])),
        ]);
        assert_eq!(get(&r, &n, "dist_to_gt_trajectory"), Some(4.0));
        assert_eq!(get(&r, &n, "speed"), Some(2.0));
        assert_eq!(
            r.counts[4],
            ModifierCount {
                rows: 1,
                trajectories: 1
            }
        );
    }

    #[test]
    fn black_image_drops_trajectory() {
        let (r, _) = run(&[
            ("img_is_black", Max, s(&[0.0, 1.0, 0.0])),
            ("speed", Mean, s(&[1.0, 2.0, 3.0])),
        ]);
        assert!(!r.kept);
        assert_eq!(
            r.counts[2],
            ModifierCount {
                rows: 3,
                trajectories: 1
            }
        );
    }

    #[test]
    fn at_fault_combines_front_and_lateral_not_rear() {
        let (r, n) = run(&[
            ("collision_front", Max, s(&[0.0, 0.0])),
            ("collision_lateral", Max, s(&[0.0, 1.0])),
            ("collision_rear", Max, s(&[0.0, 0.0])),
            ("collision_any", Max, s(&[0.0, 1.0])),
            ("offroad", Max, s(&[0.0, 0.0])),
        ]);
        assert_eq!(get(&r, &n, "collision_at_fault"), Some(1.0));
        assert_eq!(get(&r, &n, "offroad_or_collision_at_fault"), Some(1.0));
        let (r, n) = run(&[
            ("collision_front", Max, s(&[0.0, 0.0])),
            ("collision_lateral", Max, s(&[0.0, 0.0])),
            ("collision_rear", Max, s(&[0.0, 1.0])),
            ("collision_any", Max, s(&[0.0, 1.0])),
            ("offroad", Max, s(&[0.0, 0.0])),
        ]);
        assert_eq!(get(&r, &n, "collision_at_fault"), Some(0.0));
        assert_eq!(get(&r, &n, "offroad_or_collision"), Some(1.0));
    }

    #[test]
    fn nulls_follow_kleene_logic_and_offroad_default() {
        // No offroad column: with offroad absent from the whole run AlpaSim fills 0.0, so the
        // derived flags are 0.0; absent only here, they are null.
        let (r, n) = run(&[("collision_any", Max, s(&[0.0, 0.0]))]);
        assert_eq!(get(&r, &n, "offroad_or_collision"), None);
        assert_eq!(r.values_if_offroad_zero, Some([Some(0.0), None]));
        // A null row never triggers a cut.
        let (r, n) = run(&[
            ("collision_any", Max, vec![None, Some(0.0), Some(1.0)]),
            ("offroad", Max, vec![None, None, None]),
            ("speed", Mean, s(&[1.0, 2.0, 3.0])),
        ]);
        assert_eq!(get(&r, &n, "speed"), Some(2.0));
        assert_eq!(get(&r, &n, "offroad_or_collision"), Some(1.0));
    }

    #[test]
    fn progress_clipped_rel_is_added_from_progress_rel_to_total() {
        let (r, n) = run(&[("progress_rel_to_total", Last, s(&[0.1, 0.5]))]);
        assert_eq!(get(&r, &n, "progress_clipped_rel"), Some(0.5));
    }
}
