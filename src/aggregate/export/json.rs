//! results-summary.json: per-rollout pass/fail with AlpaSim's scene score, run totals, failed
//! and excluded rollouts, and every problem. Non-finite numbers are written as the strings
//! "inf", "-inf" and "NaN" (plain JSON has no such numbers). Streamed with typed structs: a
//! 100K-rollout run writes ~130 MB here.

use std::collections::HashMap;
use std::path::Path;

use std::io::Write;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{json, Value};

use crate::aggregate::summary::{scene_score, Column, Trajectory};
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
    let video = |t: &Trajectory| {
        videos
            .get(&(t.clipgt_id.clone(), t.rollout_id.clone()))
            .map(String::as_str)
    };
    let excluded: Vec<Excluded<'a>> = r
        .trajectories
        .iter()
        .filter(|t| !t.kept)
        .map(|t| Excluded {
            clipgt_id: &t.clipgt_id,
            rollout_id: &t.rollout_id,
            reason: "img_is_black",
            video: video(t),
        })
        .collect();
    // Each kept trajectory's entry (and its scene score) in parallel, written in place into
    // the one list (a run-sized list is not built twice), then counted in order.
    use rayon::prelude::*;
    let kept: Vec<&Trajectory> = r.trajectories.iter().filter(|t| t.kept).collect();
    let mut rollouts = Vec::with_capacity(kept.len() + o.failed_rollouts.len());
    rollouts.par_extend(kept.par_iter().map(|&t| {
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
            video: video(t),
            metrics: Some(Metrics {
                columns: &r.metric_columns,
                values: &t.values,
            }),
        };
        match scene_score(get) {
            Ok(s) => {
                let ok = s.failure_reason.is_none();
                e.status = if ok { "pass" } else { "fail" };
                e.passed = Some(ok);
                e.failure_reason = s.failure_reason;
                e.score = Some(s.score);
                e.progress_score = Some(s.progress_score);
            }
            Err(msg) => e.score_error = Some(msg.to_string()),
        }
        e
    }));
    let (mut passed, mut failed, mut score_sum, mut scored) = (0usize, 0usize, 0.0, 0usize);
    for e in &rollouts {
        if let (Some(ok), Some(score)) = (e.passed, e.score) {
            scored += 1;
            score_sum += score;
            if ok {
                passed += 1
            } else {
                failed += 1
            }
        }
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
    let kept = kept.len();
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

/// Writes the document atomically, byte for byte what `serde_json::to_writer_pretty` writes for
/// it, with the rollouts rendered in parallel.
pub fn write(
    path: &Path,
    o: &Outcome,
    videos: &HashMap<(String, String), String>,
) -> std::io::Result<()> {
    let doc = document(o, videos);
    fsutil::write_atomic_with_as(path, fsutil::Durability::Renamed, |w| {
        write_doc(&mut *w, &doc)?;
        w.write_all(b"\n")
    })
}

/// [`Doc`] as `to_writer_pretty` writes it (the field order of its definition).
fn write_doc<W: Write>(w: &mut W, d: &Doc) -> std::io::Result<()> {
    let mut obj = PrettyObject::begin(w)?;
    obj.field("run_name", &d.run_name)?;
    obj.field("run_uuid", &d.run_uuid)?;
    obj.field("drivekit_version", &d.drivekit_version)?;
    obj.field("totals", &d.totals)?;
    obj.field("modifiers", &d.modifiers)?;
    obj.array_par("rollouts", &d.rollouts)?;
    obj.field("excluded", &d.excluded)?;
    obj.field("problems", &d.problems)?;
    obj.end()
}

/// serde_json's pretty format (two-space indent) starting `depth` levels deep: a value rendered
/// with it alone is what `to_writer_pretty` writes for it at that depth of a document.
struct PrettyAt {
    depth: usize,
    has_value: bool,
}

fn indent<W: ?Sized + Write>(w: &mut W, depth: usize) -> std::io::Result<()> {
    for _ in 0..depth {
        w.write_all(b"  ")?;
    }
    Ok(())
}

impl PrettyAt {
    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`: on its own line when something was in it.
    fn close<W: ?Sized + Write>(&mut self, w: &mut W, bracket: &[u8]) -> std::io::Result<()> {
        self.depth -= 1;
        if self.has_value {
            w.write_all(b"\n")?;
            indent(w, self.depth)?;
        }
        w.write_all(bracket)
    }

    /// Before an element or a key: a new line at the current depth.
    fn item<W: ?Sized + Write>(&self, w: &mut W, first: bool) -> std::io::Result<()> {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        indent(w, self.depth)
    }
}

impl Formatter for PrettyAt {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Writes `v` as it stands `depth` levels deep in a pretty document.
fn pretty_at<W: Write, T: Serialize + ?Sized>(
    w: &mut W,
    v: &T,
    depth: usize,
) -> std::io::Result<()> {
    let f = PrettyAt {
        depth,
        has_value: false,
    };
    v.serialize(&mut serde_json::Serializer::with_formatter(w, f))
        .map_err(std::io::Error::other)
}

/// A top-level pretty object written field by field, in [`PrettyAt`]'s layout.
struct PrettyObject<'w, W: Write> {
    w: &'w mut W,
    f: PrettyAt,
}

/// Entries rendered per task of [`PrettyObject::array_par`], and per window of tasks held at
/// once (so the buffered text stays ~20 MB however many rollouts there are).
const ARRAY_CHUNK: usize = 512;
const ARRAY_WINDOW: usize = 32 * ARRAY_CHUNK;

impl<'w, W: Write> PrettyObject<'w, W> {
    fn begin(w: &'w mut W) -> std::io::Result<Self> {
        let mut f = PrettyAt {
            depth: 0,
            has_value: false,
        };
        f.open(w, b"{")?;
        Ok(PrettyObject { w, f })
    }

    fn key(&mut self, key: &str) -> std::io::Result<()> {
        self.f.item(self.w, !self.f.has_value)?;
        self.f.has_value = true;
        serde_json::to_writer(&mut *self.w, key).map_err(std::io::Error::other)?;
        self.w.write_all(b": ")
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> std::io::Result<()> {
        self.key(key)?;
        pretty_at(self.w, v, self.f.depth)
    }

    /// A field holding an array, its elements rendered in parallel.
    fn array_par<T: Serialize + Sync>(&mut self, key: &str, items: &[T]) -> std::io::Result<()> {
        use rayon::prelude::*;
        self.key(key)?;
        let mut array = PrettyAt {
            depth: self.f.depth,
            has_value: false,
        };
        array.open(self.w, b"[")?;
        for (wi, window) in items.chunks(ARRAY_WINDOW).enumerate() {
            let texts: Vec<std::io::Result<Vec<u8>>> = window
                .par_chunks(ARRAY_CHUNK)
                .enumerate()
                .map(|(ci, chunk)| {
                    let mut buf = Vec::with_capacity(chunk.len() * 1024);
                    for (i, item) in chunk.iter().enumerate() {
                        array.item(&mut buf, wi == 0 && ci == 0 && i == 0)?;
                        pretty_at(&mut buf, item, array.depth)?;
                    }
                    Ok(buf)
                })
                .collect();
            for t in texts {
                self.w.write_all(&t?)?;
            }
        }
        array.has_value = !items.is_empty();
        array.close(self.w, b"]")
    }

    fn end(mut self) -> std::io::Result<()> {
        self.f.close(self.w, b"}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry<'a>(i: usize, values: &'a [Option<f64>], columns: &'a [Column]) -> Entry<'a> {
        Entry {
            run_uuid: "u\"1",
            run_name: "run",
            clipgt_id: "scene-\u{e9}",
            rollout_id: "r",
            rollout_uid: (!i.is_multiple_of(3)).then_some(i as u32),
            status: "pass",
            passed: Some(i.is_multiple_of(2)),
            failure_reason: (i.is_multiple_of(5)).then_some("collision\nat fault"),
            score: Some(i as f64 / 7.0),
            progress_score: None,
            score_error: (i.is_multiple_of(4)).then(|| "no metric".to_string()),
            batch: (i.is_multiple_of(6)).then_some("a/b"),
            video: None,
            metrics: (!i.is_multiple_of(7)).then_some(Metrics { columns, values }),
        }
    }

    #[test]
    fn the_document_written_in_parallel_is_what_serde_json_writes() {
        let columns: Vec<Column> = ["a", "b", "c"]
            .iter()
            .map(|n| Column {
                name: n.to_string(),
                time_aggregation: None,
            })
            .collect();
        let values = [Some(1.5), None, Some(f64::INFINITY)];
        let problems = [Problem {
            kind: ProblemKind::Warning,
            path: "p".into(),
            message: "m".into(),
        }];
        for n in [0, 1, 2, ARRAY_CHUNK + 3, ARRAY_WINDOW + ARRAY_CHUNK + 1] {
            let rollouts: Vec<Entry> = (0..n).map(|i| entry(i, &values, &columns)).collect();
            let doc = Doc {
                run_name: "run",
                run_uuid: "uuid",
                drivekit_version: "0",
                totals: json!({"n": n, "mean": 0.5, "nested": {"x": [1, 2], "e": []}}),
                modifiers: if n == 0 {
                    vec![]
                } else {
                    vec![json!({"m": 1})]
                },
                rollouts,
                excluded: vec![Excluded {
                    clipgt_id: "s",
                    rollout_id: "r",
                    reason: "img_is_black",
                    video: Some("v.mp4"),
                }],
                problems: &problems,
            };
            let mut ours = Vec::new();
            write_doc(&mut ours, &doc).unwrap();
            let theirs = serde_json::to_vec_pretty(&doc).unwrap();
            assert!(
                ours == theirs,
                "{n} entries:\n{}\n---\n{}",
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&theirs)
            );
        }
    }
}
