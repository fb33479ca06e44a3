//! Argoverse 2 sensor-log importer: `annotations.feather` (cuboids in the **ego-vehicle frame**
//! at each lidar sweep), `city_SE3_egovehicle.feather` (ego pose in the city frame) and the log's
//! map JSON → [`Scene`].
//!
//! The scene clock is the annotation (lidar sweep) timestamps, ≈ 10 Hz but not exactly 100 ms
//! apart; each needs an ego pose at the same timestamp (the pose log has one for every sweep).
//! Cuboids are moved to the city frame (`p_city = R_ego · p_ego + t_ego`, yaw added), keep their
//! annotated sizes, and get velocities by finite differences over consecutive sweeps where the
//! track is seen at both. Box yaw is the rotation about z of the cuboid quaternion.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use super::av2::{read_map, EGO_SIZE};
use super::columns::{ColumnError, Columns};
use super::{AgentClass, Scene, SceneError, Track};

/// Why a sensor log could not be imported; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum SensorLogError {
    /// File could not be read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not a readable Arrow IPC (feather v2) file.
    #[error("{file}: not a readable feather file ({message})")]
    Feather {
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
    /// An annotation sweep without an ego pose at the same timestamp.
    #[error("{file}: no ego pose at annotation timestamp {timestamp_ns} ns")]
    NoPose {
        /// the pose file
        file: PathBuf,
        /// the sweep
        timestamp_ns: i64,
    },
    /// Missing files in the log directory.
    #[error("{dir}: expected annotations.feather, city_SE3_egovehicle.feather and one log_map_archive_*.json")]
    MissingFiles {
        /// the directory
        dir: PathBuf,
    },
    /// The map JSON failed.
    #[error(transparent)]
    Map(#[from] super::av2::ImportError),
    /// The result does not validate.
    #[error(transparent)]
    Scene(#[from] SceneError),
}

/// drivekit class of an Argoverse 2 sensor-dataset category.
pub fn class_of(category: &str) -> AgentClass {
    match category {
        "REGULAR_VEHICLE" | "LARGE_VEHICLE" | "BUS" | "BOX_TRUCK" | "TRUCK" | "TRUCK_CAB"
        | "VEHICULAR_TRAILER" | "SCHOOL_BUS" | "ARTICULATED_BUS" | "RAILED_VEHICLE" => {
            AgentClass::Vehicle
        }
        "PEDESTRIAN" | "OFFICIAL_SIGNALER" | "STROLLER" | "WHEELCHAIR" => AgentClass::Pedestrian,
        "BICYCLE" | "BICYCLIST" | "MOTORCYCLE" | "MOTORCYCLIST" | "WHEELED_DEVICE"
        | "WHEELED_RIDER" => AgentClass::Cyclist,
        "BOLLARD"
        | "CONSTRUCTION_CONE"
        | "CONSTRUCTION_BARREL"
        | "SIGN"
        | "STOP_SIGN"
        | "MESSAGE_BOARD_TRAILER"
        | "MOBILE_PEDESTRIAN_CROSSING_SIGN"
        | "TRAFFIC_LIGHT_TRAILER" => AgentClass::Static,
        _ => AgentClass::Other,
    }
}

/// Yaw (rotation about z) of a unit quaternion.
pub fn yaw_of(qw: f64, qx: f64, qy: f64, qz: f64) -> f64 {
    (2.0 * (qw * qz + qx * qy)).atan2(1.0 - 2.0 * (qy * qy + qz * qz))
}

fn read_feather(path: &Path) -> Result<Vec<RecordBatch>, SensorLogError> {
    let f = File::open(path).map_err(|e| SensorLogError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let bad = |e: arrow_schema::ArrowError| SensorLogError::Feather {
        file: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = arrow_ipc::reader::FileReader::try_new_buffered(f, None).map_err(bad)?;
    reader.collect::<Result<Vec<_>, _>>().map_err(bad)
}

/// Finite-difference velocities over consecutive valid timestamps.
fn fill_velocities(t: &mut Track, times_s: &[f64]) {
    let n = t.valid.len();
    for i in 0..n {
        if !t.valid[i] {
            continue;
        }
        let (a, b) = if i + 1 < n && t.valid[i + 1] {
            (i, i + 1)
        } else if i > 0 && t.valid[i - 1] {
            (i - 1, i)
        } else {
            continue;
        };
        let dt = times_s[b] - times_s[a];
        if dt > 0.0 {
            t.vx[i] = (t.x[b] - t.x[a]) / dt;
            t.vy[i] = (t.y[b] - t.y[a]) / dt;
        }
    }
}

/// Imports a sensor log from its three files.
pub fn import_sensor_log(
    annotations: &Path,
    poses: &Path,
    map: &Path,
) -> Result<Scene, SensorLogError> {
    let column = |file: &Path| {
        let file = file.to_path_buf();
        move |e: ColumnError| SensorLogError::Column {
            file: file.clone(),
            column: e.column,
            expected: e.expected,
        }
    };
    let ann_batches = read_feather(annotations)?;
    let a = Columns {
        batches: &ann_batches,
    };
    let ac = column(annotations);
    let (ts, ids, cats) = (
        a.i64s("timestamp_ns").map_err(&ac)?,
        a.strings("track_uuid").map_err(&ac)?,
        a.strings("category").map_err(&ac)?,
    );
    let (len, wid, hei) = (
        a.f64s("length_m").map_err(&ac)?,
        a.f64s("width_m").map_err(&ac)?,
        a.f64s("height_m").map_err(&ac)?,
    );
    let (qw, qx, qy, qz) = (
        a.f64s("qw").map_err(&ac)?,
        a.f64s("qx").map_err(&ac)?,
        a.f64s("qy").map_err(&ac)?,
        a.f64s("qz").map_err(&ac)?,
    );
    let (tx, ty) = (a.f64s("tx_m").map_err(&ac)?, a.f64s("ty_m").map_err(&ac)?);

    let pose_batches = read_feather(poses)?;
    let p = Columns {
        batches: &pose_batches,
    };
    let pc = column(poses);
    let pose_ts = p.i64s("timestamp_ns").map_err(&pc)?;
    let (pw, px, py, pz) = (
        p.f64s("qw").map_err(&pc)?,
        p.f64s("qx").map_err(&pc)?,
        p.f64s("qy").map_err(&pc)?,
        p.f64s("qz").map_err(&pc)?,
    );
    let (ptx, pty) = (p.f64s("tx_m").map_err(&pc)?, p.f64s("ty_m").map_err(&pc)?);
    let pose_at: HashMap<i64, usize> = pose_ts.iter().enumerate().map(|(i, &t)| (t, i)).collect();

    let mut sweeps: Vec<i64> = ts.clone();
    sweeps.sort_unstable();
    sweeps.dedup();
    let n = sweeps.len();
    let index: HashMap<i64, usize> = sweeps.iter().enumerate().map(|(i, &t)| (t, i)).collect();
    let times_s: Vec<f64> = sweeps
        .iter()
        .map(|&t| (t - sweeps[0]) as f64 / 1e9)
        .collect();

    let mut ego = Track::empty("EGO".into(), AgentClass::Vehicle, EGO_SIZE, n);
    let mut ego_pose = Vec::with_capacity(n);
    for (i, &t) in sweeps.iter().enumerate() {
        let k = *pose_at.get(&t).ok_or(SensorLogError::NoPose {
            file: poses.to_path_buf(),
            timestamp_ns: t,
        })?;
        let yaw = yaw_of(pw[k], px[k], py[k], pz[k]);
        ego.valid[i] = true;
        ego.x[i] = ptx[k];
        ego.y[i] = pty[k];
        ego.yaw[i] = yaw;
        ego_pose.push((ptx[k], pty[k], yaw));
    }
    fill_velocities(&mut ego, &times_s);

    let mut tracks: BTreeMap<&str, Track> = BTreeMap::new();
    for r in 0..ts.len() {
        let i = index[&ts[r]];
        let track = tracks.entry(ids[r].as_str()).or_insert_with(|| {
            Track::empty(
                ids[r].clone(),
                class_of(&cats[r]),
                (len[r], wid[r], hei[r]),
                n,
            )
        });
        let (ex, ey, eyaw) = ego_pose[i];
        let (s, c) = eyaw.sin_cos();
        track.valid[i] = true;
        track.x[i] = ex + c * tx[r] - s * ty[r];
        track.y[i] = ey + s * tx[r] + c * ty[r];
        track.yaw[i] = yaw_of(qw[r], qx[r], qy[r], qz[r]) + eyaw;
    }
    let mut agents: Vec<Track> = tracks.into_values().collect();
    for t in &mut agents {
        fill_velocities(t, &times_s);
    }
    let log_id = map
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .trim_start_matches("log_map_archive_")
        .split("____")
        .next()
        .unwrap_or_default()
        .to_string();
    let scene = Scene {
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id: log_id,
        source: format!(
            "Argoverse 2 sensor dataset (CC BY-NC-SA 4.0): {}",
            annotations.display()
        ),
        timestamps_us: sweeps.iter().map(|t| t / 1000).collect(),
        map: read_map(map)?,
        ego,
        agents,
    };
    scene.validate()?;
    Ok(scene)
}

/// Imports the sensor log in `dir`.
pub fn import_sensor_log_dir(dir: &Path) -> Result<Scene, SensorLogError> {
    let maps: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| SensorLogError::Io {
            file: dir.to_path_buf(),
            source: e,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            n.starts_with("log_map_archive_") && n.ends_with(".json")
        })
        .collect();
    let (ann, poses) = (
        dir.join("annotations.feather"),
        dir.join("city_SE3_egovehicle.feather"),
    );
    if maps.len() != 1 || !ann.is_file() || !poses.is_file() {
        return Err(SensorLogError::MissingFiles {
            dir: dir.to_path_buf(),
        });
    }
    import_sensor_log(&ann, &poses, &maps[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaw_of_a_rotation_about_z() {
        let h: f64 = 0.7;
        let (w, z) = ((h / 2.0).cos(), (h / 2.0).sin());
        assert!((yaw_of(w, 0.0, 0.0, z) - h).abs() < 1e-12);
        assert_eq!(class_of("REGULAR_VEHICLE"), AgentClass::Vehicle);
        assert_eq!(class_of("BOLLARD"), AgentClass::Static);
        assert_eq!(class_of("ANIMAL"), AgentClass::Other);
    }
}
