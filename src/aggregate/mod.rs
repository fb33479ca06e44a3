//! `aggregate runs/X`: turns a run directory in AlpaSim's layout into the results table, plots,
//! Parquet tables, the results summary and sorted violation videos (DESIGN §4).
//!
//! Brief overview, in the order [`run`] goes:
//! - [`crate::run_dir`] finds job dirs and batch dirs and reads their markers;
//! - [`load`] reads one batch's metrics.parquet and reduces each trajectory through the modifier
//!   chain of [`trajectory`] — batches run in parallel, and a [`cache`] keeps each batch's
//!   reduction so a rerun reads only new or changed files, and [`partial`] takes the batches
//!   the array tasks' `aggregate --partial` already reduced;
//! - [`unprocessed`] streams every row into the part files of metrics_unprocessed.parquet
//!   ([`parts`]; reusing the encoded rows of unchanged batches, and the parts that stand);
//! - [`summary`] merges the batches and computes the statistics over clips and rollouts;
//! - [`export`] writes the outputs, each atomically.
//!
//! ```no_run
//! let opts = drivekit::aggregate::Options::new("runs/nightly".into());
//! let outcome = drivekit::aggregate::run(&opts).expect("usable run dir");
//! std::process::exit(outcome.exit_code());
//! ```

pub mod cache;
pub mod compare;
pub mod export;
pub mod load;
pub mod partial;
pub mod parts;
pub mod scorecard;
pub mod series;
pub mod summary;
pub mod trajectory;
pub mod unprocessed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::config::WizardConfig;
use crate::report::progress;
use crate::report::timing::PhaseTimer;
use crate::run_dir::{self, BatchState, RunLayout};
use load::BatchReduction;
use parts::{PartsWriter, PreviousParts};
use summary::RunResults;
use trajectory::{ChainParams, ModifierCounts};
use unprocessed::{BatchKey, PreviousFile, RowSink, Source};

/// Settings of one aggregation.
#[derive(Debug, Clone)]
pub struct Options {
    /// The run dir (or Slurm array dir).
    pub run_dir: PathBuf,
    /// Accept job dirs whose wizard-config.yaml differ (reported as a warning).
    pub allow_mixed_config: bool,
    /// Modifier chain settings.
    pub chain: ChainParams,
    /// Reuse per-batch reductions from the previous run.
    pub use_cache: bool,
    /// Show a progress bar (only drawn when stderr is a terminal).
    pub progress: bool,
    /// The benchmark score profiles to report (default: all; a profile whose metrics the run
    /// lacks is left out with its reason).
    pub profiles: Vec<crate::metrics::profiles::Profile>,
    /// Compute the results without writing anything into the run dir (its aggregate/ and cache
    /// are read, never replaced): how `--compare` reads its baseline.
    pub read_only: bool,
    /// Batches per part file of metrics_unprocessed.parquet, on average ([`parts`]).
    pub part_batches: usize,
}

impl Options {
    /// Defaults for `run_dir`: AlpaSim's 4 m threshold, cache on, progress on.
    pub fn new(run_dir: PathBuf) -> Options {
        Options {
            run_dir,
            allow_mixed_config: false,
            chain: ChainParams::default(),
            use_cache: true,
            progress: true,
            read_only: false,
            part_batches: parts::DEFAULT_PART_BATCHES,
            profiles: crate::metrics::profiles::Profile::ALL.to_vec(),
        }
    }
}

/// Errors that leave nothing to aggregate (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a run dir.
    #[error(transparent)]
    Layout(#[from] run_dir::LayoutError),
    /// rollouts/ holds no batch dir.
    #[error(
        "{0}: rollouts/ holds no batch directories (expected rollouts/<scene_id>/<batch_uuid>/)"
    )]
    NoBatches(PathBuf),
    /// Job dirs were configured differently.
    #[error("{first} and {second} differ: the shards were run with different configurations; rerun them alike or pass --allow-mixed-config")]
    MixedConfig {
        /// first config
        first: PathBuf,
        /// differing config
        second: PathBuf,
    },
    /// `--partial` on a run whose configuration does not list its scenes.
    #[error("{0}: wizard-config.yaml lists no scenes.scene_ids, so which scenes a shard ran is unknown; `simulate run` lists them there (aggregate this run without --partial)")]
    PartialWithoutScenes(PathBuf),
    /// An output could not be written.
    #[error("writing {path}: {message}")]
    Write {
        /// the output
        path: PathBuf,
        /// the cause
        message: String,
    },
}

/// What kind of problem a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A batch without `_complete` or `_failed.json`.
    IncompleteBatch,
    /// A batch with `_failed.json`.
    FailedBatch,
    /// A file that could not be used (corrupt, truncated, wrong types, duplicate, conflict).
    SkippedFile,
    /// A scene listed in wizard-config.yaml with no batch.
    MissingScene,
    /// Something worth knowing that did not lose data.
    Warning,
}

/// One thing that went wrong or deserves a look, naming the file involved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// Category.
    pub kind: ProblemKind,
    /// File or directory involved (relative to the run dir where possible).
    pub path: String,
    /// What happened.
    pub message: String,
}

/// A rollout that produced no metrics (its batch failed for good).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedRollout {
    /// Scene.
    pub clipgt_id: String,
    /// Rollout id (from `_failed.json`, or `{batch_uuid}-?` when it lists none).
    pub rollout_id: String,
    /// Error text from `_failed.json`.
    pub error: String,
    /// The batch dir.
    pub batch: String,
}

/// Result of [`run`].
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The aggregate/ directory written.
    pub output_dir: PathBuf,
    /// The scorecard's rates, computed once ([`scorecard::rates`]) for every output showing
    /// them.
    #[serde(skip)]
    pub(crate) scorecard: std::sync::OnceLock<Vec<scorecard::Rate>>,
    /// The numbers.
    pub results: RunResults,
    /// Rows removed per modifier, over all batches.
    pub modifier_counts: ModifierCounts,
    /// Batches found, read, read from cache.
    pub n_batches: usize,
    /// Batches aggregated.
    pub n_batches_used: usize,
    /// Batches whose metrics were read this time (the rest came from the cache).
    pub n_batches_read: usize,
    /// Rollouts of failed batches.
    pub failed_rollouts: Vec<FailedRollout>,
    /// Everything that went wrong, sorted.
    pub problems: Vec<Problem>,
    /// Output files written.
    pub outputs: Vec<PathBuf>,
    /// The directory of each merged batch ([`summary::Trajectory::batch`] indexes it).
    pub batch_dirs: Vec<PathBuf>,
    /// The run report's series of the rollouts of the batches (by dir) read this time, kept
    /// while reducing them in a small run (so the report need not read their rows again).
    #[serde(skip)]
    pub(crate) series: std::collections::HashMap<PathBuf, series::BatchSeries>,
}

impl Outcome {
    /// 0: everything aggregated; 1: results written but something failed, is missing or was
    /// skipped; 2: nothing could be aggregated.
    pub fn exit_code(&self) -> i32 {
        if self.results.trajectories.is_empty() {
            2
        } else if self.failed_rollouts.is_empty()
            && self.problems.iter().all(|p| p.kind == ProblemKind::Warning)
        {
            0
        } else {
            1
        }
    }

    /// Number of problems of one kind.
    pub fn count(&self, kind: ProblemKind) -> usize {
        self.problems.iter().filter(|p| p.kind == kind).count()
    }
}

enum Loaded {
    /// Reduction in the cache (taken from it, not copied), rows in these row groups of
    /// `sources[.1]`.
    Cached(BatchKey, usize, Vec<usize>),
    /// Reduction in the cache; no rows needed (read-only runs).
    CachedOnly(BatchKey),
    /// Read now, reduced only (read-only runs write no unprocessed file).
    Reduced(BatchKey, BatchReduction),
    /// Read now; the rows come re-encoded or straight from the batch's file; the rollouts'
    /// series when kept for the run report.
    Fresh(
        BatchKey,
        BatchReduction,
        Source<'static>,
        Option<series::BatchSeries>,
    ),
    Skipped(Problem),
}

/// Aggregates the run dir of `opts`; see the module docs.
pub fn run(opts: &Options) -> Result<Outcome, Error> {
    // One descriptor per part file and per partial aggregation is kept open while copying.
    crate::fsutil::raise_open_files_limit();
    // Each batch read allocates and frees a few MB: kept for the next instead of faulted in again.
    crate::process::keep_freed_memory();
    let mut timer = PhaseTimer::from_env("");
    let root = &opts.run_dir;
    let out_dir = root.join(run_dir::AGGREGATE);
    let cache_path = out_dir.join(cache::FILE);
    // The cache (one thread reading one file) loads while the run's dirs are listed.
    let (layout, mut cached) = rayon::join(
        || RunLayout::discover(root),
        || {
            if opts.use_cache {
                cache::load(&cache_path, &opts.chain)
            } else {
                Default::default()
            }
        },
    );
    let layout = layout?;
    if layout.batches.is_empty() {
        return Err(Error::NoBatches(root.clone()));
    }
    let mut problems = Vec::new();
    let expected_scenes = check_configs(&layout, opts, &mut problems)?;
    let werr = |path: &Path, e: &dyn std::fmt::Display| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };

    let (complete, failed_rollouts) = classify(&layout, &mut problems);
    timer.lap("layout + configs, cache load");

    if !opts.read_only {
        // Temporary files of a killed aggregate (their writers are gone).
        crate::fsutil::remove_stale_temps(&out_dir);
        // The outputs are about to change one by one: until the new set is complete they are
        // not a consistent set, and `_complete` says so by its absence.
        let _ = std::fs::remove_file(out_dir.join(export::COMPLETE));
    }
    let unprocessed_path = out_dir.join(export::UNPROCESSED);
    // Columns as nullable as the first batch's: then every batch from the same writer is copied.
    let first_metrics = complete.first().map(|b| b.dir.join(run_dir::METRICS));
    let out_schema = unprocessed::output_schema(first_metrics.as_deref());
    // The array tasks' partial aggregations: their batches need not be read again.
    let partials = if opts.use_cache {
        partial::load(&out_dir, opts, &out_schema, &mut cached)
    } else {
        Default::default()
    };
    problems.extend(partials.problems.iter().cloned());
    let previous = if opts.use_cache && !opts.read_only {
        PreviousParts::open(&unprocessed_path, &out_schema)
    } else {
        Default::default()
    };
    timer.lap("partials + previous parts");
    let guess = guess_run_uuid(&layout, &cached);
    let keys = complete_keys(&complete);
    // The parts of the previous file that stand as they are (every batch in them unchanged):
    // their batches are neither read nor copied.
    let keep = {
        let ok: Vec<Option<&BatchKey>> = keys.iter().map(|k| k.as_ref().ok()).collect();
        parts::standing(
            &ok,
            |k| cached.get(k).map(|r| r.rows),
            &previous,
            &guess,
            opts.part_batches,
        )
    };
    let writer = if opts.read_only {
        None
    } else {
        Some(
            PartsWriter::create(
                &unprocessed_path,
                &guess,
                out_schema.clone(),
                opts.part_batches,
            )
            .map_err(|e| werr(&unprocessed_path, &e))?,
        )
    };

    timer.lap("batch keys + standing parts");
    let mut sources: Vec<&PreviousFile> = previous.files.iter().collect();
    sources.extend(partials.files.iter());
    let read = read_batches(
        &complete,
        &keys,
        opts,
        &mut cached,
        &sources,
        &keep,
        writer,
        &unprocessed_path,
        true,
    )?;
    drop(sources);
    drop(cached);
    let Read {
        reductions,
        problems: read_problems,
        n_read,
        writer,
        series,
    } = read;
    problems.extend(read_problems);

    timer.lap("read + reduce + unprocessed");
    let pairs: Vec<(String, &BatchReduction)> = reductions
        .iter()
        .map(|(r, _, red)| (r.clone(), red))
        .collect();
    let results = summary::merge(&pairs, &opts.profiles);
    let rejected: BTreeSet<String> = results.problems.iter().map(|p| p.batch.clone()).collect();
    for p in &results.problems {
        problems.push(Problem {
            kind: ProblemKind::SkippedFile,
            path: format!("{}/{}", p.batch, run_dir::METRICS),
            message: p.message.clone(),
        });
    }
    let mut modifier_counts = ModifierCounts::default();
    for (rel, _, red) in &reductions {
        if !rejected.contains(rel.as_str()) {
            trajectory::add_counts(&mut modifier_counts, &red.counts);
        }
    }
    if results.offroad_defaulted && !results.trajectories.is_empty() {
        problems.push(Problem {
            kind: ProblemKind::Warning,
            path: String::new(),
            message:
                "No offroad column found in the metrics dataframe. Adding a default value of 0.0."
                    .into(),
        });
    }
    missing_scenes(&layout, &expected_scenes, &mut problems);

    // metrics_unprocessed.parquet: the staged parts become the dataset, parts written again
    // where the combined run_uuid differs from the guess or a batch was rejected while merging.
    timer.lap("merge + stats");
    drop(partials);
    let unprocessed = match writer {
        Some(w) => {
            let kept: Vec<BatchKey> = reductions
                .iter()
                .filter(|(rel, _, red)| red.rows > 0 && !rejected.contains(rel))
                .map(|(_, k, _)| k.clone())
                .collect();
            let staged = w.finish().map_err(|e| werr(&unprocessed_path, &e))?;
            let path = staged
                .commit(&previous, &kept, &results.run_uuid)
                .map_err(|e| werr(&unprocessed_path, &e))?;
            Some(path)
        }
        None => None,
    };
    drop(previous);

    timer.lap("unprocessed parts");
    problems.sort();
    problems.dedup();
    let mut outcome = Outcome {
        output_dir: out_dir.clone(),
        scorecard: Default::default(),
        results,
        modifier_counts,
        n_batches: layout.batches.len(),
        n_batches_used: reductions.len() - rejected.len(),
        n_batches_read: n_read,
        failed_rollouts,
        problems,
        outputs: unprocessed.into_iter().collect(),
        batch_dirs: reductions
            .iter()
            .map(|(rel, _, _)| root.join(rel))
            .collect(),
        series: series
            .into_iter()
            .map(|(rel, s)| (root.join(rel), s))
            .collect(),
    };
    if opts.read_only {
        return Ok(outcome);
    }
    // The cache is saved beside the exports (it needs none of them).
    let save_cache = || -> Result<(), Error> {
        if opts.use_cache {
            let entries: Vec<(BatchKey, BatchReduction)> =
                reductions.into_iter().map(|(_, k, r)| (k, r)).collect();
            cache::save(&cache_path, &opts.chain, &entries).map_err(|e| werr(&cache_path, &e))?;
        }
        Ok(())
    };
    let (written, saved) = rayon::join(|| export::write_all(&mut outcome, opts), save_cache);
    let written = written.map_err(|(p, e)| werr(&p, &e))?;
    saved?;
    outcome.outputs.extend(written);
    timer.lap("exports + cache save");
    let marker = out_dir.join(export::COMPLETE);
    let names: Vec<String> = outcome
        .outputs
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let body = serde_json::json!({"run_uuid": outcome.results.run_uuid, "outputs": names});
    crate::fsutil::write_atomic(&marker, body.to_string().as_bytes())
        .map_err(|e| werr(&marker, &e))?;
    outcome.outputs.push(marker);
    Ok(outcome)
}

/// What [`read_batches`] returns.
struct Read<W> {
    /// (batch rel, key, reduction) of every batch used, in batch order.
    reductions: Vec<(String, BatchKey, BatchReduction)>,
    /// Skipped files and warnings.
    problems: Vec<Problem>,
    /// Batches whose metrics.parquet was read (the rest came from a cache or a partial).
    n_read: usize,
    /// The writer, every batch appended (when one was given).
    writer: Option<W>,
    /// The series kept for the run report, by batch rel.
    series: std::collections::HashMap<String, series::BatchSeries>,
}

/// Reads and reduces the `complete` batches in parallel (their `keys` from [`complete_keys`]),
/// taking the reduction of a batch out of `cached` when one of `sources` holds its rows or its
/// rows stay where they are (`keep`), and appends each other batch's rows to `writer` (when
/// given) on one thread, in batch order. With `for_report`, the series of a small run's fresh
/// batches are kept for the run report.
#[allow(clippy::too_many_arguments)]
fn read_batches<W: RowSink>(
    complete: &[&run_dir::BatchDir],
    keys: &[Result<BatchKey, String>],
    opts: &Options,
    cached: &mut cache::Cache,
    sources: &[&PreviousFile],
    keep: &std::collections::HashSet<BatchKey>,
    mut writer: Option<W>,
    unprocessed_path: &Path,
    for_report: bool,
) -> Result<Read<W>, Error> {
    let encoder = writer.as_ref().map(RowSink::encoder);
    // Which source holds each batch's rows (the first that does).
    let mut in_sources: std::collections::HashMap<&BatchKey, (usize, &[usize])> =
        std::collections::HashMap::new();
    for (i, s) in sources.iter().enumerate() {
        for k in s.keys() {
            if let Some(groups) = s.row_groups(k) {
                in_sources.entry(k).or_insert((i, groups));
            }
        }
    }
    let bar = progress::bar(complete.len() as u64, "reading batches", opts.progress);
    let mut reductions: Vec<(String, BatchKey, BatchReduction)> =
        Vec::with_capacity(complete.len());
    let mut problems = Vec::new();
    let mut n_read = 0;
    // The report plots every rollout's series only in a run of at most SERIES_ALL_UP_TO
    // rollouts (a larger one plots its worst, read again). So series are kept only when the run
    // has at most that many batches, and only until more than that many rollouts have been
    // taken (read or cached, counted here in batch order): then the run is larger, and what was
    // kept is dropped. The workers read the count to stop keeping any.
    let series_seen =
        (for_report && writer.is_some() && complete.len() <= export::page::SERIES_ALL_UP_TO)
            .then(|| AtomicUsize::new(0));
    let mut series = std::collections::HashMap::new();
    let chunk = (rayon::current_num_threads() * 8).max(8);
    // A batch whose file has no rows, or whose clipgt_id disagrees with its scene directory.
    let suspicious = |rel: &str, red: &BatchReduction| -> Vec<Problem> {
        let path = format!("{rel}/{}", run_dir::METRICS);
        let mut out = Vec::new();
        if red.rows == 0 {
            out.push(Problem {
                kind: ProblemKind::SkippedFile,
                path: path.clone(),
                message: "no rows: a complete batch without metrics (its rollouts are not counted)"
                    .into(),
            });
        }
        let dir = Path::new(rel)
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned());
        if let Some(t) = red
            .trajectories
            .iter()
            .find(|t| dir.as_deref().is_some_and(|d| d != t.clipgt_id))
        {
            out.push(Problem {
                kind: ProblemKind::Warning,
                path,
                message: format!(
                    "clipgt_id `{}` differs from its scene directory `{}`: counted under `{}`",
                    t.clipgt_id,
                    dir.unwrap_or_default(),
                    t.clipgt_id
                ),
            });
        }
        out
    };
    // One thread appends to metrics_unprocessed.parquet (copying chunks is mostly I/O) while
    // the workers read and reduce the next batches.
    writer = std::thread::scope(|scope| -> Result<Option<W>, Error> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, BatchKey, Source<'_>)>(chunk * 2);
        let appender = writer.take().map(|mut w| {
            scope.spawn(move || -> Result<W, parquet::errors::ParquetError> {
                for (ordinal, key, source) in rx {
                    w.append(ordinal, key, source)?;
                }
                Ok(w)
            })
        });
        let tx = appender.as_ref().map(|_| tx);
        // False when the appender stopped on an error (reported when it is joined below).
        let send = |ordinal: usize, key: &BatchKey, source| {
            tx.as_ref()
                .is_some_and(|tx| tx.send((ordinal, key.clone(), source)).is_ok())
        };
        'groups: for (g, (group, group_keys)) in
            complete.chunks(chunk).zip(keys.chunks(chunk)).enumerate()
        {
            let loaded: Vec<Loaded> = group
                .par_iter()
                .zip(group_keys)
                .map(|(b, key)| {
                    load_one(
                        b,
                        key,
                        opts,
                        &Earlier {
                            cached,
                            in_sources: &in_sources,
                            keep,
                        },
                        encoder.as_ref(),
                        series_seen.as_ref(),
                    )
                })
                .collect();
            for (j, (b, l)) in group.iter().zip(loaded).enumerate() {
                let ordinal = g * chunk + j;
                bar.inc(1);
                let taken = match &l {
                    Loaded::Cached(key, ..) | Loaded::CachedOnly(key) => cached.remove(key),
                    _ => None,
                };
                let red = match &l {
                    Loaded::Reduced(_, red) | Loaded::Fresh(_, red, ..) => Some(red),
                    _ => taken.as_ref(),
                };
                if let Some(red) = red {
                    problems.extend(suspicious(&b.rel, red));
                    if let Some(seen) = &series_seen {
                        seen.fetch_add(red.trajectories.len(), Ordering::Relaxed);
                        if !plots_all(seen) {
                            // Too many to plot them all: keep none from here on.
                            series.clear();
                        }
                    }
                }
                match l {
                    Loaded::Skipped(p) => problems.push(p),
                    Loaded::Reduced(key, red) => {
                        n_read += 1;
                        reductions.push((b.rel.clone(), key, red));
                    }
                    Loaded::Cached(key, source, groups) => {
                        if tx.is_some()
                            && !send(ordinal, &key, Source::Copy(sources[source], groups))
                        {
                            break 'groups;
                        }
                        let red = taken.expect("a cached batch is in the cache");
                        reductions.push((b.rel.clone(), key, red));
                    }
                    Loaded::CachedOnly(key) => {
                        let red = taken.expect("a cached batch is in the cache");
                        reductions.push((b.rel.clone(), key, red));
                    }
                    Loaded::Fresh(key, red, rows, kept) => {
                        n_read += 1;
                        if !send(ordinal, &key, rows) {
                            break 'groups;
                        }
                        if let (Some(kept), Some(seen)) = (kept, &series_seen) {
                            if plots_all(seen) {
                                series.insert(b.rel.clone(), kept);
                            }
                        }
                        reductions.push((b.rel.clone(), key, red));
                    }
                }
            }
        }
        drop(tx);
        match appender {
            Some(h) => h
                .join()
                .expect("the metrics_unprocessed.parquet appender does not panic")
                .map(Some)
                .map_err(|e| Error::Write {
                    path: unprocessed_path.to_path_buf(),
                    message: e.to_string(),
                }),
            None => Ok(None),
        }
    })?;
    bar.finish_and_clear();
    Ok(Read {
        reductions,
        problems,
        n_read,
        writer,
        series,
    })
}

/// Splits the batches by marker: complete ones to read, failed ones' rollouts, and incomplete
/// or unreadable markers as problems.
fn classify<'a>(
    layout: &'a RunLayout,
    problems: &mut Vec<Problem>,
) -> (Vec<&'a run_dir::BatchDir>, Vec<FailedRollout>) {
    let mut failed_rollouts = Vec::new();
    let mut complete = Vec::new();
    for b in &layout.batches {
        match &b.state {
            BatchState::Complete => complete.push(b),
            BatchState::Incomplete => problems.push(Problem {
                kind: ProblemKind::IncompleteBatch,
                path: b.rel.clone(),
                message: "no _complete marker (interrupted or still running); left out of the results".into(),
            }),
            BatchState::Failed(f) => {
                let ids = if f.rollout_ids.is_empty() { vec![format!("{}-?", b.batch_uuid)] } else { f.rollout_ids.clone() };
                for r in ids {
                    failed_rollouts.push(FailedRollout {
                        clipgt_id: b.scene_id.clone(),
                        rollout_id: r,
                        error: f.error.clone(),
                        batch: b.rel.clone(),
                    });
                }
            }
            BatchState::FailedUnreadable(msg) => problems.push(Problem {
                kind: ProblemKind::SkippedFile,
                path: format!("{}/{}", b.rel, run_dir::FAILED),
                message: format!("batch marked failed but its _failed.json is unreadable ({msg}); its rollouts are not counted"),
            }),
        }
    }
    (complete, failed_rollouts)
}

/// The keys (size, mtime) of the complete batches' metrics.parquet, each stat'ed once; the
/// error text where it cannot be.
fn complete_keys(complete: &[&run_dir::BatchDir]) -> Vec<Result<BatchKey, String>> {
    complete
        .par_iter()
        .map(|b| BatchKey::of(&b.rel, &b.dir.join(run_dir::METRICS)).map_err(|e| e.to_string()))
        .collect()
}

/// Whether the rollouts taken so far (`seen`) are still few enough for the run report to plot
/// every rollout's series.
fn plots_all(seen: &AtomicUsize) -> bool {
    seen.load(Ordering::Relaxed) <= export::page::SERIES_ALL_UP_TO
}

/// What earlier runs left for one batch to reuse: its cached reduction, and where its rows
/// already are in the previous metrics_unprocessed.parquet.
struct Earlier<'a> {
    cached: &'a cache::Cache,
    /// Per batch key: the source file and its row groups holding the batch's rows.
    in_sources: &'a std::collections::HashMap<&'a BatchKey, (usize, &'a [usize])>,
    /// Batches whose rows stay where they are (their part is not rewritten).
    keep: &'a std::collections::HashSet<BatchKey>,
}

fn load_one(
    b: &run_dir::BatchDir,
    key: &Result<BatchKey, String>,
    opts: &Options,
    earlier: &Earlier<'_>,
    encoder: Option<&unprocessed::Encoder>,
    series_seen: Option<&AtomicUsize>,
) -> Loaded {
    let metrics = b.dir.join(run_dir::METRICS);
    let skipped = |path: String, message: String| {
        Loaded::Skipped(Problem {
            kind: ProblemKind::SkippedFile,
            path,
            message,
        })
    };
    let key = match key {
        Ok(k) => k.clone(),
        Err(e) => {
            return skipped(
                format!("{}/{}", b.rel, run_dir::METRICS),
                format!(
                    "batch is marked _complete but metrics.parquet cannot be read ({e}); left out"
                ),
            )
        }
    };
    let Earlier {
        cached,
        in_sources,
        keep,
    } = earlier;
    if cached.contains_key(&key) {
        if keep.contains(&key) {
            return Loaded::CachedOnly(key);
        }
        if let Some((i, groups)) = in_sources.get(&key) {
            return Loaded::Cached(key, *i, groups.to_vec());
        }
    }
    if opts.read_only {
        if cached.contains_key(&key) {
            return Loaded::CachedOnly(key);
        }
        return match load::reduce_batch(&metrics, &opts.chain, false, false) {
            Ok(read) => Loaded::Reduced(key, read.reduction),
            Err(e) => skipped(
                format!("{}/{}", b.rel, run_dir::METRICS),
                format!("{e}; batch left out"),
            ),
        };
    }
    let Some(encoder) = encoder else {
        return skipped(
            format!("{}/{}", b.rel, run_dir::METRICS),
            "changed while aggregate was running; rerun aggregate to include it".into(),
        );
    };
    // Files whose columns match the output exactly are copied chunk by chunk; others re-encoded.
    let input = encoder.compatible_input(&metrics);
    // Series are kept until the batches taken show more rollouts than the report plots in full.
    let keep_series = series_seen.is_some_and(plots_all);
    let result = load::reduce_batch(&metrics, &opts.chain, input.is_none(), keep_series)
        .map_err(|e| e.to_string())
        .and_then(|read| match input {
            Some(input) => Ok((read.reduction, Source::Input(input), read.series)),
            None => encoder
                .encode(&read.batches)
                .map(|enc| (read.reduction, Source::Fresh(enc), read.series))
                .map_err(|e| format!("{}: {e}", metrics.display())),
        });
    match result {
        Ok((red, rows, series)) => Loaded::Fresh(key, red, rows, series),
        Err(message) => skipped(
            format!("{}/{}", b.rel, run_dir::METRICS),
            format!("{message}; batch left out"),
        ),
    }
}

/// Loads every job's wizard-config.yaml, checks they agree, and returns the scenes they expect.
fn check_configs(
    layout: &RunLayout,
    opts: &Options,
    problems: &mut Vec<Problem>,
) -> Result<BTreeSet<String>, Error> {
    let mut first: Option<(PathBuf, WizardConfig)> = None;
    let mut scenes = BTreeSet::new();
    for job in &layout.jobs {
        let Some(path) = &job.wizard_config else {
            continue;
        };
        let cfg = match WizardConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem {
                    kind: ProblemKind::Warning,
                    path: path.display().to_string(),
                    message: format!("{e}; its expected scenes are not checked"),
                });
                continue;
            }
        };
        scenes.extend(cfg.scene_ids.iter().flatten().cloned());
        match &first {
            None => first = Some((path.clone(), cfg)),
            Some((p0, c0)) if c0.canonical != cfg.canonical => {
                if !opts.allow_mixed_config {
                    return Err(Error::MixedConfig {
                        first: p0.clone(),
                        second: path.clone(),
                    });
                }
                problems.push(Problem {
                    kind: ProblemKind::Warning,
                    path: path.display().to_string(),
                    message: format!(
                        "differs from {} (allowed by --allow-mixed-config)",
                        p0.display()
                    ),
                });
            }
            Some(_) => {}
        }
    }
    Ok(scenes)
}

fn missing_scenes(layout: &RunLayout, expected: &BTreeSet<String>, problems: &mut Vec<Problem>) {
    let present: BTreeSet<&str> = layout.batches.iter().map(|b| b.scene_id.as_str()).collect();
    for s in expected {
        if !present.contains(s.as_str()) {
            problems.push(Problem {
                kind: ProblemKind::MissingScene,
                path: s.clone(),
                message:
                    "listed in wizard-config.yaml (scenes.scene_ids) but no batch of it was found"
                        .into(),
            });
        }
    }
}

/// The combined run_uuid expected before reading any metrics: the run_uuids of the jobs'
/// run_metadata.yaml and of the cached batches. A wrong guess costs one extra copy pass over
/// metrics_unprocessed.parquet, never a wrong file.
fn guess_run_uuid(layout: &RunLayout, cached: &cache::Cache) -> String {
    let present: BTreeSet<&str> = layout.batches.iter().map(|b| b.rel.as_str()).collect();
    let mut uuids: BTreeSet<String> = layout
        .run_metadata()
        .into_iter()
        .filter_map(|(_, m)| m.ok().map(|m| m.run_uuid))
        .collect();
    for (key, red) in cached {
        if !present.contains(key.batch.as_str()) {
            continue;
        }
        uuids.extend(red.run_uuids().into_iter().map(str::to_string));
    }
    summary::combine_run_uuids(uuids.iter().map(String::as_str))
}

/// Number of problems of each kind, for summaries.
pub fn problems_by_kind(problems: &[Problem]) -> BTreeMap<ProblemKind, usize> {
    let mut m = BTreeMap::new();
    for p in problems {
        *m.entry(p.kind).or_insert(0) += 1;
    }
    m
}

/// The `--json` summary: totals, run-level means and where the outputs are.
pub fn cli_summary(o: &Outcome) -> serde_json::Value {
    let r = &o.results;
    let metrics: serde_json::Map<String, serde_json::Value> = r
        .columns
        .iter()
        .zip(&r.run.columns)
        .map(|(c, s)| {
            (
                c.name.clone(),
                serde_json::json!({"mean": export::json::num(s.mean), "std": export::json::num(s.std)}),
            )
        })
        .collect();
    serde_json::json!({
        "run_name": r.run_name,
        "run_uuid": r.run_uuid,
        "exit_code": o.exit_code(),
        "n_scenes": r.by_scene.len(),
        "n_rollouts": r.run.n_rollouts,
        "n_batches": o.n_batches,
        "n_batches_used": o.n_batches_used,
        "n_batches_read": o.n_batches_read,
        "n_failed_rollouts": o.failed_rollouts.len(),
        "problems": problems_by_kind(&o.problems),
        "metrics": metrics,
        "output_dir": o.output_dir,
    })
}
