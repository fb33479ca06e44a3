//! `aggregate/metrics_unprocessed.parquet` as a dataset directory: every metrics row of the run
//! in part files (`part-<hash>.parquet`), each holding whole batches ([`unprocessed`] writes
//! each part: one row group per batch, the combined run_uuid in every row). pandas
//! (`read_parquet`), pyarrow (`parquet.read_table`, `dataset`) and polars (`read_parquet`,
//! `scan_parquet`) read the directory as one table, as they read one file.
//!
//! Where a part ends is decided by the batches themselves (content-defined boundaries, as in
//! rsync): in sorted batch order, a batch starts a new part when the hash of its directory is 0
//! modulo `part_batches` (so a part holds `part_batches` batches on average), and a part is
//! named by the hash of its first batch's directory. The parts therefore depend only on the set
//! of batches, not on the history of runs that produced it: new, changed or removed batches
//! rewrite only the parts they fall into, the others stand as they are, and an incremental
//! aggregate leaves the same files, byte for byte, as a cold one.
//!
//! Writing: [`PartsWriter`] stages the new parts in a hidden sibling directory
//! (`.metrics_unprocessed.parquet.tmp-<pid>-<n>`, outside the dataset so no reader lists a
//! half-written part); [`Staged::commit`] then completes the stage (hard links to the parts
//! that stand, parts rewritten for a final run_uuid or without rejected batches) and swaps it
//! with the dataset in one rename ([`fsutil::replace_dir`]). A killed aggregate leaves only the
//! stage, removed by the next one.
//!
//! [`unprocessed`]: super::unprocessed

use std::collections::{HashMap, HashSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use arrow_schema::SchemaRef;
use parquet::errors::ParquetError;
use sha2::{Digest, Sha256};

use super::unprocessed::{BatchKey, Encoder, PreviousFile, RowSink, Source, UnprocessedWriter};
use crate::fsutil;

/// Batches per part on average (`aggregate --part-batches`): at AlpaSim's size (10 rollouts ×
/// 15 metrics × 200 steps a batch) about 30 MiB a part.
pub const DEFAULT_PART_BATCHES: usize = 256;

/// The name of the part written when the run has no rows: the schema without row groups, so
/// readers still find the columns.
const EMPTY_PART: &str = "part-0000000000000000.parquet";

fn digest(rel: &str) -> [u8; 32] {
    Sha256::digest(rel.as_bytes()).into()
}

/// Whether the batch dir `rel` starts a part (with `part_batches` batches a part on average).
pub fn starts_part(rel: &str, part_batches: usize) -> bool {
    let d = digest(rel);
    let mut h = [0u8; 8];
    h.copy_from_slice(&d[..8]);
    part_batches <= 1 || u64::from_be_bytes(h) % part_batches as u64 == 0
}

/// The file name of the part whose first batch dir is `first`.
pub fn part_name(first: &str) -> String {
    let d = digest(first);
    let hex: String = d[8..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("part-{hex}.parquet")
}

/// The parts of the batch dirs `rels` (in sorted batch order): index ranges, each starting at
/// the first batch or at a batch that [`starts_part`].
pub fn split(rels: &[&str], part_batches: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, rel) in rels.iter().enumerate() {
        if i > start && starts_part(rel, part_batches) {
            out.push(start..i);
            start = i;
        }
    }
    if start < rels.len() {
        out.push(start..rels.len());
    }
    out
}

fn is_part(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// The part files of the dataset directory `dir`, sorted (none when it is not a directory).
pub fn part_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| is_part(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The files of a previous dataset whose row groups can be reused: its parts, or the single
/// file an older drivekit wrote under the same name.
#[derive(Default)]
pub struct PreviousParts {
    /// Every usable file (an unreadable or differently shaped one is left out, so replaced).
    pub files: Vec<PreviousFile>,
    by_first: HashMap<BatchKey, usize>,
}

impl PreviousParts {
    /// Opens the dataset at `path` (a directory of parts, a single file, or nothing) for
    /// outputs with the columns of `schema`.
    pub fn open(path: &Path, schema: &SchemaRef) -> PreviousParts {
        let mut files = Vec::new();
        if path.is_file() {
            files.extend(PreviousFile::open(path, schema));
        } else {
            files.extend(
                part_files(path)
                    .iter()
                    .filter_map(|p| PreviousFile::open(p, schema)),
            );
        }
        let by_first = files
            .iter()
            .enumerate()
            .filter_map(|(i, f)| Some((f.keys().first()?.clone(), i)))
            .collect();
        PreviousParts { files, by_first }
    }

    /// The file that holds exactly `keys`, in order, written with `run_uuid`.
    pub fn same(&self, keys: &[BatchKey], run_uuid: &str) -> Option<&PreviousFile> {
        let f = &self.files[*self.by_first.get(keys.first()?)?];
        f.holds_exactly(keys, run_uuid).then_some(f)
    }

    /// Whether the dataset is exactly these parts (name, batches, run_uuid), nothing else.
    fn is_exactly(&self, parts: &[(String, &[BatchKey])], run_uuid: &str) -> bool {
        self.files.len() == parts.len()
            && parts.iter().all(|(name, keys)| {
                self.same(keys, run_uuid)
                    .is_some_and(|f| f.path().file_name().is_some_and(|n| n == name.as_str()))
            })
    }
}

/// The parts of `keys` (batches in sorted order): (file name, the batches it holds).
fn layout(keys: &[BatchKey], part_batches: usize) -> Vec<(String, &[BatchKey])> {
    let rels: Vec<&str> = keys.iter().map(|k| k.batch.as_str()).collect();
    split(&rels, part_batches)
        .into_iter()
        .map(|r| (part_name(rels[r.start]), &keys[r]))
        .collect()
}

/// The batches, of the run's complete batches in order (`None` where a batch cannot be keyed),
/// whose part can stand as it is in `previous`: every batch of that part has its reduction in
/// `cached` (`Some(rows)`) and the previous file holds exactly the part's batches under
/// `run_uuid`. `cached` says how many rows a cached batch has (batches without rows belong to
/// no part).
pub fn standing(
    keys: &[Option<&BatchKey>],
    cached: impl Fn(&BatchKey) -> Option<u64>,
    previous: &PreviousParts,
    run_uuid: &str,
    part_batches: usize,
) -> HashSet<BatchKey> {
    // The batches with rows, as far as known before reading: an uncached batch is assumed to
    // have rows (if it has none, its part is written and the commit sets it right).
    let planned: Vec<(&BatchKey, bool)> = keys
        .iter()
        .flatten()
        .filter_map(|k| match cached(k) {
            Some(0) => None,
            rows => Some((*k, rows.is_some())),
        })
        .collect();
    let plan: Vec<BatchKey> = planned.iter().map(|(k, _)| (*k).clone()).collect();
    let mut out = HashSet::new();
    let mut at = 0;
    for (_, part) in layout(&plan, part_batches) {
        let range = at..at + part.len();
        at += part.len();
        if planned[range].iter().all(|(_, c)| *c) && previous.same(part, run_uuid).is_some() {
            out.extend(part.iter().cloned());
        }
    }
    out
}

/// Streams the batches that are new, changed or in a changed part into staged part files.
pub struct PartsWriter {
    target: PathBuf,
    schema: SchemaRef,
    run_uuid: String,
    part_batches: usize,
    encoder: Encoder,
    /// The part being written, with the ordinal of its last batch.
    current: Option<(usize, UnprocessedWriter)>,
    /// Last, so that an open part is dropped before its directory is removed.
    stage: Stage,
}

/// The hidden directory parts are staged in; removed when dropped (after an error, or once the
/// commit has swapped it for the dataset and it holds the previous dataset).
struct Stage(PathBuf);

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

impl PartsWriter {
    /// Starts the parts of the dataset `target` with the columns of `schema`, `run_uuid` in
    /// every row, `part_batches` batches a part on average.
    pub fn create(
        target: &Path,
        run_uuid: &str,
        schema: SchemaRef,
        part_batches: usize,
    ) -> Result<PartsWriter, ParquetError> {
        Ok(PartsWriter {
            target: target.to_path_buf(),
            stage: Stage(fsutil::temp_path(target)),
            encoder: Encoder::new(schema.clone())?,
            schema,
            run_uuid: run_uuid.to_string(),
            part_batches,
            current: None,
        })
    }

    /// The staged parts, the last one finished.
    pub fn finish(mut self) -> Result<Staged, ParquetError> {
        if let Some((_, w)) = self.current.take() {
            w.finish()?;
        }
        Ok(Staged {
            target: self.target,
            stage: self.stage,
            schema: self.schema,
            part_batches: self.part_batches,
        })
    }
}

impl RowSink for PartsWriter {
    fn encoder(&self) -> Encoder {
        self.encoder.clone()
    }

    fn append(
        &mut self,
        ordinal: usize,
        key: BatchKey,
        source: Source<'_>,
    ) -> Result<(), ParquetError> {
        // A new part at a boundary, and after a gap (the batches in between are in parts that
        // stand; should a part's first batch have gone missing, the commit sets it right).
        let continues = self.current.as_ref().is_some_and(|(last, _)| {
            *last + 1 == ordinal && !starts_part(&key.batch, self.part_batches)
        });
        if !continues {
            if let Some((_, w)) = self.current.take() {
                w.finish()?;
            }
            fs::create_dir_all(&self.stage.0).map_err(other)?;
            let path = self.stage.0.join(part_name(&key.batch));
            let w = UnprocessedWriter::create(&path, &self.run_uuid, self.schema.clone())?;
            self.current = Some((ordinal, w));
        }
        let (last, w) = self.current.as_mut().expect("a part is open");
        *last = ordinal;
        w.append(key, source)
    }
}

fn other(e: impl std::fmt::Display) -> ParquetError {
    ParquetError::General(e.to_string())
}

/// Parts staged by a [`PartsWriter`], not yet in the dataset; dropped uncommitted, the stage is
/// removed.
pub struct Staged {
    target: PathBuf,
    schema: SchemaRef,
    part_batches: usize,
    stage: Stage,
}

impl Staged {
    /// Makes the dataset exactly the parts of `keys` (the batches kept, in sorted order, each
    /// with rows) under `run_uuid`: staged parts that match stand, parts of `previous` that
    /// match are linked, any other part is written by copying its batches' row groups from
    /// the staged or previous files. Then the stage replaces the dataset; nothing changes when
    /// the dataset already is those parts.
    pub fn commit(
        self,
        previous: &PreviousParts,
        keys: &[BatchKey],
        run_uuid: &str,
    ) -> Result<PathBuf, ParquetError> {
        let mut timer = crate::report::timing::PhaseTimer::from_env("  ");
        let parts = layout(keys, self.part_batches);
        let staged = PreviousParts::open(&self.stage.0, &self.schema);
        timer.lap("staged parts opened");
        if staged.files.is_empty() && !parts.is_empty() && previous.is_exactly(&parts, run_uuid) {
            return Ok(self.target.clone());
        }
        fs::create_dir_all(&self.stage.0).map_err(other)?;
        // Every batch's rows: staged first (the newest), then the previous files.
        let mut rows: HashMap<&BatchKey, (&PreviousFile, &[usize])> = HashMap::new();
        for f in staged.files.iter().chain(&previous.files) {
            for k in f.keys() {
                if let Some(groups) = f.row_groups(k) {
                    rows.entry(k).or_insert((f, groups));
                }
            }
        }
        // New files go in under a temporary name first: the files they copy from stay intact
        // until every part is complete.
        let mut renames: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut wanted: HashSet<String> = HashSet::new();
        for (name, part) in &parts {
            wanted.insert(name.clone());
            let path = self.stage.0.join(name);
            let next = self.stage.0.join(format!(".next-{name}"));
            if staged
                .same(part, run_uuid)
                .is_some_and(|f| f.path() == path)
            {
                continue;
            }
            if let Some(f) = previous.same(part, run_uuid) {
                if fs::hard_link(f.path(), &next).is_err() {
                    fs::copy(f.path(), &next).map_err(other)?;
                }
            } else {
                let mut w = UnprocessedWriter::create(&next, run_uuid, self.schema.clone())?;
                for k in *part {
                    let (f, groups) = rows.get(k).ok_or_else(|| {
                        other(format!(
                            "the rows of {} are in no staged or previous part",
                            k.batch
                        ))
                    })?;
                    w.append(k.clone(), Source::Copy(f, groups.to_vec()))?;
                }
                w.finish()?;
            }
            renames.push((next, path));
        }
        if parts.is_empty() {
            let path = self.stage.0.join(EMPTY_PART);
            UnprocessedWriter::create(&path, run_uuid, self.schema.clone())?.finish()?;
            wanted.insert(EMPTY_PART.to_string());
        }
        timer.lap(&format!("{} parts linked or written", renames.len()));
        drop(rows);
        drop(staged);
        for (from, to) in renames {
            fs::rename(from, to).map_err(other)?;
        }
        for e in fs::read_dir(&self.stage.0).map_err(other)?.flatten() {
            if !wanted.contains(e.file_name().to_string_lossy().as_ref()) {
                fs::remove_file(e.path()).map_err(other)?;
            }
        }
        fsutil::replace_dir(&self.stage.0, &self.target).map_err(other)?;
        Ok(self.target.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_end_where_the_batches_say_whatever_else_is_in_the_run() {
        let rels: Vec<String> = (0..2000).map(|i| format!("rollouts/s{i:05}/b")).collect();
        let all: Vec<&str> = rels.iter().map(String::as_str).collect();
        let parts = split(&all, 64);
        // Contiguous, covering, about 64 batches each.
        assert_eq!(parts.first().unwrap().start, 0);
        assert_eq!(parts.last().unwrap().end, all.len());
        assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        assert!((15..=50).contains(&parts.len()), "{} parts", parts.len());
        // Removing the batches of one part (and adding some) leaves every other part as it was.
        let gone = parts[5].clone();
        let mut fewer: Vec<&str> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !gone.contains(i))
            .map(|(_, r)| *r)
            .collect();
        fewer.push("rollouts/s99999/b");
        let names = |rels: &[&str]| -> HashSet<(String, usize)> {
            split(rels, 64)
                .into_iter()
                .map(|r| (part_name(rels[r.start]), r.len()))
                .collect()
        };
        let before = names(&all);
        let after = names(&fewer);
        let changed = before.symmetric_difference(&after).count();
        assert!(changed <= 4, "{changed} parts differ");
        // One batch a part at most with part_batches 1.
        assert_eq!(split(&all[..10], 1).len(), 10);
        assert!(split(&[], 64).is_empty());
    }
}
