//! Reading one batch's `metrics.parquet` and reducing every trajectory in it (DESIGN §4.1–4.5).
//!
//! A rollout lives in exactly one batch, so each batch reduces independently, in parallel, and
//! only its per-trajectory results are kept: memory is bounded by the largest batch, not the run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, DictionaryArray, RecordBatch, StringArray};
use serde::{Deserialize, Serialize};

use super::series::{BatchSeries, PlotSeries};
use super::trajectory::{self, ChainColumns, ChainParams, ModifierCounts, Reduced, WideTrajectory};
use crate::metrics::time_aggregation::UnknownTimeAggregation;
use crate::metrics::TimeAggregation;
use crate::metrics_file::{self, col, MetricsFileError};

/// A batch whose metrics could not be used; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Unreadable, corrupt, truncated or wrongly typed file.
    #[error(transparent)]
    File(#[from] MetricsFileError),
    /// One metric with two time aggregations.
    #[error("{file}: metric `{metric}` has two time_aggregation values, {first:?} and {second:?}")]
    ConflictingAggregation {
        /// the file
        file: PathBuf,
        /// the metric
        metric: String,
        /// first value seen
        first: String,
        /// the other value
        second: String,
    },
    /// A time aggregation drivekit does not know.
    #[error("{file}: metric `{metric}`: {source}")]
    UnknownAggregation {
        /// the file
        file: PathBuf,
        /// the metric
        metric: String,
        /// the parse error
        source: UnknownTimeAggregation,
    },
    /// Two rows for the same (rollout, metric, timestamp).
    #[error("{file}: two rows for metric `{metric}` of rollout `{rollout_id}` at timestamps_us={timestamp_us}")]
    DuplicateRow {
        /// the file
        file: PathBuf,
        /// the metric
        metric: String,
        /// the rollout
        rollout_id: String,
        /// the timestamp
        timestamp_us: i64,
    },
    /// A null where a value is required.
    #[error("{file}: null in column `{column}` (only `values` may be null)")]
    NullKey {
        /// the file
        file: PathBuf,
        /// the column
        column: &'static str,
    },
}

/// One trajectory's identity and reduced values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryResult {
    /// Scene id.
    pub clipgt_id: String,
    /// Rollout id (unique in the run).
    pub rollout_id: String,
    /// run_uuid as written in the file (before combining).
    pub run_uuid: String,
    /// run_name as written in the file.
    pub run_name: String,
    /// Rows of this trajectory in the file (long format).
    pub rows: u64,
    /// Values after the modifier chain, aligned with [`BatchReduction::columns`].
    pub reduced: Reduced,
}

/// Everything `aggregate` keeps of one batch (and caches between runs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReduction {
    /// The file's metrics (first-seen order) followed by the derived columns.
    pub columns: Vec<(String, TimeAggregation)>,
    /// How many of `columns` come from the file (the rest are derived).
    pub n_file_metrics: usize,
    /// Rows in the file.
    pub rows: u64,
    /// Trajectories sorted by (clipgt_id, rollout_id).
    pub trajectories: Vec<TrajectoryResult>,
    /// The scene's tags (scenario types, split…) from the file's footer; empty when it has none.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Rows/trajectories removed by each modifier.
    pub counts: ModifierCounts,
}

impl BatchReduction {
    /// Sorted unique run_uuids of the batch.
    pub fn run_uuids(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .trajectories
            .iter()
            .map(|t| t.run_uuid.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// True when the file has an `offroad` metric.
    pub fn has_offroad(&self) -> bool {
        self.columns[..self.n_file_metrics]
            .iter()
            .any(|(n, _)| n == trajectory::names::OFFROAD)
    }
}

/// Dense ids of strings, in first-seen order.
#[derive(Default)]
pub(crate) struct Interner {
    ids: HashMap<String, u32>,
    /// The strings, indexed by id.
    pub(crate) names: Vec<String>,
}

impl Interner {
    /// The id of `s`, new ones numbered on.
    pub(crate) fn id(&mut self, s: &str) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as u32;
        self.ids.insert(s.to_string(), id);
        self.names.push(s.to_string());
        id
    }
}

struct TrajBuild {
    clip: u32,
    rollout: u32,
    run_uuid: u32,
    run_name: u32,
    rows: u64,
    /// Points per metric id.
    points: Vec<Vec<(i64, Option<f64>)>>,
}

/// Per metric id, the most points one rollout of a batch has had so far: a rollout's first point
/// of a metric reserves that many (the rollouts of a batch mostly have the same length), sparing
/// the vector's doublings (a tenth of the CPU of a small run's reduction, `perf`).
#[derive(Debug, Default)]
pub(crate) struct PointsHint(Vec<usize>);

impl PointsHint {
    /// Appends `point` (`(timestamp_us, value)`) to metric `m`'s points of one rollout
    /// (`points`, per metric id).
    #[inline]
    pub(crate) fn push(
        &mut self,
        points: &mut Vec<Vec<(i64, Option<f64>)>>,
        m: usize,
        point: (i64, Option<f64>),
    ) {
        if points.len() <= m {
            points.resize_with(m + 1, Vec::new);
        }
        if self.0.len() <= m {
            self.0.resize(m + 1, 0);
        }
        let p = &mut points[m];
        if p.capacity() == 0 {
            p.reserve_exact(self.0[m]);
        }
        p.push(point);
        self.0[m] = self.0[m].max(p.len());
    }
}

/// Maps each dictionary key of a string column to an interned id; also returns the row keys.
pub(crate) fn dict_ids(
    batch: &RecordBatch,
    c: usize,
    interner: &mut Interner,
    file: &Path,
) -> Result<(Vec<u32>, Vec<i32>), BatchError> {
    let arr: &DictionaryArray<Int32Type> = batch.column(c).as_dictionary();
    if arr.null_count() > 0 {
        return Err(BatchError::NullKey {
            file: file.to_path_buf(),
            column: metrics_file::COLUMNS[c],
        });
    }
    let values: &StringArray = arr.values().as_string();
    let map = (0..values.len())
        .map(|i| interner.id(values.value(i)))
        .collect();
    Ok((map, arr.keys().values().to_vec()))
}

/// What [`reduce_batch`] read of one batch's metrics file.
pub struct BatchRead {
    /// Its reduction.
    pub reduction: BatchReduction,
    /// The record batches read, when asked for (else empty).
    pub batches: Vec<RecordBatch>,
    /// Its rollouts' series for the run report, when asked for and its rollout ids are unique
    /// (else the report reads its rows again).
    pub series: Option<BatchSeries>,
}

/// Reads the metrics file of one batch and reduces each of its trajectories.
///
/// When `keep_batches` is true the record batches read are returned too (for
/// `metrics_unprocessed.parquet`), and with `keep_series` the rollouts' plotted series (for the
/// run report), so the file is read only once.
pub fn reduce_batch(
    path: &Path,
    params: &ChainParams,
    keep_batches: bool,
    keep_series: bool,
) -> Result<BatchRead, BatchError> {
    let file = path;
    let mut strings = Interner::default(); // clip, rollout, run ids and names
    let mut metric_names = Interner::default();
    let mut agg_names = Interner::default();
    let mut metric_agg: Vec<Option<u32>> = Vec::new();
    let mut traj_index: HashMap<(u32, u32), usize> = HashMap::new();
    let mut trajs: Vec<TrajBuild> = Vec::new();
    let mut kept = Vec::new();
    let mut rows = 0u64;
    let mut points_hint = PointsHint::default();

    let reader = metrics_file::open_metrics_file(path)?;
    let tags = reader.scene_tags().to_vec();
    for batch in reader {
        let batch = batch?;
        let n = batch.num_rows();
        rows += n as u64;
        let (name_map, name_keys) = dict_ids(&batch, col::NAME, &mut metric_names, file)?;
        let (agg_map, agg_keys) = dict_ids(&batch, col::TIME_AGGREGATION, &mut agg_names, file)?;
        let (clip_map, clip_keys) = dict_ids(&batch, col::CLIPGT_ID, &mut strings, file)?;
        let (roll_map, roll_keys) = dict_ids(&batch, col::ROLLOUT_ID, &mut strings, file)?;
        let (uuid_map, uuid_keys) = dict_ids(&batch, col::RUN_UUID, &mut strings, file)?;
        let (rname_map, rname_keys) = dict_ids(&batch, col::RUN_NAME, &mut strings, file)?;
        let ts = batch.column(col::TIMESTAMPS_US).as_primitive::<Int64Type>();
        if ts.null_count() > 0 {
            return Err(BatchError::NullKey {
                file: file.to_path_buf(),
                column: "timestamps_us",
            });
        }
        let ts = ts.values();
        let vals = batch.column(col::VALUES).as_primitive::<Float64Type>();
        metric_agg.resize(metric_names.names.len(), None);

        let mut last: Option<((u32, u32), usize)> = None;
        for i in 0..n {
            let m = name_map[name_keys[i] as usize] as usize;
            let a = agg_map[agg_keys[i] as usize];
            match metric_agg[m] {
                None => metric_agg[m] = Some(a),
                Some(prev) if prev != a => {
                    return Err(BatchError::ConflictingAggregation {
                        file: file.to_path_buf(),
                        metric: metric_names.names[m].clone(),
                        first: agg_names.names[prev as usize].clone(),
                        second: agg_names.names[a as usize].clone(),
                    })
                }
                Some(_) => {}
            }
            let key = (
                clip_map[clip_keys[i] as usize],
                roll_map[roll_keys[i] as usize],
            );
            let t = match last {
                Some((k, t)) if k == key => t,
                _ => {
                    let next = trajs.len();
                    let t = *traj_index.entry(key).or_insert(next);
                    if t == next {
                        trajs.push(TrajBuild {
                            clip: key.0,
                            rollout: key.1,
                            run_uuid: uuid_map[uuid_keys[i] as usize],
                            run_name: rname_map[rname_keys[i] as usize],
                            rows: 0,
                            points: Vec::new(),
                        });
                    }
                    last = Some((key, t));
                    t
                }
            };
            let tb = &mut trajs[t];
            tb.rows += 1;
            let v = if vals.is_null(i) {
                None
            } else {
                Some(vals.value(i))
            };
            points_hint.push(&mut tb.points, m, (ts[i], v));
        }
        if keep_batches {
            kept.push(batch);
        }
    }

    let mut columns: Vec<(String, TimeAggregation)> =
        Vec::with_capacity(metric_names.names.len() + 5);
    for (m, name) in metric_names.names.iter().enumerate() {
        let agg_name =
            &agg_names.names[metric_agg[m].expect("every metric seen has a row") as usize];
        let agg =
            agg_name
                .parse::<TimeAggregation>()
                .map_err(|e| BatchError::UnknownAggregation {
                    file: file.to_path_buf(),
                    metric: name.clone(),
                    source: e,
                })?;
        columns.push((name.clone(), agg));
    }
    let n_file_metrics = columns.len();
    let chain = ChainColumns::resolve(&metric_names.names);
    let aggs: Vec<TimeAggregation> = columns.iter().map(|c| c.1).collect();
    columns.extend(
        chain
            .extra_columns()
            .into_iter()
            .map(|(n, a)| (n.to_string(), a)),
    );

    let mut counts = ModifierCounts::default();
    let mut trajectories = Vec::with_capacity(trajs.len());
    // The metric names, shared by the batch's series (only when they are kept).
    let series_names = keep_series.then(|| Arc::new(metric_names.names.clone()));
    let mut series = keep_series.then(|| BatchSeries::with_capacity(trajs.len()));
    for tb in trajs {
        let wide = widen(&tb, n_file_metrics).map_err(|(m, t)| BatchError::DuplicateRow {
            file: file.to_path_buf(),
            metric: metric_names.names[m].clone(),
            rollout_id: strings.names[tb.rollout as usize].clone(),
            timestamp_us: t,
        })?;
        let reduced = trajectory::reduce(&wide, &aggs, &chain, params);
        trajectory::add_counts(&mut counts, &reduced.counts);
        if let (Some(kept), Some(names)) = (series.as_mut(), &series_names) {
            let s = PlotSeries::of(names.clone(), &wide, params);
            // Series are found by rollout id: a batch reusing one across scenes has none kept.
            if kept
                .insert(strings.names[tb.rollout as usize].clone(), s)
                .is_some()
            {
                series = None;
            }
        }
        trajectories.push(TrajectoryResult {
            clipgt_id: strings.names[tb.clip as usize].clone(),
            rollout_id: strings.names[tb.rollout as usize].clone(),
            run_uuid: strings.names[tb.run_uuid as usize].clone(),
            run_name: strings.names[tb.run_name as usize].clone(),
            rows: tb.rows,
            reduced,
        });
    }
    trajectories.sort_by(|a, b| (&a.clipgt_id, &a.rollout_id).cmp(&(&b.clipgt_id, &b.rollout_id)));
    Ok(BatchRead {
        reduction: BatchReduction {
            columns,
            n_file_metrics,
            rows,
            trajectories,
            counts,
            tags,
        },
        batches: kept,
        series,
    })
}

/// Pivots one trajectory's points to wide form; `Err((metric, t))` on a duplicate row.
fn widen(tb: &TrajBuild, n_metrics: usize) -> Result<WideTrajectory, (usize, i64)> {
    widen_points(&tb.points, n_metrics)
}

/// The timestamps when every metric with points has them at the same, strictly increasing
/// timestamps (the usual case: one row per metric per step, in time order); `None` otherwise.
/// Spares the sort of all points.
fn shared_timestamps(points: &[Vec<(i64, Option<f64>)>]) -> Option<Vec<i64>> {
    let mut metrics = points.iter().filter(|p| !p.is_empty());
    let first = metrics.next()?;
    let increasing = first.windows(2).all(|w| w[0].0 < w[1].0);
    let same = |p: &&Vec<(i64, Option<f64>)>| {
        p.len() == first.len() && p.iter().zip(first).all(|(a, b)| a.0 == b.0)
    };
    (increasing && metrics.all(|p| same(&p))).then(|| first.iter().map(|p| p.0).collect())
}

/// One trajectory's points per metric id (`(timestamp_us, value)`, usually in time order) as a
/// wide trajectory over the union of their timestamps; `Err((metric, timestamp))` on a metric
/// with two rows at one timestamp.
pub fn widen_points(
    points: &[Vec<(i64, Option<f64>)>],
    n_metrics: usize,
) -> Result<WideTrajectory, (usize, i64)> {
    let timestamps_us = shared_timestamps(points).unwrap_or_else(|| {
        let mut all: Vec<i64> = points.iter().flatten().map(|p| p.0).collect();
        all.sort_unstable();
        all.dedup();
        all
    });
    let mut columns = Vec::with_capacity(n_metrics);
    for m in 0..n_metrics {
        let Some(points) = points.get(m).filter(|p| !p.is_empty()) else {
            columns.push(None);
            continue;
        };
        let mut col = vec![None; timestamps_us.len()];
        let mut seen = vec![false; timestamps_us.len()];
        // Points usually arrive in time order: walk forward, fall back to a search.
        let mut cursor = 0;
        for &(t, v) in points {
            let idx = if timestamps_us.get(cursor) == Some(&t) {
                cursor
            } else {
                timestamps_us
                    .binary_search(&t)
                    .expect("timestamp collected above")
            };
            if seen[idx] {
                return Err((m, t));
            }
            seen[idx] = true;
            col[idx] = v;
            cursor = idx + 1;
        }
        columns.push(Some(col));
    }
    Ok(WideTrajectory {
        timestamps_us,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widening_takes_the_shared_timestamps_or_the_sorted_union() {
        let a = vec![(0, Some(1.0)), (100, Some(2.0)), (200, None)];
        // Every metric at the same steps: the shared timestamps, as the union would give them.
        let w = widen_points(&[a.clone(), vec![], a.clone()], 3).unwrap();
        assert_eq!(w.timestamps_us, vec![0, 100, 200]);
        assert_eq!(w.columns[0], Some(vec![Some(1.0), Some(2.0), None]));
        assert_eq!(w.columns[1], None);
        // A metric at other steps, or out of order: the sorted union.
        let b = vec![(300, Some(5.0)), (50, Some(4.0))];
        let w = widen_points(&[a.clone(), b], 2).unwrap();
        assert_eq!(w.timestamps_us, vec![0, 50, 100, 200, 300]);
        assert_eq!(
            w.columns[1],
            Some(vec![None, Some(4.0), None, None, Some(5.0)])
        );
        // Two rows of one metric at one step are an error either way.
        let dup = vec![(0, Some(1.0)), (0, Some(2.0)), (200, None)];
        assert_eq!(
            widen_points(&[a.clone(), dup.clone()], 2).err(),
            Some((1, 0))
        );
        assert_eq!(widen_points(&[dup, a], 2).err(), Some((0, 0)));
    }
}
