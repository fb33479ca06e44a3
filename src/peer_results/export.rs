//! A benchmark result's outputs, as for run dirs: metrics_results.txt (the benchmark's own global
//! numbers, each stored number checked, drivekit's quantiles, interval and counts, what failed
//! or is missing), metrics_results.parquet (one row) and results-summary.json (every route or
//! token); and the paired comparison of two agents' results.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use serde::Serialize;

use super::PeerResults;
use crate::fsutil;
use crate::report::format::num;

use crate::aggregate::export::txt::{rule, table};

/// The text report.
pub fn render(r: &PeerResults) -> String {
    let mut out = String::new();
    rule(&mut out, "drivekit aggregate: benchmark result");
    let _ = writeln!(out, "Format: {}   rule: {}", r.format.name(), r.rule);
    let files = if r.files.len() > 3 {
        format!("{} … ({} files)", r.files[0], r.files.len())
    } else {
        r.files.join(", ")
    };
    let _ = writeln!(out, "Read: {files}");
    let _ = writeln!(
        out,
        "Units: {} records{}",
        r.units.len(),
        r.planned
            .map(|p| format!(" of {p} planned"))
            .unwrap_or_default()
    );
    out.push('\n');
    rule(
        &mut out,
        "The benchmark's own global numbers (recomputed by its rules)",
    );
    for (k, v) in &r.globals {
        let _ = writeln!(out, "  {k:<44} {v}");
    }
    out.push('\n');
    rule(&mut out, "Stored numbers checked");
    let bad: Vec<_> = r.checks.iter().filter(|c| !c.equal).collect();
    let _ = writeln!(
        out,
        "  {} checked, {} equal, {} differ",
        r.checks.len(),
        r.checks.len() - bad.len(),
        bad.len()
    );
    for c in bad.iter().take(40) {
        let _ = writeln!(
            out,
            "  DIFFERS {}: recomputed {}, stored {}",
            c.name, c.computed, c.stored
        );
    }
    for c in r.checks.iter().filter(|c| c.equal).take(8) {
        let _ = writeln!(out, "  equal   {}: {}", c.name, c.stored);
    }
    out.push('\n');
    rule(&mut out, "drivekit's additions");
    let s = r.summary();
    let (lo, hi) = r.interval();
    let mut t = table(
        [
            "score",
            "n",
            "mean ± std",
            "95 % CI of mean",
            "p05",
            "p25",
            "p50",
            "p75",
            "p95",
        ]
        .map(String::from)
        .to_vec(),
    );
    let mut row = vec![
        r.score_name.clone(),
        s.count.to_string(),
        match s.std {
            Some(sd) => format!("{} ± {}", num(s.mean), num(Some(sd))),
            None => num(s.mean),
        },
        format!("[{}, {}]", num(Some(lo)), num(Some(hi))),
    ];
    row.extend(s.quantiles.iter().map(|q| num(*q)));
    t.add_row(row);
    let _ = writeln!(out, "{t}");
    let _ = writeln!(
        out,
        "  over the records present (the benchmark's mean above counts missing routes as it does)"
    );
    for (k, n) in &r.counts {
        let _ = writeln!(out, "  {k:<60} {n}");
    }
    for n in &r.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    let failed: Vec<_> = r
        .units
        .iter()
        .filter(|u| u.status.starts_with("Failed") || u.status == "invalid")
        .collect();
    if !failed.is_empty() || !r.problems.is_empty() {
        out.push('\n');
        rule(&mut out, "Failed, missing and skipped");
        for u in failed.iter().take(50) {
            let _ = writeln!(out, "  FAILED {} ({}): {}", u.id, u.file, u.status);
        }
        if failed.len() > 50 {
            let _ = writeln!(out, "  … and {} more failed", failed.len() - 50);
        }
        for p in &r.problems {
            let _ = writeln!(out, "  {p}");
        }
    }
    out
}

/// Writes metrics_results.txt, metrics_results.parquet and results-summary.json into `dir`.
pub fn write_all(r: &PeerResults, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let txt = dir.join("metrics_results.txt");
    fsutil::write_atomic(&txt, render(r).as_bytes())?;
    let s = r.summary();
    let (lo, hi) = r.interval();
    let mut fields = vec![
        Field::new("format", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("n_units", DataType::UInt64, false),
        Field::new("n_planned", DataType::UInt64, true),
        Field::new("n_mismatches", DataType::UInt64, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![r.format.name()])),
        Arc::new(StringArray::from(vec![r.rule.clone()])),
        Arc::new(UInt64Array::from(vec![r.units.len() as u64])),
        Arc::new(UInt64Array::from(vec![r.planned.map(|p| p as u64)])),
        Arc::new(UInt64Array::from(vec![r.mismatches() as u64])),
    ];
    let mut push = |name: String, v: Option<f64>| {
        fields.push(Field::new(name, DataType::Float64, true));
        cols.push(Arc::new(Float64Array::from(vec![v])));
    };
    for (k, v) in &r.globals {
        push(k.clone(), Some(*v));
    }
    push("score_mean".into(), s.mean);
    push("score_std".into(), s.std);
    push("score_ci95_low".into(), Some(lo));
    push("score_ci95_high".into(), Some(hi));
    for ((_, suffix), q) in crate::metrics::stats::QUANTILES.iter().zip(s.quantiles) {
        push(format!("score_{suffix}"), q);
    }
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).map_err(std::io::Error::other)?;
    let pq = dir.join("metrics_results.parquet");
    fsutil::write_atomic_with(&pq, |w| {
        let mut wr = parquet::arrow::ArrowWriter::try_new(w, batch.schema(), None)
            .map_err(std::io::Error::other)?;
        wr.write(&batch).map_err(std::io::Error::other)?;
        wr.close().map_err(std::io::Error::other)?;
        Ok(())
    })?;
    let json = dir.join("results-summary.json");
    let doc = serde_json::json!({
        "format": r.format.name(),
        "rule": r.rule,
        "files": r.files,
        "globals": r.globals.iter().map(|(k, v)| serde_json::json!({"name": k, "value": crate::aggregate::export::json::num(Some(*v))})).collect::<Vec<_>>(),
        "checks": r.checks,
        "n_mismatches": r.mismatches(),
        "planned": r.planned,
        "counts": r.counts,
        "problems": r.problems,
        "notes": r.notes,
        "units": r.units.iter().map(|u| serde_json::json!({
            "id": u.id,
            "score": crate::aggregate::export::json::num(u.score),
            "status": u.status,
            "file": u.file,
            "values": u.values.iter().map(|(k, v)| (k.clone(), crate::aggregate::export::json::num(Some(*v)))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    });
    fsutil::write_atomic(
        &json,
        serde_json::to_string_pretty(&doc)
            .expect("plain data")
            .as_bytes(),
    )?;
    Ok(vec![txt, pq, json])
}

/// Two agents' results of one benchmark, paired by route / token.
#[derive(Debug, Clone, Serialize)]
pub struct PeerComparison {
    /// Units in both with a score.
    pub n_paired: usize,
    /// Only in the current result.
    pub only_current: usize,
    /// Only in the baseline.
    pub only_base: usize,
    /// Mean paired difference (current − baseline).
    pub diff: f64,
    /// Its 95 % bootstrap interval.
    pub ci: (f64, f64),
    /// Units that got worse, worst first: (id, baseline, current).
    pub worse: Vec<(String, f64, f64)>,
}

/// Pairs `current` with `base` by unit id.
pub fn compare(current: &PeerResults, base: &PeerResults) -> PeerComparison {
    let b: std::collections::HashMap<&str, f64> = base
        .units
        .iter()
        .filter_map(|u| u.score.map(|s| (u.id.as_str(), s)))
        .collect();
    let mut d = Vec::new();
    let mut worse = Vec::new();
    let mut only_current = 0;
    for u in &current.units {
        match (u.score, b.get(u.id.as_str())) {
            (Some(c), Some(&bs)) => {
                d.push(c - bs);
                if c < bs {
                    worse.push((u.id.clone(), bs, c));
                }
            }
            _ => only_current += 1,
        }
    }
    let ids: std::collections::HashSet<&str> =
        current.units.iter().map(|u| u.id.as_str()).collect();
    let only_base = base
        .units
        .iter()
        .filter(|u| !ids.contains(u.id.as_str()))
        .count();
    worse.sort_by(|x, y| (x.2 - x.1).total_cmp(&(y.2 - y.1)));
    let diff = if d.is_empty() {
        f64::NAN
    } else {
        d.iter().sum::<f64>() / d.len() as f64
    };
    PeerComparison {
        n_paired: d.len(),
        only_current,
        only_base,
        diff,
        ci: crate::aggregate::compare::bootstrap_ci(&d, crate::aggregate::compare::RESAMPLES, 20),
        worse,
    }
}

/// The comparison as text (also written as comparison.md).
pub fn render_comparison(c: &PeerComparison, current: &str, base: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {current} vs {base}\n");
    let _ = writeln!(
        out,
        "Paired units: {} (only in current: {}, only in baseline: {})\n",
        c.n_paired, c.only_current, c.only_base
    );
    let _ = writeln!(
        out,
        "Mean difference (current − baseline): {} (95 % bootstrap CI [{}, {}])\n",
        num(Some(c.diff)),
        num(Some(c.ci.0)),
        num(Some(c.ci.1))
    );
    if !c.worse.is_empty() {
        let _ = writeln!(out, "| worse | baseline | current |\n|---|---|---|");
        for (id, b, cur) in c.worse.iter().take(50) {
            let _ = writeln!(out, "| {id} | {} | {} |", num(Some(*b)), num(Some(*cur)));
        }
    }
    out
}
