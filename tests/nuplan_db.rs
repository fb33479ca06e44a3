//! `simulate import nuplan-db` on a nuPlan log built here from the devkit's own table
//! definitions (motional/nuplan-devkit `nuplan/database/nuplan_db/test/minimal_db_test_utils.py`,
//! Apache-2.0: the CREATE TABLE statements below are that file's, the rows ours) and a GeoPackage
//! map with nuPlan's layer names and key columns (`nuplan/common/maps/nuplan_map/`). No real
//! nuPlan DB or map is available here; docs/scene-format.md lists what this leaves unchecked.

mod util;

use std::f64::consts::FRAC_PI_2;
use std::fs;
use std::path::{Path, PathBuf};

use drivekit::scene::import::{import, ImportKind, ImportOptions};
use drivekit::scene::nuplan_db::{NuplanDbOptions, CONNECTOR_ID_OFFSET, REAR_AXLE_TO_CENTER_M};
use drivekit::scene::{AgentClass, Scene, SignalState};
use rusqlite::{params, Connection};

/// The devkit's DDL (minimal_db_test_utils.py), the tables the importer reads.
const DDL: &str = "
CREATE TABLE log (token BLOB NOT NULL, vehicle_name VARCHAR(64), date VARCHAR(64), timestamp INTEGER, logfile VARCHAR(64), location VARCHAR(64), map_version VARCHAR(64), PRIMARY KEY (token));
CREATE TABLE ego_pose (token BLOB NOT NULL, timestamp INTEGER, x FLOAT, y FLOAT, z FLOAT, qw FLOAT, qx FLOAT, qy FLOAT, qz FLOAT, vx FLOAT, vy FLOAT, vz FLOAT, acceleration_x FLOAT, acceleration_y FLOAT, acceleration_z FLOAT, angular_rate_x FLOAT, angular_rate_y FLOAT, angular_rate_z FLOAT, epsg INTEGER, log_token BLOB NOT NULL, PRIMARY KEY (token));
CREATE TABLE lidar (token BLOB NOT NULL, log_token BLOB NOT NULL, channel VARCHAR(64), model VARCHAR(64), translation BLOB, rotation BLOB, PRIMARY KEY (token));
CREATE TABLE lidar_pc (token BLOB NOT NULL, next_token BLOB, prev_token BLOB, ego_pose_token BLOB NOT NULL, lidar_token BLOB NOT NULL, scene_token BLOB, filename VARCHAR(128), timestamp INTEGER, PRIMARY KEY (token));
CREATE TABLE lidar_box (token BLOB NOT NULL, lidar_pc_token BLOB NOT NULL, track_token BLOB NOT NULL, next_token BLOB, prev_token BLOB, x FLOAT, y FLOAT, z FLOAT, width FLOAT, length FLOAT, height FLOAT, vx FLOAT, vy FLOAT, vz FLOAT, yaw FLOAT, confidence FLOAT, PRIMARY KEY (token));
CREATE TABLE track (token BLOB NOT NULL, category_token BLOB NOT NULL, width FLOAT, length FLOAT, height FLOAT, PRIMARY KEY (token));
CREATE TABLE category (token BLOB NOT NULL, name VARCHAR(64), description TEXT, PRIMARY KEY (token));
CREATE TABLE scene (token BLOB NOT NULL, log_token BLOB NOT NULL, name TEXT, goal_ego_pose_token BLOB, roadblock_ids TEXT, PRIMARY KEY (token));
CREATE TABLE scenario_tag (token BLOB NOT NULL, lidar_pc_token BLOB NOT NULL, type TEXT, agent_track_token BLOB, PRIMARY KEY (token));
CREATE TABLE traffic_light_status (token BLOB NOT NULL, lidar_pc_token BLOB NOT NULL, lane_connector_id INTEGER, status VARCHAR(8), PRIMARY KEY (token));
";

/// A token as the devkit writes one: `bytearray.fromhex("{:08d}".format(val))`, 4 bytes here,
/// 8 in real logs; drivekit shows it as hex.
fn token(v: u64) -> Vec<u8> {
    let s = format!("{v:016}");
    (0..8)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Map origin (UTM 11N, Las Vegas), so coordinates look like nuPlan's.
const E0: f64 = 664_000.0;
const N0: f64 = 3_997_000.0;
/// lidar_pc rows: 20 Hz for 20 s.
const ROWS: u64 = 401;
const ROW_US: i64 = 50_000;

/// The ego's rear axle at row i: northbound on x = E0 + 0 at 5 m/s.
fn ego_at(i: u64) -> (f64, f64) {
    (E0, N0 + 10.0 + 5.0 * (i as f64) * 0.05)
}

fn write_db(path: &Path, map_version: &str, tags: &[(u64, &str)]) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(DDL).unwrap();
    c.execute(
        "INSERT INTO log VALUES (?1, 'vehicle', 'today', 0, 'logfile', 'las_vegas', ?2)",
        params![token(0), map_version],
    )
    .unwrap();
    let cats = [
        "vehicle",
        "bicycle",
        "pedestrian",
        "traffic_cone",
        "barrier",
        "czone_sign",
        "generic_object",
    ];
    for (i, name) in cats.iter().enumerate() {
        c.execute(
            "INSERT INTO category VALUES (?1, ?2, ?3)",
            params![token(900_000 + i as u64), name, format!("{name}.")],
        )
        .unwrap();
    }
    // Tracks: a vehicle ahead, a pedestrian, a cone.
    for (k, cat) in [(0u64, 0u64), (1, 2), (2, 3)] {
        c.execute(
            "INSERT INTO track VALUES (?1, ?2, 1, 1, 1)",
            params![token(600_000 + k), token(900_000 + cat)],
        )
        .unwrap();
    }
    let (qw, qz) = ((FRAC_PI_2 / 2.0).cos(), (FRAC_PI_2 / 2.0).sin());
    for i in 0..ROWS {
        let t = 1_600_000_000_000_000 + i as i64 * ROW_US;
        let (x, y) = ego_at(i);
        c.execute(
            "INSERT INTO ego_pose VALUES (?1, ?2, ?3, ?4, 0, ?5, 0, 0, ?6, 5.0, 0.0, 0, 0, 0, 0, 0, 0, 0, 32611, ?7)",
            params![token(300_000 + i), t + 333, x, y, qw, qz, token(0)],
        )
        .unwrap();
        c.execute(
            "INSERT INTO lidar_pc VALUES (?1, NULL, NULL, ?2, ?3, ?4, 'pc.dat', ?5)",
            params![
                token(i),
                token(300_000 + i),
                token(700_000),
                token(100_000),
                t
            ],
        )
        .unwrap();
        // The vehicle 20 m ahead (box centre), same speed; the pedestrian and cone standing.
        let boxes = [
            (
                0u64,
                E0,
                y + REAR_AXLE_TO_CENTER_M + 20.0,
                FRAC_PI_2,
                2.0,
                4.8,
                1.6,
                0.0,
                5.0,
            ),
            (1, E0 + 6.0, N0 + 60.0, 0.0, 0.6, 0.6, 1.8, 0.0, 0.0),
            (2, E0 - 3.0, N0 + 30.0, 0.0, 0.4, 0.4, 0.8, 0.0, 0.0),
        ];
        for (k, bx, by, yaw, w, l, h, vx, vy) in boxes {
            c.execute(
                "INSERT INTO lidar_box VALUES (?1, ?2, ?3, NULL, NULL, ?4, ?5, 0, ?6, ?7, ?8, ?9, ?10, 0, ?11, 1)",
                params![token(500_000 + i * 10_000 + k), token(i), token(600_000 + k), bx, by, w, l, h, vx, vy, yaw],
            )
            .unwrap();
        }
        // Connector 7's light: green for the first 10 s, red after.
        let status = if i < 200 { "green" } else { "red" };
        c.execute(
            "INSERT INTO traffic_light_status VALUES (?1, ?2, 7, ?3)",
            params![token(400_000 + i * 10_000), token(i), status],
        )
        .unwrap();
    }
    for (k, (row, ty)) in tags.iter().enumerate() {
        c.execute(
            "INSERT INTO scenario_tag VALUES (?1, ?2, ?3, ?4)",
            params![token(800_000 + k as u64), token(*row), ty, token(0)],
        )
        .unwrap();
    }
}

/// A GeoPackage geometry: the `GP` header (little-endian, no envelope) and ISO WKB.
fn gpkg(srs: i32, wkb: Vec<u8>) -> Vec<u8> {
    let mut b = vec![b'G', b'P', 0, 0b0000_0001];
    b.extend(srs.to_le_bytes());
    b.extend(wkb);
    b
}

fn wkb_line(pts: &[[f64; 2]]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend(2u32.to_le_bytes());
    b.extend((pts.len() as u32).to_le_bytes());
    for p in pts {
        b.extend(p[0].to_le_bytes());
        b.extend(p[1].to_le_bytes());
    }
    b
}

fn wkb_polygon(ring: &[[f64; 2]]) -> Vec<u8> {
    let mut closed = ring.to_vec();
    closed.push(ring[0]);
    let mut b = vec![1u8];
    b.extend(3u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend((closed.len() as u32).to_le_bytes());
    for p in &closed {
        b.extend(p[0].to_le_bytes());
        b.extend(p[1].to_le_bytes());
    }
    b
}

fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<[f64; 2]> {
    vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
}

/// A GeoPackage with nuPlan's layers: lane 1 (northbound, x = 0 m, y 0–100 m), connector 7
/// (y 100–110 m, through the intersection, signal-controlled) to lane 2 (y 110–200 m), connector
/// 8 (right turn at y = 100 m, stop sign) to lane 3 (eastbound); boundaries at ±1.8 m; road
/// segments and the intersection as drivable area; a crosswalk; `meta.projectedCoordSystem`.
fn write_map(path: &Path, projected: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
         INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84 / UTM zone 11N', 32611, 'EPSG', 32611, 'PROJCS[...]', NULL);
         INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84', 4326, 'EPSG', 4326, 'GEOGCS[...]', NULL);
         CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT, description TEXT DEFAULT '', last_change DATETIME, min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER);
         CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL, m TINYINT NOT NULL);
         CREATE TABLE meta (key TEXT, value TEXT);",
    )
    .unwrap();
    c.execute(
        "INSERT INTO meta VALUES ('projectedCoordSystem', ?1)",
        [projected],
    )
    .unwrap();
    let layer = |name: &str, kind: &str, cols: &str| {
        c.execute_batch(&format!(
            "CREATE TABLE {name} (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom {kind}{cols});
             INSERT INTO gpkg_contents (table_name, data_type, srs_id) VALUES ('{name}', 'features', 32611);
             INSERT INTO gpkg_geometry_columns VALUES ('{name}', 'geom', '{kind}', 32611, 0, 0);"
        ))
        .unwrap();
    };
    layer("boundaries", "LINESTRING", "");
    layer(
        "baseline_paths",
        "LINESTRING",
        ", lane_fid INTEGER, lane_connector_fid INTEGER",
    );
    layer("lanes_polygons", "POLYGON", ", lane_group_fid INTEGER, lane_index INTEGER, left_boundary_fid INTEGER, right_boundary_fid INTEGER, speed_limit_mps REAL");
    layer(
        "lane_connectors",
        "POLYGON",
        ", exit_lane_fid INTEGER, entry_lane_fid INTEGER, speed_limit_mps REAL",
    );
    layer(
        "gen_lane_connectors_scaled_width_polygons",
        "POLYGON",
        ", lane_connector_fid INTEGER, left_boundary_fid INTEGER, right_boundary_fid INTEGER",
    );
    layer("road_segments", "POLYGON", "");
    layer("intersections", "POLYGON", "");
    layer("crosswalks", "POLYGON", "");
    layer(
        "stop_polygons",
        "POLYGON",
        ", stop_polygon_type_fid INTEGER",
    );
    let p = |x: f64, y: f64| [E0 + x, N0 + y];
    let g = |w: Vec<u8>| gpkg(32611, w);
    let ins = |sql: &str, fid: i64, geom: Vec<u8>, rest: Vec<rusqlite::types::Value>| {
        let mut v: Vec<rusqlite::types::Value> = vec![fid.into(), geom.into()];
        v.extend(rest);
        c.execute(sql, rusqlite::params_from_iter(v)).unwrap();
    };
    use rusqlite::types::Value as V;
    // Boundaries: 11/12 lane 1, 21/22 lane 2, 71/72 connector 7.
    for (fid, x, y0, y1) in [
        (11, -1.8, 0.0, 100.0),
        (12, 1.8, 0.0, 100.0),
        (21, -1.8, 110.0, 200.0),
        (22, 1.8, 110.0, 200.0),
        (71, -1.8, 100.0, 110.0),
        (72, 1.8, 100.0, 110.0),
    ] {
        ins(
            "INSERT INTO boundaries (fid, geom) VALUES (?1, ?2)",
            fid,
            g(wkb_line(&[p(x, y0), p(x, y1)])),
            vec![],
        );
    }
    let bp = "INSERT INTO baseline_paths (fid, geom, lane_fid, lane_connector_fid) VALUES (?1, ?2, ?3, ?4)";
    ins(
        bp,
        1,
        g(wkb_line(&[p(0.0, 0.0), p(0.0, 50.0), p(0.0, 100.0)])),
        vec![V::Integer(1), V::Null],
    );
    ins(
        bp,
        2,
        g(wkb_line(&[p(0.0, 110.0), p(0.0, 200.0)])),
        vec![V::Integer(2), V::Null],
    );
    ins(
        bp,
        3,
        g(wkb_line(&[p(5.0, 105.0), p(100.0, 105.0)])),
        vec![V::Integer(3), V::Null],
    );
    ins(
        bp,
        4,
        g(wkb_line(&[p(0.0, 100.0), p(0.0, 110.0)])),
        vec![V::Null, V::Integer(7)],
    );
    ins(
        bp,
        5,
        g(wkb_line(&[p(0.0, 100.0), p(2.0, 104.0), p(5.0, 105.0)])),
        vec![V::Null, V::Integer(8)],
    );
    let lp = "INSERT INTO lanes_polygons (fid, geom, lane_group_fid, lane_index, left_boundary_fid, right_boundary_fid, speed_limit_mps) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
    ins(
        lp,
        1,
        g(wkb_polygon(&rect(E0 - 1.8, N0, E0 + 1.8, N0 + 100.0))),
        vec![
            V::Integer(1),
            V::Integer(0),
            V::Integer(11),
            V::Integer(12),
            V::Real(13.4112),
        ],
    );
    ins(
        lp,
        2,
        g(wkb_polygon(&rect(
            E0 - 1.8,
            N0 + 110.0,
            E0 + 1.8,
            N0 + 200.0,
        ))),
        vec![
            V::Integer(2),
            V::Integer(0),
            V::Integer(21),
            V::Integer(22),
            V::Real(f64::NAN),
        ],
    );
    ins(
        lp,
        3,
        g(wkb_polygon(&rect(
            E0 + 5.0,
            N0 + 103.2,
            E0 + 100.0,
            N0 + 106.8,
        ))),
        vec![
            V::Integer(3),
            V::Integer(0),
            V::Null,
            V::Null,
            V::Real(8.9408),
        ],
    );
    let lc = "INSERT INTO lane_connectors (fid, geom, exit_lane_fid, entry_lane_fid, speed_limit_mps) VALUES (?1, ?2, ?3, ?4, ?5)";
    ins(
        lc,
        7,
        g(wkb_polygon(&rect(
            E0 - 1.8,
            N0 + 100.0,
            E0 + 1.8,
            N0 + 110.0,
        ))),
        vec![V::Integer(1), V::Integer(2), V::Real(13.4112)],
    );
    ins(
        lc,
        8,
        g(wkb_polygon(&rect(E0, N0 + 100.0, E0 + 5.0, N0 + 106.0))),
        vec![V::Integer(1), V::Integer(3), V::Null],
    );
    ins(
        "INSERT INTO gen_lane_connectors_scaled_width_polygons (fid, geom, lane_connector_fid, left_boundary_fid, right_boundary_fid) VALUES (?1, ?2, ?3, ?4, ?5)",
        1,
        g(wkb_polygon(&rect(E0 - 1.8, N0 + 100.0, E0 + 1.8, N0 + 110.0))),
        vec![V::Integer(7), V::Integer(71), V::Integer(72)],
    );
    ins(
        "INSERT INTO road_segments (fid, geom) VALUES (?1, ?2)",
        1,
        g(wkb_polygon(&rect(
            E0 - 4.0,
            N0 - 10.0,
            E0 + 4.0,
            N0 + 100.0,
        ))),
        vec![],
    );
    ins(
        "INSERT INTO road_segments (fid, geom) VALUES (?1, ?2)",
        2,
        g(wkb_polygon(&rect(
            E0 - 4.0,
            N0 + 110.0,
            E0 + 4.0,
            N0 + 260.0,
        ))),
        vec![],
    );
    ins(
        "INSERT INTO intersections (fid, geom) VALUES (?1, ?2)",
        1,
        g(wkb_polygon(&rect(
            E0 - 4.0,
            N0 + 100.0,
            E0 + 10.0,
            N0 + 110.0,
        ))),
        vec![],
    );
    ins(
        "INSERT INTO crosswalks (fid, geom) VALUES (?1, ?2)",
        1,
        g(wkb_polygon(&rect(E0 - 4.0, N0 + 58.0, E0 + 4.0, N0 + 62.0))),
        vec![],
    );
    // A stop sign at the start of connector 8 (type 1), a traffic-light stop line (type 2).
    ins(
        "INSERT INTO stop_polygons (fid, geom, stop_polygon_type_fid) VALUES (?1, ?2, ?3)",
        1,
        g(wkb_polygon(&rect(
            E0 - 0.5,
            N0 + 99.0,
            E0 + 0.5,
            N0 + 100.5,
        ))),
        vec![V::Integer(1)],
    );
    ins(
        "INSERT INTO stop_polygons (fid, geom, stop_polygon_type_fid) VALUES (?1, ?2, ?3)",
        2,
        g(wkb_polygon(&rect(
            E0 - 2.0,
            N0 + 99.0,
            E0 + 2.0,
            N0 + 100.5,
        ))),
        vec![V::Integer(2)],
    );
}

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    maps: PathBuf,
}

fn fixture(map_version: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("2021.05.12.22.00.38_veh-35_01008_01518.db");
    write_db(
        &db,
        map_version,
        &[
            (
                100,
                "starting_straight_traffic_light_intersection_traversal",
            ),
            (100, "on_traffic_light_intersection"),
            (390, "stationary_in_traffic"),
            (9_999, "lost"),
        ],
    );
    let maps = dir.path().join("maps");
    write_map(
        &maps.join("us-nv-las-vegas-strip/9.15.1915/map.gpkg"),
        "EPSG:32611",
    );
    fs::write(
        maps.join("nuplan-maps-v1.0.json"),
        "{\"us-nv-las-vegas-strip\": {\"version\": \"9.15.1915\"}}",
    )
    .unwrap();
    Fixture {
        _dir: dir,
        db,
        maps,
    }
}

fn opts(maps: &Path) -> ImportOptions {
    ImportOptions {
        progress: false,
        nuplan: NuplanDbOptions {
            map_root: Some(maps.to_path_buf()),
            ..NuplanDbOptions::default()
        },
    }
}

#[test]
fn nuplan_db_scenarios_import_as_the_devkit_reads_them() {
    let f = fixture("us-nv-las-vegas-strip");
    let (scenes, skipped) = import(ImportKind::NuplanDb, &f.db, &opts(&f.maps)).unwrap();
    assert_eq!(scenes.len(), 2, "{skipped:?}");
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].contains(&hex(&token(9_999)))
            && skipped[0].contains("lidar_pc the log does not have"),
        "{skipped:?}"
    );
    let s = scenes
        .iter()
        .find(|s| s.scene_id == hex(&token(100)))
        .unwrap();
    // Tags: both types of lidar_pc 100, the dataset and the location.
    for t in [
        "nuplan",
        "location:las_vegas",
        "on_traffic_light_intersection",
        "starting_straight_traffic_light_intersection_traversal",
    ] {
        assert!(s.tags.contains(&t.to_string()), "{:?}", s.tags);
    }
    // 15 s from 3 s before the tag, every 2nd lidar_pc: 10 Hz, both ends included.
    assert_eq!(s.timestamps_us.len(), 151);
    assert!(s
        .timestamps_us
        .windows(2)
        .all(|w| w[1] - w[0] == 2 * ROW_US));
    assert_eq!(s.timestamps_us[0], 1_600_000_000_000_000 + 40 * ROW_US);
    // Ego: rear axle + 1.461 m along the heading (north); ego-frame velocity rotated.
    let (x, y) = ego_at(40);
    assert!(
        (s.ego.x[0] - x).abs() < 1e-9 && (s.ego.y[0] - (y + REAR_AXLE_TO_CENTER_M)).abs() < 1e-9
    );
    assert!((s.ego.yaw[0] - FRAC_PI_2).abs() < 1e-12);
    assert!(s.ego.vx[0].abs() < 1e-12 && (s.ego.vy[0] - 5.0).abs() < 1e-12);
    assert_eq!((s.ego.length_m, s.ego.width_m), (5.176, 2.297));
    // Agents: classes and per-box sizes.
    let class = |k: u64| {
        s.agents
            .iter()
            .find(|a| a.id == hex(&token(600_000 + k)))
            .unwrap()
    };
    assert_eq!(class(0).class, AgentClass::Vehicle);
    assert_eq!((class(0).length_m, class(0).width_m), (4.8, 2.0));
    assert_eq!(class(1).class, AgentClass::Pedestrian);
    assert_eq!(class(2).class, AgentClass::Static);
    assert!(class(0).valid.iter().all(|v| *v));
    // The light: green until row 200, red from then on (rows 40..340 every 2nd).
    let sig = s
        .signals
        .iter()
        .find(|x| x.lane == CONNECTOR_ID_OFFSET + 7)
        .unwrap();
    assert_eq!(sig.states[0], SignalState::Go);
    assert_eq!(sig.states[(200 - 40) / 2], SignalState::Stop);
    assert_eq!(sig.states.iter().filter(|x| x.is_red()).count(), 71);
    assert_eq!(sig.stop_point, Some([E0, N0 + 100.0]));
    // The map: lanes and connectors linked, speed limits, neighbours, drivable area, stop sign.
    let lane = |id: i64| s.map.lanes.iter().find(|l| l.id == id).unwrap();
    assert_eq!(
        lane(1).successors,
        vec![CONNECTOR_ID_OFFSET + 7, CONNECTOR_ID_OFFSET + 8]
    );
    assert_eq!(lane(CONNECTOR_ID_OFFSET + 7).successors, vec![2]);
    assert_eq!(lane(2).predecessors, vec![CONNECTOR_ID_OFFSET + 7]);
    assert_eq!(lane(1).speed_limit_mps, Some(13.4112));
    assert_eq!(lane(2).speed_limit_mps, None, "NaN in the map is no limit");
    assert_eq!(
        lane(1).left_boundary,
        vec![[E0 - 1.8, N0], [E0 - 1.8, N0 + 100.0]]
    );
    assert_eq!(lane(CONNECTOR_ID_OFFSET + 7).right_boundary.len(), 2);
    assert_eq!(s.map.drivable_areas.len(), 3);
    assert_eq!(s.map.crosswalks.len(), 1);
    assert_eq!(s.map.stop_signs.len(), 1, "only the STOP_SIGN stop line");
    // Both connectors leaving lane 1 start at its stop line.
    assert_eq!(
        s.map.stop_signs[0].lanes,
        vec![CONNECTOR_ID_OFFSET + 7, CONNECTOR_ID_OFFSET + 8]
    );
    // The late tag: its window clipped to the log's end.
    let late = scenes
        .iter()
        .find(|s| s.scene_id == hex(&token(390)))
        .unwrap();
    assert_eq!(late.timestamps_us.len(), (400 - 330) / 2 + 1);
    // A type filter keeps only the matching scenarios.
    let mut o = opts(&f.maps);
    o.nuplan.types = vec!["stationary_in_traffic".into()];
    let (only, _) = import(ImportKind::NuplanDb, &f.db, &o).unwrap();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].scene_id, hex(&token(390)));
}

/// The CLI, log replay on the imported scene, and bad input: a missing map, a file that is not
/// SQLite, a scenario whose window has too little log.
#[test]
fn nuplan_db_cli_log_replay_and_bad_input() {
    let f = fixture("us-nv-las-vegas-strip");
    let out_dir = f.db.parent().unwrap().join("scenes");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
            .args(args)
            .output()
            .unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let o = run(&[
        "import",
        "nuplan-db",
        f.db.to_str().unwrap(),
        "--map-root",
        f.maps.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1), "one tag is skipped: {}", text(&o));
    assert!(
        text(&o).contains("2 scene(s) from 1 input(s)") && text(&o).contains("1 skipped"),
        "{}",
        text(&o)
    );
    let s = Scene::load(&out_dir.join(format!("{}.dkscene", hex(&token(100))))).unwrap();
    assert!(
        s.summary().contains("signals: 1 lanes with a signal"),
        "{}",
        s.summary()
    );
    // Log replay stays on the recording, on the road.
    let run_dir = f.db.parent().unwrap().join("run");
    let o = run(&[
        "run",
        "--scenes",
        out_dir.to_str().unwrap(),
        "--out",
        run_dir.to_str().unwrap(),
        "--quiet",
        "--video",
        "none",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    for ((clip, _, name), v) in util::metric_values(&run_dir) {
        match name.as_str() {
            "dist_to_gt_trajectory" => assert!(v.iter().all(|x| *x < 1e-6), "{clip}: {v:?}"),
            "offroad" | "collision_any" => {
                assert!(v.iter().all(|x| *x == 0.0), "{clip} {name}: {v:?}")
            }
            _ => {}
        }
    }
    // A log naming a map that is not there.
    let g = fixture("sg-one-north");
    let o = run(&[
        "import",
        "nuplan-db",
        g.db.to_str().unwrap(),
        "--map-root",
        g.maps.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("map sg-one-north not found under")
            && text(&o).contains("sg-one-north/map.gpkg"),
        "{}",
        text(&o)
    );
    // Not SQLite at all.
    let junk = f.db.parent().unwrap().join("junk.db");
    fs::write(
        &junk,
        "not a database, just text that is long enough to have a header",
    )
    .unwrap();
    let (scenes, skipped) = import(ImportKind::NuplanDb, &junk, &opts(&f.maps)).unwrap();
    assert!(
        scenes.is_empty() && skipped[0].contains("junk.db"),
        "{skipped:?}"
    );
    // A window with too little log.
    let mut o = opts(&f.maps);
    o.nuplan.offset_s = 19.9;
    let (scenes, skipped) = import(ImportKind::NuplanDb, &f.db, &o).unwrap();
    assert!(scenes.is_empty());
    assert!(
        skipped
            .iter()
            .any(|s| s.contains("s of the log in its window")),
        "{skipped:?}"
    );
}

/// WGS 84 geometries are projected to the map's UTM zone: the CN Tower, 43°38′33.24″N
/// 79°23′13.7″W, is at 630 084 m E, 4 833 439 m N in UTM zone 17 (the worked example of the
/// Wikipedia article "Universal Transverse Mercator coordinate system").
#[test]
fn wgs84_layers_are_projected_to_the_maps_utm_zone() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("m.gpkg");
    write_map(&p, "EPSG:32617");
    let c = Connection::open(&p).unwrap();
    c.execute(
        "UPDATE gpkg_geometry_columns SET srs_id = 4326 WHERE table_name = 'crosswalks'",
        [],
    )
    .unwrap();
    let (lat, lon) = (
        43.0 + 38.0 / 60.0 + 33.24 / 3600.0,
        -(79.0 + 23.0 / 60.0 + 13.7 / 3600.0),
    );
    let ring = vec![[lon, lat], [lon + 1e-5, lat], [lon + 1e-5, lat + 1e-5]];
    c.execute(
        "UPDATE crosswalks SET geom = ?1 WHERE fid = 1",
        [gpkg(4326, wkb_polygon(&ring))],
    )
    .unwrap();
    drop(c);
    let m = drivekit::scene::nuplan_db::read_map(&p).unwrap();
    let q = m.crosswalks[0].points[0];
    assert!(
        (q[0] - 630_084.0).abs() < 1.0 && (q[1] - 4_833_439.0).abs() < 1.0,
        "{q:?}"
    );
    // Projected layers are read as they are.
    assert_eq!(m.drivable[0].points[0], [E0 - 4.0, N0 - 10.0]);
}
