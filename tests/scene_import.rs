//! Importing the real public scenes bundled in `tests/data` (Argoverse 2, CommonRoad, nuPlan cases).

mod util;

use std::path::PathBuf;

use util::test_data;

use drivekit::scene::{av2, AgentClass, Scene};

fn av2_dir() -> PathBuf {
    test_data().join("av2/forecasting/0a1e6f0a-1817-4a98-b02e-db8c9327d151")
}

#[test]
fn av2_forecasting_scenario_imports_with_its_tracks_and_map() {
    let s = av2::import_forecasting_dir(&av2_dir()).expect("tests/data holds the AV2 scenario");
    // data/README.md: 11 s at 10 Hz (timesteps 0–109), 58 tracks, ego track `AV`.
    assert_eq!(s.scene_id, "0a1e6f0a-1817-4a98-b02e-db8c9327d151");
    assert_eq!(s.timestamps_us.len(), 110);
    assert_eq!(s.timestamps_us[1] - s.timestamps_us[0], 100_000);
    assert_eq!(s.agents.len() + 1, 58);
    assert_eq!(s.ego.id, "EGO");
    assert_eq!(s.ego.n_valid(), 110, "the ego is observed throughout");
    assert_eq!(
        (
            s.map.lanes.len(),
            s.map.drivable_areas.len(),
            s.map.crosswalks.len()
        ),
        (71, 2, 6)
    );
    let peds = s
        .agents
        .iter()
        .filter(|a| a.class == AgentClass::Pedestrian)
        .count();
    assert!(peds > 0);
    // Track 138902 is observed at timesteps 0..=48 (49 rows).
    let t = s.agents.iter().find(|a| a.id == "138902").unwrap();
    assert_eq!(t.n_valid(), 49);
    assert!(t.valid[48] && !t.valid[49]);
    assert!((t.x[0] - -436.089883).abs() < 1e-6 && (t.y[0] - 1311.189865).abs() < 1e-6);
    // Crosswalk polygons close edge1 with edge2 reversed: 4 corners for 2-point edges.
    assert!(s.map.crosswalks.iter().all(|c| c.points.len() >= 4));

    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s.dkscene");
    s.save(&p).unwrap();
    assert_eq!(Scene::load(&p).unwrap(), s);
}

#[test]
fn simulate_import_cli_writes_a_scene_and_names_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let exe = env!("CARGO_BIN_EXE_simulate");
    let out = std::process::Command::new(exe)
        .args([
            "import",
            "av2-forecasting",
            av2_dir().to_str().unwrap(),
            "-o",
            d.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = d
        .path()
        .join("0a1e6f0a-1817-4a98-b02e-db8c9327d151.dkscene");
    assert!(file.exists());
    let info = std::process::Command::new(exe)
        .args(["scene-info", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("57 agents, 71 lanes"));

    // A directory without the two files, and a malformed map.
    let out = std::process::Command::new(exe)
        .args(["import", "av2-forecasting", d.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected scenario_<id>.parquet"));
    let bad = d.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::copy(
        av2_dir().join("scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet"),
        bad.join("scenario_x.parquet"),
    )
    .unwrap();
    std::fs::write(bad.join("log_map_archive_x.json"), "{\"lane_segments\": [").unwrap();
    let out = std::process::Command::new(exe)
        .args(["import", "av2-forecasting", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log_map_archive_x.json") && err.contains("invalid Argoverse 2 map JSON"),
        "{err}"
    );
}

fn nuplan_dir() -> PathBuf {
    test_data().join("nuplan_metric_cases")
}

#[test]
fn nuplan_metric_cases_import_with_rear_axle_converted_to_box_centre() {
    use drivekit::scene::nuplan_case;
    let f = nuplan_dir().join("no_ego_at_fault_collision/active_rear_collision.json");
    let s = nuplan_case::import_case(&f).unwrap();
    assert_eq!(
        s.scene_id,
        "nuplan-no_ego_at_fault_collision-active_rear_collision"
    );
    // ego at t = 1 s plus two future states
    assert_eq!(s.timestamps_us, vec![1_000_000, 2_000_000, 3_000_000]);
    // Box centre = rear axle + (4.049 − 1.127)/2 m along the heading −2.0085689660475055 rad.
    let h: f64 = -2.0085689660475055;
    assert!((s.ego.x[0] - (664751.662199684 + 1.461 * h.cos())).abs() < 1e-9);
    assert!((s.ego.y[0] - (3999461.989363281 + 1.461 * h.sin())).abs() < 1e-9);
    assert!((s.ego.length_m - 5.176).abs() < 1e-12 && s.ego.width_m == 2.297);
    // Ego velocity [5, 0] in its own frame → 5 m/s along the heading.
    assert!((s.ego.vx[0] - 5.0 * h.cos()).abs() < 1e-12);
    // size = [width, length]
    let v = s.agents.iter().find(|a| a.id == "vehicle-1").unwrap();
    assert_eq!((v.width_m, v.length_m), (2.0, 4.7));
    assert!(v.valid.iter().all(|&x| x));

    // Every case imports, including those whose expected values hold Python's Infinity.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "import",
            "nuplan-case",
            nuplan_dir().to_str().unwrap(),
            "-o",
        ])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches("written to")
            .count(),
        8
    );
}

/// The collision cases' first frame, checked with drivekit's separating-axis test: nuPlan
/// counts one at-fault collision in active_front_collision and reports TTC 0 in in_collision
/// (both need an overlap at t0); no_collision has none.
#[test]
fn nuplan_collision_cases_overlap_where_nuplan_says_so() {
    use drivekit::geometry::OrientedBox;
    use drivekit::scene::nuplan_case;
    let overlapping_at_t0 = |case: &str| -> Vec<String> {
        let s = nuplan_case::import_case(&nuplan_dir().join(case)).unwrap();
        let bx = |t: &drivekit::scene::Track| OrientedBox {
            x: t.x[0],
            y: t.y[0],
            yaw: t.yaw[0],
            length: t.length_m,
            width: t.width_m,
        };
        let ego = bx(&s.ego);
        s.agents
            .iter()
            .filter(|a| a.valid[0] && ego.overlaps(&bx(a)))
            .map(|a| a.id.clone())
            .collect()
    };
    assert_eq!(
        overlapping_at_t0("no_ego_at_fault_collision/active_front_collision.json").len(),
        1
    );
    assert!(overlapping_at_t0("no_ego_at_fault_collision/no_collision.json").is_empty());
    assert!(!overlapping_at_t0("time_to_collision_within_bound/in_collision.json").is_empty());
    assert!(overlapping_at_t0("time_to_collision_within_bound/no_collisions.json").is_empty());
}

#[test]
fn check_config_prints_the_clock_table_or_names_the_broken_key() {
    let d = tempfile::tempdir().unwrap();
    let ok = d.path().join("ok.yaml");
    std::fs::write(&ok, "runtime:\n  simulation_config:\n    control_timestep_us: 100002\n    egopose_interval_us: 100002\n    time_start_offset_us: 300006\n    cameras: [{logical_id: front, frame_interval_us: 33334}]\ndriver:\n  inference:\n    subsample_factor: 3\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .arg("--check-config")
        .arg(&ok)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("the clocks line up"));
    let bad = d.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "runtime:\n  simulation_config:\n    time_start_offset_us: 250000\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .arg("--check-config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml")
            && err.contains("time_start_offset_us = 250000")
            && err.contains("use 200000 or 300000"),
        "{err}"
    );
}

#[test]
fn av2_sensor_log_imports_into_the_city_frame() {
    use drivekit::scene::av2_sensor;
    let dir = test_data().join("av2/sensor_log");
    let s = av2_sensor::import_sensor_log_dir(&dir).unwrap();
    // data/README.md: 156 annotation timestamps, 146 tracks, ~15.9 s, Pittsburgh.
    assert_eq!(s.scene_id, "adcf7d18-0510-35b0-a2fa-b4cea13a6d76");
    assert_eq!(s.timestamps_us.len(), 156);
    assert_eq!(s.agents.len(), 146);
    let dur = (s.timestamps_us[155] - s.timestamps_us[0]) as f64 / 1e6;
    assert!((15.0..16.5).contains(&dur), "{dur}");
    assert_eq!(s.ego.n_valid(), 156);
    // Ego speed from finite differences stays within urban driving speeds.
    let speed = |i: usize| s.ego.vx[i].hypot(s.ego.vy[i]);
    assert!((0..156).all(|i| speed(i) < 30.0));
    // Cuboids in the city frame lie near the ego (annotations reach ~100 m around it).
    for a in &s.agents {
        for i in (0..156).filter(|&i| a.valid[i]) {
            let d = (a.x[i] - s.ego.x[i]).hypot(a.y[i] - s.ego.y[i]);
            assert!(d < 250.0, "track {} {d} m from the ego", a.id);
        }
    }
    // Annotated sizes are kept.
    assert!(s.agents.iter().all(|a| a.length_m > 0.0 && a.width_m > 0.0));
    // The ego stays on the map's drivable area (within nuPlan's 0.3 m tolerance) along the log.
    let polys: Vec<Vec<[f64; 2]>> = s.map.drivable_polygons();
    let on_road = (0..156)
        .filter(|&i| {
            drivekit::geometry::OrientedBox {
                x: s.ego.x[i],
                y: s.ego.y[i],
                yaw: s.ego.yaw[i],
                length: s.ego.length_m,
                width: s.ego.width_m,
            }
            .inside_any(&polys, 0.3)
        })
        .count();
    assert!(
        on_road >= 150,
        "ego on the drivable area at {on_road} of 156 sweeps"
    );
}

#[test]
fn commonroad_scenarios_import_with_a_routed_ego() {
    use drivekit::scene::commonroad;
    let dir = test_data().join("commonroad");
    // (file, lanelets, obstacles with rectangles), counted with Python's xml.etree on the files
    // and the file's timeStepSize.
    for (file, lanelets, obstacles, step_us) in [
        ("USA_US101-3_3_T-1.xml", 12, 12, 100_000),
        ("DEU_A9-3_1_T-1.xml", 32, 9, 200_000),
        ("USA_Lanker-1_1_T-1.xml", 91, 24, 100_000),
        ("ARG_Carcarana-4_5_T-1.xml", 368, 8, 100_000),
    ] {
        let s = commonroad::import(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(s.scene_id, file.trim_end_matches(".xml"));
        assert_eq!(s.map.lanes.len(), lanelets, "{file}");
        assert_eq!(s.agents.len(), obstacles, "{file}");
        assert!(
            s.timestamps_us.len() >= 2 && s.timestamps_us[1] - s.timestamps_us[0] == step_us,
            "{file}"
        );
        // The routed ego drives along lanelet centerlines: its centre stays on the drivable area.
        let polys: Vec<Vec<[f64; 2]>> = s.map.drivable_polygons();
        let valid: Vec<usize> = (0..s.timestamps_us.len())
            .filter(|&i| s.ego.valid[i])
            .collect();
        let on = valid
            .iter()
            .filter(|&&i| {
                polys
                    .iter()
                    .any(|p| drivekit::geometry::contains(p, [s.ego.x[i], s.ego.y[i]]))
            })
            .count();
        assert!(
            on * 10 >= valid.len() * 9,
            "{file}: ego on the road at {on} of {} steps",
            valid.len()
        );
    }
    // US101: the planning problem starts at (0, 0) heading −0.72 rad at 9.65 m/s.
    let s = commonroad::import(&dir.join("USA_US101-3_3_T-1.xml")).unwrap();
    assert!(
        s.ego.x[0].hypot(s.ego.y[0]) < 2.0,
        "ego starts near the initial state"
    );
    assert!((s.ego.vx[0].hypot(s.ego.vy[0]) - 9.65).abs() < 1e-9);

    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("bad.xml");
    std::fs::write(&bad, "<commonRoad><lanelet id=\"1\"><leftBound>").unwrap();
    let e = commonroad::import(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.xml") && e.contains("malformed XML"), "{e}");
    std::fs::write(&bad, "<commonRoad timeStepSize=\"0.1\"></commonRoad>").unwrap();
    assert!(commonroad::import(&bad)
        .unwrap_err()
        .to_string()
        .contains("no <lanelet>"));
}

#[test]
fn bundled_scenes_load_with_this_format_version() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "dkscene") {
            let s =
                Scene::load(&p).unwrap_or_else(|e| panic!("{e} (re-import: see fixtures/NOTICE)"));
            assert_eq!(p.file_stem().unwrap().to_string_lossy(), s.scene_id);
            n += 1;
        }
    }
    assert_eq!(
        n, 6,
        "two Argoverse 2 and four CommonRoad scenes are bundled"
    );
}

/// nuPlan's no_ego_at_fault_collision cases through drivekit's collision classes, against each
/// case's `expected.statistics` read from its file: BOOLEAN (no at-fault collision), the COUNT of
/// at-fault collisions, and the COUNTs with VRUs (pedestrians, bicycles), vehicles and objects
/// (nuPlan counts each track once). The collision energies that follow them are not computed by
/// drivekit.
#[test]
fn nuplan_collision_classes_match_the_expected_fault() {
    use drivekit::geometry::OrientedBox;
    use drivekit::metrics::ego_step::{step, ContactMemory, StepInput, TrackBox};
    use drivekit::metrics::ttc::TtcParams;
    use drivekit::scene::{nuplan_case, AgentClass};
    let run = |case: &str| -> Vec<(String, AgentClass, bool, bool)> {
        let s = nuplan_case::import_case(&nuplan_dir().join(case)).unwrap();
        let bx = |t: &drivekit::scene::Track, i: usize| OrientedBox {
            x: t.x[i],
            y: t.y[i],
            yaw: t.yaw[i],
            length: t.length_m,
            width: t.width_m,
        };
        let speed = |t: &drivekit::scene::Track, i: usize| t.vx[i].hypot(t.vy[i]);
        let mut mem = ContactMemory::default();
        let mut hits = Vec::new();
        for i in 0..s.timestamps_us.len() {
            for (k, a) in s.agents.iter().enumerate().filter(|(_, a)| a.valid[i]) {
                let tracks = [TrackBox {
                    id: k,
                    bx: bx(a, i),
                    speed: speed(a, i),
                    is_static: a.class == AgentClass::Static,
                }];
                let m = step(
                    &StepInput {
                        ego: bx(&s.ego, i),
                        ego_speed: speed(&s.ego, i),
                        tracks: &tracks,
                        drivable: &[],
                        gt_path: None,
                        gt_here: None,
                        ttc: &TtcParams::default(),
                    },
                    &mut mem,
                );
                if m.collision_any {
                    hits.push((
                        a.id.clone(),
                        a.class,
                        m.collision_front || m.collision_lateral,
                        m.collision_rear,
                    ));
                }
            }
        }
        hits
    };
    for case in [
        "no_ego_at_fault_collision/active_front_collision.json",
        "no_ego_at_fault_collision/active_rear_collision.json",
        "no_ego_at_fault_collision/no_collision.json",
    ] {
        let hits = run(case);
        let mut at_fault: std::collections::BTreeMap<String, AgentClass> = Default::default();
        for (id, class, fault, _) in &hits {
            if *fault {
                at_fault.insert(id.clone(), *class);
            }
        }
        let count =
            |f: &dyn Fn(AgentClass) -> bool| at_fault.values().filter(|c| f(**c)).count() as f64;
        let got = [
            ("BOOLEAN", f64::from(u8::from(at_fault.is_empty()))),
            ("COUNT", at_fault.len() as f64),
            (
                "COUNT",
                count(&|c| matches!(c, AgentClass::Pedestrian | AgentClass::Cyclist)),
            ),
            ("COUNT", count(&|c| c == AgentClass::Vehicle)),
            (
                "COUNT",
                count(&|c| matches!(c, AgentClass::Static | AgentClass::Other)),
            ),
        ];
        let expected = util::nuplan_expected(&nuplan_dir().join(case));
        assert!(expected.len() >= got.len(), "{case}: {expected:?}");
        for ((kind, want), (gk, have)) in expected.iter().zip(got) {
            assert_eq!((kind.as_str(), *want), (gk, have), "{case}: {hits:?}");
        }
    }
    // The rear-ended ego: a contact, in the not-at-fault class.
    let rear = run("no_ego_at_fault_collision/active_rear_collision.json");
    assert!(
        !rear.is_empty() && rear.iter().all(|h| h.3 && !h.2),
        "{rear:?}"
    );
}

/// `simulate scenes` lists what each scene carries; its `--ids` output is a split file that
/// `simulate run --split` runs, and only those scenes.
#[test]
fn scene_catalogue_and_splits() {
    let exe = env!("CARGO_BIN_EXE_simulate");
    let scenes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let out = std::process::Command::new(exe)
        .args(["scenes", scenes.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("6 scenes in") && table.contains("DEU_A9-3_1_T-1"),
        "{table}"
    );
    let out = std::process::Command::new(exe)
        .args(["scenes", scenes.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().all(|r| r["duration_s"].as_f64().unwrap() > 0.0));
    let out = std::process::Command::new(exe)
        .args(["scenes", scenes.to_str().unwrap(), "--ids"])
        .output()
        .unwrap();
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), 6);
    let d = tempfile::tempdir().unwrap();
    let split = d.path().join("split.txt");
    std::fs::write(&split, format!("# two of them\n{}\n{}\n", ids[1], ids[3])).unwrap();
    let run = d.path().join("run");
    let out = std::process::Command::new(exe)
        .args([
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--split",
            split.to_str().unwrap(),
            "--quiet",
            "--video",
            "none",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut ran: Vec<String> = std::fs::read_dir(run.join("rollouts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ran.sort();
    let mut want = vec![ids[1].clone(), ids[3].clone()];
    want.sort();
    assert_eq!(ran, want);
    let cfg = std::fs::read_to_string(run.join("wizard-config.yaml")).unwrap();
    assert!(cfg.contains(&ids[1]) && !cfg.contains(&ids[0]), "{cfg}");
    // An empty split is an error naming the file.
    std::fs::write(&split, "# nothing\n").unwrap();
    let out = std::process::Command::new(exe)
        .args([
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            d.path().join("r2").to_str().unwrap(),
            "--split",
            split.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("split.txt: no scene ids"));
}
