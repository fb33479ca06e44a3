//! results-summary.json: per-rollout pass/fail with AlpaSim's scene score, run totals, failed
//! and excluded rollouts, and every problem. Non-finite numbers are written as the strings
//! "inf", "-inf" and "NaN" (plain JSON has no such numbers). Streamed with typed structs: a
//! 100K-rollout run writes ~130 MB here.

use std::collections::HashMap;
use std::path::Path;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{json, Value};

use crate::aggregate::summary::{scene_score, Column};
use crate::aggregate::trajectory::MODIFIERS;
use crate::aggregate::{Outcome, Problem, ProblemKind};
use crate::fsutil;

/// A number as JSON (non-finite as a string, null as null).
pub fn num(v: Option<f64>) -> Value {
    serde_json::to_value(Num(v)).expect("numbers serialise")
}

/// Serialises an optional float the way [`num`] describes.
#[derive(Debug, Clone, Copy)]
pub struct Num(pub Option<f64>);

impl Serialize for Num {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(x) if x.is_finite() => s.serialize_f64(x),
            Some(x) if x.is_nan() => s.serialize_str("NaN"),
            Some(x) => s.serialize_str(if x > 0.0 { "inf" } else { "-inf" }),
        }
    }
}

struct Metrics<'a> {
    columns: &'a [Column],
    values: &'a [Option<f64>],
}

impl Serialize for Metrics<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.columns.len()))?;
        for (c, v) in self.columns.iter().zip(self.values) {
            m.serialize_entry(&c.name, &Num(*v))?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    run_uuid: &'a str,
    run_name: &'a str,
    clipgt_id: &'a str,
    rollout_id: &'a str,
    rollout_uid: Option<u32>,
    status: &'static str,
    passed: Option<bool>,
    failure_reason: Option<&'a str>,
    score: Option<f64>,
    progress_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    score_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    batch: Option<&'a str>,
    video: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<Metrics<'a>>,
}

#[derive(Serialize)]
struct Excluded<'a> {
    clipgt_id: &'a str,
    rollout_id: &'a str,
    reason: &'static str,
    video: Option<&'a str>,
}

#[derive(Serialize)]
struct Doc<'a> {
    run_name: &'a str,
    run_uuid: &'a str,
    drivekit_version: &'static str,
    totals: Value,
    modifiers: Vec<Value>,
    rollouts: Vec<Entry<'a>>,
    excluded: Vec<Excluded<'a>>,
    problems: &'a [Problem],
}

fn document<'a>(o: &'a Outcome, videos: &'a HashMap<(String, String), String>) -> Doc<'a> {
    let r = &o.results;
    let col = |n: &str| r.metric_columns.iter().position(|c| c.name == n);
    let score_cols: HashMap<&str, Option<usize>> = [
        "gt_dist_traveled_m",
        "progress_clipped_rel",
        "collision_at_fault",
        "offroad",
        "left_corridor_laterally",
    ]
    .into_iter()
    .map(|n| (n, col(n)))
    .collect();
    let mut rollouts = Vec::with_capacity(r.trajectories.len() + o.failed_rollouts.len());
    let mut excluded = Vec::new();
    let (mut passed, mut failed, mut score_sum, mut scored) = (0usize, 0usize, 0.0, 0usize);
    for t in &r.trajectories {
        let video = videos
            .get(&(t.clipgt_id.clone(), t.rollout_id.clone()))
            .map(String::as_str);
        if !t.kept {
            excluded.push(Excluded {
                clipgt_id: &t.clipgt_id,
                rollout_id: &t.rollout_id,
                reason: "img_is_black",
                video,
            });
            continue;
        }
        let get = |n: &str| {
            score_cols
                .get(n)
                .copied()
                .flatten()
                .and_then(|i| t.values[i])
        };
        let mut e = Entry {
            run_uuid: &r.run_uuid,
            run_name: &t.run_name,
            clipgt_id: &t.clipgt_id,
            rollout_id: &t.rollout_id,
            rollout_uid: Some(t.rollout_uid),
            status: "unscored",
            passed: None,
            failure_reason: None,
            score: None,
            progress_score: None,
            score_error: None,
            batch: None,
            video,
            metrics: Some(Metrics {
                columns: &r.metric_columns,
                values: &t.values,
            }),
        };
        match scene_score(get) {
            Ok(s) => {
                scored += 1;
                score_sum += s.score;
                let ok = s.failure_reason.is_none();
                if ok {
                    passed += 1
                } else {
                    failed += 1
                }
                e.status = if ok { "pass" } else { "fail" };
                e.passed = Some(ok);
                e.failure_reason = s.failure_reason;
                e.score = Some(s.score);
                e.progress_score = Some(s.progress_score);
            }
            Err(msg) => e.score_error = Some(msg.to_string()),
        }
        rollouts.push(e);
    }
    for f in &o.failed_rollouts {
        rollouts.push(Entry {
            run_uuid: &r.run_uuid,
            run_name: &r.run_name,
            clipgt_id: &f.clipgt_id,
            rollout_id: &f.rollout_id,
            rollout_uid: None,
            status: "fail",
            passed: Some(false),
            failure_reason: Some(&f.error),
            score: Some(0.0),
            progress_score: Some(0.0),
            score_error: None,
            batch: Some(&f.batch),
            video: None,
            metrics: None,
        });
    }
    let kept = r.trajectories.iter().filter(|t| t.kept).count();
    let total_scored = scored + o.failed_rollouts.len();
    let modifiers = MODIFIERS
        .iter()
        .zip(&o.modifier_counts)
        .map(|(m, c)| json!({"modifier": m, "rows_removed": c.rows, "trajectories_touched": c.trajectories}))
        .collect();
    let totals = json!({
        "n_scenes": r.by_scene.len(),
        "n_rollouts": r.run.n_rollouts,
        "n_trajectories": kept,
        "n_passed": passed,
        "n_failed": failed + o.failed_rollouts.len(),
        "n_unscored": kept - scored,
        "mean_score": if total_scored > 0 { json!(score_sum / total_scored as f64) } else { Value::Null },
        "n_failed_rollouts": o.failed_rollouts.len(),
        "n_excluded": excluded.len(),
        "n_batches": o.n_batches,
        "n_batches_used": o.n_batches_used,
        "n_incomplete_batches": o.count(ProblemKind::IncompleteBatch),
        "n_skipped_files": o.count(ProblemKind::SkippedFile),
        "n_missing_scenes": o.count(ProblemKind::MissingScene),
        "n_warnings": o.count(ProblemKind::Warning),
    });
    Doc {
        run_name: &r.run_name,
        run_uuid: &r.run_uuid,
        drivekit_version: env!("CARGO_PKG_VERSION"),
        totals,
        modifiers,
        rollouts,
        excluded,
        problems: &o.problems,
    }
}

/// Writes the document atomically.
pub fn write(
    path: &Path,
    o: &Outcome,
    videos: &HashMap<(String, String), String>,
) -> std::io::Result<()> {
    let doc = document(o, videos);
    fsutil::write_atomic_with_as(path, fsutil::Durability::Renamed, |w| {
        serde_json::to_writer_pretty(&mut *w, &doc).map_err(std::io::Error::other)?;
        std::io::Write::write_all(w, b"\n")
    })
}
