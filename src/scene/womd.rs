//! Waymo Open Motion Dataset: TFRecord files of `Scenario` protobufs (Waymo's own
//! `scenario.proto` / `map.proto`, vendored in `proto/waymo_open_dataset/protos/`) → scenes.
//!
//! - Clock: `timestamps_seconds` (≈ 10 Hz, not exactly) in µs; `current_time_index` kept.
//! - Ego: `tracks[sdc_track_index]` (id `EGO`); every other track is an agent (id = its WOMD id),
//!   with its per-step validity, box centre, heading and velocity; the box size is the state's at
//!   `current_time_index` (else the first valid one). Types: vehicle, pedestrian, cyclist,
//!   other/unset → other. `tracks_to_predict` (indices) and `objects_of_interest` (ids) kept.
//! - Map: lanes (`speed_limit_mph` → m/s, `entry_lanes` → predecessors, `exit_lanes` →
//!   successors, the first left/right neighbour, `interpolating` → intersection flag), road lines
//!   and edges, crosswalks, speed bumps, driveways, stop signs with the lanes they control.
//!   WOMD gives lane centers, not lane polygons: each lane's boundary on each side is the nearest
//!   painted line or road edge within 1–3 m of its centerline, or half way to the next lane's
//!   centerline when that is nearer ([`lane_graph::boundaries`]), else 1.85 m; the drivable area
//!   is the union of those lane polygons and the driveways.
//! - Signals: `dynamic_map_states[t].lane_states` → per lane, its state at each step and its
//!   stop point.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use prost::Message;

use super::lane_graph::{self, SegmentGrid};
use super::tfrecord::{RecordError, Records};
use super::{
    AgentClass, Lane, LaneSignal, Map, MapLine, Point, Polygon, Scene, SceneMeta, SignalState,
    StopSign, Track,
};

/// Waymo's generated messages.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/waymo.open_dataset.rs"));
}

use proto::map_feature::FeatureData;

/// Why a scenario (or the rest of a file) cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum WomdError {
    /// The TFRecord framing is broken: the rest of the file is skipped.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A record is not a `Scenario`.
    #[error("{file}: record at byte {offset}: not a Scenario protobuf ({message})")]
    Decode {
        /// the file
        file: PathBuf,
        /// the record's offset
        offset: u64,
        /// the decoder's message
        message: String,
    },
    /// A scenario that cannot become a scene.
    #[error("{file}: record at byte {offset}: scenario {scenario}: {problem}")]
    Scenario {
        /// the file
        file: PathBuf,
        /// the record's offset
        offset: u64,
        /// the scenario id
        scenario: String,
        /// what is wrong
        problem: String,
    },
}

fn class_of(t: i32) -> AgentClass {
    match proto::track::ObjectType::try_from(t) {
        Ok(proto::track::ObjectType::TypeVehicle) => AgentClass::Vehicle,
        Ok(proto::track::ObjectType::TypePedestrian) => AgentClass::Pedestrian,
        Ok(proto::track::ObjectType::TypeCyclist) => AgentClass::Cyclist,
        _ => AgentClass::Other,
    }
}

fn xy(p: &proto::MapPoint) -> Point {
    [p.x(), p.y()]
}

fn track(t: &proto::Track, id: String, n: usize, current: usize) -> Option<Track> {
    let states = &t.states;
    let valid_at = |i: usize| states.get(i).is_some_and(|s| s.valid());
    let size_from = if valid_at(current) {
        Some(current)
    } else {
        (0..n).find(|&i| valid_at(i))
    }?;
    let s0 = &states[size_from];
    let mut tr = Track::empty(
        id,
        class_of(t.object_type.unwrap_or(0)),
        (
            f64::from(s0.length()),
            f64::from(s0.width()),
            f64::from(s0.height()),
        ),
        n,
    );
    if !(tr.length_m > 0.0 && tr.width_m > 0.0) {
        // A box with no extent (rare, in WOMD's pedestrians): the class's default.
        let d = super::av2::default_size(match tr.class {
            AgentClass::Pedestrian => "pedestrian",
            AgentClass::Cyclist => "cyclist",
            AgentClass::Vehicle => "vehicle",
            _ => "unknown",
        });
        (tr.length_m, tr.width_m, tr.height_m) = d.1;
    }
    for (i, s) in states.iter().enumerate().take(n) {
        if s.valid() {
            tr.valid[i] = true;
            tr.x[i] = s.center_x();
            tr.y[i] = s.center_y();
            tr.yaw[i] = f64::from(s.heading());
            tr.vx[i] = f64::from(s.velocity_x());
            tr.vy[i] = f64::from(s.velocity_y());
        }
    }
    Some(tr)
}

fn state_of(s: i32) -> SignalState {
    use proto::traffic_signal_lane_state::State;
    match State::try_from(s) {
        Ok(State::LaneStateArrowStop) => SignalState::ArrowStop,
        Ok(State::LaneStateArrowCaution) => SignalState::ArrowCaution,
        Ok(State::LaneStateArrowGo) => SignalState::ArrowGo,
        Ok(State::LaneStateStop) => SignalState::Stop,
        Ok(State::LaneStateCaution) => SignalState::Caution,
        Ok(State::LaneStateGo) => SignalState::Go,
        Ok(State::LaneStateFlashingStop) => SignalState::FlashingStop,
        Ok(State::LaneStateFlashingCaution) => SignalState::FlashingCaution,
        _ => SignalState::Unknown,
    }
}

/// Converts one decoded scenario; `file` and `offset` name it in errors and in the source.
pub fn scenario_to_scene(
    sc: &proto::Scenario,
    file: &Path,
    offset: u64,
) -> Result<Scene, WomdError> {
    let id = sc.scenario_id().to_string();
    let bad = |problem: String| WomdError::Scenario {
        file: file.to_path_buf(),
        offset,
        scenario: id.clone(),
        problem,
    };
    let n = sc.timestamps_seconds.len();
    if n == 0 {
        return Err(bad("no timestamps".into()));
    }
    let timestamps_us: Vec<i64> = sc
        .timestamps_seconds
        .iter()
        .map(|t| (t * 1e6).round() as i64)
        .collect();
    if timestamps_us.windows(2).any(|w| w[1] <= w[0]) {
        return Err(bad("timestamps_seconds are not strictly increasing".into()));
    }
    let sdc = match sc.sdc_track_index {
        Some(i) if i >= 0 && (i as usize) < sc.tracks.len() => i as usize,
        Some(i) => {
            return Err(bad(format!(
                "sdc_track_index {i} is not one of its {} tracks",
                sc.tracks.len()
            )))
        }
        None => return Err(bad("no sdc_track_index (no self-driving car)".into())),
    };
    let current = sc.current_time_index.unwrap_or(0).max(0) as usize;
    let ego = track(&sc.tracks[sdc], "EGO".into(), n, current)
        .ok_or_else(|| bad("the self-driving car is never valid".into()))?;
    let mut agents = Vec::new();
    let mut agent_of_track = HashMap::new();
    for (i, t) in sc.tracks.iter().enumerate() {
        if i == sdc {
            continue;
        }
        if let Some(a) = track(t, t.id().to_string(), n, current) {
            agent_of_track.insert(i, agents.len());
            agents.push(a);
        }
    }
    let map = map_of(&sc.map_features);
    if map.lanes.is_empty() && map.road_edges.is_empty() {
        return Err(bad("empty map (no lanes and no road edges)".into()));
    }
    // Signals: one per lane that ever has a state.
    let mut by_lane: HashMap<i64, usize> = HashMap::new();
    let mut signals: Vec<LaneSignal> = Vec::new();
    for (t, d) in sc.dynamic_map_states.iter().enumerate().take(n) {
        for ls in &d.lane_states {
            let k = *by_lane.entry(ls.lane()).or_insert_with(|| {
                signals.push(LaneSignal {
                    lane: ls.lane(),
                    states: vec![SignalState::Unknown; n],
                    stop_point: None,
                });
                signals.len() - 1
            });
            signals[k].states[t] = state_of(ls.state.unwrap_or(0));
            if signals[k].stop_point.is_none() {
                signals[k].stop_point = ls.stop_point.as_ref().map(xy);
            }
        }
    }
    signals.sort_by_key(|s| s.lane);
    let meta = SceneMeta {
        tracks_to_predict: sc
            .tracks_to_predict
            .iter()
            .filter_map(|p| agent_of_track.get(&(p.track_index() as usize)).copied())
            .collect(),
        objects_of_interest: sc
            .objects_of_interest
            .iter()
            .map(|i| i.to_string())
            .collect(),
        current_time_index: sc.current_time_index.map(|i| i.max(0) as usize),
    };
    let scene = Scene {
        scene_id: id.clone(),
        source: format!(
            "Waymo Open Motion Dataset (Waymo Dataset License Agreement for Non-Commercial Use): {} record at byte {offset}",
            file.display()
        ),
        timestamps_us,
        map,
        ego,
        agents,
        signals,
        tags: vec!["womd".into()],
        meta,
    };
    scene.validate().map_err(|e| bad(e.to_string()))?;
    Ok(scene)
}

fn map_of(features: &[proto::MapFeature]) -> Map {
    let mut map = Map::default();
    for f in features {
        let id = f.id();
        match &f.feature_data {
            Some(FeatureData::Lane(l)) => {
                let mph = l.speed_limit_mph();
                map.lanes.push(Lane {
                    id,
                    centerline: l.polyline.iter().map(xy).collect(),
                    left_boundary: Vec::new(),
                    right_boundary: Vec::new(),
                    predecessors: l.entry_lanes.clone(),
                    successors: l.exit_lanes.clone(),
                    left_neighbor: l.left_neighbors.first().map(|n| n.feature_id()),
                    right_neighbor: l.right_neighbors.first().map(|n| n.feature_id()),
                    is_intersection: l.interpolating(),
                    lane_type: l.r#type().as_str_name().to_string(),
                    speed_limit_mps: (mph > 0.0).then_some(mph * 0.44704),
                });
            }
            Some(FeatureData::RoadLine(r)) => map.road_lines.push(MapLine {
                id,
                kind: r.r#type().as_str_name().to_string(),
                points: r.polyline.iter().map(xy).collect(),
            }),
            Some(FeatureData::RoadEdge(r)) => map.road_edges.push(MapLine {
                id,
                kind: r.r#type().as_str_name().to_string(),
                points: r.polyline.iter().map(xy).collect(),
            }),
            Some(FeatureData::StopSign(s)) => map.stop_signs.push(StopSign {
                id,
                position: s.position.as_ref().map_or([0.0, 0.0], xy),
                lanes: s.lane.clone(),
            }),
            Some(FeatureData::Crosswalk(c)) => map.crosswalks.push(Polygon {
                id,
                points: c.polygon.iter().map(xy).collect(),
            }),
            Some(FeatureData::SpeedBump(c)) => map.speed_bumps.push(Polygon {
                id,
                points: c.polygon.iter().map(xy).collect(),
            }),
            Some(FeatureData::Driveway(c)) => map.driveways.push(Polygon {
                id,
                points: c.polygon.iter().map(xy).collect(),
            }),
            None => {}
        }
    }
    finish_map(&mut map);
    map
}

/// Lane boundaries from the lines and edges around each lane, and the drivable area: the lane
/// polygons plus the driveways (shared with the GPUDrive importer).
pub fn finish_map(map: &mut Map) {
    let grid = SegmentGrid::new(
        map.road_lines
            .iter()
            .chain(&map.road_edges)
            .map(|l| l.points.as_slice()),
        3.0,
    );
    let centers = SegmentGrid::new(map.lanes.iter().map(|l| l.centerline.as_slice()), 3.0);
    for (k, lane) in map.lanes.iter_mut().enumerate() {
        if lane.centerline.len() >= 2 && lane.left_boundary.is_empty() {
            let (l, r) = lane_graph::boundaries(&lane.centerline, &grid, &centers, k);
            lane.left_boundary = l;
            lane.right_boundary = r;
        }
    }
    map.drivable_areas = lane_graph::lane_polygons(&map.lanes);
    map.drivable_areas.extend(
        map.driveways
            .iter()
            .filter(|d| d.points.len() >= 3)
            .cloned(),
    );
}

/// Every scenario of one TFRecord file, in order, each converted or with the reason it was
/// skipped; a framing error ends the file (reported once).
pub fn read_file(file: &Path, emit: &mut dyn FnMut(Result<Scene, WomdError>)) {
    let records = match Records::open(file) {
        Ok(r) => r,
        Err(e) => return emit(Err(e.into())),
    };
    // Decode and convert in parallel batches: a shard holds ~500 scenarios.
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
    let flush = |batch: &mut Vec<(u64, Vec<u8>)>,
                 emit: &mut dyn FnMut(Result<Scene, WomdError>)| {
        use rayon::prelude::*;
        let out: Vec<Result<Scene, WomdError>> = batch
            .par_iter()
            .map(|(offset, data)| {
                let sc =
                    proto::Scenario::decode(data.as_slice()).map_err(|e| WomdError::Decode {
                        file: file.to_path_buf(),
                        offset: *offset,
                        message: e.to_string(),
                    })?;
                scenario_to_scene(&sc, file, *offset)
            })
            .collect();
        batch.clear();
        for r in out {
            emit(r);
        }
    };
    for r in records {
        match r {
            Ok(rec) => {
                batch.push(rec);
                if batch.len() >= 16 {
                    flush(&mut batch, emit);
                }
            }
            Err(e) => {
                flush(&mut batch, emit);
                return emit(Err(e.into()));
            }
        }
    }
    flush(&mut batch, emit);
}
