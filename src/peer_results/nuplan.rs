//! nuPlan devkit outputs (motional/nuplan-devkit): the weighted-average aggregator parquet
//! (`aggregator_metric/*weighted_average_metrics*.parquet`: one row per scenario, one per scenario
//! type, a `final_score` row), `runner_report.parquet` (which simulations succeeded) and the
//! metric files (`metrics/<metric>.parquet`). The aggregator's numbers are recomputed as
//! `weighted_average_metric_aggregator.py` computes them: per scenario the product of the
//! multiplier metrics times the weighted mean of the others (metrics without a score skipped);
//! per scenario type the mean score and the sums of the metric columns; the final score the mean
//! over scenarios.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::{Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::DataType;

use super::carla::Check;
use super::{PeerError, Unit};

/// A parquet table's columns: strings, numbers (nulls as `None`) and booleans.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names in file order.
    pub names: Vec<String>,
    /// Text columns.
    pub text: BTreeMap<String, Vec<Option<String>>>,
    /// Numeric (and all-null) columns.
    pub num: BTreeMap<String, Vec<Option<f64>>>,
    /// Boolean columns.
    pub flag: BTreeMap<String, Vec<Option<bool>>>,
    /// Rows.
    pub rows: usize,
}

/// Reads every column of a parquet file.
pub fn read_table(path: &Path) -> Result<Table, PeerError> {
    let bad = |what: String| PeerError::Bad {
        file: path.to_path_buf(),
        what,
    };
    let file = std::fs::File::open(path).map_err(|e| PeerError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a readable parquet file ({e})")))?
        .build()
        .map_err(|e| bad(e.to_string()))?;
    let mut t = Table::default();
    for batch in reader {
        let batch: RecordBatch = batch.map_err(|e| bad(e.to_string()))?;
        if t.names.is_empty() {
            t.names = batch
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        for (i, name) in t.names.clone().iter().enumerate() {
            let c = batch.column(i);
            let n = c.len();
            match c.data_type() {
                DataType::Utf8 => {
                    let a = c.as_any().downcast_ref::<StringArray>().expect("utf8");
                    t.text
                        .entry(name.clone())
                        .or_default()
                        .extend((0..n).map(|k| a.is_valid(k).then(|| a.value(k).to_string())));
                }
                DataType::Float64 => {
                    let a = c.as_any().downcast_ref::<Float64Array>().expect("f64");
                    t.num
                        .entry(name.clone())
                        .or_default()
                        .extend((0..n).map(|k| a.is_valid(k).then(|| a.value(k))));
                }
                DataType::Int64 => {
                    let a = c.as_any().downcast_ref::<Int64Array>().expect("i64");
                    t.num
                        .entry(name.clone())
                        .or_default()
                        .extend((0..n).map(|k| a.is_valid(k).then(|| a.value(k) as f64)));
                }
                DataType::Null => t
                    .num
                    .entry(name.clone())
                    .or_default()
                    .extend((0..n).map(|_| None)),
                DataType::Boolean => {
                    let a = c.as_any().downcast_ref::<BooleanArray>().expect("bool");
                    t.flag
                        .entry(name.clone())
                        .or_default()
                        .extend((0..n).map(|k| a.is_valid(k).then(|| a.value(k))));
                }
                _ => {} // lists (time series) and others: not needed
            }
        }
        t.rows += batch.num_rows();
    }
    Ok(t)
}

/// Which nuPlan table a parquet file holds, by its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The weighted-average aggregator's output.
    Aggregator,
    /// `runner_report.parquet`.
    RunnerReport,
    /// One metric's statistics (`metrics/<metric>.parquet`).
    Metric,
}

/// The kind of a table by its columns (`None`: not a nuPlan table drivekit reads).
pub fn kind(names: &[String]) -> Option<Kind> {
    let has = |c: &str| names.iter().any(|n| n == c);
    if has("scenario") && has("scenario_type") && has("aggregator_type") && has("score") {
        Some(Kind::Aggregator)
    } else if has("succeeded") && has("scenario_name") {
        Some(Kind::RunnerReport)
    } else if has("metric_statistics_name") && has("scenario_name") && has("metric_score") {
        Some(Kind::Metric)
    } else {
        None
    }
}

/// The closed-loop aggregator's weights (`closed_loop_reactive_agents_weighted_average.yaml`;
/// `default: 1.0` for the rest).
pub fn weight(metric: &str) -> f64 {
    match metric {
        "ego_progress_along_expert_route" | "time_to_collision_within_bound" => 5.0,
        "speed_limit_compliance" => 4.0,
        "ego_is_comfortable" => 2.0,
        _ => 1.0,
    }
}

/// The closed-loop aggregator's multiplier metrics.
pub const MULTIPLE_METRICS: [&str; 4] = [
    "no_ego_at_fault_collisions",
    "drivable_area_compliance",
    "ego_is_making_progress",
    "driving_direction_compliance",
];

const EXCLUDED: [&str; 7] = [
    "scenario",
    "log_name",
    "planner_name",
    "aggregator_type",
    "scenario_type",
    "num_scenarios",
    "score",
];

/// The aggregator's scenario score (`_compute_scenario_score`).
pub fn scenario_score(metrics: &[(&str, Option<f64>)]) -> f64 {
    let (mut multiple, mut sum, mut weights) = (1.0, 0.0, 0.0);
    for &(name, v) in metrics {
        let Some(v) = v else { continue };
        if MULTIPLE_METRICS.contains(&name) {
            multiple *= v;
        } else {
            let w = weight(name);
            weights += w;
            sum += w * v;
        }
    }
    let mean = if weights > 0.0 { sum / weights } else { 0.0 };
    multiple * mean
}

/// An aggregator table recomputed.
#[derive(Debug, Default)]
pub struct Recomputed {
    /// The scenarios.
    pub units: Vec<Unit>,
    /// final_score and the scenario count.
    pub globals: Vec<(String, f64)>,
    /// Every stored score checked.
    pub checks: Vec<Check>,
    /// What is wrong with the table.
    pub problems: Vec<String>,
}

/// An aggregator table recomputed: the scenarios as units, its numbers checked.
pub fn aggregator(t: &Table, file: &str) -> Recomputed {
    let text = |c: &str, i: usize| t.text.get(c).and_then(|v| v[i].clone());
    let num = |c: &str, i: usize| t.num.get(c).and_then(|v| v[i]);
    let metrics: Vec<&String> = t
        .names
        .iter()
        .filter(|n| !EXCLUDED.contains(&n.as_str()) && t.num.contains_key(*n))
        .collect();
    let mut units = Vec::new();
    let mut checks = Vec::new();
    let mut problems = Vec::new();
    let mut by_type: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let (mut type_rows, mut final_row) = (Vec::new(), None);
    for i in 0..t.rows {
        let scenario = text("scenario", i).unwrap_or_default();
        let stype = text("scenario_type", i).unwrap_or_default();
        if scenario == "final_score" {
            final_row = Some(i);
        } else if text("log_name", i).is_none() && num("num_scenarios", i).is_some() {
            type_rows.push(i);
        } else {
            by_type.entry(stype).or_default().push(i);
            let vals: Vec<(&str, Option<f64>)> =
                metrics.iter().map(|m| (m.as_str(), num(m, i))).collect();
            let computed = scenario_score(&vals);
            let stored = num("score", i);
            checks.push(Check {
                name: format!("scenario {scenario}: score"),
                computed: format!("{computed}"),
                stored: stored.map_or("null".into(), |s| format!("{s}")),
                equal: stored == Some(computed),
            });
            units.push(Unit {
                id: scenario,
                score: stored,
                values: vals
                    .iter()
                    .filter_map(|(n, v)| v.map(|v| (n.to_string(), v)))
                    .collect(),
                status: "scored".into(),
                file: file.to_string(),
            });
        }
    }
    // Scenario types: mean score, sums of the metric columns.
    let mut type_scores: BTreeMap<String, (f64, usize)> = BTreeMap::new();
    for (ty, rows) in &by_type {
        let scores: Vec<f64> = rows.iter().filter_map(|&i| num("score", i)).collect();
        let s = scores.iter().sum::<f64>() / rows.len().max(1) as f64;
        type_scores.insert(ty.clone(), (s, rows.len()));
    }
    for &i in &type_rows {
        let ty = text("scenario_type", i).unwrap_or_default();
        let Some(&(s, n)) = type_scores.get(&ty) else {
            problems.push(format!(
                "{file}: scenario type {ty} has a row but no scenarios"
            ));
            continue;
        };
        let stored = num("score", i);
        checks.push(Check {
            name: format!("scenario type {ty}: score"),
            computed: format!("{s}"),
            stored: stored.map_or("null".into(), |v| format!("{v}")),
            equal: stored == Some(s),
        });
        let stored_n = num("num_scenarios", i);
        checks.push(Check {
            name: format!("scenario type {ty}: num_scenarios"),
            computed: n.to_string(),
            stored: stored_n.map_or("null".into(), |v| format!("{v}")),
            equal: stored_n == Some(n as f64),
        });
    }
    let total: usize = type_scores.values().map(|(_, n)| n).sum();
    let final_score = type_scores
        .values()
        .map(|(s, n)| s * *n as f64)
        .sum::<f64>()
        / total.max(1) as f64;
    if let Some(i) = final_row {
        let stored = num("score", i);
        checks.push(Check {
            name: "final_score".into(),
            computed: format!("{final_score}"),
            stored: stored.map_or("null".into(), |v| format!("{v}")),
            equal: stored == Some(final_score),
        });
    } else {
        problems.push(format!("{file}: no final_score row"));
    }
    let globals = vec![
        ("final_score".to_string(), final_score),
        ("num_scenarios".to_string(), total as f64),
    ];
    Recomputed {
        units,
        globals,
        checks,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_score_follows_the_aggregator() {
        let s = scenario_score(&[
            ("no_ego_at_fault_collisions", Some(0.5)),
            ("ego_progress_along_expert_route", Some(0.8)),
            ("time_to_collision_within_bound", Some(1.0)),
            ("speed_limit_compliance", None),
            ("ego_is_comfortable", Some(1.0)),
        ]);
        assert_eq!(s, 0.5 * ((5.0 * 0.8 + 5.0 + 2.0) / 12.0));
        assert_eq!(scenario_score(&[("ego_mean_speed", None)]), 0.0);
    }
}
