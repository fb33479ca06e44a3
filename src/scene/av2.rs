//! Argoverse 2 motion-forecasting importer: `scenario_<id>.parquet` (tracks at 10 Hz) and
//! `log_map_archive_<id>.json` (lanes, drivable areas, pedestrian crossings) → [`Scene`].
//!
//! Conventions (av2-api): the ego is track `AV`; positions are box centres in the city frame;
//! the scenario's `start_timestamp` is in ns and timesteps are 100 ms apart. The dataset has no
//! box sizes, so each class gets a default ([`default_size`]); the ego gets the dimensions of
//! Argoverse 2's Ford Fusion Hybrid. Crosswalk polygons are `edge1` followed by `edge2` reversed,
//! as av2-api builds them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde::Deserialize;

use super::columns::{ColumnError, Columns};
use super::{AgentClass, Lane, Map, Point, Polygon, Scene, SceneError, Track};

/// Time between Argoverse 2 forecasting timesteps (µs).
pub const STEP_US: i64 = 100_000;
/// Ego box (length, width, height) in metres: the Ford Fusion Hybrid of Argoverse 2.
pub const EGO_SIZE: (f64, f64, f64) = (4.87, 1.85, 1.48);

/// Why an Argoverse 2 scenario could not be imported; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// File could not be read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not readable as Parquet.
    #[error("{file}: not a readable Parquet file ({message})")]
    Parquet {
        /// the file
        file: PathBuf,
        /// the cause
        message: String,
    },
    /// A required column is missing or has another type.
    #[error("{file}: column `{column}` missing or not {expected}")]
    Column {
        /// the file
        file: PathBuf,
        /// the column
        column: &'static str,
        /// expected type
        expected: &'static str,
    },
    /// The map JSON does not parse.
    #[error("{file}: invalid Argoverse 2 map JSON ({message})")]
    Map {
        /// the file
        file: PathBuf,
        /// parser message
        message: String,
    },
    /// No track `AV`.
    #[error("{file}: no ego track (track_id \"AV\")")]
    NoEgo {
        /// the file
        file: PathBuf,
    },
    /// The directory lacks one of the two files.
    #[error(
        "{dir}: expected scenario_<id>.parquet and log_map_archive_<id>.json in this directory"
    )]
    MissingFiles {
        /// the directory
        dir: PathBuf,
    },
    /// The result does not validate.
    #[error(transparent)]
    Scene(#[from] SceneError),
}

/// Default box (length, width, height) in metres per Argoverse 2 object type.
pub fn default_size(object_type: &str) -> (AgentClass, (f64, f64, f64)) {
    match object_type {
        "vehicle" => (AgentClass::Vehicle, (4.5, 2.0, 1.6)),
        "bus" => (AgentClass::Vehicle, (12.0, 2.6, 3.2)),
        "pedestrian" => (AgentClass::Pedestrian, (0.6, 0.6, 1.7)),
        "cyclist" | "riderless_bicycle" => (AgentClass::Cyclist, (2.0, 0.7, 1.7)),
        "motorcyclist" => (AgentClass::Cyclist, (2.2, 0.8, 1.6)),
        "static" => (AgentClass::Static, (1.0, 1.0, 1.0)),
        _ => (AgentClass::Other, (0.5, 0.5, 1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::midline;

    #[test]
    fn midline_of_two_parallel_boundaries() {
        let left = [[0.0, 2.0], [10.0, 2.0]];
        let right = [[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]];
        let m = midline(&left, &right);
        assert_eq!(m, vec![[0.0, 1.0], [5.0, 1.0], [10.0, 1.0]]);
    }
}

#[derive(Deserialize)]
struct P3 {
    x: f64,
    y: f64,
}

#[derive(Deserialize)]
struct MapJson {
    drivable_areas: HashMap<String, DrivableArea>,
    lane_segments: HashMap<String, LaneSegment>,
    #[serde(default)]
    pedestrian_crossings: HashMap<String, Crossing>,
}

#[derive(Deserialize)]
struct DrivableArea {
    id: i64,
    area_boundary: Vec<P3>,
}

#[derive(Deserialize)]
struct LaneSegment {
    id: i64,
    /// Present in forecasting maps; sensor-log maps give only the boundaries.
    #[serde(default)]
    centerline: Option<Vec<P3>>,
    left_lane_boundary: Vec<P3>,
    right_lane_boundary: Vec<P3>,
    #[serde(default)]
    predecessors: Vec<i64>,
    #[serde(default)]
    successors: Vec<i64>,
    left_neighbor_id: Option<i64>,
    right_neighbor_id: Option<i64>,
    #[serde(default)]
    is_intersection: bool,
    #[serde(default)]
    lane_type: String,
}

#[derive(Deserialize)]
struct Crossing {
    id: i64,
    edge1: Vec<P3>,
    edge2: Vec<P3>,
}

fn pts(v: &[P3]) -> Vec<Point> {
    v.iter().map(|p| [p.x, p.y]).collect()
}

/// `line` resampled to `n` points equally spaced by arc length.
fn resample(line: &[Point], n: usize) -> Vec<Point> {
    match crate::geometry::Polyline::new(line.to_vec()) {
        Some(l) if n >= 2 => (0..n)
            .map(|k| l.at(l.length() * k as f64 / (n - 1) as f64).0)
            .collect(),
        _ => line.iter().copied().take(n.max(1)).collect(),
    }
}

/// The lane centerline as the midpoints of both boundaries resampled alike (av2-api's
/// `compute_midpoint_line`), for maps that store no centerline.
pub fn midline(left: &[Point], right: &[Point]) -> Vec<Point> {
    let n = left.len().max(right.len()).max(2);
    resample(left, n)
        .into_iter()
        .zip(resample(right, n))
        .map(|(l, r)| [(l[0] + r[0]) / 2.0, (l[1] + r[1]) / 2.0])
        .collect()
}

/// Reads an Argoverse 2 map JSON.
pub fn read_map(path: &Path) -> Result<Map, ImportError> {
    let text = std::fs::read(path).map_err(|e| ImportError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let m: MapJson = serde_json::from_slice(&text).map_err(|e| ImportError::Map {
        file: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut lanes: Vec<Lane> = m
        .lane_segments
        .into_values()
        .map(|l| Lane {
            speed_limit_mps: None,
            id: l.id,
            centerline: match &l.centerline {
                Some(c) => pts(c),
                None => midline(&pts(&l.left_lane_boundary), &pts(&l.right_lane_boundary)),
            },
            left_boundary: pts(&l.left_lane_boundary),
            right_boundary: pts(&l.right_lane_boundary),
            predecessors: l.predecessors,
            successors: l.successors,
            left_neighbor: l.left_neighbor_id,
            right_neighbor: l.right_neighbor_id,
            is_intersection: l.is_intersection,
            lane_type: l.lane_type,
        })
        .collect();
    lanes.sort_by_key(|l| l.id);
    let mut drivable_areas: Vec<Polygon> = m
        .drivable_areas
        .into_values()
        .map(|d| Polygon {
            id: d.id,
            points: pts(&d.area_boundary),
        })
        .collect();
    drivable_areas.sort_by_key(|p| p.id);
    let mut crosswalks: Vec<Polygon> = m
        .pedestrian_crossings
        .into_values()
        .map(|c| {
            let mut points = pts(&c.edge1);
            points.extend(pts(&c.edge2).into_iter().rev());
            Polygon { id: c.id, points }
        })
        .collect();
    crosswalks.sort_by_key(|p| p.id);
    Ok(Map {
        road_lines: Vec::new(),
        road_edges: Vec::new(),
        speed_bumps: Vec::new(),
        driveways: Vec::new(),
        stop_signs: Vec::new(),
        lanes,
        drivable_areas,
        crosswalks,
    })
}

/// Imports a forecasting scenario from its parquet file and map JSON.
pub fn import_forecasting(scenario: &Path, map: &Path) -> Result<Scene, ImportError> {
    let file = scenario;
    let pq = |e: &dyn std::fmt::Display| ImportError::Parquet {
        file: file.to_path_buf(),
        message: e.to_string(),
    };
    let f = File::open(file).map_err(|e| ImportError::Io {
        file: file.to_path_buf(),
        source: e,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
        f,
        ArrowReaderOptions::new().with_skip_arrow_metadata(true),
    )
    .map_err(|e| pq(&e))?
    .build()
    .map_err(|e| pq(&e))?;
    let batches = reader
        .collect::<Result<Vec<RecordBatch>, _>>()
        .map_err(|e| pq(&e))?;
    let c = Columns { batches: &batches };
    let col = |e: ColumnError| ImportError::Column {
        file: file.to_path_buf(),
        column: e.column,
        expected: e.expected,
    };
    let (ids, types, steps) = (
        c.strings("track_id").map_err(col)?,
        c.strings("object_type").map_err(col)?,
        c.i64s("timestep").map_err(col)?,
    );
    let (x, y, yaw) = (
        c.f64s("position_x").map_err(col)?,
        c.f64s("position_y").map_err(col)?,
        c.f64s("heading").map_err(col)?,
    );
    let (vx, vy) = (
        c.f64s("velocity_x").map_err(col)?,
        c.f64s("velocity_y").map_err(col)?,
    );
    let scenario_id = c
        .strings("scenario_id")
        .map_err(col)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let start_ns = c
        .f64s("start_timestamp")
        .map_err(col)?
        .first()
        .copied()
        .unwrap_or(0.0);
    let n = steps.iter().copied().max().map_or(0, |m| m as usize + 1);
    if steps.iter().any(|&s| s < 0) {
        return Err(ImportError::Column {
            file: file.to_path_buf(),
            column: "timestep",
            expected: "non-negative",
        });
    }
    // Every step has a row (the AV is recorded at all of them), so a step beyond the row count
    // is damage, and would otherwise size every track's arrays.
    if n > steps.len() {
        return Err(ImportError::Column {
            file: file.to_path_buf(),
            column: "timestep",
            expected: "at most one step per row (a timestep beyond the file's row count)",
        });
    }
    let start_us = (start_ns / 1000.0).round() as i64;
    let mut tracks: BTreeMap<&str, Track> = BTreeMap::new();
    for i in 0..ids.len() {
        let track = tracks.entry(ids[i].as_str()).or_insert_with(|| {
            let (class, size) = if ids[i] == "AV" {
                (AgentClass::Vehicle, EGO_SIZE)
            } else {
                default_size(&types[i])
            };
            let id = if ids[i] == "AV" {
                "EGO".to_string()
            } else {
                ids[i].clone()
            };
            Track::empty(id, class, size, n)
        });
        let s = steps[i] as usize;
        track.valid[s] = true;
        track.x[s] = x[i];
        track.y[s] = y[i];
        track.yaw[s] = yaw[i];
        track.vx[s] = vx[i];
        track.vy[s] = vy[i];
    }
    let ego = tracks.remove("AV").ok_or_else(|| ImportError::NoEgo {
        file: file.to_path_buf(),
    })?;
    let scene = Scene {
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id: scenario_id,
        source: format!(
            "Argoverse 2 motion forecasting (CC BY-NC-SA 4.0): {}",
            file.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        timestamps_us: (0..n as i64).map(|s| start_us + s * STEP_US).collect(),
        map: read_map(map)?,
        ego,
        agents: tracks.into_values().collect(),
    };
    scene.validate()?;
    Ok(scene)
}

/// Imports the scenario in `dir` (one `scenario_*.parquet` and one `log_map_archive_*.json`).
pub fn import_forecasting_dir(dir: &Path) -> Result<Scene, ImportError> {
    let find = |prefix: &str, ext: &str| -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                n.starts_with(prefix) && n.ends_with(ext)
            })
            .collect();
        v.sort();
        (v.len() == 1).then(|| v.remove(0))
    };
    match (
        find("scenario_", ".parquet"),
        find("log_map_archive_", ".json"),
    ) {
        (Some(s), Some(m)) => import_forecasting(&s, &m),
        _ => Err(ImportError::MissingFiles {
            dir: dir.to_path_buf(),
        }),
    }
}
