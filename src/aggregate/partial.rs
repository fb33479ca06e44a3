//! Map-reduce for Slurm arrays: `aggregate --partial` in each array task reduces the batches of
//! that task's shard into `aggregate/partials/shard-I-of-N/` — the reductions
//! ([`REDUCTIONS`], the per-batch cache's format) and the shard's rows
//! ([`export::UNPROCESSED`](super::export::UNPROCESSED), one row group per batch like the run's
//! file) — and the final `aggregate` takes each batch whose metrics.parquet is unchanged since
//! (same size and mtime) from a partial instead of reading it: its reduction as it is, its rows
//! copied chunk by chunk. The outputs are the same bytes as a cold aggregate's (quantiles stay
//! exact: the partials hold every rollout's reduced values, not summaries of them).
//!
//! A shard's scenes are the ones `simulate run` gave it: the run's `scenes.scene_ids` (which
//! `simulate run` writes into wizard-config.yaml), sorted, dealt round-robin
//! ([`Shard::pick`]). A batch no usable partial holds — changed since, skipped by the partial, or
//! of a shard whose partial never ran — is read by the final aggregate as usual, so a missing or
//! stale partial costs time, never a wrong result.

use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use serde::Serialize;

use super::unprocessed::{self, PreviousFile, UnprocessedWriter};
use super::{cache, export, Error, Options, Problem, ProblemKind};
use crate::fsutil;
use crate::run_dir::{self, RunLayout, Shard};

/// Directory of the partials under aggregate/.
pub const DIR: &str = "partials";
/// A partial's reductions (the format of aggregate/.cache/reductions.bin).
pub const REDUCTIONS: &str = "reductions.bin";

/// The directory of shard `shard`'s partial in the aggregate/ directory `out_dir`.
pub fn shard_dir(out_dir: &Path, shard: Shard) -> PathBuf {
    out_dir
        .join(DIR)
        .join(format!("shard-{}-of-{}", shard.index, shard.count))
}

/// The partials found under an aggregate/ directory, ready to be read from.
#[derive(Default)]
pub struct Partials {
    /// Each usable partial's rows.
    pub files: Vec<PreviousFile>,
    /// Batches the usable partials hold (their reductions are added to the cache).
    pub n_batches: usize,
    /// Partials that could not be used (their batches are read again).
    pub problems: Vec<Problem>,
}

/// Opens every partial under `out_dir/partials/`, adding their reductions to `cached`. A partial
/// whose files are unreadable, or written with other chain settings or other columns than the
/// output's `schema`, is left out with a warning.
pub fn load(
    out_dir: &Path,
    opts: &Options,
    schema: &SchemaRef,
    cached: &mut cache::Cache,
) -> Partials {
    let mut out = Partials::default();
    let Ok(entries) = std::fs::read_dir(out_dir.join(DIR)) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let rel = dir
            .strip_prefix(&opts.run_dir)
            .unwrap_or(&dir)
            .display()
            .to_string();
        let reductions = cache::read(&dir.join(REDUCTIONS), &opts.chain);
        if reductions.as_ref().is_some_and(|r| r.is_empty()) {
            // A shard without complete batches: nothing to take.
            continue;
        }
        let file = PreviousFile::open(&dir.join(export::UNPROCESSED), schema);
        let (Some(file), Some(reductions)) = (file, reductions) else {
            out.problems.push(Problem {
                kind: ProblemKind::Warning,
                path: rel,
                message: format!(
                    "partial aggregation not used (its {} or {} is missing, unreadable, or made \
                     by another drivekit version, other --max-dist-to-gt or other columns): its \
                     batches are read again",
                    REDUCTIONS,
                    export::UNPROCESSED
                ),
            });
            continue;
        };
        out.n_batches += reductions.len();
        for (key, red) in reductions {
            cached.entry(key).or_insert(red);
        }
        out.files.push(file);
    }
    out
}

/// What `aggregate --partial` did.
#[derive(Debug, Clone, Serialize)]
pub struct PartialOutcome {
    /// The shard.
    pub shard: String,
    /// Its partial's directory.
    pub dir: PathBuf,
    /// The shard's scenes.
    pub n_scenes: usize,
    /// Complete batches of the shard held by the partial.
    pub n_batches: usize,
    /// Of those, the batches read now (the rest came from the partial's previous version).
    pub n_batches_read: usize,
    /// Rollouts the partial holds.
    pub n_rollouts: usize,
    /// Batches of the shard left out (the final aggregate reads them and reports them).
    pub problems: Vec<Problem>,
}

/// `aggregate --partial`: reduces the complete batches of `shard`'s scenes into
/// [`shard_dir`], reusing its previous version's unchanged batches (a requeued task).
pub fn run(opts: &Options, shard: Shard) -> Result<PartialOutcome, Error> {
    crate::process::keep_freed_memory();
    let root = &opts.run_dir;
    let layout = RunLayout::discover(root)?;
    let mut problems = Vec::new();
    let scenes = super::check_configs(&layout, opts, &mut problems)?;
    if scenes.is_empty() {
        return Err(Error::PartialWithoutScenes(root.clone()));
    }
    let sorted: Vec<String> = scenes.into_iter().collect();
    let picked: std::collections::BTreeSet<&String> = shard.pick(&sorted).into_iter().collect();
    let (complete, _) = super::classify(&layout, &mut Vec::new());
    let complete: Vec<&run_dir::BatchDir> = complete
        .into_iter()
        .filter(|b| picked.contains(&b.scene_id))
        .collect();
    let dir = shard_dir(&root.join(run_dir::AGGREGATE), shard);
    let werr = |path: &Path, e: &dyn std::fmt::Display| Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| werr(&dir, &e))?;
    fsutil::remove_stale_temps(&dir);
    let reductions_path = dir.join(REDUCTIONS);
    let rows_path = dir.join(export::UNPROCESSED);
    let first = complete.first().map(|b| b.dir.join(run_dir::METRICS));
    let schema = unprocessed::output_schema(first.as_deref());
    let (mut cached, previous) = if opts.use_cache {
        (
            cache::load(&reductions_path, &opts.chain),
            PreviousFile::open(&rows_path, &schema),
        )
    } else {
        Default::default()
    };
    let guess = super::guess_run_uuid(&layout, &cached);
    let keys = super::complete_keys(&complete);
    let writer = UnprocessedWriter::create(&rows_path, &guess, schema.clone())
        .map_err(|e| werr(&rows_path, &e))?;
    let sources: Vec<&PreviousFile> = previous.iter().collect();
    let read = super::read_batches(
        &complete,
        &keys,
        opts,
        &mut cached,
        &sources,
        &Default::default(),
        Some(writer),
        &rows_path,
        false,
    )?;
    drop(sources);
    drop(previous);
    problems.extend(read.problems);
    if let Some(w) = read.writer {
        w.finish().map_err(|e| werr(&rows_path, &e))?;
    }
    let n_rollouts = read
        .reductions
        .iter()
        .map(|(_, _, r)| r.trajectories.len())
        .sum();
    let entries: Vec<_> = read
        .reductions
        .into_iter()
        .map(|(_, k, r)| (k, r))
        .collect();
    cache::save(&reductions_path, &opts.chain, &entries).map_err(|e| werr(&reductions_path, &e))?;
    problems.sort();
    problems.dedup();
    Ok(PartialOutcome {
        shard: format!("{}/{}", shard.index, shard.count),
        dir,
        n_scenes: picked.len(),
        n_batches: entries.len(),
        n_batches_read: read.n_read,
        n_rollouts,
        problems,
    })
}
