//! drivekit's scene format: everything the simulator needs from a recording — the map (lane
//! centerlines with connectivity, drivable-area polygons, crosswalks), the ego's recorded
//! trajectory and box, and every other agent's recorded trajectory, box and class — on one clock
//! in µs. Tracks are structure-of-arrays with a validity mask (Waymax's layout), so batch state
//! can be built from them without per-step structs.
//!
//! Version 2 adds what benchmarks score against: traffic-signal states per lane per step, stop
//! signs with the lanes they control, lane speed limits, road lines and edges, speed bumps,
//! driveways, tags and the dataset's prediction metadata. The lane graph (successors,
//! predecessors, neighbours) was there from version 1.
//!
//! On disk (`*.dkscene`): the 8-byte magic `DKSCENE\0`, a little-endian u32 format version, then
//! the scene in bincode. Binary and versioned; version-1 files still load ([`v1`]). Importers for
//! public datasets live in submodules.

pub mod av2;
pub mod av2_sensor;
pub mod catalogue;
pub mod columns;
pub mod commonroad;
pub mod gpudrive;
pub mod import;
pub mod lane_graph;
pub mod nuplan_case;
pub mod nuplan_db;
pub mod procedural;
pub mod sampling;
pub mod tfrecord;
pub mod v1;
pub mod womd;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// Magic bytes at the start of a scene file.
pub const MAGIC: &[u8; 8] = b"DKSCENE\0";
/// Version written by this build; version 1 still loads, any other is rejected with a clear
/// error.
pub const FORMAT_VERSION: u32 = 2;
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
    /// Speed limit (m/s), when the map gives one.
    pub speed_limit_mps: Option<f64>,
}

/// A closed polygon (first point not repeated at the end).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polygon {
    /// Dataset id.
    pub id: i64,
    /// Vertices in order.
    pub points: Vec<Point>,
}

/// A painted line or a road edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapLine {
    /// Dataset id.
    pub id: i64,
    /// Dataset type (e.g. `TYPE_SOLID_SINGLE_WHITE`, `TYPE_ROAD_EDGE_BOUNDARY`).
    pub kind: String,
    /// Points in order.
    pub points: Vec<Point>,
}

/// A stop sign: where it stands and the lanes whose traffic it stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StopSign {
    /// Dataset id.
    pub id: i64,
    /// Position.
    pub position: Point,
    /// The lanes it controls (a vehicle on one of them stops at its end).
    pub lanes: Vec<i64>,
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
    /// Painted road lines.
    pub road_lines: Vec<MapLine>,
    /// Road edges (kerbs, medians).
    pub road_edges: Vec<MapLine>,
    /// Speed bumps.
    pub speed_bumps: Vec<Polygon>,
    /// Driveways.
    pub driveways: Vec<Polygon>,
    /// Stop signs.
    pub stop_signs: Vec<StopSign>,
}

/// A traffic signal's state for one lane at one step (WOMD's `TrafficSignalLaneState.State`;
/// nuPlan's green / yellow / red / unknown map to go / caution / stop / unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalState {
    /// No state known at this step.
    #[default]
    Unknown,
    /// Red arrow.
    ArrowStop,
    /// Yellow arrow.
    ArrowCaution,
    /// Green arrow.
    ArrowGo,
    /// Red.
    Stop,
    /// Yellow.
    Caution,
    /// Green.
    Go,
    /// Flashing red: stop, then go (as at a stop sign).
    FlashingStop,
    /// Flashing yellow.
    FlashingCaution,
}

impl SignalState {
    /// Red (circle or arrow): traffic on the lane must not enter it.
    pub fn is_red(self) -> bool {
        matches!(self, SignalState::Stop | SignalState::ArrowStop)
    }

    /// The name used in scene-info and metrics.
    pub fn name(self) -> &'static str {
        match self {
            SignalState::Unknown => "unknown",
            SignalState::ArrowStop => "arrow_stop",
            SignalState::ArrowCaution => "arrow_caution",
            SignalState::ArrowGo => "arrow_go",
            SignalState::Stop => "stop",
            SignalState::Caution => "caution",
            SignalState::Go => "go",
            SignalState::FlashingStop => "flashing_stop",
            SignalState::FlashingCaution => "flashing_caution",
        }
    }

    /// From WOMD's and GPUDrive's names (`LANE_STATE_STOP`, `stop`, …; unknown names → unknown).
    pub fn parse(name: &str) -> SignalState {
        let n = name.trim().to_ascii_lowercase();
        let n = n.strip_prefix("lane_state_").unwrap_or(&n);
        match n {
            "arrow_stop" => SignalState::ArrowStop,
            "arrow_caution" => SignalState::ArrowCaution,
            "arrow_go" => SignalState::ArrowGo,
            "stop" | "red" => SignalState::Stop,
            "caution" | "yellow" => SignalState::Caution,
            "go" | "green" => SignalState::Go,
            "flashing_stop" => SignalState::FlashingStop,
            "flashing_caution" => SignalState::FlashingCaution,
            _ => SignalState::Unknown,
        }
    }
}

/// The signal controlling one lane: its state at every scene timestamp and where traffic stops.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneSignal {
    /// The lane it controls.
    pub lane: i64,
    /// State per timestamp (`Unknown` where the dataset has none).
    pub states: Vec<SignalState>,
    /// Where traffic stops (the dataset's stop point; `None`: the lane's start).
    pub stop_point: Option<Point>,
}

/// What the dataset marks for prediction benchmarks (WOMD's fields).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SceneMeta {
    /// Agents (indices into `agents`) to predict.
    pub tracks_to_predict: Vec<usize>,
    /// Ids of the tracks of interest.
    pub objects_of_interest: Vec<String>,
    /// Index of the "current" timestamp (history before it, future after it), when given.
    pub current_time_index: Option<usize>,
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
    /// Traffic signals, one per controlled lane (replayed as recorded).
    pub signals: Vec<LaneSignal>,
    /// Tags (scenario types such as nuPlan's `starting_left_turn`, the dataset split, …).
    pub tags: Vec<String>,
    /// The dataset's prediction metadata.
    pub meta: SceneMeta,
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
    #[error("{file}: scene format version {found}, this drivekit reads versions 1 to {expected}; re-import the scene")]
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
        for sig in &self.signals {
            if sig.states.len() != n {
                return bad(format!(
                    "the signal of lane {} has {} states, expected {n}",
                    sig.lane,
                    sig.states.len()
                ));
            }
        }
        if let Some(&k) = self
            .meta
            .tracks_to_predict
            .iter()
            .find(|&&k| k >= self.agents.len())
        {
            return bad(format!(
                "tracks_to_predict names agent {k} of {}",
                self.agents.len()
            ));
        }
        Ok(())
    }

    /// What the scene holds, as `simulate scene-info` prints it.
    pub fn summary(&self) -> String {
        let ts = &self.timestamps_us;
        let dur = (ts.last().unwrap_or(&0) - ts.first().unwrap_or(&0)) as f64 / 1e6;
        let m = &self.map;
        let mut out = format!(
            "{}: {} timestamps ({dur:.1} s), ego observed {} times, {} agents, {} lanes, {} drivable areas, {} crosswalks\n  source: {}",
            self.scene_id,
            ts.len(),
            self.ego.n_valid(),
            self.agents.len(),
            m.lanes.len(),
            m.drivable_areas.len(),
            m.crosswalks.len(),
            self.source
        );
        let succ = m.lanes.iter().filter(|l| !l.successors.is_empty()).count();
        let limits: Vec<f64> = m.lanes.iter().filter_map(|l| l.speed_limit_mps).collect();
        out.push_str(&format!(
            "\n  lane graph: {succ} of {} lanes with successors; {} road lines, {} road edges, {} speed bumps, {} driveways",
            m.lanes.len(),
            m.road_lines.len(),
            m.road_edges.len(),
            m.speed_bumps.len(),
            m.driveways.len()
        ));
        out.push_str(&if limits.is_empty() {
            "\n  speed limits: none".to_string()
        } else {
            let lo = limits.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = limits.iter().copied().fold(0.0, f64::max);
            format!(
                "\n  speed limits: {} lanes, {lo:.1}–{hi:.1} m/s ({:.0}–{:.0} km/h)",
                limits.len(),
                lo * 3.6,
                hi * 3.6
            )
        });
        let steps = (0..ts.len())
            .filter(|&i| {
                self.signals
                    .iter()
                    .any(|s| s.states[i] != SignalState::Unknown)
            })
            .count();
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in &self.signals {
            for st in s.states.iter().filter(|s| **s != SignalState::Unknown) {
                *counts.entry(st.name()).or_default() += 1;
            }
        }
        out.push_str(&format!(
            "\n  signals: {} lanes with a signal, {steps} of {} steps with a known state{}",
            self.signals.len(),
            ts.len(),
            if counts.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    counts
                        .iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ));
        out.push_str(&format!(
            "\n  stop signs: {} (controlling {} lanes)",
            m.stop_signs.len(),
            m.stop_signs.iter().map(|s| s.lanes.len()).sum::<usize>()
        ));
        out.push_str(&format!(
            "\n  tags: {}",
            if self.tags.is_empty() {
                "none".to_string()
            } else {
                self.tags.join(", ")
            }
        ));
        if !self.meta.tracks_to_predict.is_empty() || self.meta.current_time_index.is_some() {
            out.push_str(&format!(
                "\n  prediction: {} tracks to predict, {} objects of interest, current time index {}",
                self.meta.tracks_to_predict.len(),
                self.meta.objects_of_interest.len(),
                self.meta
                    .current_time_index
                    .map_or("-".to_string(), |i| i.to_string())
            ));
        }
        out
    }

    /// Writes the scene to `path` atomically (and durably: fsynced before the rename).
    pub fn save(&self, path: &Path) -> Result<(), SceneError> {
        self.save_as(path, fsutil::Durability::Synced)
    }

    /// Writes the scene to `path` atomically, fsyncing only with [`fsutil::Durability::Synced`]
    /// (importers write with `Renamed`: a crash mid-import leaves whole files or none, and the
    /// input is still there to import again).
    pub fn save_as(&self, path: &Path, durability: fsutil::Durability) -> Result<(), SceneError> {
        let io = |e| SceneError::Io {
            file: path.to_path_buf(),
            source: e,
        };
        let body = bincode::serialize(self).map_err(|e| io(std::io::Error::other(e)))?;
        let mut bytes = Vec::with_capacity(body.len() + 12);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&body);
        fsutil::write_atomic_as(path, durability, &bytes).map_err(io)
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
        let corrupt = |e: bincode::Error| SceneError::Corrupt {
            file: file.clone(),
            message: e.to_string(),
        };
        let scene: Scene = match found {
            FORMAT_VERSION => bincode::deserialize(&bytes[12..]).map_err(corrupt)?,
            1 => v1::decode(&bytes[12..]).map_err(corrupt)?,
            _ => {
                return Err(SceneError::Version {
                    file,
                    found,
                    expected: FORMAT_VERSION,
                })
            }
        };
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
            signals: vec![LaneSignal {
                lane: 7,
                states: vec![SignalState::Go, SignalState::Caution, SignalState::Stop],
                stop_point: Some([1.0, 2.0]),
            }],
            tags: vec!["test".into()],
            meta: SceneMeta::default(),
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
    fn version_1_files_still_load() {
        // A scene written by drivekit's format version 1 (CommonRoad DEU_A9-3_1_T-1, BSD-3).
        let v1 = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/scene_v1/DEU_A9-3_1_T-1.dkscene");
        let bytes = std::fs::read(&v1).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 1);
        let s = Scene::load(&v1).unwrap();
        assert_eq!(s.scene_id, "DEU_A9-3_1_T-1");
        assert!(!s.map.lanes.is_empty() && s.map.lanes.iter().all(|l| l.speed_limit_mps.is_none()));
        assert!(s.signals.is_empty() && s.map.stop_signs.is_empty());
        // Re-importing the XML gives the same content in version 2.
        let xml =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/commonroad/DEU_A9-3_1_T-1.xml");
        let now = crate::scene::commonroad::import(&xml).unwrap();
        assert!(now.ego == s.ego && now.agents == s.agents, "tracks differ");
        let ids = |m: &Map| {
            m.lanes
                .iter()
                .map(|l| (l.id, l.successors.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(&now.map), ids(&s.map));
        assert_eq!(now.map.drivable_areas.len(), s.map.drivable_areas.len());
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
