//! GPUDrive's JSON scenes (Emerge-Lab/gpudrive `data_utils/process_waymo_files.py`, WOMD converted)
//! and the older Nocturne schema (facebookresearch/nocturne
//! `scripts/json_generation/waymo_scenario_construction.py`) → scenes.
//!
//! - 91 steps at 0.1 s (WOMD's 10 Hz); a step is valid where `valid[t]` is true and its position
//!   is not GPUDrive's invalid marker (−10000).
//! - Current schema: `objects[]` with `position[{x,y,z}]`, `heading[]` (rad), `velocity[{x,y}]`,
//!   `valid[]`, `width`, `length`, `height`, `type`, `id`; `roads[]` with `geometry`, `type`,
//!   `map_element_id`, `id`; `tl_states` (per lane id: `state[]`, `x[]`, `y[]`, `time_index[]`);
//!   `metadata.{sdc_track_index, tracks_to_predict, objects_of_interest}`; `scenario_id`.
//! - Older schema (no `metadata`, no `scenario_id`): headings in **degrees**, no z, no height
//!   (the class's default), no object or road ids (their index). It marks no self-driving car:
//!   drivekit's ego is the vehicle valid at step 10 (WOMD's current index) with the most valid
//!   steps, ties broken by the longest recorded path, then the lowest index.
//! - Lanes have no links in either schema: successors come from geometry
//!   ([`lane_graph::infer_links`]); boundaries and drivable area as for WOMD
//!   ([`super::womd::finish_map`]). A stop sign controls the lanes that end within
//!   [`STOP_SIGN_REACH_M`] of it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{
    lane_graph, AgentClass, Lane, LaneSignal, Map, MapLine, Point, Polygon, Scene, SceneMeta,
    SignalState, StopSign, Track,
};

/// GPUDrive's marker of an invalid value.
pub const INVALID: f64 = -10_000.0;
/// Steps per scene and their spacing.
pub const STEP_US: i64 = 100_000;
/// A stop sign controls lanes ending this close to it (m).
pub const STOP_SIGN_REACH_M: f64 = 6.0;
/// The step the older schema's ego must be valid at (WOMD's current index).
pub const CURRENT_INDEX: usize = 10;

/// Why a GPUDrive file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum GpudriveError {
    /// Unreadable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not JSON.
    #[error("{file}: invalid JSON at line {line}: {message}")]
    Json {
        /// the file
        file: PathBuf,
        /// line
        line: usize,
        /// parser message
        message: String,
    },
    /// JSON, but not a GPUDrive scene.
    #[error("{file}: not a GPUDrive/Nocturne scene: {problem}")]
    Schema {
        /// the file
        file: PathBuf,
        /// what is missing or wrong
        problem: String,
    },
    /// A scene that cannot be used.
    #[error("{file}: {problem}")]
    Scene {
        /// the file
        file: PathBuf,
        /// what is wrong
        problem: String,
    },
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn point(v: &Value) -> Option<Point> {
    Some([num(v.get("x")?)?, num(v.get("y")?)?])
}

fn class_of(t: &str) -> AgentClass {
    match t {
        "vehicle" => AgentClass::Vehicle,
        "pedestrian" => AgentClass::Pedestrian,
        "cyclist" => AgentClass::Cyclist,
        _ => AgentClass::Other,
    }
}

/// Reads one file.
pub fn import(file: &Path) -> Result<Scene, GpudriveError> {
    let text = std::fs::read(file).map_err(|e| GpudriveError::Io {
        file: file.to_path_buf(),
        source: e,
    })?;
    let v: Value = serde_json::from_slice(&text).map_err(|e| GpudriveError::Json {
        file: file.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })?;
    from_json(&v, file)
}

/// Converts a parsed scene; `file` names it.
pub fn from_json(v: &Value, file: &Path) -> Result<Scene, GpudriveError> {
    let schema = |problem: &str| GpudriveError::Schema {
        file: file.to_path_buf(),
        problem: problem.to_string(),
    };
    let objects = v
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| schema("no `objects` list"))?;
    let roads = v
        .get("roads")
        .and_then(Value::as_array)
        .ok_or_else(|| schema("no `roads` list"))?;
    let older = v.get("metadata").is_none() && v.get("scenario_id").is_none();
    let n = objects
        .iter()
        .filter_map(|o| o.get("position").and_then(Value::as_array).map(Vec::len))
        .max()
        .ok_or_else(|| schema("no object has a `position` list"))?;
    if n == 0 {
        return Err(schema("objects have no steps"));
    }
    let mut tracks = Vec::with_capacity(objects.len());
    for (i, o) in objects.iter().enumerate() {
        let bad = |what: &str| schema(&format!("objects[{i}]: {what}"));
        let pos = o
            .get("position")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no position"))?;
        let heading = o
            .get("heading")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no heading"))?;
        let vel = o
            .get("velocity")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no velocity"))?;
        let valid = o
            .get("valid")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no valid"))?;
        let ty = o.get("type").and_then(Value::as_str).unwrap_or("other");
        let class = class_of(ty);
        let default = super::av2::default_size(match class {
            AgentClass::Vehicle => "vehicle",
            AgentClass::Pedestrian => "pedestrian",
            AgentClass::Cyclist => "cyclist",
            _ => "unknown",
        })
        .1;
        let size = |k: &str, d: f64| o.get(k).and_then(num).filter(|x| *x > 0.0).unwrap_or(d);
        let id = o
            .get("id")
            .and_then(Value::as_i64)
            .map_or_else(|| i.to_string(), |x| x.to_string());
        let mut t = Track::empty(
            id,
            class,
            (
                size("length", default.0),
                size("width", default.1),
                size("height", default.2),
            ),
            n,
        );
        for s in 0..n {
            let ok = valid.get(s).and_then(Value::as_bool).unwrap_or(false);
            let Some(p) = pos.get(s).and_then(point) else {
                continue;
            };
            let h = heading.get(s).and_then(num).unwrap_or(INVALID);
            let w = vel.get(s).and_then(point).unwrap_or([INVALID, INVALID]);
            if !ok || p[0] == INVALID || p[1] == INVALID || h == INVALID {
                continue;
            }
            t.valid[s] = true;
            t.x[s] = p[0];
            t.y[s] = p[1];
            t.yaw[s] = if older { h.to_radians() } else { h };
            if w[0] != INVALID && w[1] != INVALID {
                t.vx[s] = w[0];
                t.vy[s] = w[1];
            }
        }
        tracks.push(t);
    }
    let meta = v.get("metadata");
    let sdc = match meta
        .and_then(|m| m.get("sdc_track_index"))
        .and_then(Value::as_i64)
    {
        Some(i) if i >= 0 && (i as usize) < tracks.len() => i as usize,
        Some(i) => {
            return Err(GpudriveError::Scene {
                file: file.to_path_buf(),
                problem: format!(
                    "sdc_track_index {i} is not one of its {} objects",
                    tracks.len()
                ),
            })
        }
        None if older => pick_ego(&tracks).ok_or_else(|| GpudriveError::Scene {
            file: file.to_path_buf(),
            problem: format!("no vehicle is valid at step {CURRENT_INDEX} to be the ego"),
        })?,
        None => return Err(schema("metadata has no sdc_track_index")),
    };
    let mut ego = tracks.remove(sdc);
    ego.id = "EGO".into();
    if ego.n_valid() == 0 {
        return Err(GpudriveError::Scene {
            file: file.to_path_buf(),
            problem: "the ego is never valid".into(),
        });
    }
    let agent_index = |track_index: usize| -> Option<usize> {
        match track_index.cmp(&sdc) {
            std::cmp::Ordering::Less => Some(track_index),
            std::cmp::Ordering::Greater => Some(track_index - 1),
            std::cmp::Ordering::Equal => None,
        }
    };
    let scene_meta = SceneMeta {
        tracks_to_predict: meta
            .and_then(|m| m.get("tracks_to_predict"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.get("track_index").and_then(Value::as_u64))
                    .filter_map(|i| agent_index(i as usize))
                    .filter(|&i| i < tracks.len())
                    .collect()
            })
            .unwrap_or_default(),
        objects_of_interest: meta
            .and_then(|m| m.get("objects_of_interest"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_i64().or_else(|| x.get("id").and_then(Value::as_i64)))
                    .map(|x| x.to_string())
                    .collect()
            })
            .unwrap_or_default(),
        current_time_index: (!older).then_some(CURRENT_INDEX),
    };
    let mut map = Map::default();
    let mut signs = Vec::new();
    for (i, r) in roads.iter().enumerate() {
        let ty = r.get("type").and_then(Value::as_str).unwrap_or("");
        let id = r.get("id").and_then(Value::as_i64).unwrap_or(i as i64);
        let pts: Vec<Point> = r
            .get("geometry")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(point).collect())
            .unwrap_or_default();
        let kind = r
            .get("map_element_id")
            .and_then(Value::as_i64)
            .map_or_else(|| ty.to_string(), |k| element_name(k).to_string());
        match ty {
            "lane" => map.lanes.push(Lane {
                id,
                centerline: pts,
                left_boundary: Vec::new(),
                right_boundary: Vec::new(),
                predecessors: Vec::new(),
                successors: Vec::new(),
                left_neighbor: None,
                right_neighbor: None,
                is_intersection: false,
                lane_type: kind,
                speed_limit_mps: None,
            }),
            "road_line" => map.road_lines.push(MapLine {
                id,
                kind,
                points: pts,
            }),
            "road_edge" => map.road_edges.push(MapLine {
                id,
                kind,
                points: pts,
            }),
            "crosswalk" => map.crosswalks.push(Polygon { id, points: pts }),
            "speed_bump" => map.speed_bumps.push(Polygon { id, points: pts }),
            "driveway" => map.driveways.push(Polygon { id, points: pts }),
            "stop_sign" => {
                if let Some(p) = pts.first() {
                    signs.push((id, *p));
                }
            }
            _ => {}
        }
    }
    if map.lanes.is_empty() && map.road_edges.is_empty() {
        return Err(GpudriveError::Scene {
            file: file.to_path_buf(),
            problem: "empty map (no lanes and no road edges)".into(),
        });
    }
    lane_graph::infer_links(&mut map.lanes);
    for (id, p) in signs {
        let lanes = map
            .lanes
            .iter()
            .filter(|l| {
                l.centerline.last().is_some_and(|e| {
                    crate::geometry::norm(e[0] - p[0], e[1] - p[1]) <= STOP_SIGN_REACH_M
                })
            })
            .map(|l| l.id)
            .collect();
        map.stop_signs.push(StopSign {
            id,
            position: p,
            lanes,
        });
    }
    super::womd::finish_map(&mut map);
    let mut signals = Vec::new();
    if let Some(tl) = v.get("tl_states").and_then(Value::as_object) {
        for (lane, s) in tl {
            let lane_id = lane
                .parse::<i64>()
                .map_err(|_| schema(&format!("tl_states key {lane:?} is not a lane id")))?;
            let states = s.get("state").and_then(Value::as_array);
            let times = s.get("time_index").and_then(Value::as_array);
            let (Some(states), Some(times)) = (states, times) else {
                return Err(schema(&format!(
                    "tl_states[{lane}] lacks state or time_index"
                )));
            };
            let mut sig = LaneSignal {
                lane: lane_id,
                states: vec![SignalState::Unknown; n],
                stop_point: None,
            };
            for (st, t) in states.iter().zip(times) {
                if let (Some(st), Some(t)) = (st.as_str(), t.as_u64()) {
                    if (t as usize) < n {
                        sig.states[t as usize] = SignalState::parse(st);
                    }
                }
            }
            let x = s
                .get("x")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(num);
            let y = s
                .get("y")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(num);
            sig.stop_point = x.zip(y).map(|(x, y)| [x, y]);
            signals.push(sig);
        }
        signals.sort_by_key(|s| s.lane);
    }
    let name = v
        .get("scenario_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            v.get("name")
                .and_then(Value::as_str)
                .map(|n| n.trim_end_matches(".json").to_string())
        })
        .unwrap_or_else(|| {
            file.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let scene = Scene {
        scene_id: name,
        source: format!(
            "GPUDrive/Nocturne JSON ({} schema; content derived from the Waymo Open Motion Dataset, Waymo Dataset License Agreement for Non-Commercial Use): {}",
            if older { "older Nocturne" } else { "GPUDrive" },
            file.display()
        ),
        timestamps_us: (0..n as i64).map(|i| i * STEP_US).collect(),
        map,
        ego,
        agents: tracks,
        signals,
        tags: vec![if older { "nocturne" } else { "gpudrive" }.to_string()],
        meta: scene_meta,
    };
    scene.validate().map_err(|e| GpudriveError::Scene {
        file: file.to_path_buf(),
        problem: e.to_string(),
    })?;
    Ok(scene)
}

/// The older schema's ego (see the module docs).
fn pick_ego(tracks: &[Track]) -> Option<usize> {
    let path = |t: &Track| -> f64 {
        let pts: Vec<Point> = (0..t.valid.len())
            .filter(|&i| t.valid[i])
            .map(|i| [t.x[i], t.y[i]])
            .collect();
        pts.windows(2)
            .map(|w| crate::geometry::norm(w[1][0] - w[0][0], w[1][1] - w[0][1]))
            .sum()
    };
    tracks
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.class == AgentClass::Vehicle && t.valid.get(CURRENT_INDEX) == Some(&true)
        })
        .map(|(i, t)| (t.n_valid(), path(t), i))
        .max_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(b.2.cmp(&a.2)))
        .map(|x| x.2)
}

/// GPUDrive's `MapElementIds` names (`data_utils/datatypes.py`).
fn element_name(k: i64) -> &'static str {
    match k {
        0 => "LANE_UNDEFINED",
        1 => "LANE_FREEWAY",
        2 => "LANE_SURFACE_STREET",
        3 => "LANE_BIKE_LANE",
        5 => "ROAD_LINE_UNKNOWN",
        6 => "ROAD_LINE_BROKEN_SINGLE_WHITE",
        7 => "ROAD_LINE_SOLID_SINGLE_WHITE",
        8 => "ROAD_LINE_SOLID_DOUBLE_WHITE",
        9 => "ROAD_LINE_BROKEN_SINGLE_YELLOW",
        10 => "ROAD_LINE_BROKEN_DOUBLE_YELLOW",
        11 => "ROAD_LINE_SOLID_SINGLE_YELLOW",
        12 => "ROAD_LINE_SOLID_DOUBLE_YELLOW",
        13 => "ROAD_LINE_PASSING_DOUBLE_YELLOW",
        14 => "ROAD_EDGE_UNKNOWN",
        15 => "ROAD_EDGE_BOUNDARY",
        16 => "ROAD_EDGE_MEDIAN",
        17 => "STOP_SIGN",
        18 => "CROSSWALK",
        19 => "SPEED_BUMP",
        20 => "DRIVEWAY",
        _ => "UNKNOWN",
    }
}
