//! `aggregate PATH…` for other benchmarks' result files: CARLA leaderboard checkpoints (LB 1.0
//! and 2.x, one file or the partial files of parallel shards), Bench2Drive results (a folder of
//! per-route checkpoints or a merged JSON) and NAVSIM score CSVs (v1.0, v1.1, v2). Each is read,
//! its benchmark's own global numbers recomputed exactly as that benchmark's code computes them
//! and checked against what the file stores, and drivekit's additions computed: quantiles, a 95 %
//! bootstrap interval, counts per status and infraction, what failed or is missing and why.
//! Rules and sources: docs/peer-results.md.

pub mod carla;
pub mod export;
pub mod navsim;
pub mod nuplan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::metrics::stats::Summary;

/// The result-file formats `aggregate` reads besides run dirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// CARLA leaderboard checkpoint / results JSON.
    Carla,
    /// Bench2Drive per-route checkpoints or merged JSON.
    Bench2Drive,
    /// NAVSIM score CSV.
    Navsim,
    /// nuPlan devkit parquets (aggregator, runner report, metric files).
    Nuplan,
}

impl Format {
    /// The `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Carla => "carla",
            Format::Bench2Drive => "bench2drive",
            Format::Navsim => "navsim",
            Format::Nuplan => "nuplan",
        }
    }

    /// The format named `s`.
    pub fn parse(s: &str) -> Option<Format> {
        [
            Format::Carla,
            Format::Bench2Drive,
            Format::Navsim,
            Format::Nuplan,
        ]
        .into_iter()
        .find(|f| f.name() == s)
    }
}

/// Why nothing could be read (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// No reader recognises the input.
    #[error("{0}: not a run dir, nor a CARLA/Bench2Drive result JSON or NAVSIM score CSV (use --format to force a reader)")]
    Unrecognised(PathBuf),
    /// The input is recognised but unusable.
    #[error("{file}: {what}")]
    Bad {
        /// the file
        file: PathBuf,
        /// what is wrong
        what: String,
    },
    /// Shards of different configurations (sensors, agent).
    #[error("{0} (pass --allow-mixed-config to merge them anyway)")]
    Mixed(String),
}

/// One route, token or scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Unit {
    /// Route id / token.
    pub id: String,
    /// Its headline score (driving score, PDMS…).
    pub score: Option<f64>,
    /// Its other values.
    pub values: Vec<(String, f64)>,
    /// Status (`Completed`, `Failed - …`, `valid`, `invalid`).
    pub status: String,
    /// The file it came from.
    pub file: String,
}

/// A stored global number next to its recomputation (see [`carla::Check`]).
pub use carla::Check;

/// A benchmark result read and recomputed.
#[derive(Debug, Clone, Serialize)]
pub struct PeerResults {
    /// The format read.
    pub format: Format,
    /// The code version whose rules reproduce it.
    pub rule: String,
    /// Files read.
    pub files: Vec<String>,
    /// The headline score's name.
    pub score_name: String,
    /// The benchmark's own global numbers, as its code computes them.
    pub globals: Vec<(String, f64)>,
    /// Stored numbers checked against the recomputation.
    pub checks: Vec<Check>,
    /// Every route / token.
    pub units: Vec<Unit>,
    /// Routes the benchmark planned (missing ones count as the benchmark says).
    pub planned: Option<usize>,
    /// Counts per status, then per infraction kind.
    pub counts: Vec<(String, usize)>,
    /// Bad input, duplicates, unfinished runs: named, the rest aggregated.
    pub problems: Vec<String>,
    /// What was read or left aside by choice (not a problem).
    pub notes: Vec<String>,
}

impl PeerResults {
    /// Summary of the unit scores present.
    pub fn summary(&self) -> Summary {
        let v: Vec<Option<f64>> = self.units.iter().map(|u| u.score).collect();
        Summary::of(&v)
    }

    /// 95 % bootstrap interval of the mean unit score (2000 resamples, fixed seed).
    pub fn interval(&self) -> (f64, f64) {
        let v: Vec<f64> = self.units.iter().filter_map(|u| u.score).collect();
        crate::aggregate::compare::bootstrap_ci(&v, crate::aggregate::compare::RESAMPLES, 20)
    }

    /// A stored number disagrees with its recomputation.
    pub fn mismatches(&self) -> usize {
        self.checks.iter().filter(|c| !c.equal).count()
    }
}

fn read_json(path: &Path) -> Result<Value, PeerError> {
    let text = std::fs::read_to_string(path).map_err(|e| PeerError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    // The leaderboard writes Python's json.dump output: bare NaN / Infinity are possible.
    let text = text
        .replace(": NaN", ": \"NaN\"")
        .replace(": Infinity", ": \"inf\"")
        .replace(": -Infinity", ": \"-inf\"");
    serde_json::from_str(&text).map_err(|e| PeerError::Bad {
        file: path.to_path_buf(),
        what: format!("not valid JSON ({e})"),
    })
}

/// What the input is, by content: a CSV with NAVSIM's columns, a JSON with a CARLA checkpoint
/// (Bench2Drive when its records carry `scenario_name` / `town_name` or it has Bench2Drive's
/// `driving score`), or a folder of such JSONs.
pub fn detect(path: &Path) -> Option<Format> {
    if path.is_dir() {
        if !nuplan_files(path).is_empty() {
            return Some(Format::Nuplan);
        }
        let first = json_files(path).into_iter().next()?;
        return detect(&first);
    }
    let head = std::fs::read(path).ok()?;
    if head.starts_with(b"PAR1") {
        let t = nuplan::read_table(path).ok()?;
        return nuplan::kind(&t.names).map(|_| Format::Nuplan);
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(1 << 20)]);
    if text.trim_start().starts_with('{') {
        let v = read_json(path).ok()?;
        let records = v["_checkpoint"]["records"].as_array()?;
        let b2d = v.get("driving score").is_some()
            || records
                .iter()
                .any(|r| r.get("scenario_name").is_some() || r.get("town_name").is_some());
        return Some(if b2d {
            Format::Bench2Drive
        } else {
            Format::Carla
        });
    }
    let header: Vec<String> = text
        .lines()
        .next()?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    navsim::detect(&header).map(|_| Format::Navsim)
}

/// The files of `dir` ending in `.ext`, sorted (none when it cannot be read).
fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The nuPlan parquets of an experiment folder: `runner_report.parquet`,
/// `aggregator_metric/*.parquet`, `metrics/*.parquet`, and parquets directly inside.
fn nuplan_files(dir: &Path) -> Vec<PathBuf> {
    let mut v = files_with(dir, "parquet");
    v.extend(files_with(&dir.join("aggregator_metric"), "parquet"));
    v.extend(files_with(&dir.join("metrics"), "parquet"));
    v
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    files_with(dir, "json")
}

/// Reads and recomputes `paths` (one file, several shards, or a folder) as `format` (detected
/// when `None`).
pub fn read(
    paths: &[PathBuf],
    format: Option<Format>,
    allow_mixed: bool,
) -> Result<PeerResults, PeerError> {
    let first = paths
        .first()
        .ok_or_else(|| PeerError::Unrecognised(PathBuf::from("(no input)")))?;
    let format = match format {
        Some(f) => f,
        None => detect(first).ok_or_else(|| PeerError::Unrecognised(first.clone()))?,
    };
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(if format == Format::Nuplan {
                nuplan_files(p)
            } else {
                json_files(p)
            });
        } else {
            files.push(p.clone());
        }
    }
    match format {
        Format::Navsim => {
            if files.len() != 1 {
                return Err(PeerError::Bad {
                    file: first.clone(),
                    what: "a NAVSIM score file is read alone (compare two with --compare)".into(),
                });
            }
            read_navsim(&files[0])
        }
        Format::Carla | Format::Bench2Drive => read_checkpoints(&files, format, allow_mixed),
        Format::Nuplan => read_nuplan(&files),
    }
}

fn read_nuplan(files: &[PathBuf]) -> Result<PeerResults, PeerError> {
    let mut problems = Vec::new();
    let mut aggregators = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut runner: Option<nuplan::Table> = None;
    for f in files {
        let t = match nuplan::read_table(f) {
            Ok(t) => t,
            Err(e) => {
                problems.push(format!("{e}; file left out"));
                continue;
            }
        };
        match nuplan::kind(&t.names) {
            Some(nuplan::Kind::Aggregator) => aggregators.push((f.clone(), t)),
            Some(nuplan::Kind::RunnerReport) => runner = Some(t),
            Some(nuplan::Kind::Metric) => {
                let name = t
                    .text
                    .get("metric_statistics_name")
                    .and_then(|v| v.iter().flatten().next().cloned())
                    .unwrap_or_else(|| f.display().to_string());
                *counts
                    .entry(format!("metric file {name}: rows"))
                    .or_insert(0) += t.rows;
            }
            None => problems.push(format!(
                "{}: not a nuPlan table drivekit reads (columns {}); file left out",
                f.display(),
                t.names.join(", ")
            )),
        }
    }
    // The newest aggregator output (its file name carries the time stamp).
    aggregators.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((agg_file, agg)) = aggregators.pop() else {
        return Err(PeerError::Bad {
            file: files.first().cloned().unwrap_or_default(),
            what: "no weighted-average aggregator parquet (aggregator_metric/*.parquet)".into(),
        });
    };
    let mut notes = Vec::new();
    if !aggregators.is_empty() {
        notes.push(format!(
            "{} older aggregator files beside {} not read",
            aggregators.len(),
            agg_file.display()
        ));
    }
    let name = agg_file.display().to_string();
    let nuplan::Recomputed {
        mut units,
        globals,
        checks,
        problems: more,
    } = nuplan::aggregator(&agg, &name);
    problems.extend(more);
    if let Some(r) = &runner {
        let names = r.text.get("scenario_name").cloned().unwrap_or_default();
        let ok = r.flag.get("succeeded").cloned().unwrap_or_default();
        let err = r.text.get("error_message").cloned().unwrap_or_default();
        for (i, n) in names.iter().enumerate() {
            let n = n.clone().unwrap_or_default();
            if ok.get(i).copied().flatten() == Some(true) {
                *counts.entry("simulations succeeded".into()).or_insert(0) += 1;
            } else {
                *counts.entry("simulations failed".into()).or_insert(0) += 1;
                let why = err
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| "no error message".into());
                problems.push(format!(
                    "simulation {n} failed: {why} (nuPlan leaves it out of its scores)"
                ));
                if let Some(u) = units.iter_mut().find(|u| u.id == n) {
                    u.status = format!("Failed - {why}");
                }
            }
        }
    }
    let mut files_read = vec![name];
    files_read.extend(
        files
            .iter()
            .filter(|f| **f != agg_file)
            .map(|f| f.display().to_string()),
    );
    Ok(PeerResults {
        format: Format::Nuplan,
        rule: "nuPlan devkit (weighted_average_metric_aggregator.py, closed-loop weights)".into(),
        files: files_read,
        score_name: "scenario score".into(),
        globals,
        checks,
        units,
        planned: None,
        counts: counts.into_iter().collect(),
        problems,
        notes,
    })
}

fn read_checkpoints(
    files: &[PathBuf],
    format: Format,
    allow_mixed: bool,
) -> Result<PeerResults, PeerError> {
    let mut problems = Vec::new();
    let mut records: Vec<(carla::RouteRecord, String)> = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut planned: Option<usize> = None;
    let mut checks = Vec::new();
    let mut rules = BTreeSet::new();
    let mut sensors: Option<(Value, String)> = None;
    let mut merged_b2d: Option<(Value, String)> = None;
    let mut keys: Vec<String> = Vec::new();
    for f in files {
        let name = f.display().to_string();
        let v = match read_json(f) {
            Ok(v) => v,
            Err(e) if files.len() > 1 => {
                problems.push(format!("{e}; file left out"));
                continue;
            }
            Err(e) => return Err(e),
        };
        let cp = &v["_checkpoint"];
        let Some(recs) = cp["records"].as_array() else {
            problems.push(format!("{name}: no _checkpoint.records; file left out"));
            continue;
        };
        // An empty list is a route that never set its agent up (crashed): no configuration.
        if let Some(s) = v
            .get("sensors")
            .filter(|s| s.as_array().is_none_or(|a| !a.is_empty()))
        {
            match &sensors {
                None => sensors = Some((s.clone(), name.clone())),
                Some((s0, f0)) if s0 != s && !allow_mixed => {
                    return Err(PeerError::Mixed(format!(
                        "{name} and {f0} were run with different sensors"
                    )))
                }
                Some((s0, f0)) if s0 != s => problems.push(format!(
                    "{name}: other sensors than {f0} (merged: --allow-mixed-config)"
                )),
                _ => {}
            }
        }
        if v.get("driving score").is_some() {
            merged_b2d = Some((v.clone(), name.clone()));
        }
        let status = v["entry_status"].as_str().unwrap_or_default();
        let gr = &cp["global_record"];
        let empty_global = gr.as_object().is_none_or(|o| o.is_empty());
        if matches!(status, "Started" | "Crashed") || (empty_global && merged_b2d.is_none()) {
            problems.push(format!(
                "{name}: unfinished run (entry_status {}, {} global record); its records are aggregated",
                if status.is_empty() { "absent" } else { status },
                if empty_global { "empty" } else { "a" }
            ));
        }
        // Shards plan disjoint parts of the route list: the planned counts add up (less the
        // duplicates left out below).
        if let Some(t) = cp["progress"].get(1).and_then(Value::as_u64) {
            planned = Some(planned.unwrap_or(0) + t as usize);
        }
        let mut file_records = Vec::new();
        for (i, r) in recs.iter().enumerate() {
            match carla::RouteRecord::parse(i, r) {
                Ok(r) => {
                    for (k, _) in &r.infractions {
                        if !keys.contains(k) {
                            keys.push(k.clone());
                        }
                    }
                    file_records.push(r)
                }
                Err(e) => problems.push(format!("{name}: {e}; record left out")),
            }
        }
        // Its own global record, recomputed from its own records.
        if !empty_global {
            let gkeys: Vec<String> = gr["infractions"]
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            let total = cp["progress"]
                .get(1)
                .and_then(Value::as_u64)
                .map_or(file_records.len(), |t| t as usize);
            let (rule, _, c) = carla::best_rule(&file_records, total, &gkeys, gr);
            rules.insert(rule.describe());
            let prefix = if files.len() > 1 {
                format!("{}: ", f.file_name().unwrap_or_default().to_string_lossy())
            } else {
                String::new()
            };
            checks.extend(c.into_iter().map(|mut c| {
                c.name = format!("{prefix}{}", c.name);
                c
            }));
        }
        for r in file_records {
            if let Some(prev) = seen.get(&r.route_id) {
                problems.push(format!(
                    "duplicate route {}: in {prev} and {name}; the second is left out",
                    r.route_id
                ));
                planned = planned.map(|p| p.saturating_sub(1));
                continue;
            }
            seen.insert(r.route_id.clone(), name.clone());
            records.push((r, name.clone()));
        }
    }
    if records.is_empty() && problems.iter().all(|p| !p.contains("unfinished")) {
        return Err(PeerError::Bad {
            file: files.first().cloned().unwrap_or_default(),
            what: "no route records".into(),
        });
    }
    let recs: Vec<carla::RouteRecord> = records.iter().map(|(r, _)| r.clone()).collect();
    let mut globals = Vec::new();
    let rule;
    if format == Format::Bench2Drive {
        let n = carla::BENCH2DRIVE_ROUTES;
        planned = Some(n);
        let (ds, sr) = carla::bench2drive(&recs, n);
        globals.push(("driving score".to_string(), ds));
        globals.push(("success rate".to_string(), sr));
        globals.push(("eval num".to_string(), recs.len() as f64));
        rule =
            "Bench2Drive (tools/merge_route_json.py: DS and SR over 220 routes, missing routes 0)"
                .to_string();
        if let Some((v, _)) = &merged_b2d {
            let stored_ds = v["driving score"].as_f64().unwrap_or(f64::NAN);
            // Its summation order (the glob order of the per-task files) is not recoverable: equal
            // within the rounding-error bound of summing the routes in any order, n·ε·Σ|s| / 220.
            let bound = recs.len() as f64
                * f64::EPSILON
                * recs.iter().map(|r| r.score_composed.abs()).sum::<f64>()
                / n as f64;
            let ulps = (ds - stored_ds).abs()
                / (stored_ds.abs() * f64::EPSILON / 2.0).max(f64::MIN_POSITIVE);
            checks.push(Check {
                name: "driving score (summation order unknown: within n·ε·Σ|s|/220)".into(),
                computed: format!("{ds} ({ulps:.0} ulp away)"),
                stored: format!("{stored_ds}"),
                equal: (ds - stored_ds).abs() <= bound,
            });
            let stored_sr = v["success rate"].as_f64().unwrap_or(f64::NAN);
            checks.push(Check {
                name: "success rate".into(),
                computed: format!("{sr}"),
                stored: format!("{stored_sr}"),
                equal: sr == stored_sr,
            });
            if let Some(e) = v["eval num"].as_u64() {
                checks.push(Check {
                    name: "eval num".into(),
                    computed: recs.len().to_string(),
                    stored: e.to_string(),
                    equal: e as usize == recs.len(),
                });
            }
        }
    } else {
        let total = planned.unwrap_or(recs.len());
        let lb2 = rules.iter().any(|r| r.contains("2."));
        let r = if lb2 || rules.is_empty() {
            carla::Rule::Lb2
        } else {
            carla::Rule::Lb1b
        };
        let g = carla::global(&recs, total, r, &keys);
        globals.push(("Avg. driving score".into(), g.scores[0]));
        globals.push(("Avg. route completion".into(), g.scores[1]));
        globals.push(("Avg. infraction penalty".into(), g.scores[2]));
        for (k, v) in &g.infractions {
            globals.push((k.clone(), *v));
        }
        rule = if rules.is_empty() {
            r.describe().to_string()
        } else {
            rules.into_iter().collect::<Vec<_>>().join("; ")
        };
    }
    if let Some(p) = planned {
        if recs.len() < p {
            problems.push(format!(
                "{} of {p} planned routes have no record (counted as 0 in the benchmark's mean)",
                p - recs.len()
            ));
        }
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &recs {
        *counts.entry(format!("status {}", r.status)).or_insert(0) += 1;
    }
    for (k, n) in carla::infraction_counts(&recs) {
        counts.insert(format!("infraction {k}"), n);
    }
    let units = records
        .iter()
        .map(|(r, f)| Unit {
            id: r.route_id.clone(),
            score: Some(r.score_composed),
            values: vec![
                ("score_route".into(), r.score_route),
                ("score_penalty".into(), r.score_penalty),
            ],
            status: r.status.clone(),
            file: f.clone(),
        })
        .collect();
    Ok(PeerResults {
        format,
        rule,
        files: files.iter().map(|f| f.display().to_string()).collect(),
        score_name: "score_composed (driving score, %)".into(),
        globals,
        checks,
        units,
        planned,
        counts: counts.into_iter().collect(),
        problems,
        notes: Vec::new(),
    })
}

fn read_navsim(path: &Path) -> Result<PeerResults, PeerError> {
    let text = std::fs::read_to_string(path).map_err(|e| PeerError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let bad = |what: String| PeerError::Bad {
        file: path.to_path_buf(),
        what,
    };
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| bad("empty file".into()))?
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let version = navsim::detect(&header).ok_or_else(|| {
        bad(format!(
            "not a NAVSIM score CSV: columns {} (expected token, valid, the metric columns and score)",
            header.join(", ")
        ))
    })?;
    let col = |c: &str| header.iter().position(|h| h == c);
    let metric_cols: Vec<usize> = navsim::columns(version)
        .iter()
        .map(|c| col(c).expect("detected"))
        .collect();
    let (tok, score_c, valid_c) = (
        col("token").expect("detected"),
        col("score").expect("detected"),
        col("valid"),
    );
    let ec_c = col("two_frame_extended_comfort").or(col("extended_comfort"));
    let mut problems = Vec::new();
    let mut units = Vec::new();
    let mut average: Option<(String, Vec<f64>)> = None;
    let mut checks = Vec::new();
    let (mut worst, mut rows_checked, mut rows_equal) = (0.0f64, 0usize, 0usize);
    let parse = |s: &str| -> f64 {
        match s.trim() {
            "" | "nan" | "NaN" => f64::NAN,
            t => t.parse().unwrap_or(f64::NAN),
        }
    };
    let all_cols: Vec<usize> = metric_cols.iter().copied().chain([score_c]).collect();
    let mut column_values: Vec<Vec<f64>> = vec![Vec::new(); all_cols.len()];
    let mut all_valid = true;
    for (ln, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != header.len() {
            problems.push(format!(
                "{}: line {}: {} fields where the header has {}; row left out",
                path.display(),
                ln + 2,
                f.len(),
                header.len()
            ));
            continue;
        }
        let token = f[tok].to_string();
        if matches!(
            token.as_str(),
            "average" | "average_all_frames" | "aggregate_summary_row"
        ) {
            average = Some((token, all_cols.iter().map(|&c| parse(f[c])).collect()));
            continue;
        }
        if matches!(
            token.as_str(),
            "pseudo_closed_loop" | "average_expert_frames"
        ) {
            continue;
        }
        let valid = valid_c.is_none_or(|c| f[c].trim() == "True");
        all_valid &= valid;
        let m: Vec<f64> = metric_cols.iter().map(|&c| parse(f[c])).collect();
        let stored = parse(f[score_c]);
        for (slot, &c) in column_values.iter_mut().zip(&all_cols) {
            slot.push(parse(f[c]));
        }
        let computed = navsim::score(version, &m, ec_c.map(|c| parse(f[c])));
        if valid && !stored.is_nan() {
            rows_checked += 1;
            if computed == stored {
                rows_equal += 1;
            }
            worst = worst.max((computed - stored).abs());
        }
        units.push(Unit {
            id: token,
            score: (!stored.is_nan()).then_some(stored),
            values: navsim::columns(version)
                .iter()
                .zip(&m)
                .map(|(n, v)| (n.to_string(), *v))
                .collect(),
            status: if valid { "valid" } else { "invalid" }.into(),
            file: path.display().to_string(),
        });
    }
    checks.push(Check {
        name: format!("every row's score by the {} formula", version_name(version)),
        computed: format!(
            "{rows_equal} of {rows_checked} rows equal (largest difference {worst:e})"
        ),
        stored: format!("{rows_checked} rows"),
        equal: if version == navsim::Version::V2 {
            worst <= 1e-12
        } else {
            rows_equal == rows_checked
        },
    });
    let names: Vec<&str> = navsim::columns(version)
        .iter()
        .copied()
        .chain(["score"])
        .collect();
    let mut globals = Vec::new();
    for (n, v) in names.iter().zip(&column_values) {
        globals.push((format!("average {n}"), navsim::pandas_mean(v)));
    }
    if let Some((token, stored)) = &average {
        for ((n, v), s) in names.iter().zip(&column_values).zip(stored) {
            let pandas = navsim::pandas_mean(v);
            let equal = pandas == *s || (pandas.is_nan() && s.is_nan());
            let fsum = navsim::fsum_mean(v);
            checks.push(Check {
                name: format!("{token} row: {n} (pandas mean)"),
                computed: if equal || fsum != *s {
                    format!("{pandas}")
                } else {
                    format!("{pandas} (math.fsum mean {fsum} matches: written by another tool)")
                },
                stored: format!("{s}"),
                equal,
            });
        }
    } else {
        problems.push(format!("{}: no average row", path.display()));
    }
    let _ = all_valid;
    let mut counts = BTreeMap::new();
    for u in &units {
        *counts.entry(format!("rows {}", u.status)).or_insert(0usize) += 1;
    }
    for (i, n) in navsim::columns(version).iter().enumerate() {
        let zeros = units
            .iter()
            .filter(|u| u.values.get(i).is_some_and(|(_, v)| *v == 0.0))
            .count();
        counts.insert(format!("{n} = 0"), zeros);
    }
    Ok(PeerResults {
        format: Format::Navsim,
        rule: version.describe().to_string(),
        files: vec![path.display().to_string()],
        score_name: "score (PDMS / EPDMS)".into(),
        globals,
        checks,
        units,
        planned: None,
        counts: counts.into_iter().collect(),
        problems,
        notes: Vec::new(),
    })
}

fn version_name(v: navsim::Version) -> &'static str {
    match v {
        navsim::Version::V1_0 => "v1.0",
        navsim::Version::V1_1 => "v1.1",
        navsim::Version::V2 => "v2",
    }
}

/// Settings of `aggregate` on benchmark result files.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The result file(s) or folder.
    pub paths: Vec<PathBuf>,
    /// Force a reader.
    pub format: Option<Format>,
    /// Merge shards of different configurations.
    pub allow_mixed: bool,
    /// Output folder (default: `<file stem>-aggregate/` beside the first input, or
    /// `<folder>/aggregate/`).
    pub out: Option<PathBuf>,
    /// Another agent's result of the same benchmark to compare with.
    pub compare: Option<PathBuf>,
}

/// What a run of `aggregate` on result files produced.
#[derive(Debug)]
pub struct PeerOutcome {
    /// The result read.
    pub results: PeerResults,
    /// The text report.
    pub report: String,
    /// The comparison, when asked.
    pub comparison: Option<String>,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

impl PeerOutcome {
    /// 0: read and every stored number reproduced; 1: something failed, is missing or was
    /// skipped, or (with `validate`) a stored number differs.
    pub fn exit_code(&self, validate: bool) -> i32 {
        if (validate && self.results.mismatches() > 0) || !self.results.problems.is_empty() {
            1
        } else {
            0
        }
    }
}

/// The default output folder of `paths`.
pub fn default_out(paths: &[PathBuf]) -> PathBuf {
    let p = &paths[0];
    if p.is_dir() {
        p.join("aggregate")
    } else {
        let stem = p.file_stem().unwrap_or_default().to_string_lossy();
        p.with_file_name(format!("{stem}-aggregate"))
    }
}

/// Reads, recomputes and writes the outputs (and the comparison).
pub fn run(opts: &PeerOptions) -> Result<PeerOutcome, PeerError> {
    let results = read(&opts.paths, opts.format, opts.allow_mixed)?;
    let out = opts.out.clone().unwrap_or_else(|| default_out(&opts.paths));
    let io = |e: std::io::Error| PeerError::Io {
        file: out.clone(),
        source: e,
    };
    let mut outputs = export::write_all(&results, &out).map_err(io)?;
    let comparison = match &opts.compare {
        Some(base_path) => {
            let base = read(
                std::slice::from_ref(base_path),
                Some(results.format),
                opts.allow_mixed,
            )?;
            let c = export::compare(&results, &base);
            let text = export::render_comparison(
                &c,
                &opts.paths[0].display().to_string(),
                &base_path.display().to_string(),
            );
            let md = out.join("comparison.md");
            crate::fsutil::write_atomic(&md, text.as_bytes()).map_err(io)?;
            let json = out.join("comparison.json");
            crate::fsutil::write_atomic(
                &json,
                serde_json::to_string_pretty(&c)
                    .expect("plain data")
                    .as_bytes(),
            )
            .map_err(io)?;
            outputs.extend([md, json]);
            Some(text)
        }
        None => None,
    };
    let report = export::render(&results);
    Ok(PeerOutcome {
        results,
        report,
        comparison,
        outputs,
    })
}
