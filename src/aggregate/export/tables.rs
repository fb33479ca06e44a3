//! metrics_results.parquet (one row per run, AlpaSim's columns plus quantiles) and
//! metrics_results_by_scene.parquet (the same per clipgt_id) and metrics_results_by_tag.parquet
//! (the same per scene tag).

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;

use crate::aggregate::summary::Stats;
use crate::aggregate::Outcome;
use crate::fsutil;
use crate::metrics::stats::{Summary, QUANTILES};

fn f64_col(name: String, v: Vec<Option<f64>>) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Float64, true),
        Arc::new(Float64Array::from(v)),
    )
}

/// Columns for one stats block per row: n_clips(+_std), then per column mean, _std, quantiles.
fn stat_columns(names: &[String], rows: &[&Stats]) -> Vec<(Field, ArrayRef)> {
    let mut out = Vec::new();
    let mut push = |name: &str, get: &dyn Fn(&Stats) -> Summary| {
        out.push(f64_col(
            name.to_string(),
            rows.iter().map(|s| get(s).mean).collect(),
        ));
        out.push(f64_col(
            format!("{name}_std"),
            rows.iter().map(|s| get(s).std).collect(),
        ));
        for (qi, (_, suffix)) in QUANTILES.iter().enumerate() {
            out.push(f64_col(
                format!("{name}_{suffix}"),
                rows.iter().map(|s| get(s).quantiles[qi]).collect(),
            ));
        }
    };
    push("n_clips", &|s| s.n_clips);
    for (c, name) in names.iter().enumerate() {
        push(name, &|s| s.columns[c]);
    }
    out
}

fn write(path: &Path, cols: Vec<(Field, ArrayRef)>) -> std::io::Result<()> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = cols.into_iter().unzip();
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), arrays).map_err(std::io::Error::other)?;
    fsutil::write_atomic_with_as(path, fsutil::Durability::Renamed, |w| {
        let mut writer = ArrowWriter::try_new(w, schema, None).map_err(std::io::Error::other)?;
        writer.write(&batch).map_err(std::io::Error::other)?;
        writer.close().map_err(std::io::Error::other)?;
        Ok(())
    })
}

fn column_names(o: &Outcome) -> Vec<String> {
    o.results.columns.iter().map(|c| c.name.clone()).collect()
}

/// One row: run_name, run_uuid, n_clips, n_rollouts, then every metric's mean (under its own
/// name), `_std` and `_p05` … `_p95`.
pub fn write_results(path: &Path, o: &Outcome) -> std::io::Result<()> {
    let r = &o.results;
    let mut cols: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("run_name", DataType::Utf8, false),
            Arc::new(StringArray::from(vec![r.run_name.clone()])),
        ),
        (
            Field::new("run_uuid", DataType::Utf8, false),
            Arc::new(StringArray::from(vec![r.run_uuid.clone()])),
        ),
        (
            Field::new("n_rollouts", DataType::UInt32, false),
            Arc::new(UInt32Array::from(vec![r.run.n_rollouts as u32])),
        ),
    ];
    cols.extend(stat_columns(&column_names(o), &[&r.run]));
    write(path, cols)
}

/// One row per scene with the same columns plus clipgt_id.
pub fn write_by_scene(path: &Path, o: &Outcome) -> std::io::Result<()> {
    write_grouped(path, o, "clipgt_id", &o.results.by_scene)
}

/// One row per scene tag (scenario type, split…) with the same columns plus `tag`.
pub fn write_by_tag(path: &Path, o: &Outcome) -> std::io::Result<()> {
    write_grouped(path, o, "tag", &o.results.by_tag)
}

fn write_grouped(
    path: &Path,
    o: &Outcome,
    key: &str,
    groups: &[(String, Stats)],
) -> std::io::Result<()> {
    let r = &o.results;
    let n = groups.len();
    let mut cols: Vec<(Field, ArrayRef)> = vec![
        (
            Field::new("run_name", DataType::Utf8, false),
            Arc::new(StringArray::from(vec![r.run_name.clone(); n])),
        ),
        (
            Field::new("run_uuid", DataType::Utf8, false),
            Arc::new(StringArray::from(vec![r.run_uuid.clone(); n])),
        ),
        (
            Field::new(key, DataType::Utf8, false),
            Arc::new(StringArray::from(
                groups.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>(),
            )),
        ),
        (
            Field::new("n_rollouts", DataType::UInt32, false),
            Arc::new(UInt32Array::from(
                groups
                    .iter()
                    .map(|(_, s)| s.n_rollouts as u32)
                    .collect::<Vec<_>>(),
            )),
        ),
    ];
    let stats: Vec<&Stats> = groups.iter().map(|(_, s)| s).collect();
    cols.extend(stat_columns(&column_names(o), &stats));
    write(path, cols)
}
