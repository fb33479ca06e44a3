//! Version 1 of the scene format (drivekit ≤ 0.1 before issue #18): the same tracks and lanes
//! without speed limits, a map without road lines, edges, speed bumps, driveways or stop signs,
//! and no signals, tags or metadata. Kept only to read old files; they convert losslessly.

use serde::Deserialize;

use super::{Map, Point, Polygon, Scene, SceneMeta, Track};

/// A version-1 lane.
#[derive(Deserialize)]
struct Lane {
    id: i64,
    centerline: Vec<Point>,
    left_boundary: Vec<Point>,
    right_boundary: Vec<Point>,
    predecessors: Vec<i64>,
    successors: Vec<i64>,
    left_neighbor: Option<i64>,
    right_neighbor: Option<i64>,
    is_intersection: bool,
    lane_type: String,
}

/// A version-1 map.
#[derive(Deserialize)]
struct MapV1 {
    lanes: Vec<Lane>,
    drivable_areas: Vec<Polygon>,
    crosswalks: Vec<Polygon>,
}

/// A version-1 scene.
#[derive(Deserialize)]
struct SceneV1 {
    scene_id: String,
    source: String,
    timestamps_us: Vec<i64>,
    map: MapV1,
    ego: Track,
    agents: Vec<Track>,
}

/// Decodes a version-1 body (after the magic and version) into the current scene.
pub fn decode(body: &[u8]) -> Result<Scene, bincode::Error> {
    let s: SceneV1 = bincode::deserialize(body)?;
    Ok(Scene {
        scene_id: s.scene_id,
        source: s.source,
        timestamps_us: s.timestamps_us,
        map: Map {
            lanes: s
                .map
                .lanes
                .into_iter()
                .map(|l| super::Lane {
                    id: l.id,
                    centerline: l.centerline,
                    left_boundary: l.left_boundary,
                    right_boundary: l.right_boundary,
                    predecessors: l.predecessors,
                    successors: l.successors,
                    left_neighbor: l.left_neighbor,
                    right_neighbor: l.right_neighbor,
                    is_intersection: l.is_intersection,
                    lane_type: l.lane_type,
                    speed_limit_mps: None,
                })
                .collect(),
            drivable_areas: s.map.drivable_areas,
            crosswalks: s.map.crosswalks,
            ..Map::default()
        },
        ego: s.ego,
        agents: s.agents,
        signals: Vec::new(),
        tags: Vec::new(),
        meta: SceneMeta::default(),
    })
}
