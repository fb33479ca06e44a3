//! The run directory layout of DESIGN §2 (AlpaSim's): job dirs, batch dirs, `_complete` and
//! `_failed.json` markers, and discovery of every batch of a run — one run dir, or an array dir
//! holding one run dir per Slurm task.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Marker written last in a batch dir once everything in it is durable.
pub const COMPLETE: &str = "_complete";
/// Written instead of `_complete` when a batch failed for good.
pub const FAILED: &str = "_failed.json";
/// Per-batch metrics file.
pub const METRICS: &str = "metrics.parquet";
/// Resolved configuration of a run (one per job dir).
pub const WIZARD_CONFIG: &str = "wizard-config.yaml";
/// run_name and run_uuid of a run.
pub const RUN_METADATA: &str = "run_metadata.yaml";
/// Subdirectory holding `{scene_id}/{batch_uuid}/` batch dirs.
pub const ROLLOUTS: &str = "rollouts";
/// Output directory of `aggregate`.
pub const AGGREGATE: &str = "aggregate";

/// Contents of `_failed.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedBatch {
    /// Why the batch failed.
    pub error: String,
    /// Scene of the batch.
    #[serde(default)]
    pub scene_id: String,
    /// Batch uuid.
    #[serde(default)]
    pub batch_uuid: String,
    /// Rollouts that produced nothing.
    #[serde(default)]
    pub rollout_ids: Vec<String>,
}

/// `run_metadata.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunMetadata {
    /// Human-readable run name (not necessarily unique).
    pub run_name: String,
    /// Unique run id.
    pub run_uuid: String,
}

/// Why a run_metadata.yaml cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Not readable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not YAML with run_name and run_uuid.
    #[error("{file}: {message}")]
    Format {
        /// the file
        file: PathBuf,
        /// the parser's message
        message: String,
    },
}

impl RunMetadata {
    /// Reads a run_metadata.yaml (the fields other than run_name and run_uuid are ignored).
    pub fn load(path: &Path) -> Result<RunMetadata, MetadataError> {
        let text = fs::read_to_string(path).map_err(|e| MetadataError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        serde_norway::from_str(&text).map_err(|e| MetadataError::Format {
            file: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// State of a batch dir, from its markers.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchState {
    /// `_complete` present.
    Complete,
    /// `_failed.json` present (and no `_complete`).
    Failed(FailedBatch),
    /// `_failed.json` present but unreadable.
    FailedUnreadable(String),
    /// Neither marker: the batch was interrupted or is still running.
    Incomplete,
}

/// One batch dir.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchDir {
    /// Index into [`RunLayout::jobs`].
    pub job: usize,
    /// `{scene_id}` path component (= clipgt_id).
    pub scene_id: String,
    /// `{batch_uuid}` path component.
    pub batch_uuid: String,
    /// Absolute or caller-relative path of the batch dir.
    pub dir: PathBuf,
    /// Path relative to the run root, `/`-separated: a stable key for caches and reports.
    pub rel: String,
    /// Marker state.
    pub state: BatchState,
}

/// One job dir (a directory with `rollouts/`).
#[derive(Debug, Clone, PartialEq)]
pub struct JobDir {
    /// The directory.
    pub dir: PathBuf,
    /// Its `wizard-config.yaml`, when present.
    pub wizard_config: Option<PathBuf>,
}

/// Every job and batch of a run, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct RunLayout {
    /// The directory given by the user.
    pub root: PathBuf,
    /// Job dirs, sorted (the root first when it is one).
    pub jobs: Vec<JobDir>,
    /// Batch dirs sorted by relative path.
    pub batches: Vec<BatchDir>,
}

/// Why a directory cannot be read as a run.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The path does not exist.
    #[error("{0}: no such run directory")]
    NotFound(PathBuf),
    /// The path is a file.
    #[error("{0}: is a file, expected a run directory (runs/X holding rollouts/)")]
    NotADirectory(PathBuf),
    /// No `rollouts/` in the dir nor in any job subdir.
    #[error("{0}: no rollouts/ directory here or in any subdirectory holding wizard-config.yaml; is this a run directory?")]
    NoRollouts(PathBuf),
    /// A directory could not be listed.
    #[error("{path}: cannot read directory: {source}")]
    Io {
        /// the directory
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

fn read_dir_sorted(path: &Path) -> Result<Vec<PathBuf>, LayoutError> {
    let io = |e| LayoutError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        // The entry's type comes with the listing; only a link (users link shards into a run
        // dir) or an unknown type costs a stat, to follow it.
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_dir() => true,
            Ok(t) if t.is_file() => false,
            _ => entry.path().is_dir(),
        };
        if is_dir {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Why a tool that writes into batch dirs (`evaluate`, `render`) leaves `dir` alone: it resolves
/// (through a symlink) outside `root`. `None` when it lies inside. Reading may follow such links
/// (users link shards into a run dir); writing never does.
pub fn writes_outside(root: &Path, dir: &Path) -> Option<String> {
    let (Ok(r), Ok(d)) = (fs::canonicalize(root), fs::canonicalize(dir)) else {
        return Some("cannot be resolved".into());
    };
    (!d.starts_with(&r)).then(|| {
        format!(
            "resolves to {} outside the run dir (a symlink): not written into; copy it in to process it",
            d.display()
        )
    })
}

/// Reads the marker state of one batch dir.
pub fn batch_state(dir: &Path) -> BatchState {
    if dir.join(COMPLETE).exists() {
        return BatchState::Complete;
    }
    let failed = dir.join(FAILED);
    if failed.exists() {
        return match fs::read(&failed)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<FailedBatch>(&b).map_err(|e| e.to_string()))
        {
            Ok(f) => BatchState::Failed(f),
            Err(e) => BatchState::FailedUnreadable(format!("{}: {e}", failed.display())),
        };
    }
    BatchState::Incomplete
}

impl RunLayout {
    /// Finds the job dirs and batch dirs under `root`.
    ///
    /// `root` is a job dir when it holds `rollouts/`; each subdirectory holding
    /// `wizard-config.yaml` and `rollouts/` is a job dir too (Slurm array layout).
    pub fn discover(root: &Path) -> Result<RunLayout, LayoutError> {
        if !root.exists() {
            return Err(LayoutError::NotFound(root.to_path_buf()));
        }
        if !root.is_dir() {
            return Err(LayoutError::NotADirectory(root.to_path_buf()));
        }
        let mut jobs = Vec::new();
        let job = |dir: &Path| JobDir {
            dir: dir.to_path_buf(),
            wizard_config: Some(dir.join(WIZARD_CONFIG)).filter(|p| p.is_file()),
        };
        if root.join(ROLLOUTS).is_dir() {
            jobs.push(job(root));
        }
        for sub in read_dir_sorted(root)? {
            let name = file_name(&sub);
            if name == ROLLOUTS || name == AGGREGATE {
                continue;
            }
            if sub.join(WIZARD_CONFIG).is_file() && sub.join(ROLLOUTS).is_dir() {
                jobs.push(job(&sub));
            }
        }
        if jobs.is_empty() {
            return Err(LayoutError::NoRollouts(root.to_path_buf()));
        }
        let mut scenes = Vec::new();
        for (j, job) in jobs.iter().enumerate() {
            for scene in read_dir_sorted(&job.dir.join(ROLLOUTS))? {
                scenes.push((j, scene));
            }
        }
        // The scene dirs listed in parallel, their batches kept in scene order.
        let listed: Vec<Vec<PathBuf>> = scenes
            .par_iter()
            .map(|(_, scene)| read_dir_sorted(scene))
            .collect::<Result<_, _>>()?;
        let mut dirs = Vec::new();
        for ((j, scene), batches) in scenes.iter().zip(listed) {
            for batch in batches {
                dirs.push((*j, file_name(scene), batch));
            }
        }
        let mut batches: Vec<BatchDir> = dirs
            .into_par_iter()
            .map(|(j, scene_id, dir)| {
                let rel = dir
                    .strip_prefix(root)
                    .unwrap_or(&dir)
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                BatchDir {
                    job: j,
                    scene_id,
                    batch_uuid: file_name(&dir),
                    state: batch_state(&dir),
                    dir,
                    rel,
                }
            })
            .collect();
        batches.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(RunLayout {
            root: root.to_path_buf(),
            jobs,
            batches,
        })
    }

    /// Reads `run_metadata.yaml` of every job that has one.
    pub fn run_metadata(&self) -> Vec<(PathBuf, Result<RunMetadata, MetadataError>)> {
        self.jobs
            .iter()
            .map(|j| j.dir.join(RUN_METADATA))
            .filter(|p| p.is_file())
            .map(|p| {
                let r = RunMetadata::load(&p);
                (p, r)
            })
            .collect()
    }
}

/// What drivekit records in a new run's run_metadata.yaml beyond AlpaSim's run_name and run_uuid
/// (DESIGN §2; readers that know only the first two ignore the rest).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewRun<'a> {
    /// run_name.
    pub run_name: &'a str,
    /// `cpu`, `cuda` or `cuda-emulated`.
    pub backend: &'a str,
    /// The device, or the CPU threads.
    pub backend_device: String,
}

impl RunMetadata {
    /// Reads `run/run_metadata.yaml`, or creates it for `new` first (a fresh run_uuid, drivekit's
    /// version, the host, the start time, the backend). With shards starting at once the first
    /// file wins and the others read it (created by a hard link, which fails if it exists).
    pub fn create_or_load(run: &Path, new: &NewRun<'_>) -> Result<RunMetadata, MetadataError> {
        let path = run.join(RUN_METADATA);
        if !path.exists() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            #[derive(Serialize)]
            struct File<'a> {
                run_name: &'a str,
                run_uuid: String,
                drivekit_version: &'a str,
                host: String,
                started_unix_s: u64,
                backend: &'a str,
                backend_device: &'a str,
            }
            let host = crate::fsutil::hostname();
            let meta = File {
                run_name: new.run_name,
                run_uuid: crate::rng::uuid_from(
                    nanos as u64 ^ u64::from(std::process::id()),
                    new.run_name,
                ),
                drivekit_version: env!("CARGO_PKG_VERSION"),
                host,
                started_unix_s: (nanos / 1_000_000_000) as u64,
                backend: new.backend,
                backend_device: &new.backend_device,
            };
            let text = serde_norway::to_string(&meta).expect("plain data");
            let tmp = crate::fsutil::temp_path(&path);
            fs::write(&tmp, text).map_err(|e| MetadataError::Io {
                file: tmp.clone(),
                source: e,
            })?;
            let _ = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
        }
        RunMetadata::load(&path)
    }
}

impl FailedBatch {
    /// Writes `dir/_failed.json` atomically (creating the batch dir).
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        fs::create_dir_all(dir)?;
        let bytes = serde_json::to_vec_pretty(self).expect("plain data");
        crate::fsutil::write_atomic(&dir.join(FAILED), &bytes)
    }
}

/// Why `name` (a scene id from a file, a config or a log) cannot be a directory of the run:
/// empty, `.`/`..`, or holding a path separator — it would write outside its place.
pub fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("is a relative path")
    } else if name.contains(['/', '\\', '\0']) {
        Some("holds a path separator")
    } else {
        None
    }
}

/// The batch uuid of `scene_id`'s batch in a drivekit run (derived from the scene id, so a rerun
/// finds the same directory) and its directory under `run`.
pub fn batch_of(run: &Path, scene_id: &str) -> (String, PathBuf) {
    let batch_uuid = crate::rng::uuid_from(0, scene_id);
    let dir = run.join(ROLLOUTS).join(scene_id).join(&batch_uuid);
    (batch_uuid, dir)
}

/// Which part of the scene list this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

/// A `--shard` or Slurm setting that does not describe a shard.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("shard {0}: expected i/n with 0 ≤ i < n (e.g. --shard 0/4), or Slurm's SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT")]
pub struct ShardError(pub String);

impl Shard {
    /// Parses `i/n`.
    pub fn parse(s: &str) -> Result<Shard, ShardError> {
        let bad = || ShardError(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// From Slurm's array variables: index = (ID − MIN) / STEP, count = COUNT; `None` outside
    /// an array job. A stepped array like `--array=3-7:2` (IDs 3, 5, 7; COUNT 3) works.
    pub fn from_slurm(get: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>, ShardError> {
        let Some(id) = get("SLURM_ARRAY_TASK_ID") else {
            return Ok(None);
        };
        let num = |k: &str, default: i64| -> Result<i64, ShardError> {
            match get(k) {
                Some(v) => v.trim().parse().map_err(|_| ShardError(format!("{k}={v}"))),
                None => Ok(default),
            }
        };
        let id: i64 = id
            .trim()
            .parse()
            .map_err(|_| ShardError(format!("SLURM_ARRAY_TASK_ID={id}")))?;
        let (min, step, count) = (
            num("SLURM_ARRAY_TASK_MIN", 0)?,
            num("SLURM_ARRAY_TASK_STEP", 1)?,
            num("SLURM_ARRAY_TASK_COUNT", 1)?,
        );
        if step <= 0 || id < min || (id - min) % step != 0 || count <= 0 {
            return Err(ShardError(format!(
                "SLURM_ARRAY_TASK_ID={id} MIN={min} STEP={step} COUNT={count}"
            )));
        }
        let index = ((id - min) / step) as usize;
        if index >= count as usize {
            return Err(ShardError(format!(
                "task index {index} ≥ SLURM_ARRAY_TASK_COUNT={count}"
            )));
        }
        Ok(Some(Shard {
            index,
            count: count as usize,
        }))
    }

    /// The scenes (sorted ids) of this shard: dealt round-robin.
    pub fn pick<'a>(&self, sorted: &'a [String]) -> Vec<&'a String> {
        sorted
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.count == self.index)
            .map(|(_, s)| s)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_single_and_array_layouts() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert!(matches!(
            RunLayout::discover(root),
            Err(LayoutError::NoRollouts(_))
        ));
        for job in ["task0", "task1"] {
            let b = root
                .join(job)
                .join("rollouts/sceneA")
                .join(format!("b-{job}"));
            fs::create_dir_all(&b).unwrap();
            fs::write(root.join(job).join(WIZARD_CONFIG), "n_rollouts: 1\n").unwrap();
            if job == "task0" {
                fs::write(b.join(COMPLETE), "").unwrap();
            } else {
                fs::write(b.join(FAILED), r#"{"error":"boom","rollout_ids":["x-0"]}"#).unwrap();
            }
        }
        fs::create_dir_all(root.join("outputs/rollouts/s/b")).unwrap(); // no wizard-config: ignored
        let l = RunLayout::discover(root).unwrap();
        assert_eq!(l.jobs.len(), 2);
        assert_eq!(l.batches.len(), 2);
        assert_eq!(l.batches[0].rel, "task0/rollouts/sceneA/b-task0");
        assert_eq!(l.batches[0].state, BatchState::Complete);
        assert!(matches!(&l.batches[1].state, BatchState::Failed(f) if f.error == "boom"));
        let f = root.join("file");
        fs::write(&f, "").unwrap();
        assert!(matches!(
            RunLayout::discover(&f),
            Err(LayoutError::NotADirectory(_))
        ));
        assert!(matches!(
            RunLayout::discover(&root.join("nope")),
            Err(LayoutError::NotFound(_))
        ));
    }

    #[test]
    fn shards_parse_and_deal_round_robin() {
        assert_eq!(Shard::parse("1/4").unwrap(), Shard { index: 1, count: 4 });
        for bad in ["4/4", "x/2", "1", "0/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        let ids: Vec<String> = (0..5).map(|i| format!("s{i}")).collect();
        assert_eq!(
            Shard { index: 1, count: 2 }.pick(&ids),
            vec![&ids[1], &ids[3]]
        );
    }

    #[test]
    fn stepped_slurm_arrays_map_to_shard_indices() {
        // --array=3-7:2 → IDs 3, 5, 7, COUNT 3.
        let env = |id: &'static str| {
            move |k: &str| match k {
                "SLURM_ARRAY_TASK_ID" => Some(id.to_string()),
                "SLURM_ARRAY_TASK_MIN" => Some("3".into()),
                "SLURM_ARRAY_TASK_STEP" => Some("2".into()),
                "SLURM_ARRAY_TASK_COUNT" => Some("3".into()),
                _ => None,
            }
        };
        assert_eq!(
            Shard::from_slurm(env("3")).unwrap(),
            Some(Shard { index: 0, count: 3 })
        );
        assert_eq!(
            Shard::from_slurm(env("7")).unwrap(),
            Some(Shard { index: 2, count: 3 })
        );
        assert!(Shard::from_slurm(env("4")).is_err());
        assert_eq!(Shard::from_slurm(|_| None).unwrap(), None);
    }
}
