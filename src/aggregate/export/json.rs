//! results-summary.json: per-rollout pass/fail with AlpaSim's scene score, run totals, failed
//! and excluded rollouts, and every problem. Non-finite numbers are written as the strings
//! "inf", "-inf" and "NaN" (plain JSON has no such numbers).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::aggregate::summary::scene_score;
use crate::aggregate::trajectory::MODIFIERS;
use crate::aggregate::{Outcome, ProblemKind};
use crate::fsutil;

/// A number as JSON (non-finite as a string, null as null).
pub fn num(v: Option<f64>) -> Value {
    match v {
        None => Value::Null,
        Some(x) if x.is_finite() => json!(x),
        Some(x) if x.is_nan() => json!("NaN"),
        Some(x) => json!(if x > 0.0 { "inf" } else { "-inf" }),
    }
}

/// Builds the summary document.
pub fn document(o: &Outcome, videos: &HashMap<(String, String), String>) -> Value {
    let r = &o.results;
    let mut rollouts = Vec::new();
    let mut excluded = Vec::new();
    let (mut passed, mut failed, mut score_sum, mut scored) = (0usize, 0usize, 0.0, 0usize);
    for t in &r.trajectories {
        let video = videos.get(&(t.clipgt_id.clone(), t.rollout_id.clone()));
        if !t.kept {
            excluded.push(json!({"clipgt_id": t.clipgt_id, "rollout_id": t.rollout_id, "reason": "img_is_black", "video": video}));
            continue;
        }
        let mut metrics = Map::new();
        for (c, v) in r.metric_columns.iter().zip(&t.values) {
            metrics.insert(c.name.clone(), num(*v));
        }
        let get = |n: &str| {
            r.metric_columns
                .iter()
                .position(|c| c.name == n)
                .and_then(|i| t.values[i])
        };
        let mut row = json!({
            "run_uuid": r.run_uuid, "run_name": t.run_name, "clipgt_id": t.clipgt_id,
            "rollout_id": t.rollout_id, "rollout_uid": t.rollout_uid, "video": video,
        });
        match scene_score(get) {
            Ok(s) => {
                scored += 1;
                score_sum += s.score;
                if s.failure_reason.is_some() {
                    failed += 1
                } else {
                    passed += 1
                }
                row["status"] = json!(if s.failure_reason.is_some() {
                    "fail"
                } else {
                    "pass"
                });
                row["passed"] = json!(s.failure_reason.is_none());
                row["failure_reason"] = json!(s.failure_reason);
                row["score"] = json!(s.score);
                row["progress_score"] = json!(s.progress_score);
            }
            Err(e) => {
                row["status"] = json!("unscored");
                row["passed"] = Value::Null;
                row["score"] = Value::Null;
                row["score_error"] = json!(e);
            }
        }
        row["metrics"] = Value::Object(metrics);
        rollouts.push(row);
    }
    for f in &o.failed_rollouts {
        rollouts.push(json!({
            "run_uuid": r.run_uuid, "run_name": r.run_name, "clipgt_id": f.clipgt_id,
            "rollout_id": f.rollout_id, "status": "fail", "passed": false,
            "failure_reason": f.error, "score": 0.0, "progress_score": 0.0, "batch": f.batch,
        }));
    }
    let total_scored = scored + o.failed_rollouts.len();
    let modifiers: Vec<Value> = MODIFIERS
        .iter()
        .zip(&o.modifier_counts)
        .map(|(m, c)| json!({"modifier": m, "rows_removed": c.rows, "trajectories_touched": c.trajectories}))
        .collect();
    json!({
        "run_name": r.run_name,
        "run_uuid": r.run_uuid,
        "drivekit_version": env!("CARGO_PKG_VERSION"),
        "totals": {
            "n_scenes": r.by_scene.len(),
            "n_rollouts": r.run.n_rollouts,
            "n_trajectories": r.trajectories.iter().filter(|t| t.kept).count(),
            "n_passed": passed,
            "n_failed": failed + o.failed_rollouts.len(),
            "n_unscored": r.trajectories.iter().filter(|t| t.kept).count() - scored,
            "mean_score": if total_scored > 0 { json!(score_sum / total_scored as f64) } else { Value::Null },
            "n_failed_rollouts": o.failed_rollouts.len(),
            "n_excluded": excluded.len(),
            "n_batches": o.n_batches,
            "n_batches_used": o.n_batches_used,
            "n_incomplete_batches": o.count(ProblemKind::IncompleteBatch),
            "n_skipped_files": o.count(ProblemKind::SkippedFile),
            "n_missing_scenes": o.count(ProblemKind::MissingScene),
            "n_warnings": o.count(ProblemKind::Warning),
        },
        "modifiers": modifiers,
        "rollouts": rollouts,
        "excluded": excluded,
        "problems": o.problems,
    })
}

/// Writes the document atomically.
pub fn write(
    path: &Path,
    o: &Outcome,
    videos: &HashMap<(String, String), String>,
) -> std::io::Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(&document(o, videos)).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    fsutil::write_atomic(path, &bytes)
}
