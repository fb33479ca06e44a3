//! drivekit's scene format: everything the simulator needs from a recording — the map (lane
//! centerlines with connectivity, drivable-area polygons, crosswalks), the ego's recorded
//! trajectory and box, and every other agent's recorded trajectory, box and class — on one clock
//! in µs. Tracks are structure-of-arrays with a validity mask (Waymax's layout), so batch state
//! can be built from them without per-step structs.
//!
//! On disk (`*.dkscene`): the 8-byte magic `DKSCENE\0`, a little-endian u32 format version, then
//! the scene in bincode. Binary and versioned; a 58-track Argoverse 2 scenario loads in well under
//! a millisecond. Importers for public datasets live in submodules ([`av2`]).

pub mod av2;
pub mod av2_sensor;
pub mod columns;
pub mod commonroad;
pub mod import;
pub mod nuplan_case;
pub mod procedural;
pub mod sampling;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Magic bytes at the start of a scene file.
pub const MAGIC: &[u8; 8] = b"DKSCENE\0";
/// Version written by this build; files of another version are rejected with a clear error.
pub const FORMAT_VERSION: u32 = 1;
/// File extension of scene files.
pub const EXTENSION: &str = "dkscene";

/// A 2-D point in the scene's metric frame (m).
pub type Point = [f64; 2];

/// Class of a road user, with the default box used when a dataset gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentClass {
    /// Cars, trucks, buses.
    Vehicle,
    /// People on foot.
    Pedestrian,
    /// Bicycles and motorcycles, ridden or not.
    Cyclist,
    /// Static obstacles (parked objects, cones).
    Static,
    /// Anything else the dataset tracks.
    Other,
}

/// One agent's recording: a box and its pose at every scene timestamp (where `valid`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Dataset id of the track (`"EGO"` for the ego).
    pub id: String,
    /// Class.
    pub class: AgentClass,
    /// Box length (m, along the heading).
    pub length_m: f64,
    /// Box width (m).
    pub width_m: f64,
    /// Box height (m).
    pub height_m: f64,
    /// Whether the agent was observed at each timestamp.
    pub valid: Vec<bool>,
    /// Box centre x (m).
    pub x: Vec<f64>,
    /// Box centre y (m).
    pub y: Vec<f64>,
    /// Heading (rad, counter-clockwise from +x).
    pub yaw: Vec<f64>,
    /// Velocity x (m/s).
    pub vx: Vec<f64>,
    /// Velocity y (m/s).
    pub vy: Vec<f64>,
}

impl Track {
    /// An all-invalid track of `n` timestamps.
    pub fn empty(id: String, class: AgentClass, size: (f64, f64, f64), n: usize) -> Track {
        Track {
            id,
            class,
            length_m: size.0,
            width_m: size.1,
            height_m: size.2,
            valid: vec![false; n],
            x: vec![0.0; n],
            y: vec![0.0; n],
            yaw: vec![0.0; n],
            vx: vec![0.0; n],
            vy: vec![0.0; n],
        }
    }

    /// Number of valid timestamps.
    pub fn n_valid(&self) -> usize {
        self.valid.iter().filter(|v| **v).count()
    }
}

/// A lane: centerline, boundaries and connectivity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lane {
    /// Dataset id.
    pub id: i64,
    /// Centerline polyline.
    pub centerline: Vec<Point>,
    /// Left boundary polyline.
    pub left_boundary: Vec<Point>,
    /// Right boundary polyline.
    pub right_boundary: Vec<Point>,
    /// Lanes leading into this one.
    pub predecessors: Vec<i64>,
    /// Lanes this one leads into.
    pub successors: Vec<i64>,
    /// Adjacent lane on the left, if any.
    pub left_neighbor: Option<i64>,
    /// Adjacent lane on the right, if any.
    pub right_neighbor: Option<i64>,
    /// Inside an intersection.
    pub is_intersection: bool,
    /// Dataset lane type (e.g. VEHICLE, BIKE, BUS).
    pub lane_type: String,
}

/// A closed polygon (first point not repeated at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polygon {
    /// Dataset id.
    pub id: i64,
    /// Vertices in order.
    pub points: Vec<Point>,
}

/// The static map of a scene.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Map {
    /// Lanes.
    pub lanes: Vec<Lane>,
    /// Drivable area: the union of these polygons.
    pub drivable_areas: Vec<Polygon>,
    /// Pedestrian crossings.
    pub crosswalks: Vec<Polygon>,
}

impl Map {
    /// The drivable-area polygons as plain point lists (what the geometry functions take).
    pub fn drivable_polygons(&self) -> Vec<Vec<Point>> {
        self.drivable_areas
            .iter()
            .map(|p| p.points.clone())
            .collect()
    }
}

/// A scene: map, clock, ego and agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scene {
    /// Scene id (becomes `clipgt_id`).
    pub scene_id: String,
    /// Where it came from (dataset, file name), for provenance.
    pub source: String,
    /// Timestamps (µs), strictly increasing; every track has one entry per timestamp.
    pub timestamps_us: Vec<i64>,
    /// Static map.
    pub map: Map,
    /// The ego's recording (`id` = "EGO").
    pub ego: Track,
    /// Every other agent.
    pub agents: Vec<Track>,
}

/// Why a scene file cannot be read, or a scene is unusable; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// I/O error.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not a drivekit scene.
    #[error("{file}: not a drivekit scene file (missing DKSCENE magic)")]
    BadMagic {
        /// the file
        file: PathBuf,
    },
    /// Written by another format version.
    #[error("{file}: scene format version {found}, this drivekit reads version {expected}; re-import the scene")]
    Version {
        /// the file
        file: PathBuf,
        /// version in the file
        found: u32,
        /// version this build reads
        expected: u32,
    },
    /// Truncated or corrupt body.
    #[error("{file}: corrupt or truncated scene ({message})")]
    Corrupt {
        /// the file
        file: PathBuf,
        /// decoder message
        message: String,
    },
    /// Structurally wrong (lengths, clock, ego).
    #[error("scene {scene_id}: {message}")]
    Invalid {
        /// the scene
        scene_id: String,
        /// what is wrong
        message: String,
    },
}

impl Scene {
    /// Checks array lengths, the clock and the ego; the first problem found is returned.
    pub fn validate(&self) -> Result<(), SceneError> {
        let bad = |message: String| {
            Err(SceneError::Invalid {
                scene_id: self.scene_id.clone(),
                message,
            })
        };
        let n = self.timestamps_us.len();
        if n == 0 {
            return bad("no timestamps".into());
        }
        if self.timestamps_us.windows(2).any(|w| w[1] <= w[0]) {
            return bad("timestamps_us are not strictly increasing".into());
        }
        for t in std::iter::once(&self.ego).chain(&self.agents) {
            let lens = [
                t.valid.len(),
                t.x.len(),
                t.y.len(),
                t.yaw.len(),
                t.vx.len(),
                t.vy.len(),
            ];
            if lens.iter().any(|&l| l != n) {
                return bad(format!(
                    "track {} has arrays of lengths {lens:?}, expected {n}",
                    t.id
                ));
            }
            if !(t.length_m > 0.0 && t.width_m > 0.0) {
                return bad(format!(
                    "track {} has a degenerate box {} × {} m",
                    t.id, t.length_m, t.width_m
                ));
            }
        }
        if self.ego.n_valid() == 0 {
            return bad("the ego is never observed".into());
        }
        Ok(())
    }

    /// What the scene holds, as `simulate scene-info` prints it.
    pub fn summary(&self) -> String {
        let ts = &self.timestamps_us;
        let dur = (ts.last().unwrap_or(&0) - ts.first().unwrap_or(&0)) as f64 / 1e6;
        format!(
            "{}: {} timestamps ({dur:.1} s), ego observed {} times, {} agents, {} lanes, {} drivable areas, {} crosswalks\n  source: {}",
            self.scene_id,
            ts.len(),
            self.ego.n_valid(),
            self.agents.len(),
            self.map.lanes.len(),
            self.map.drivable_areas.len(),
            self.map.crosswalks.len(),
            self.source
        )
    }

    /// Writes the scene to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), SceneError> {
        let io = |e| SceneError::Io {
            file: path.to_path_buf(),
            source: e,
        };
        let body = bincode::serialize(self).map_err(|e| io(std::io::Error::other(e)))?;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&body);
        fsutil::write_atomic(path, &bytes).map_err(io)
    }

    /// Reads and validates a scene file.
    pub fn load(path: &Path) -> Result<Scene, SceneError> {
        let file = path.to_path_buf();
        let bytes = std::fs::read(path).map_err(|e| SceneError::Io {
            file: file.clone(),
            source: e,
        })?;
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(SceneError::BadMagic { file });
        }
        let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if found != FORMAT_VERSION {
            return Err(SceneError::Version {
                file,
                found,
                expected: FORMAT_VERSION,
            });
        }
        let scene: Scene = bincode::deserialize(&bytes[12..]).map_err(|e| SceneError::Corrupt {
            file: file.clone(),
            message: e.to_string(),
        })?;
        scene.validate()?;
        Ok(scene)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Scene {
        let mut ego = Track::empty("EGO".into(), AgentClass::Vehicle, (4.8, 1.9, 1.5), 3);
        ego.valid = vec![true; 3];
        ego.x = vec![0.0, 1.0, 2.0];
        Scene {
            scene_id: "tiny".into(),
            source: "test".into(),
            timestamps_us: vec![0, 100_000, 200_000],
            map: Map::default(),
            ego,
            agents: vec![Track::empty(
                "a".into(),
                AgentClass::Pedestrian,
                (0.5, 0.5, 1.7),
                3,
            )],
        }
    }

    #[test]
    fn round_trip_and_bad_files() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiny.dkscene");
        tiny().save(&p).unwrap();
        assert_eq!(Scene::load(&p).unwrap(), tiny());
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 5]).unwrap();
        assert!(matches!(Scene::load(&p), Err(SceneError::Corrupt { .. })));
        std::fs::write(&p, b"PAR1 not a scene").unwrap();
        assert!(matches!(Scene::load(&p), Err(SceneError::BadMagic { .. })));
        let mut v = bytes.clone();
        v[8] = 9;
        std::fs::write(&p, &v).unwrap();
        let e = Scene::load(&p).unwrap_err().to_string();
        assert!(e.contains("version 9") && e.contains("re-import"), "{e}");
    }

    #[test]
    fn validate_names_the_problem() {
        let mut s = tiny();
        s.agents[0].x.pop();
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("track a has arrays of lengths"));
        let mut s = tiny();
        s.ego.valid = vec![false; 3];
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("never observed"));
        let mut s = tiny();
        s.timestamps_us[2] = 0;
        assert!(s
            .validate()
            .unwrap_err()
            .to_string()
            .contains("strictly increasing"));
    }
}
