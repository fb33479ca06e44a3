//! `simulate import nuplan-db` on a nuPlan log built here from the devkit's own table
//! definitions (motional/nuplan-devkit `nuplan/database/nuplan_db/test/minimal_db_test_utils.py`,
//! Apache-2.0: the CREATE TABLE statements in `nuplan_fixture/` are that file's, the rows ours) and a GeoPackage
//! map with nuPlan's layer names and key columns (`nuplan/common/maps/nuplan_map/`). No real
//! nuPlan DB or map is available here; docs/scene-format.md lists what this leaves unchecked.

mod util;

use std::f64::consts::FRAC_PI_2;
use std::fs;

use drivekit::scene::import::{import, ImportKind};
use drivekit::scene::nuplan_db::{CONNECTOR_ID_OFFSET, REAR_AXLE_TO_CENTER_M};
use drivekit::scene::{AgentClass, Scene, SignalState};
use rusqlite::Connection;

mod nuplan_fixture;

use nuplan_fixture::*;

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
