//! A nuPlan log DB and GeoPackage map built here from the devkit's own table definitions
//! (motional/nuplan-devkit `nuplan/database/nuplan_db/test/minimal_db_test_utils.py`, Apache-2.0:
//! the CREATE TABLE statements are that file's, the rows ours), shared by `tests/nuplan_db.rs`
//! and the importer fuzzing of `tests/fuzz_readers.rs`.

#![allow(dead_code)]

use std::f64::consts::FRAC_PI_2;
use std::fs;
use std::path::{Path, PathBuf};

use drivekit::scene::import::ImportOptions;
use drivekit::scene::nuplan_db::{NuplanDbOptions, REAR_AXLE_TO_CENTER_M};
use rusqlite::{params, Connection};

/// The devkit's DDL (minimal_db_test_utils.py), the tables the importer reads.
pub const DDL: &str = "
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
pub fn token(v: u64) -> Vec<u8> {
    let s = format!("{v:016}");
    (0..8)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Map origin (UTM 11N, Las Vegas), so coordinates look like nuPlan's.
pub const E0: f64 = 664_000.0;
pub const N0: f64 = 3_997_000.0;
/// lidar_pc rows: 20 Hz for 20 s.
pub const ROWS: u64 = 401;
pub const ROW_US: i64 = 50_000;

/// The ego's rear axle at row i: northbound on x = E0 + 0 at 5 m/s.
pub fn ego_at(i: u64) -> (f64, f64) {
    (E0, N0 + 10.0 + 5.0 * (i as f64) * 0.05)
}

pub fn write_db(path: &Path, map_version: &str, tags: &[(u64, &str)]) {
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
pub fn gpkg(srs: i32, wkb: Vec<u8>) -> Vec<u8> {
    let mut b = vec![b'G', b'P', 0, 0b0000_0001];
    b.extend(srs.to_le_bytes());
    b.extend(wkb);
    b
}

pub fn wkb_line(pts: &[[f64; 2]]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend(2u32.to_le_bytes());
    b.extend((pts.len() as u32).to_le_bytes());
    for p in pts {
        b.extend(p[0].to_le_bytes());
        b.extend(p[1].to_le_bytes());
    }
    b
}

pub fn wkb_polygon(ring: &[[f64; 2]]) -> Vec<u8> {
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

pub fn rect(x0: f64, y0: f64, x1: f64, y1: f64) -> Vec<[f64; 2]> {
    vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]
}

/// A GeoPackage with nuPlan's layers: lane 1 (northbound, x = 0 m, y 0–100 m), connector 7
/// (y 100–110 m, through the intersection, signal-controlled) to lane 2 (y 110–200 m), connector
/// 8 (right turn at y = 100 m, stop sign) to lane 3 (eastbound); boundaries at ±1.8 m; road
/// segments and the intersection as drivable area; a crosswalk; `meta.projectedCoordSystem`.
pub fn write_map(path: &Path, projected: &str) {
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

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub db: PathBuf,
    pub maps: PathBuf,
}

pub fn fixture(map_version: &str) -> Fixture {
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

pub fn opts(maps: &Path) -> ImportOptions {
    ImportOptions {
        progress: false,
        nuplan: NuplanDbOptions {
            map_root: Some(maps.to_path_buf()),
            ..NuplanDbOptions::default()
        },
    }
}
