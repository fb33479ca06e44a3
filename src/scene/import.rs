//! `simulate import KIND INPUT -o DIR`: one entry point over the importers — which files of INPUT
//! each dataset reads, converting them into scenes and writing `<scene_id>.dkscene` files.

use std::path::{Path, PathBuf};

use super::{av2, av2_sensor, commonroad, nuplan_case, Scene, SceneError};

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
}

/// Why an import did not happen; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Argoverse 2 forecasting.
    #[error(transparent)]
    Av2(#[from] av2::ImportError),
    /// Argoverse 2 sensor log.
    #[error(transparent)]
    Av2Sensor(#[from] av2_sensor::SensorLogError),
    /// nuPlan case.
    #[error(transparent)]
    NuplanCase(#[from] nuplan_case::CaseError),
    /// CommonRoad.
    #[error(transparent)]
    CommonRoad(#[from] commonroad::CommonRoadError),
    /// Writing a scene.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// The input cannot be listed.
    #[error("{path}: {source}")]
    Io {
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// No input file of the kind.
    #[error("{0}: no .{1} files found")]
    NoFiles(PathBuf, &'static str),
}

/// `input` itself when it is a file, else every `*.{ext}` below it, sorted.
pub fn files_with(input: &Path, ext: &'static str) -> Result<Vec<PathBuf>, ImportError> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![input.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let io = |e| ImportError::Io {
            path: d.clone(),
            source: e,
        };
        for e in std::fs::read_dir(&d).map_err(io)? {
            let p = e.map_err(io)?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        return Err(ImportError::NoFiles(input.to_path_buf(), ext));
    }
    Ok(out)
}

/// Converts `input` into scenes.
pub fn import(kind: ImportKind, input: &Path) -> Result<Vec<Scene>, ImportError> {
    Ok(match kind {
        ImportKind::Av2Forecasting => vec![av2::import_forecasting_dir(input)?],
        ImportKind::Av2Sensor => vec![av2_sensor::import_sensor_log_dir(input)?],
        ImportKind::NuplanCase => files_with(input, "json")?
            .iter()
            .map(|f| nuplan_case::import_case(f))
            .collect::<Result<_, _>>()?,
        ImportKind::Commonroad => files_with(input, "xml")?
            .iter()
            .map(|f| commonroad::import(f))
            .collect::<Result<_, _>>()?,
    })
}

/// Converts `input` and writes each scene to `out/<scene_id>.dkscene`; returns the scenes with
/// the file each went to.
pub fn import_to(
    kind: ImportKind,
    input: &Path,
    out: &Path,
) -> Result<Vec<(Scene, PathBuf)>, ImportError> {
    let mut written = Vec::new();
    for scene in import(kind, input)? {
        let path = out.join(format!("{}.{}", scene.scene_id, super::EXTENSION));
        scene.save(&path)?;
        written.push((scene, path));
    }
    Ok(written)
}
