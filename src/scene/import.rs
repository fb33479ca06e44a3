//! `simulate import KIND INPUT… -o DIR`: one entry point over the importers. The inputs' files
//! (a file, a directory searched for the kind's files, or a glob) are read in parallel on all
//! cores; every scene is written to `DIR/<scene_id>.dkscene` as soon as it is converted, so
//! memory stays bounded however many shards there are. A file or scenario that cannot be
//! imported is named with the problem and skipped; the others go on.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{av2, av2_sensor, commonroad, gpudrive, nuplan_case, nuplan_db, womd, Scene};

/// The datasets `simulate import` reads (a command-line value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportKind {
    /// Argoverse 2 motion-forecasting scenario (the directory holding scenario_<id>.parquet and
    /// log_map_archive_<id>.json).
    Av2Forecasting,
    /// Argoverse 2 sensor log (the log directory: annotations.feather,
    /// city_SE3_egovehicle.feather, map JSON).
    Av2Sensor,
    /// nuPlan devkit metric test case (one JSON file, or a directory searched for *.json).
    NuplanCase,
    /// CommonRoad XML scenario (one file, or a directory searched for *.xml).
    Commonroad,
    /// Waymo Open Motion Dataset: TFRecord files of Scenario protobufs (files, directories
    /// searched for `*.tfrecord*`, or globs such as 'training/training.tfrecord-*').
    Womd,
    /// GPUDrive / Nocturne JSON scenes (files or directories searched for *.json).
    Gpudrive,
    /// nuPlan SQLite logs (*.db) with their GeoPackage maps (`--map-root`): one scene per
    /// tagged lidar_pc (nuPlan's scenario token).
    NuplanDb,
}

impl ImportKind {
    /// Whether `p` is an input file of this kind.
    fn takes(self, p: &Path) -> bool {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        match self {
            ImportKind::Womd => name.contains(".tfrecord") || name.starts_with("tfrecord"),
            ImportKind::Gpudrive | ImportKind::NuplanCase => name.ends_with(".json"),
            ImportKind::Commonroad => name.ends_with(".xml"),
            ImportKind::NuplanDb => name.ends_with(".db"),
            ImportKind::Av2Forecasting | ImportKind::Av2Sensor => false,
        }
    }

    /// The kind's inputs are directories (one scene per directory), not files.
    fn per_directory(self) -> bool {
        matches!(self, ImportKind::Av2Forecasting | ImportKind::Av2Sensor)
    }
}

/// Settings of an import.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Draw a progress bar (on a terminal only).
    pub progress: bool,
    /// nuPlan DB: where the maps are, and how scenarios are cut.
    pub nuplan: nuplan_db::NuplanDbOptions,
}

/// Why nothing could be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input cannot be listed.
    #[error("{path}: {source}")]
    Io {
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// No input file of the kind.
    #[error("{0}: no {1} files found")]
    NoFiles(PathBuf, &'static str),
    /// A glob that does not parse.
    #[error("{0}: not a valid glob pattern ({1})")]
    Glob(String, String),
    /// Every input failed; the reasons are in the report.
    #[error("nothing imported: {} input(s) skipped; first: {}", .0.len(), .0.first().map(String::as_str).unwrap_or("-"))]
    NothingImported(Vec<String>),
}

/// A scene written.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// Its id.
    pub scene_id: String,
    /// Its file.
    pub path: PathBuf,
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Input files (or directories) read.
    pub inputs: usize,
    /// Scenes written, in input order.
    pub written: Vec<Written>,
    /// Summaries of the first scenes written (`simulate import` prints them for small imports).
    pub summaries: Vec<String>,
    /// What was skipped and why (file, byte offset or scenario, problem).
    pub skipped: Vec<String>,
}

/// How many scene summaries a report keeps.
pub const SUMMARIES: usize = 10;

/// How many skip reasons `simulate import` prints before summarising the rest.
pub const SKIPS_SHOWN: usize = 20;

impl ImportReport {
    /// The exit status `simulate import` uses: 0 all imported, 1 some skipped.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.skipped.is_empty())
    }

    /// What `simulate import` prints: on stdout each scene's summary (for up to
    /// [`SUMMARIES`] scenes) and the totals; on stderr what was skipped.
    pub fn text(&self, out: &Path) -> (String, String) {
        let mut o = String::new();
        if self.written.len() <= SUMMARIES {
            for (s, w) in self.summaries.iter().zip(&self.written) {
                o.push_str(&format!("{s}\n  written to {}\n", w.path.display()));
            }
        }
        o.push_str(&format!(
            "{} scene(s) from {} input(s) → {}; {} skipped\n",
            self.written.len(),
            self.inputs,
            out.display(),
            self.skipped.len()
        ));
        let mut e = String::new();
        for s in self.skipped.iter().take(SKIPS_SHOWN) {
            e.push_str(&format!("skipped: {s}\n"));
        }
        if self.skipped.len() > SKIPS_SHOWN {
            e.push_str(&format!(
                "… and {} more skipped\n",
                self.skipped.len() - SKIPS_SHOWN
            ));
        }
        (o, e)
    }
}

fn kind_name(kind: ImportKind) -> &'static str {
    match kind {
        ImportKind::Womd => "TFRecord",
        ImportKind::Gpudrive | ImportKind::NuplanCase => ".json",
        ImportKind::Commonroad => ".xml",
        ImportKind::NuplanDb => ".db",
        ImportKind::Av2Forecasting | ImportKind::Av2Sensor => "input",
    }
}

/// The input files of `kind` among `inputs`: each file itself, each directory searched
/// recursively, each glob expanded; sorted and deduplicated.
pub fn input_files(kind: ImportKind, inputs: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    let mut out = Vec::new();
    for input in inputs {
        let text = input.to_string_lossy();
        if kind.per_directory() {
            out.push(input.clone());
            continue;
        }
        if !input.exists() && text.contains(['*', '?', '[']) {
            let paths = glob::glob(&text)
                .map_err(|e| ImportError::Glob(text.to_string(), e.to_string()))?;
            let before = out.len();
            out.extend(paths.flatten().filter(|p| p.is_file()));
            if out.len() == before {
                return Err(ImportError::NoFiles(input.clone(), kind_name(kind)));
            }
            continue;
        }
        if input.is_file() {
            out.push(input.clone());
            continue;
        }
        let before = out.len();
        let mut dirs = vec![input.clone()];
        while let Some(d) = dirs.pop() {
            let io = |e| ImportError::Io {
                path: d.clone(),
                source: e,
            };
            for e in std::fs::read_dir(&d).map_err(io)? {
                let p = e.map_err(io)?.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if kind.takes(&p) {
                    out.push(p);
                }
            }
        }
        if out.len() == before {
            return Err(ImportError::NoFiles(input.clone(), kind_name(kind)));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `input` itself when it is a file, else every `*.{ext}` below it, sorted (kept for callers of
/// the single-file importers).
pub fn files_with(input: &Path, ext: &'static str) -> Result<Vec<PathBuf>, ImportError> {
    let kind = match ext {
        "xml" => ImportKind::Commonroad,
        "db" => ImportKind::NuplanDb,
        _ => ImportKind::NuplanCase,
    };
    input_files(kind, &[input.to_path_buf()])
}

/// Converts one input, handing each scene (or the reason it was skipped) to `emit`.
fn read_input(
    kind: ImportKind,
    input: &Path,
    opts: &ImportOptions,
    emit: &mut dyn FnMut(Result<Scene, String>),
) {
    let one = |r: Result<Scene, String>, emit: &mut dyn FnMut(Result<Scene, String>)| emit(r);
    match kind {
        ImportKind::Av2Forecasting => one(
            av2::import_forecasting_dir(input).map_err(|e| e.to_string()),
            emit,
        ),
        ImportKind::Av2Sensor => one(
            av2_sensor::import_sensor_log_dir(input).map_err(|e| e.to_string()),
            emit,
        ),
        ImportKind::NuplanCase => one(
            nuplan_case::import_case(input).map_err(|e| e.to_string()),
            emit,
        ),
        ImportKind::Commonroad => one(commonroad::import(input).map_err(|e| e.to_string()), emit),
        ImportKind::Gpudrive => one(gpudrive::import(input).map_err(|e| e.to_string()), emit),
        ImportKind::Womd => womd::read_file(input, &mut |r| emit(r.map_err(|e| e.to_string()))),
        ImportKind::NuplanDb => nuplan_db::read_db(input, &opts.nuplan, &mut |r| {
            emit(r.map_err(|e| e.to_string()))
        }),
    }
}

/// Converts `inputs` and writes each scene to `out/<scene_id>.dkscene` as it comes.
pub fn import_to(
    kind: ImportKind,
    inputs: &[PathBuf],
    out: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let files = input_files(kind, inputs)?;
    std::fs::create_dir_all(out).map_err(|e| ImportError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    let bar = crate::report::progress::bar(files.len() as u64, "importing", opts.progress);
    let mut report = ImportReport {
        inputs: files.len(),
        ..ImportReport::default()
    };
    // Per file, its scenes in order; files in parallel, results merged in input order.
    let per_file: Vec<(Vec<Written>, Vec<String>, Vec<String>)> = files
        .par_iter()
        .map(|f| {
            let mut written = Vec::new();
            let mut skipped = Vec::new();
            let mut summaries = Vec::new();
            read_input(kind, f, opts, &mut |r| match r {
                Ok(scene) => {
                    let path = out.join(format!("{}.{}", scene.scene_id, super::EXTENSION));
                    match scene.save_as(&path, crate::fsutil::Durability::Renamed) {
                        Ok(()) => {
                            if summaries.len() < SUMMARIES {
                                summaries.push(scene.summary());
                            }
                            written.push(Written {
                                scene_id: scene.scene_id.clone(),
                                path,
                            });
                        }
                        Err(e) => skipped.push(e.to_string()),
                    }
                }
                Err(why) => skipped.push(why),
            });
            bar.inc(1);
            (written, skipped, summaries)
        })
        .collect();
    bar.finish_and_clear();
    for (w, s, sum) in per_file {
        report.written.extend(w);
        report.skipped.extend(s);
        for x in sum {
            if report.summaries.len() < SUMMARIES {
                report.summaries.push(x);
            }
        }
    }
    if report.written.is_empty() {
        return Err(ImportError::NothingImported(report.skipped));
    }
    Ok(report)
}

/// Converts `input` into scenes in memory (for tests and small inputs): the scenes, and what was
/// skipped.
pub fn import(
    kind: ImportKind,
    input: &Path,
    opts: &ImportOptions,
) -> Result<(Vec<Scene>, Vec<String>), ImportError> {
    let mut scenes = Vec::new();
    let mut skipped = Vec::new();
    for f in input_files(kind, &[input.to_path_buf()])? {
        read_input(kind, &f, opts, &mut |r| match r {
            Ok(s) => scenes.push(s),
            Err(e) => skipped.push(e),
        });
    }
    Ok((scenes, skipped))
}
