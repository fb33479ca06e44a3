//! aggregate/report.html: the page a reviewer opens first. One self-contained HTML file (its
//! script and styles inline, no CDN, no server: it works from `file://` and from any static file
//! server) with the run's overview, scorecard, scenes, rollouts and, with a baseline, the
//! comparison. What grows with the run is loaded on demand from `report/*.js` beside it (script
//! files, since browsers refuse `fetch` on `file://`): the rollout table in chunks of
//! [`CHUNK`] rollouts, and the per-step series of the rollouts that have one (every rollout of a
//! small run, the worst [`SERIES_WORST`] of a large one) with the rows the aggregation kept.
//! The scorecard's numbers come from [`crate::aggregate::scorecard`], as metrics_results.png's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::Array;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::aggregate::compare::{self, Better, MetricComparison};
use crate::aggregate::load;
use crate::aggregate::series::{self, PlotSeries};
use crate::aggregate::trajectory::{names, ChainParams, WideTrajectory};
use crate::aggregate::{Outcome, Problem, ProblemKind};
use crate::fsutil;
use crate::metrics_file::{self, col};

/// The page, in aggregate/.
pub const REPORT: &str = "report.html";
/// Its data files, in aggregate/.
pub const REPORT_DATA: &str = "report";
/// Rollouts per data chunk.
pub const CHUNK: usize = 5000;
/// Runs up to this many rollouts get every rollout's series.
pub const SERIES_ALL_UP_TO: usize = 2000;
/// Larger runs get the series of this many of their worst rollouts.
pub const SERIES_WORST: usize = 500;

const SCRIPT: &str = include_str!("../../../assets/report.js");
const STYLE: &str = include_str!("../../../assets/report.css");

use crate::aggregate::scorecard::{self, RATES};

/// A baseline run for the comparison section.
pub struct Baseline<'a> {
    /// Its results (aggregated read-only).
    pub outcome: &'a Outcome,
    /// Its run dir.
    pub run_dir: &'a Path,
    /// The per-metric comparison of [`compare::compare`].
    pub rows: &'a [MetricComparison],
}

/// Writes aggregate/report/ for `o` (run dir `run_dir`): the rollout chunks and the series,
/// with `videos` mapping (scene, rollout) to a video path relative to aggregate/. They do not
/// depend on a baseline, so a comparison rewrites only the page ([`write_html`]). Returns a
/// warning for each batch whose series could not be read again.
pub fn write_data(
    o: &Outcome,
    run_dir: &Path,
    videos: &HashMap<(String, String), String>,
    params: &ChainParams,
) -> std::io::Result<Vec<Problem>> {
    let dir = &o.output_dir;
    let r = &o.results;
    let data_dir = dir.join(REPORT_DATA);
    let tmp = dir.join(format!(".{REPORT_DATA}.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    fs::create_dir_all(&tmp)?;
    let scene_index = scene_index(o);
    let with_series = series_choice(o);
    // The series files: one per batch with chosen rollouts, named for what it holds.
    let mut by_batch: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &with_series {
        by_batch.entry(r.trajectories[i].batch).or_default().push(i);
    }
    let series_files: Vec<(usize, Vec<usize>, String)> = by_batch
        .into_iter()
        .map(|(b, idx)| {
            let name = series_file_name(o, b, &idx, params);
            (b, idx, name)
        })
        .collect();
    let file_of: HashMap<usize, &str> = series_files
        .iter()
        .flat_map(|(_, idx, name)| idx.iter().map(move |&i| (i, name.as_str())))
        .collect();
    // Rollout chunks, written in parallel.
    use rayon::prelude::*;
    r.trajectories.par_chunks(CHUNK).enumerate().try_for_each(
        |(k, chunk)| -> std::io::Result<()> {
            type Row<'a> = (
                usize,
                &'a str,
                bool,
                Option<&'a String>,
                Option<&'a str>,
                Option<String>,
                Vec<Option<f64>>,
            );
            let rows: Vec<Row<'_>> = chunk
                .iter()
                .enumerate()
                .map(|(j, t)| {
                    (
                        scene_index[t.clipgt_id.as_str()],
                        t.rollout_id.as_str(),
                        t.kept,
                        videos.get(&(t.clipgt_id.clone(), t.rollout_id.clone())),
                        // Its series file (series-{name}.js), when it has one.
                        file_of.get(&(k * CHUNK + j)).copied(),
                        batch_rel(run_dir, &o.batch_dirs, t.batch),
                        t.values.iter().map(|v| finite(*v)).collect(),
                    )
                })
                .collect();
            let body = format!("DK.chunk({k},{});\n", serde_json::to_string(&rows)?);
            fs::write(tmp.join(format!("rollouts-{k}.js")), body)
        },
    )?;
    // Series, read again from their batch's rows in metrics_unprocessed.parquet (written just
    // before; one read per batch, in parallel) — so a merge of partial aggregations reads no
    // batch's metrics.parquet — or, for a batch it lacks, from the batch's own file; unless the
    // previous report has the same file (same batch file, rollouts and settings).
    // The parts' footers (and which part and row groups hold each batch dir), read once, and
    // only when some series file is not reused.
    type Parts = Vec<(PathBuf, metrics_file::MetricsFileMeta)>;
    type Rows = (Parts, HashMap<PathBuf, (usize, Vec<usize>)>);
    let rows: std::sync::OnceLock<Rows> = std::sync::OnceLock::new();
    let open_rows = || -> Rows {
        let parts: Parts = crate::aggregate::parts::part_files(&dir.join(super::UNPROCESSED))
            .into_iter()
            .filter_map(|p| Some((p.clone(), metrics_file::MetricsFileMeta::open(&p).ok()?)))
            .collect();
        let mut groups = HashMap::new();
        for (i, (_, meta)) in parts.iter().enumerate() {
            for (rel, g) in crate::aggregate::unprocessed::batch_row_groups(meta.parquet_metadata())
            {
                groups.insert(run_dir.join(rel), (i, g));
            }
        }
        (parts, groups)
    };
    let results: Vec<std::io::Result<Option<Problem>>> = series_files
        .par_iter()
        .map(|(b, idx, name)| {
            let file_name = format!("series-{name}.js");
            let previous = data_dir.join(&file_name);
            if previous.is_file()
                && (fs::hard_link(&previous, tmp.join(&file_name)).is_ok()
                    || fs::copy(&previous, tmp.join(&file_name)).is_ok())
            {
                return Ok(None);
            }
            let batch_dir = &o.batch_dirs[*b];
            // One file per batch (fewer, larger files: creating thousands of small ones costs
            // more than writing them); each rollout's series is one DK.series call in it.
            let write = |found: &series::BatchSeries| -> std::io::Result<()> {
                let mut body: Vec<u8> = Vec::new();
                for &i in idx {
                    let t = &r.trajectories[i];
                    let Some(s) = found.get(&t.rollout_id) else {
                        continue;
                    };
                    body.extend_from_slice(b"DK.series(");
                    serde_json::to_writer(&mut body, &format!("{name}/{}", t.rollout_id))?;
                    body.push(b',');
                    s.write_json(&mut body)?;
                    body.extend_from_slice(b");\n");
                }
                body.extend_from_slice(format!("DK.done(\"series{name}\");\n").as_bytes());
                fs::write(tmp.join(&file_name), body)
            };
            // Kept while the batch was reduced (a small run)…
            if let Some(found) = o.series.get(batch_dir) {
                write(found)?;
                return Ok(None);
            }
            // …or read again.
            let (parts, groups) = rows.get_or_init(open_rows);
            let (file, reader) = match groups.get(batch_dir) {
                Some((i, g)) => (parts[*i].0.clone(), parts[*i].1.reader(Some(g.clone()))),
                None => {
                    let file = batch_dir.join("metrics.parquet");
                    let reader = metrics_file::open_metrics_file(&file);
                    (file, reader)
                }
            };
            let (names, wides) = match reader.map_err(load::BatchError::from).and_then(read_series)
            {
                Ok(found) => found,
                Err(e) => {
                    return Ok(Some(Problem {
                        kind: ProblemKind::Warning,
                        path: file
                            .strip_prefix(run_dir)
                            .unwrap_or(&file)
                            .display()
                            .to_string(),
                        message: format!("its series cannot be read for the run report ({e})"),
                    }))
                }
            };
            let found: series::BatchSeries = idx
                .iter()
                .filter_map(|&i| {
                    let id = &r.trajectories[i].rollout_id;
                    let wide = wides.get(id)?;
                    Some((id.clone(), PlotSeries::of(names.clone(), wide, params)))
                })
                .collect();
            write(&found)?;
            Ok(None)
        })
        .collect();
    let mut problems = Vec::new();
    for r in results {
        problems.extend(r?);
    }
    if data_dir.exists() {
        fs::remove_dir_all(&data_dir)?;
    }
    fs::rename(&tmp, &data_dir)?;
    Ok(problems)
}

/// Writes aggregate/report.html for `o` (its report/ written by [`write_data`]), with the
/// comparison section when `base` is given. Returns its path.
pub fn write_html(
    o: &Outcome,
    run_dir: &Path,
    videos: &HashMap<(String, String), String>,
    base: Option<&Baseline<'_>>,
) -> std::io::Result<PathBuf> {
    let doc = document(o, run_dir, videos, base);
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} — drivekit run report</title><style>{STYLE}</style></head>\n<body>\
         <noscript>This report needs JavaScript; the numbers are also in metrics_results.txt.</noscript>\
         <div id=\"app\"></div>\n<script>const DATA = {};</script>\n<script>{SCRIPT}</script>\n</body></html>\n",
        esc(&o.results.run_name),
        // `</` cannot close the script element from inside a JSON string.
        serde_json::to_string(&doc)?.replace("</", "<\\/"),
    );
    let path = o.output_dir.join(REPORT);
    fsutil::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

/// Each scene of the run's rollouts → its index in the page's scene list (sorted by id).
fn scene_index(o: &Outcome) -> BTreeMap<&str, usize> {
    let mut ids: Vec<&str> = o
        .results
        .trajectories
        .iter()
        .map(|t| t.clipgt_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.into_iter().enumerate().map(|(i, s)| (s, i)).collect()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Bumped when the content of series files changes, so a rerun does not reuse older ones.
const SERIES_FORMAT: u32 = 1;

/// The name of batch `b`'s series file holding rollouts `idx`: a digest of everything its content
/// depends on (the batch's metrics.parquet by path, size and mtime, the rollouts, the chain's
/// settings), so a rerun reuses the previous report's file when nothing of that changed.
fn series_file_name(o: &Outcome, b: usize, idx: &[usize], params: &ChainParams) -> String {
    let dir = &o.batch_dirs[b];
    let metrics = dir.join("metrics.parquet");
    let key =
        crate::aggregate::unprocessed::BatchKey::of(&dir.display().to_string(), &metrics).ok();
    let mut ids: Vec<&str> = idx
        .iter()
        .map(|&i| o.results.trajectories[i].rollout_id.as_str())
        .collect();
    ids.sort_unstable();
    let mut h = Sha256::new();
    h.update(format!("{SERIES_FORMAT}\u{1f}{key:?}\u{1f}{params:?}\u{1f}").as_bytes());
    h.update(ids.join("\u{1f}").as_bytes());
    // Without a key (metrics.parquet cannot be stat'ed) the name is unique to this run.
    if key.is_none() {
        h.update(format!("{}", std::process::id()).as_bytes());
    }
    let digest = h.finalize();
    digest[..8].iter().map(|x| format!("{x:02x}")).collect()
}

fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

/// A batch dir relative to aggregate/ (`../rollouts/…`), for links to its files.
fn batch_rel(run_dir: &Path, dirs: &[PathBuf], b: usize) -> Option<String> {
    let rel = dirs.get(b)?.strip_prefix(run_dir).ok()?;
    Some(format!("../{}", rel.to_string_lossy()))
}

/// The rollouts that get a series file: all of a small run, else the worst (earliest incident,
/// then largest deviation from the log).
fn series_choice(o: &Outcome) -> BTreeSet<usize> {
    let r = &o.results;
    let n = r.trajectories.len();
    if n <= SERIES_ALL_UP_TO {
        return (0..n).collect();
    }
    let c = |name: &str| r.metric_columns.iter().position(|c| c.name == name);
    let (oc, dur, dev) = (
        c(names::OFFROAD_OR_COLLISION),
        c("duration_frac_20s"),
        c(names::DIST_TO_GT_TRAJECTORY),
    );
    let get = |i: usize, c: Option<usize>| c.and_then(|c| r.trajectories[i].values[c]);
    let mut order: Vec<(u8, f64, usize)> = (0..n)
        .map(|i| {
            if get(i, oc).is_some_and(|v| v > 0.0) {
                (0, get(i, dur).unwrap_or(f64::MAX), i)
            } else {
                (1, -get(i, dev).unwrap_or(0.0), i)
            }
        })
        .collect();
    order.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    order
        .into_iter()
        .take(SERIES_WORST)
        .map(|(_, _, i)| i)
        .collect()
}

/// Each rollout's wide trajectory, by rollout id.
type Wides = HashMap<String, WideTrajectory>;

/// Every rollout of one metrics.parquet: the metric names (file order) and each rollout's wide
/// trajectory, by rollout id.
fn read_series(
    reader: metrics_file::MetricsFileReader,
) -> Result<(Arc<Vec<String>>, Wides), load::BatchError> {
    // Dictionary values are interned once per record batch; rows only index them.
    let mut names = load::Interner::default();
    let mut rollouts = load::Interner::default();
    // Per rollout id, per metric id: (timestamp, value).
    type Points = Vec<Vec<(i64, Option<f64>)>>;
    let mut points: Vec<Points> = Vec::new();
    let mut hint = load::PointsHint::default();
    let file = reader.path().to_path_buf();
    for batch in reader {
        let batch = batch?;
        let (name_map, nk) = load::dict_ids(&batch, col::NAME, &mut names, &file)?;
        let (roll_map, rk) = load::dict_ids(&batch, col::ROLLOUT_ID, &mut rollouts, &file)?;
        points.resize_with(rollouts.names.len(), Vec::new);
        let ts = batch.column(col::TIMESTAMPS_US).as_primitive::<Int64Type>();
        let vals = batch.column(col::VALUES).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            let (Some(&m), Some(&r)) = (name_map.get(nk[i] as usize), roll_map.get(rk[i] as usize))
            else {
                continue;
            };
            let (m, r) = (m as usize, r as usize);
            let v = (!vals.is_null(i)).then(|| vals.value(i));
            hint.push(&mut points[r], m, (ts.value(i), v));
        }
    }
    // A rollout with two rows of one metric at one timestep has no series (aggregate rejects
    // such a batch).
    let names = names.names;
    let wides = rollouts
        .names
        .into_iter()
        .zip(points)
        .filter_map(|(roll, pts)| Some((roll, load::widen_points(&pts, names.len()).ok()?)))
        .collect();
    Ok((Arc::new(names), wides))
}

fn better_name(b: Better) -> &'static str {
    match b {
        Better::Lower => "lower",
        Better::Higher => "higher",
        Better::Neither => "neither",
    }
}

/// Per scene: its kept rollouts and each metric column's mean over them (finite or null), as
/// metrics_results_by_scene.parquet and `aggregate --compare` have them.
fn scene_means(o: &Outcome) -> BTreeMap<&str, (usize, Vec<Option<f64>>)> {
    let m = o.results.metric_columns.len();
    o.results
        .by_scene
        .iter()
        .map(|(scene, st)| {
            (
                scene.as_str(),
                (
                    st.n_rollouts,
                    st.columns.iter().take(m).map(|c| finite(c.mean)).collect(),
                ),
            )
        })
        .collect()
}

fn header(o: &Outcome, run_dir: &Path) -> Value {
    let meta: serde_norway::Value = fs::read_to_string(run_dir.join("run_metadata.yaml"))
        .ok()
        .and_then(|s| serde_norway::from_str(&s).ok())
        .unwrap_or_default();
    let field = |k: &str| -> Value {
        match meta.get(k) {
            Some(serde_norway::Value::String(s)) => json!(s),
            Some(serde_norway::Value::Number(n)) => json!(n.as_f64()),
            _ => Value::Null,
        }
    };
    let started = meta
        .get("started_unix_s")
        .and_then(serde_norway::Value::as_i64)
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string());
    let digest = fs::read(run_dir.join("wizard-config.yaml")).ok().map(|b| {
        Sha256::digest(&b)
            .iter()
            .take(6)
            .map(|x| format!("{x:02x}"))
            .collect::<String>()
    });
    // txt-logs/shard-I-of-N.log: N shards.
    let shards = fs::read_dir(run_dir.join("txt-logs"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".log")?
                .rsplit_once("-of-")?
                .1
                .parse::<usize>()
                .ok()
        })
        .max();
    let r = &o.results;
    json!({
        "run_name": r.run_name,
        "run_uuid": r.run_uuid,
        "run_dir": run_dir.display().to_string(),
        "started": started,
        "drivekit_version": field("drivekit_version"),
        "aggregated_by": env!("CARGO_PKG_VERSION"),
        "config_digest": digest,
        "backend": field("backend"),
        "backend_device": field("backend_device"),
        "host": field("host"),
        "shards": shards,
        "batches": o.n_batches,
        "batches_used": o.n_batches_used,
        "rollouts": r.trajectories.len(),
        "kept": r.trajectories.iter().filter(|t| t.kept).count(),
        "failed": o.failed_rollouts.len(),
    })
}

fn document(
    o: &Outcome,
    run_dir: &Path,
    videos: &HashMap<(String, String), String>,
    base: Option<&Baseline<'_>>,
) -> Value {
    let r = &o.results;
    let scene_index = scene_index(o);
    let means = scene_means(o);
    let metrics: Vec<Value> = r
        .metric_columns
        .iter()
        .map(|c| json!({"name": c.name, "better": better_name(compare::better(&c.name))}))
        .collect();
    let rates = scorecard::rates(o);
    // Continuous metrics: every non-binary column.
    let continuous: Vec<Value> = scorecard::continuous_columns(o)
        .into_iter()
        .map(|i| {
            let (c, s) = (&r.metric_columns[i], &r.run.columns[i]);
            json!({"name": c.name, "better": better_name(compare::better(&c.name)),
                "p05": s.quantiles[0], "p25": s.quantiles[1], "median": s.quantiles[2],
                "p75": s.quantiles[3], "p95": s.quantiles[4], "mean": finite(s.mean), "n": s.count})
        })
        .collect();
    let profiles: Vec<Value> = r
        .profiles
        .iter()
        .map(|p| {
            json!({"profile": p.profile, "left_out": p.left_out, "notes": p.notes,
                "scores": p.scores.iter().map(|s| json!({"name": s.name, "n": s.n_scored,
                    "mean": (s.n_scored > 0).then(|| s.sum / s.n_scored as f64),
                    "unscored": s.unscored.len()})).collect::<Vec<_>>()})
        })
        .collect();
    let score_col = r
        .profiles
        .iter()
        .flat_map(|p| &p.scores)
        .map(|s| s.column)
        .next();
    let mut failed_in: HashMap<&str, usize> = HashMap::new();
    for f in &o.failed_rollouts {
        *failed_in.entry(f.clipgt_id.as_str()).or_default() += 1;
    }
    let scenes: Vec<Value> = scene_index
        .keys()
        .map(|s| {
            let (n, m) = means.get(s).cloned().unwrap_or((0, Vec::new()));
            let failed = failed_in.get(s).copied().unwrap_or(0);
            json!({"id": s, "tags": r.scene_tags.get(*s).cloned().unwrap_or_default(),
                "n": n, "failed": failed, "means": m.into_iter().map(finite).collect::<Vec<_>>()})
        })
        .collect();
    let compare = base.map(|b| comparison(o, b, &means, videos));
    let problems: Vec<Value> = o
        .problems
        .iter()
        .map(|p| json!({"kind": format!("{:?}", p.kind), "path": p.path, "message": p.message}))
        .collect();
    json!({
        "header": header(o, run_dir),
        "metrics": metrics,
        "rates": rates,
        "continuous": continuous,
        "profiles": profiles,
        "score_column": score_col,
        "problems": problems,
        "failed": o.failed_rollouts,
        "scenes": scenes,
        "chunks": r.trajectories.len().div_ceil(CHUNK),
        "chunk_size": CHUNK,
        "n_rollouts": r.trajectories.len(),
        "compare": compare,
    })
}

/// Why `report` could not rebuild a page.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    /// The run (or the baseline) could not be aggregated.
    #[error("{source}")]
    Aggregate {
        /// the run dir
        path: PathBuf,
        /// why
        source: Box<crate::aggregate::Error>,
    },
    /// The page could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// aggregate/ of the run
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// `report RUN [--compare BASE]`: rebuilds RUN/aggregate/report.html from the run's batches
/// (reductions from aggregate's cache where they are current) without rewriting any other output,
/// with the comparison section when `base` is given. Returns the page's path.
pub fn rebuild(
    opts: &crate::aggregate::Options,
    base: Option<&Path>,
) -> Result<PathBuf, RebuildError> {
    let ro = crate::aggregate::Options {
        read_only: true,
        ..opts.clone()
    };
    let agg = |dir: &Path| {
        crate::aggregate::run(&crate::aggregate::Options {
            run_dir: dir.to_path_buf(),
            ..ro.clone()
        })
        .map_err(|e| RebuildError::Aggregate {
            path: dir.to_path_buf(),
            source: Box::new(e),
        })
    };
    let mut current = agg(&opts.run_dir)?;
    let dir = current.output_dir.clone();
    let werr = |e| RebuildError::Write {
        path: dir.clone(),
        source: e,
    };
    fs::create_dir_all(&dir).map_err(werr)?;
    let videos = videos_of(&dir);
    let unreadable = write_data(&current, &opts.run_dir, &videos, &opts.chain).map_err(werr)?;
    current.problems.extend(unreadable);
    current.problems.sort();
    let base_outcome = base.map(agg).transpose()?;
    let rows = base_outcome
        .as_ref()
        .map(|b| compare::compare(&current.results, &b.results, &BTreeMap::new()))
        .unwrap_or_default();
    let baseline = base
        .zip(base_outcome.as_ref())
        .map(|(run_dir, outcome)| Baseline {
            outcome,
            run_dir,
            rows: &rows,
        });
    write_html(&current, &opts.run_dir, &videos, baseline.as_ref()).map_err(werr)
}

/// Videos of a run by (scene, rollout), read from its results-summary.json.
pub fn videos_of(aggregate_dir: &Path) -> HashMap<(String, String), String> {
    let doc: Value = fs::read(aggregate_dir.join(super::SUMMARY_JSON))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut out = HashMap::new();
    for key in ["rollouts", "excluded"] {
        for e in doc[key].as_array().into_iter().flatten() {
            if let (Some(c), Some(r), Some(v)) = (
                e["clipgt_id"].as_str(),
                e["rollout_id"].as_str(),
                e["video"].as_str(),
            ) {
                out.insert((c.to_string(), r.to_string()), v.to_string());
            }
        }
    }
    out
}

fn comparison(
    o: &Outcome,
    b: &Baseline<'_>,
    means: &BTreeMap<&str, (usize, Vec<Option<f64>>)>,
    videos: &HashMap<(String, String), String>,
) -> Value {
    let base_means = scene_means(b.outcome);
    let base_videos = videos_of(&b.outcome.output_dir);
    let rel_base = pathdiff(&b.outcome.output_dir, &o.output_dir);
    let cur = &o.results.metric_columns;
    let base_cols = &b.outcome.results.metric_columns;
    // Per metric with a direction: the scenes that got worse, worst first (the metrics that
    // regressed first, then the safety rates, then the rest; five scenes each).
    let regressed: Vec<&str> = b
        .rows
        .iter()
        .filter(|r| r.regressed)
        .map(|r| r.metric.as_str())
        .collect();
    let mut order: Vec<usize> = (0..cur.len()).collect();
    order.sort_by_key(|&i| {
        let n = cur[i].name.as_str();
        (!regressed.contains(&n), !RATES.iter().any(|r| r.0 == n), i)
    });
    let mut worse = Vec::new();
    for ci in order {
        let c = &cur[ci];
        let dir = compare::better(&c.name);
        let sign = match dir {
            Better::Lower => 1.0,
            Better::Higher => -1.0,
            Better::Neither => continue,
        };
        let Some(bi) = base_cols.iter().position(|x| x.name == c.name) else {
            continue;
        };
        let mut rows: Vec<(f64, &str, f64, f64)> = means
            .iter()
            .filter_map(|(s, (_, m))| {
                let now = m.get(ci).copied().flatten()?;
                let was = base_means.get(s)?.1.get(bi).copied().flatten()?;
                let d = (now - was) * sign;
                (d > 1e-12).then_some((d, *s, was, now))
            })
            .collect();
        rows.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
        for (d, s, was, now) in rows.into_iter().take(5) {
            let vid = |v: &HashMap<(String, String), String>, res: &Outcome| {
                res.results
                    .trajectories
                    .iter()
                    .filter(|t| t.clipgt_id == s)
                    .find_map(|t| v.get(&(t.clipgt_id.clone(), t.rollout_id.clone())).cloned())
            };
            worse.push(
                json!({"metric": c.name, "regressed": regressed.contains(&c.name.as_str()),
                "scene": s, "base": was, "current": now,
                "worse_by": d, "video": vid(videos, o),
                "base_video": vid(&base_videos, b.outcome).map(|v| format!("{rel_base}/{v}"))}),
            );
        }
    }
    json!({
        "base_dir": b.run_dir.display().to_string(),
        "base_name": b.outcome.results.run_name,
        "rows": b.rows.iter().map(|m| json!({"metric": m.metric, "n": m.n_scenes,
            "base": finite(Some(m.base_mean)), "current": finite(Some(m.current_mean)),
            "diff": finite(Some(m.diff)), "lo": finite(Some(m.ci.0)), "hi": finite(Some(m.ci.1)),
            "better": better_name(m.better), "regressed": m.regressed})).collect::<Vec<_>>(),
        "worse": worse,
    })
}

/// `to` relative to `from` (both directories), as a URL path.
fn pathdiff(to: &Path, from: &Path) -> String {
    let (to, from) = (
        to.canonicalize().unwrap_or_else(|_| to.to_path_buf()),
        from.canonicalize().unwrap_or_else(|_| from.to_path_buf()),
    );
    let a: Vec<_> = to.components().collect();
    let b: Vec<_> = from.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_string(), b.len() - common).collect();
    parts.extend(
        a[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths() {
        assert_eq!(
            pathdiff(Path::new("/a/b/x/aggregate"), Path::new("/a/b/y/aggregate")),
            "../../x/aggregate"
        );
    }
}
