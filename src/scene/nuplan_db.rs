//! nuPlan's SQLite logs (`*.db`) with their GeoPackage maps → scenes, as nuPlan's devkit reads
//! them (motional/nuplan-devkit: `nuplan/database/nuplan_db/nuplan_scenario_queries.py`,
//! `nuplan/planning/scenario_builder/nuplan_db/`, `nuplan/common/maps/nuplan_map/`).
//!
//! - **Scenarios**: one per tagged `lidar_pc` (a `scenario_tag` row; several tags of one
//!   lidar_pc become one scene with every type as a tag, as nuPlan groups them). The scene id is
//!   that lidar_pc's token (16 hex characters, nuPlan's scenario token). The window is
//!   [`NuplanDbOptions::offset_s`] (−3 s, nuPlan's scenario mapping) to `duration_s` (15 s) after
//!   the tag, every 2nd lidar_pc (the DB's 20 Hz → 10 Hz, `subsample_ratio 0.5`), clipped to the
//!   log; nuPlan also drops the first and last two `scene`s of a log, drivekit does not.
//! - **Ego**: `ego_pose` of each lidar_pc (its **rear axle**, as the devkit's
//!   `EgoState.build_from_rear_axle`) → box centre 1.461 m ahead (Pacifica: 5.176 × 2.297 m);
//!   yaw from the quaternion; `vx, vy` are in the ego frame and are rotated to the map frame.
//! - **Agents**: `lidar_box` ⋈ `track` ⋈ `category` per lidar_pc: centre, yaw, the box's own size
//!   (width, length, height), `vx, vy` (map frame, as the devkit uses them); one track per
//!   `track_token`. vehicle → vehicle, pedestrian → pedestrian, bicycle → cyclist, traffic_cone /
//!   barrier / czone_sign / generic_object → static.
//! - **Signals**: `traffic_light_status` per lidar_pc (green / yellow / red / unknown) → the lane
//!   connector's state at that step.
//! - **Map** (the GeoPackage of `log.map_version`, found under `--map-root` as
//!   `<location>/<version>/map.gpkg`, `<location>.gpkg` or `<location>/map.gpkg`): lanes from
//!   `lanes_polygons` (speed limit, left/right boundaries from `boundaries`, neighbours by
//!   `lane_index` within a lane group) with centerlines from `baseline_paths`; lane connectors from
//!   `lane_connectors` (`exit_lane_fid` → predecessor, `entry_lane_fid` → successor) with
//!   centerlines from `baseline_paths` and boundaries from
//!   `gen_lane_connectors_scaled_width_polygons`; drivable area = `road_segments`,
//!   `intersections`, `generic_drivable_areas`, `carpark_areas`; `crosswalks`; stop signs from
//!   `stop_polygons` of type STOP_SIGN (1), controlling the connectors that start inside them.
//!   Connector ids are offset by [`CONNECTOR_ID_OFFSET`] (GeoPackage fids are per table).
//!   Geometries in WGS 84 (srs 4326) are projected to the UTM zone of the map's
//!   `meta.projectedCoordSystem`; projected geometries are read as they are. Only features within
//!   [`MAP_MARGIN_M`] of the ego's path are kept.
//!
//! No real nuPlan DB or map could be used here: this importer is tested on DBs built from the
//! devkit's own table definitions and on GeoPackages with nuPlan's layer names (see
//! docs/scene-format.md for what that leaves unchecked).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use geo_traits::{
    CoordTrait, GeometryTrait, GeometryType, LineStringTrait, MultiPolygonTrait, PointTrait,
    PolygonTrait,
};
use rusqlite::{Connection, OpenFlags};

use super::{
    AgentClass, Lane, LaneSignal, Map, Point, Polygon, Scene, SceneMeta, SignalState, StopSign,
    Track,
};

/// Rear axle → box centre of nuPlan's Pacifica (m).
pub const REAR_AXLE_TO_CENTER_M: f64 = 1.461;
/// nuPlan's Pacifica: length, width, height (m).
pub const EGO_SIZE_M: (f64, f64, f64) = (5.176, 2.297, 1.777);
/// Lane-connector ids are their fid plus this (lanes keep their fid).
pub const CONNECTOR_ID_OFFSET: i64 = 1_000_000_000;
/// Map features farther than this from the ego's path are left out (m).
pub const MAP_MARGIN_M: f64 = 120.0;
/// Scenarios with less than this much recording in their window are skipped (s).
pub const MIN_DURATION_S: f64 = 2.0;

/// How scenarios are cut and where maps are.
#[derive(Debug, Clone)]
pub struct NuplanDbOptions {
    /// Root of the maps (`NUPLAN_MAPS_ROOT`); `None`: import without maps.
    pub map_root: Option<PathBuf>,
    /// Scenario length (s).
    pub duration_s: f64,
    /// Window start relative to the tagged lidar_pc (s).
    pub offset_s: f64,
    /// Only these scenario types (empty: all).
    pub types: Vec<String>,
    /// Loaded maps, shared by the DBs of one import.
    pub maps: Arc<Mutex<HashMap<PathBuf, Arc<NuplanMap>>>>,
}

impl Default for NuplanDbOptions {
    fn default() -> Self {
        NuplanDbOptions {
            map_root: None,
            duration_s: 15.0,
            offset_s: -3.0,
            types: Vec::new(),
            maps: Arc::default(),
        }
    }
}

/// Why a nuPlan DB (or one of its scenarios) cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum NuplanDbError {
    /// SQLite failed.
    #[error("{file}: {message}")]
    Sql {
        /// the DB or map
        file: PathBuf,
        /// what SQLite said
        message: String,
    },
    /// The map the log names is not under the map root.
    #[error("{file}: map {map} not found under {root} (looked for {tried})")]
    NoMap {
        /// the DB
        file: PathBuf,
        /// the map name (`log.map_version`)
        map: String,
        /// the map root
        root: PathBuf,
        /// the paths tried
        tried: String,
    },
    /// A geometry that does not decode.
    #[error("{file}: layer {layer} fid {fid}: {message}")]
    Geometry {
        /// the map
        file: PathBuf,
        /// the layer
        layer: String,
        /// the feature
        fid: i64,
        /// what is wrong
        message: String,
    },
    /// A scenario that cannot become a scene.
    #[error("{file}: scenario {token}: {problem}")]
    Scenario {
        /// the DB
        file: PathBuf,
        /// the scenario token
        token: String,
        /// what is wrong
        problem: String,
    },
}

fn sql(file: &Path) -> impl Fn(rusqlite::Error) -> NuplanDbError + '_ {
    move |e| NuplanDbError::Sql {
        file: file.to_path_buf(),
        message: e.to_string(),
    }
}

/// A map in memory: lanes and connectors (ids as in scenes), areas, crosswalks, stop signs.
#[derive(Debug, Default)]
pub struct NuplanMap {
    /// Lanes and lane connectors.
    pub lanes: Vec<Lane>,
    /// Drivable-area polygons.
    pub drivable: Vec<Polygon>,
    /// Crosswalk polygons.
    pub crosswalks: Vec<Polygon>,
    /// Stop signs.
    pub stop_signs: Vec<StopSign>,
}

/// A feature's geometry, as the map needs it.
enum Geom {
    Line(Vec<Point>),
    Polygons(Vec<Vec<Point>>),
    Point(Point),
}

/// Strips the GeoPackage binary header (`GP`, version, flags, srs id, envelope) and decodes the
/// ISO WKB after it.
fn decode_gpkg(blob: &[u8], project: &dyn Fn(f64, f64) -> Point) -> Result<Geom, String> {
    if blob.len() < 8 || &blob[..2] != b"GP" {
        return Err("not a GeoPackage geometry (no GP magic)".into());
    }
    let flags = blob[3];
    let envelope = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        e => return Err(format!("invalid envelope code {e}")),
    };
    let start = 8 + envelope;
    if blob.len() < start {
        return Err("truncated GeoPackage header".into());
    }
    let wkb = wkb::reader::read_wkb(&blob[start..]).map_err(|e| e.to_string())?;
    let line = |l: &wkb::reader::LineString<'_>| -> Vec<Point> {
        l.coords().map(|c| project(c.x(), c.y())).collect()
    };
    Ok(match wkb.as_type() {
        GeometryType::Point(p) => {
            let c = p.coord().ok_or("empty point")?;
            Geom::Point(project(c.x(), c.y()))
        }
        GeometryType::LineString(l) => Geom::Line(line(l)),
        GeometryType::MultiLineString(m) => Geom::Line(
            geo_traits::MultiLineStringTrait::line_strings(m)
                .flat_map(|l| {
                    l.coords()
                        .map(|c| project(c.x(), c.y()))
                        .collect::<Vec<_>>()
                })
                .collect(),
        ),
        GeometryType::Polygon(p) => Geom::Polygons(
            p.exterior()
                .map(|r| vec![r.coords().map(|c| project(c.x(), c.y())).collect()])
                .unwrap_or_default(),
        ),
        GeometryType::MultiPolygon(m) => Geom::Polygons(
            m.polygons()
                .filter_map(|p| {
                    p.exterior()
                        .map(|r| r.coords().map(|c| project(c.x(), c.y())).collect())
                })
                .collect(),
        ),
        _ => return Err("unsupported geometry type".into()),
    })
}

/// Drops a closing point equal to the first.
fn open_ring(mut pts: Vec<Point>) -> Vec<Point> {
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    pts
}

/// Reads a GeoPackage map.
pub fn read_map(path: &Path) -> Result<NuplanMap, NuplanDbError> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(sql(path))?;
    let tables: BTreeSet<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(sql(path))?;
    // The projection: WGS 84 layers go to the UTM zone the map's meta table names.
    let utm_zone: Option<(u8, bool)> = if tables.contains("meta") {
        conn.query_row(
            "SELECT value FROM meta WHERE key = 'projectedCoordSystem'",
            [],
            |r| r.get::<_, String>(0),
        )
        .ok()
        .and_then(|v| {
            let code: u32 = v.rsplit(':').next()?.trim().parse().ok()?;
            match code {
                32601..=32660 => Some(((code - 32600) as u8, true)),
                32701..=32760 => Some(((code - 32700) as u8, false)),
                _ => None,
            }
        })
    } else {
        None
    };
    let srs_of = |layer: &str| -> Option<i64> {
        conn.query_row(
            "SELECT s.organization_coordsys_id FROM gpkg_geometry_columns g JOIN gpkg_spatial_ref_sys s ON s.srs_id = g.srs_id WHERE g.table_name = ?1",
            [layer],
            |r| r.get::<_, i64>(0),
        )
        .ok()
    };
    let geom_col = |layer: &str| -> String {
        conn.query_row(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?1",
            [layer],
            |r| r.get::<_, String>(0),
        )
        .unwrap_or_else(|_| "geom".into())
    };
    // Rows of a layer: fid, geometry and the named columns (as f64/i64/text via Value).
    let rows = |layer: &str,
                cols: &[&str]|
     -> Result<Vec<(i64, Geom, Vec<rusqlite::types::Value>)>, NuplanDbError> {
        if !tables.contains(layer) {
            return Ok(Vec::new());
        }
        let geographic = srs_of(layer) == Some(4326);
        let zone = utm_zone;
        let project = move |x: f64, y: f64| -> Point {
            match (geographic, zone) {
                (true, Some((z, north))) => {
                    let (n, e, _) = utm::to_utm_wgs84(y, x, z);
                    [e, if north { n } else { n + 10_000_000.0 }]
                }
                _ => [x, y],
            }
        };
        let have: BTreeSet<String> = conn
            .prepare(&format!("PRAGMA table_info(\"{layer}\")"))
            .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(1))?.collect())
            .map_err(sql(path))?;
        let g = geom_col(layer);
        let select: Vec<String> = cols
            .iter()
            .map(|c| {
                if have.contains(*c) {
                    format!("\"{c}\"")
                } else {
                    "NULL".into()
                }
            })
            .collect();
        let q = format!(
            "SELECT fid, \"{g}\"{}{} FROM \"{layer}\"",
            if select.is_empty() { "" } else { ", " },
            select.join(", ")
        );
        let mut stmt = conn.prepare(&q).map_err(sql(path))?;
        let mut out = Vec::new();
        let mut it = stmt.query([]).map_err(sql(path))?;
        while let Some(r) = it.next().map_err(sql(path))? {
            let fid: i64 = r.get(0).map_err(sql(path))?;
            let blob: Option<Vec<u8>> = r.get(1).map_err(sql(path))?;
            let Some(blob) = blob else { continue };
            let geom = decode_gpkg(&blob, &project).map_err(|message| NuplanDbError::Geometry {
                file: path.to_path_buf(),
                layer: layer.to_string(),
                fid,
                message,
            })?;
            let vals = (0..cols.len())
                .map(|i| r.get::<_, rusqlite::types::Value>(i + 2))
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql(path))?;
            out.push((fid, geom, vals));
        }
        Ok(out)
    };
    use rusqlite::types::Value as V;
    let int = |v: &V| match v {
        V::Integer(i) => Some(*i),
        V::Real(f) => Some(*f as i64),
        V::Text(t) => t.trim().parse().ok(),
        _ => None,
    };
    let real = |v: &V| match v {
        V::Integer(i) => Some(*i as f64),
        V::Real(f) => Some(*f).filter(|f| f.is_finite()),
        V::Text(t) => t.trim().parse().ok(),
        _ => None,
    };
    let line_of = |g: Geom| match g {
        Geom::Line(l) => l,
        Geom::Polygons(p) => p.into_iter().next().unwrap_or_default(),
        Geom::Point(p) => vec![p],
    };
    let mut boundaries: HashMap<i64, Vec<Point>> = HashMap::new();
    for (fid, g, _) in rows("boundaries", &[])? {
        boundaries.insert(fid, line_of(g));
    }
    let mut lane_paths: HashMap<i64, Vec<Point>> = HashMap::new();
    let mut conn_paths: HashMap<i64, Vec<Point>> = HashMap::new();
    for (_, g, v) in rows("baseline_paths", &["lane_fid", "lane_connector_fid"])? {
        let l = line_of(g);
        if let Some(f) = int(&v[0]) {
            lane_paths.insert(f, l);
        } else if let Some(f) = int(&v[1]) {
            conn_paths.insert(f, l);
        }
    }
    let mut map = NuplanMap::default();
    let connectors = rows(
        "lane_connectors",
        &["exit_lane_fid", "entry_lane_fid", "speed_limit_mps"],
    )?;
    let mut lane_succ: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut lane_pred: HashMap<i64, Vec<i64>> = HashMap::new();
    for (fid, _, v) in &connectors {
        let id = CONNECTOR_ID_OFFSET + fid;
        if let Some(exit) = int(&v[0]) {
            lane_succ.entry(exit).or_default().push(id);
        }
        if let Some(entry) = int(&v[1]) {
            lane_pred.entry(entry).or_default().push(id);
        }
    }
    let lanes = rows(
        "lanes_polygons",
        &[
            "left_boundary_fid",
            "right_boundary_fid",
            "speed_limit_mps",
            "lane_group_fid",
            "lane_index",
        ],
    )?;
    // Neighbours: lanes of one lane group ordered by lane_index (smaller = further left).
    let mut groups: BTreeMap<i64, Vec<(i64, i64)>> = BTreeMap::new();
    for (fid, _, v) in &lanes {
        if let (Some(g), Some(i)) = (int(&v[3]), int(&v[4])) {
            groups.entry(g).or_default().push((i, *fid));
        }
    }
    let mut left_of: HashMap<i64, i64> = HashMap::new();
    let mut right_of: HashMap<i64, i64> = HashMap::new();
    for members in groups.values_mut() {
        members.sort();
        for w in members.windows(2) {
            if w[1].0 == w[0].0 + 1 {
                left_of.insert(w[1].1, w[0].1);
                right_of.insert(w[0].1, w[1].1);
            }
        }
    }
    for (fid, _, v) in &lanes {
        let Some(center) = lane_paths.get(fid) else {
            continue;
        };
        map.lanes.push(Lane {
            id: *fid,
            centerline: center.clone(),
            left_boundary: int(&v[0])
                .and_then(|b| boundaries.get(&b).cloned())
                .unwrap_or_default(),
            right_boundary: int(&v[1])
                .and_then(|b| boundaries.get(&b).cloned())
                .unwrap_or_default(),
            predecessors: lane_pred.get(fid).cloned().unwrap_or_default(),
            successors: lane_succ.get(fid).cloned().unwrap_or_default(),
            left_neighbor: left_of.get(fid).copied(),
            right_neighbor: right_of.get(fid).copied(),
            is_intersection: false,
            lane_type: "LANE".into(),
            speed_limit_mps: real(&v[2]).filter(|s| *s > 0.0),
        });
    }
    let mut conn_bounds: HashMap<i64, (Vec<Point>, Vec<Point>)> = HashMap::new();
    for (_, _, v) in rows(
        "gen_lane_connectors_scaled_width_polygons",
        &[
            "lane_connector_fid",
            "left_boundary_fid",
            "right_boundary_fid",
        ],
    )? {
        if let Some(c) = int(&v[0]) {
            let b = |k: usize| {
                int(&v[k])
                    .and_then(|b| boundaries.get(&b).cloned())
                    .unwrap_or_default()
            };
            conn_bounds.insert(c, (b(1), b(2)));
        }
    }
    for (fid, _, v) in &connectors {
        let Some(center) = conn_paths.get(fid) else {
            continue;
        };
        let (l, r) = conn_bounds.remove(fid).unwrap_or_default();
        map.lanes.push(Lane {
            id: CONNECTOR_ID_OFFSET + fid,
            centerline: center.clone(),
            left_boundary: l,
            right_boundary: r,
            predecessors: int(&v[0]).into_iter().collect(),
            successors: int(&v[1]).into_iter().collect(),
            left_neighbor: None,
            right_neighbor: None,
            is_intersection: true,
            lane_type: "LANE_CONNECTOR".into(),
            speed_limit_mps: real(&v[2]).filter(|s| *s > 0.0),
        });
    }
    for layer in [
        "road_segments",
        "intersections",
        "generic_drivable_areas",
        "carpark_areas",
    ] {
        for (fid, g, _) in rows(layer, &[])? {
            if let Geom::Polygons(ps) = g {
                map.drivable.extend(ps.into_iter().map(|p| Polygon {
                    id: fid,
                    points: open_ring(p),
                }));
            }
        }
    }
    for (fid, g, _) in rows("crosswalks", &[])? {
        if let Geom::Polygons(ps) = g {
            map.crosswalks.extend(ps.into_iter().map(|p| Polygon {
                id: fid,
                points: open_ring(p),
            }));
        }
    }
    for (fid, g, v) in rows("stop_polygons", &["stop_polygon_type_fid"])? {
        if int(&v[0]) != Some(1) {
            continue;
        }
        let Geom::Polygons(ps) = g else { continue };
        let Some(ring) = ps.into_iter().next().map(open_ring) else {
            continue;
        };
        let n = ring.len().max(1) as f64;
        let c = [
            ring.iter().map(|p| p[0]).sum::<f64>() / n,
            ring.iter().map(|p| p[1]).sum::<f64>() / n,
        ];
        let lanes = map
            .lanes
            .iter()
            .filter(|l| l.lane_type == "LANE_CONNECTOR")
            .filter(|l| {
                l.centerline.first().is_some_and(|p| {
                    crate::geometry::contains(&ring, *p)
                        || crate::geometry::distance_to_ring(&ring, *p) < 1.0
                })
            })
            .map(|l| l.id)
            .collect();
        map.stop_signs.push(StopSign {
            id: fid,
            position: c,
            lanes,
        });
    }
    Ok(map)
}

/// The GeoPackage of map `name` under `root`.
fn find_map(root: &Path, name: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let name = name.trim_end_matches(".gpkg");
    let mut tried = vec![
        root.join(format!("{name}.gpkg")),
        root.join(name).join("map.gpkg"),
    ];
    // <root>/<name>/<version>/map.gpkg: the version nuplan-maps-v1.0.json names, else the only one.
    let versioned = root.join(name);
    let json_version = std::fs::read(root.join("nuplan-maps-v1.0.json"))
        .ok()
        .and_then(|t| serde_json::from_slice::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get(name)?.get("version")?.as_str().map(str::to_string));
    if let Some(v) = json_version {
        tried.insert(0, versioned.join(v).join("map.gpkg"));
    } else if let Ok(rd) = std::fs::read_dir(&versioned) {
        let mut dirs: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path().join("map.gpkg"))
            .filter(|p| p.is_file())
            .collect();
        dirs.sort();
        if let Some(last) = dirs.pop() {
            tried.insert(0, last);
        }
    }
    tried.iter().find(|p| p.is_file()).cloned().ok_or(tried)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn yaw_of(qw: f64, qx: f64, qy: f64, qz: f64) -> f64 {
    (2.0 * (qw * qz + qx * qy)).atan2(1.0 - 2.0 * (qy * qy + qz * qz))
}

fn class_of(category: &str) -> AgentClass {
    match category {
        "vehicle" => AgentClass::Vehicle,
        "pedestrian" => AgentClass::Pedestrian,
        "bicycle" => AgentClass::Cyclist,
        "traffic_cone" | "barrier" | "czone_sign" | "generic_object" => AgentClass::Static,
        _ => AgentClass::Other,
    }
}

fn signal_of(status: &str) -> SignalState {
    match status.trim().to_ascii_lowercase().as_str() {
        "green" => SignalState::Go,
        "yellow" => SignalState::Caution,
        "red" => SignalState::Stop,
        _ => SignalState::Unknown,
    }
}

/// Every scenario of one DB, each converted or with the reason it was skipped.
pub fn read_db(
    file: &Path,
    opts: &NuplanDbOptions,
    emit: &mut dyn FnMut(Result<Scene, NuplanDbError>),
) {
    if let Err(e) = read_db_inner(file, opts, emit) {
        emit(Err(e));
    }
}

fn read_db_inner(
    file: &Path,
    opts: &NuplanDbOptions,
    emit: &mut dyn FnMut(Result<Scene, NuplanDbError>),
) -> Result<(), NuplanDbError> {
    let e = sql(file);
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(&e)?;
    let (map_name, location): (String, String) = conn
        .query_row("SELECT map_version, location FROM log LIMIT 1", [], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })
        .map_err(&e)?;
    let map = match &opts.map_root {
        None => None,
        Some(root) => {
            let path = find_map(root, &map_name).map_err(|tried| NuplanDbError::NoMap {
                file: file.to_path_buf(),
                map: map_name.clone(),
                root: root.clone(),
                tried: tried
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
            let cached = opts
                .maps
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&path)
                .cloned();
            Some(match cached {
                Some(m) => m,
                None => {
                    let m = Arc::new(read_map(&path)?);
                    opts.maps
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(path, m.clone());
                    m
                }
            })
        }
    };
    // Every lidar_pc in time order, with its ego pose.
    let mut stmt = conn
        .prepare(
            "SELECT lp.token, lp.timestamp, ep.x, ep.y, ep.qw, ep.qx, ep.qy, ep.qz, ep.vx, ep.vy
             FROM lidar_pc lp JOIN ego_pose ep ON ep.token = lp.ego_pose_token ORDER BY lp.timestamp",
        )
        .map_err(&e)?;
    struct Frame {
        token: Vec<u8>,
        t_us: i64,
        pose: [f64; 8],
    }
    let frames: Vec<Frame> = stmt
        .query_map([], |r| {
            Ok(Frame {
                token: r.get(0)?,
                t_us: r.get(1)?,
                pose: [
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                ],
            })
        })
        .and_then(|it| it.collect())
        .map_err(&e)?;
    let index: HashMap<&[u8], usize> = frames
        .iter()
        .enumerate()
        .map(|(i, f)| (f.token.as_slice(), i))
        .collect();
    // Scenarios: tagged lidar_pcs, their types.
    let mut tags: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut stmt = conn
        .prepare("SELECT lidar_pc_token, type FROM scenario_tag")
        .map_err(&e)?;
    let rows: Vec<(Vec<u8>, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|it| it.collect())
        .map_err(&e)?;
    for (token, ty) in rows {
        let ty = ty.unwrap_or_default();
        if !opts.types.is_empty() && !opts.types.contains(&ty) {
            continue;
        }
        match index.get(token.as_slice()) {
            Some(&i) => {
                tags.entry(i).or_default().insert(ty);
            }
            None => emit(Err(NuplanDbError::Scenario {
                file: file.to_path_buf(),
                token: hex(&token),
                problem: "scenario_tag names a lidar_pc the log does not have".into(),
            })),
        }
    }
    let mut boxes = conn
        .prepare(
            "SELECT lb.track_token, lb.x, lb.y, lb.yaw, lb.width, lb.length, lb.height, lb.vx, lb.vy, c.name
             FROM lidar_box lb JOIN track t ON t.token = lb.track_token JOIN category c ON c.token = t.category_token
             WHERE lb.lidar_pc_token = ?1",
        )
        .map_err(&e)?;
    let mut lights = conn
        .prepare(
            "SELECT lane_connector_id, status FROM traffic_light_status WHERE lidar_pc_token = ?1",
        )
        .map_err(&e)?;
    for (anchor, types) in tags {
        let token = hex(&frames[anchor].token);
        let bad = |problem: String| NuplanDbError::Scenario {
            file: file.to_path_buf(),
            token: token.clone(),
            problem,
        };
        let t0 = frames[anchor].t_us + (opts.offset_s * 1e6).round() as i64;
        let t1 = t0 + (opts.duration_s * 1e6).round() as i64;
        let window: Vec<usize> = (0..frames.len())
            .filter(|&i| frames[i].t_us >= t0 && frames[i].t_us <= t1)
            .step_by(2)
            .collect();
        let span = window
            .last()
            .zip(window.first())
            .map_or(0, |(l, f)| frames[*l].t_us - frames[*f].t_us);
        if window.len() < 2 || (span as f64) < MIN_DURATION_S * 1e6 {
            emit(Err(bad(format!(
                "only {:.1} s of the log in its window (at least {MIN_DURATION_S} s needed)",
                span as f64 / 1e6
            ))));
            continue;
        }
        let n = window.len();
        let mut ego = Track::empty("EGO".into(), AgentClass::Vehicle, EGO_SIZE_M, n);
        let mut agents: Vec<Track> = Vec::new();
        let mut by_track: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut signals: BTreeMap<i64, LaneSignal> = BTreeMap::new();
        for (k, &i) in window.iter().enumerate() {
            let [x, y, qw, qx, qy, qz, vx, vy] = frames[i].pose;
            let yaw = yaw_of(qw, qx, qy, qz);
            let (s, c) = yaw.sin_cos();
            ego.valid[k] = true;
            ego.x[k] = x + REAR_AXLE_TO_CENTER_M * c;
            ego.y[k] = y + REAR_AXLE_TO_CENTER_M * s;
            ego.yaw[k] = yaw;
            ego.vx[k] = vx * c - vy * s;
            ego.vy[k] = vx * s + vy * c;
            let rows: Vec<(Vec<u8>, [f64; 8], String)> = boxes
                .query_map([&frames[i].token], |r| {
                    Ok((
                        r.get(0)?,
                        [
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ],
                        r.get(9)?,
                    ))
                })
                .and_then(|it| it.collect())
                .map_err(&e)?;
            for (track, [bx, by, byaw, w, l, h, bvx, bvy], cat) in rows {
                let a = *by_track.entry(track.clone()).or_insert_with(|| {
                    agents.push(Track::empty(
                        hex(&track),
                        class_of(&cat),
                        (l.max(0.1), w.max(0.1), h.max(0.1)),
                        n,
                    ));
                    agents.len() - 1
                });
                let t = &mut agents[a];
                t.valid[k] = true;
                t.x[k] = bx;
                t.y[k] = by;
                t.yaw[k] = byaw;
                t.vx[k] = if bvx.is_finite() { bvx } else { 0.0 };
                t.vy[k] = if bvy.is_finite() { bvy } else { 0.0 };
            }
            let tl: Vec<(i64, String)> = lights
                .query_map([&frames[i].token], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|it| it.collect())
                .map_err(&e)?;
            for (connector, status) in tl {
                let lane = CONNECTOR_ID_OFFSET + connector;
                signals
                    .entry(lane)
                    .or_insert_with(|| LaneSignal {
                        lane,
                        states: vec![SignalState::Unknown; n],
                        stop_point: None,
                    })
                    .states[k] = signal_of(&status);
            }
        }
        let timestamps_us: Vec<i64> = window.iter().map(|&i| frames[i].t_us).collect();
        let mut scene_map = Map::default();
        if let Some(m) = &map {
            crop(m, &ego, &mut scene_map);
            for s in signals.values_mut() {
                s.stop_point = scene_map
                    .lanes
                    .iter()
                    .find(|l| l.id == s.lane)
                    .and_then(|l| l.centerline.first().copied());
            }
        }
        let mut tag_list = vec!["nuplan".to_string()];
        if !location.is_empty() {
            tag_list.push(format!("location:{location}"));
        }
        tag_list.extend(types.into_iter().filter(|t| !t.is_empty()));
        let scene = Scene {
            scene_id: token.clone(),
            source: format!(
                "nuPlan DB (CC BY-NC-SA 4.0, nuPlan dataset licence): {} scenario {token}, map {map_name}",
                file.display()
            ),
            timestamps_us,
            map: scene_map,
            ego,
            agents,
            signals: signals.into_values().collect(),
            tags: tag_list,
            meta: SceneMeta::default(),
        };
        match scene.validate() {
            Ok(()) => emit(Ok(scene)),
            Err(err) => emit(Err(bad(err.to_string()))),
        }
    }
    Ok(())
}

/// The map features near the ego's path.
fn crop(m: &NuplanMap, ego: &Track, out: &mut Map) {
    let pts: Vec<Point> = (0..ego.valid.len())
        .filter(|&i| ego.valid[i])
        .map(|i| [ego.x[i], ego.y[i]])
        .collect();
    let (mut x0, mut y0, mut x1, mut y1) = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    for p in &pts {
        x0 = x0.min(p[0]);
        y0 = y0.min(p[1]);
        x1 = x1.max(p[0]);
        y1 = y1.max(p[1]);
    }
    let near = |ps: &[Point]| {
        ps.iter().any(|p| {
            p[0] >= x0 - MAP_MARGIN_M
                && p[0] <= x1 + MAP_MARGIN_M
                && p[1] >= y0 - MAP_MARGIN_M
                && p[1] <= y1 + MAP_MARGIN_M
        })
    };
    out.lanes = m
        .lanes
        .iter()
        .filter(|l| near(&l.centerline))
        .cloned()
        .collect();
    out.drivable_areas = m
        .drivable
        .iter()
        .filter(|p| near(&p.points))
        .cloned()
        .collect();
    out.crosswalks = m
        .crosswalks
        .iter()
        .filter(|p| near(&p.points))
        .cloned()
        .collect();
    out.stop_signs = m
        .stop_signs
        .iter()
        .filter(|s| near(&[s.position]))
        .cloned()
        .collect();
}
