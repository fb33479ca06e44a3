//! The benchmark datasets' importers on real files: Waymo Open Motion (`womd/`, one Scenario in
//! TFRecord framing) and GPUDrive / Nocturne JSON (`gpudrive/`), read from `../shared/data` or
//! `$DRIVEKIT_DATASETS` — never copied into the repository (their licence forbids it). Their
//! decoded facts (`expected_summary.json`, written from Waymo's own generated Python classes and
//! from the JSON) are compared with what drivekit imports; log replay of every imported scene
//! stays on its recording; damaged inputs are named and skipped.

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use drivekit::scene::import::{import, import_to, ImportKind, ImportOptions};
use drivekit::scene::womd::proto;
use drivekit::scene::{tfrecord, AgentClass, Scene, SignalState};
use prost::Message;
use serde_json::Value;

fn summary(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("expected_summary.json")).unwrap()).unwrap()
}

fn simulate(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn womd_scenario_imports_with_waymos_own_decoded_facts() {
    let Some(dir) = util::dataset("womd", "datasets::womd_scenario_imports") else {
        return;
    };
    let want = &summary(&dir)["womd_scenario_input.tfrecord"];
    let (scenes, skipped) = import(
        ImportKind::Womd,
        &dir.join("womd_scenario_input.tfrecord"),
        &ImportOptions::default(),
    )
    .unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(scenes.len(), 1);
    let s = &scenes[0];
    assert_eq!(s.scene_id, want["scenario_id"].as_str().unwrap());
    assert_eq!(
        s.timestamps_us.len(),
        want["num_timesteps"].as_u64().unwrap() as usize
    );
    let first3: Vec<i64> = want["timestamps_first3"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t.as_f64().unwrap() * 1e6).round() as i64)
        .collect();
    assert_eq!(&s.timestamps_us[..3], first3.as_slice());
    assert_eq!(
        *s.timestamps_us.last().unwrap(),
        (want["timestamp_last"].as_f64().unwrap() * 1e6).round() as i64
    );
    assert_eq!(
        s.meta.current_time_index,
        Some(want["current_time_index"].as_u64().unwrap() as usize)
    );
    // Every track but the SDC is an agent; the types add up.
    assert_eq!(
        s.agents.len() + 1,
        want["num_tracks"].as_u64().unwrap() as usize
    );
    let count = |c: AgentClass| s.agents.iter().filter(|a| a.class == c).count();
    assert_eq!(
        count(AgentClass::Vehicle) + 1,
        want["track_types"]["TYPE_VEHICLE"].as_u64().unwrap() as usize
    );
    assert_eq!(
        count(AgentClass::Pedestrian),
        want["track_types"]["TYPE_PEDESTRIAN"].as_u64().unwrap() as usize
    );
    let valid: usize = std::iter::once(&s.ego)
        .chain(&s.agents)
        .map(|t| t.n_valid())
        .sum();
    assert_eq!(valid, want["total_valid_states"].as_u64().unwrap() as usize);
    // The SDC at the first, current and last step (f32 fields widened: compared at 1e-6).
    for (key, i) in [
        ("sdc_state_t0", 0),
        ("sdc_state_current", 10),
        ("sdc_state_last", 90),
    ] {
        let w = &want[key];
        let e = &s.ego;
        assert!(e.valid[i]);
        assert!(
            close(e.x[i], w["center_x"].as_f64().unwrap(), 1e-9),
            "{key} x"
        );
        assert!(
            close(e.y[i], w["center_y"].as_f64().unwrap(), 1e-9),
            "{key} y"
        );
        assert!(
            close(e.yaw[i], w["heading"].as_f64().unwrap(), 1e-6),
            "{key} heading"
        );
        assert!(
            close(e.vx[i], w["velocity_x"].as_f64().unwrap(), 1e-6),
            "{key} vx"
        );
        assert!(
            close(e.vy[i], w["velocity_y"].as_f64().unwrap(), 1e-6),
            "{key} vy"
        );
    }
    assert!(close(
        s.ego.length_m,
        want["sdc_state_current"]["length"].as_f64().unwrap(),
        1e-6
    ));
    assert!(close(
        s.ego.width_m,
        want["sdc_state_current"]["width"].as_f64().unwrap(),
        1e-6
    ));
    assert_eq!(
        s.meta.tracks_to_predict.len(),
        want["tracks_to_predict"].as_array().unwrap().len()
    );
    let ooi: Vec<String> = want["objects_of_interest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    assert_eq!(s.meta.objects_of_interest, ooi);
    // Map features by kind.
    let m = &want["map_feature_counts"];
    let n = |k: &str| m[k].as_u64().unwrap_or(0) as usize;
    assert_eq!(s.map.lanes.len(), n("lane"));
    assert_eq!(s.map.road_edges.len(), n("road_edge"));
    assert_eq!(s.map.road_lines.len(), n("road_line"));
    assert_eq!(s.map.crosswalks.len(), n("crosswalk"));
    assert_eq!(s.map.speed_bumps.len(), n("speed_bump"));
    assert_eq!(s.map.stop_signs.len(), n("stop_sign"));
    assert_eq!(s.map.driveways.len(), n("driveway"));
    let points: usize = s.map.lanes.iter().map(|l| l.centerline.len()).sum();
    assert_eq!(points, want["total_lane_points"].as_u64().unwrap() as usize);
    let fl = &want["first_lane"];
    let lane = &s.map.lanes[0];
    assert_eq!(lane.id, fl["id"].as_i64().unwrap());
    assert_eq!(lane.lane_type, fl["type"].as_str().unwrap());
    assert_eq!(
        lane.centerline.len(),
        fl["n_points"].as_u64().unwrap() as usize
    );
    assert!(close(
        lane.speed_limit_mps.unwrap(),
        fl["speed_limit_mph"].as_f64().unwrap() * 0.44704,
        1e-12
    ));
    let p = fl["first_point"].as_array().unwrap();
    assert!(close(lane.centerline[0][0], p[0].as_f64().unwrap(), 1e-9));
    assert!(close(lane.centerline[0][1], p[1].as_f64().unwrap(), 1e-9));
    // This scenario has no signal states (lane_states_total 0), and stop signs with lanes.
    assert_eq!(want["lane_states_total"].as_u64(), Some(0));
    assert!(s.signals.is_empty());
    assert!(s.map.stop_signs.iter().all(|x| !x.lanes.is_empty()));
    // The lane graph: WOMD's entry/exit lanes.
    assert!(
        s.map
            .lanes
            .iter()
            .filter(|l| !l.successors.is_empty())
            .count()
            > 50
    );
}

#[test]
fn gpudrive_scenes_import_in_both_schemas_with_their_counts() {
    let Some(dir) = util::dataset("gpudrive", "datasets::gpudrive_scenes_import") else {
        return;
    };
    let want = summary(&dir);
    for (file, w) in want.as_object().unwrap() {
        let s =
            drivekit::scene::gpudrive::import(&dir.join(file)).unwrap_or_else(|e| panic!("{e}"));
        let older = w["scenario_id"].is_null();
        if !older {
            assert_eq!(s.scene_id, w["scenario_id"].as_str().unwrap(), "{file}");
        }
        assert_eq!(
            s.agents.len() + 1,
            w["num_objects"].as_u64().unwrap() as usize,
            "{file}"
        );
        assert_eq!(
            s.timestamps_us.len(),
            w["num_timesteps"].as_u64().unwrap() as usize
        );
        let roads = &w["road_types"];
        let n = |k: &str| roads[k].as_u64().unwrap_or(0) as usize;
        assert_eq!(s.map.lanes.len(), n("lane"), "{file}");
        assert_eq!(s.map.road_edges.len(), n("road_edge"), "{file}");
        assert_eq!(s.map.road_lines.len(), n("road_line"), "{file}");
        assert_eq!(s.map.crosswalks.len(), n("crosswalk"), "{file}");
        assert_eq!(s.map.speed_bumps.len(), n("speed_bump"), "{file}");
        assert_eq!(s.map.stop_signs.len(), n("stop_sign"), "{file}");
        assert_eq!(s.map.driveways.len(), n("driveway"), "{file}");
        let valid: usize = std::iter::once(&s.ego)
            .chain(&s.agents)
            .map(|t| t.n_valid())
            .sum();
        assert_eq!(
            valid,
            w["num_valid_states"].as_u64().unwrap() as usize,
            "{file}"
        );
        assert_eq!(
            s.signals.len(),
            w["tl_lanes"].as_u64().unwrap() as usize,
            "{file}"
        );
        if let Some(sdc) = w.get("sdc") {
            let e = &s.ego;
            assert!(close(
                e.x[0],
                sdc["position_t0"]["x"].as_f64().unwrap(),
                1e-9
            ));
            assert!(close(
                e.y[0],
                sdc["position_t0"]["y"].as_f64().unwrap(),
                1e-9
            ));
            assert!(close(e.yaw[0], sdc["heading_t0"].as_f64().unwrap(), 1e-12));
            assert!(close(
                e.vx[0],
                sdc["velocity_t0"]["x"].as_f64().unwrap(),
                1e-12
            ));
            assert_eq!(e.n_valid(), sdc["valid_count"].as_u64().unwrap() as usize);
            assert!(close(e.length_m, sdc["length"].as_f64().unwrap(), 1e-12));
        } else {
            // The older schema: headings were degrees.
            assert!(std::iter::once(&s.ego)
                .chain(&s.agents)
                .all(|t| (0..t.valid.len()).all(|i| !t.valid[i] || t.yaw[i].abs() <= 7.0)));
            assert!(s.tags.contains(&"nocturne".to_string()));
        }
        if w["tl_lanes"].as_u64().unwrap() > 0 {
            let states: usize = s
                .signals
                .iter()
                .map(|x| x.states.iter().filter(|st| st.is_red()).count())
                .sum();
            assert!(states > 0, "{file}: red states");
            assert!(s.signals.iter().all(|x| x.stop_point.is_some()));
            assert!(s
                .signals
                .iter()
                .any(|x| x.states.contains(&SignalState::Go)));
        }
    }
}

/// Log replay of every imported real scene stays on its recording: no distance to it, and no
/// collision or offroad the simulator would have caused.
#[test]
fn log_replay_of_womd_and_gpudrive_scenes_stays_on_the_recording() {
    let (Some(womd), Some(gpu)) = (
        util::dataset("womd", "datasets::log_replay"),
        util::dataset("gpudrive", "datasets::log_replay"),
    ) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let scenes = d.path().join("scenes");
    for (kind, input) in [("womd", &womd), ("gpudrive", &gpu)] {
        let out = simulate(&[
            "import",
            kind,
            input.to_str().unwrap(),
            "-o",
            scenes.to_str().unwrap(),
            "--quiet",
        ]);
        // gpudrive/ also holds expected_summary.json, which is named and skipped (exit 1).
        assert!(
            out.status.code() == Some(0) || kind == "gpudrive",
            "{}",
            text(&out)
        );
        assert!(text(&out).contains("skipped"), "{}", text(&out));
    }
    let run = d.path().join("run");
    let out = simulate(&[
        "run",
        "--scenes",
        scenes.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--video",
        "none",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let v = util::metric_values(&run);
    let clips: std::collections::BTreeSet<&String> = v.keys().map(|k| &k.0).collect();
    assert_eq!(clips.len(), 5, "{clips:?}");
    for ((clip, _, name), values) in &v {
        match name.as_str() {
            "dist_to_gt_trajectory" => {
                assert!(values.iter().all(|x| *x < 1e-6), "{clip}: {values:?}")
            }
            "collision_any" | "offroad" => {
                assert!(
                    values.iter().all(|x| *x == 0.0),
                    "{clip} {name}: {values:?}"
                )
            }
            _ => {}
        }
    }
}

fn scenario(dir: &Path) -> proto::Scenario {
    let bytes = fs::read(dir.join("womd_scenario_input.tfrecord")).unwrap();
    let (_, data) = tfrecord::Records::open(&dir.join("womd_scenario_input.tfrecord"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(data.len() + 16 == bytes.len());
    proto::Scenario::decode(data.as_slice()).unwrap()
}

/// Damaged WOMD input: each bad scenario is named (file, byte offset, scenario, problem) and
/// skipped, a bad record ends its file, the other files go on, the count is printed.
#[test]
fn damaged_womd_records_are_named_and_skipped() {
    let Some(dir) = util::dataset("womd", "datasets::damaged_womd") else {
        return;
    };
    let good = scenario(&dir);
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    fs::create_dir_all(&input).unwrap();
    let with_id = |mut s: proto::Scenario, id: &str| {
        s.scenario_id = Some(id.into());
        s
    };
    let mut no_sdc = with_id(good.clone(), "no-sdc");
    no_sdc.sdc_track_index = None;
    let mut empty_map = with_id(good.clone(), "empty-map");
    empty_map.map_features.clear();
    let mut ego_invalid = with_id(good.clone(), "ego-invalid");
    let sdc = ego_invalid.sdc_track_index() as usize;
    for st in &mut ego_invalid.tracks[sdc].states {
        st.valid = Some(false);
    }
    let mut shard = Vec::new();
    for s in [
        with_id(good.clone(), "good-1"),
        no_sdc,
        empty_map,
        ego_invalid,
        with_id(good.clone(), "good-2"),
    ] {
        shard.extend(tfrecord::frame(&s.encode_to_vec()));
    }
    fs::write(input.join("training.tfrecord-00000-of-00003"), &shard).unwrap();
    // A shard whose second record's data is damaged, and one cut short.
    let a = tfrecord::frame(&with_id(good.clone(), "good-3").encode_to_vec());
    let mut b = tfrecord::frame(&with_id(good.clone(), "lost").encode_to_vec());
    b[100] ^= 0xff;
    fs::write(
        input.join("training.tfrecord-00001-of-00003"),
        [a.clone(), b].concat(),
    )
    .unwrap();
    let c = tfrecord::frame(&with_id(good.clone(), "good-4").encode_to_vec());
    fs::write(
        input.join("training.tfrecord-00002-of-00003"),
        [c.clone(), c[..c.len() / 2].to_vec()].concat(),
    )
    .unwrap();
    let out_dir = d.path().join("out");
    let out = simulate(&[
        "import",
        "womd",
        input.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--quiet",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(
        t.contains("4 scene(s) from 3 input(s)") && t.contains("5 skipped"),
        "{t}"
    );
    let off = |k: usize| -> usize {
        // Byte offset of record k of the first shard.
        let mut o = 0;
        let mut rest = shard.as_slice();
        for _ in 0..k {
            let len = u64::from_le_bytes(rest[..8].try_into().unwrap()) as usize;
            o += len + 16;
            rest = &rest[len + 16..];
        }
        o
    };
    for (k, id, why) in [
        (1, "no-sdc", "no sdc_track_index"),
        (2, "empty-map", "empty map"),
        (3, "ego-invalid", "never valid"),
    ] {
        let want = format!("record at byte {}: scenario {id}: ", off(k));
        assert!(
            t.contains(&want) && t.contains(why),
            "{want} / {why} in\n{t}"
        );
    }
    assert!(
        t.contains(&format!(
            "record at byte {}: data CRC-32C mismatch",
            a.len()
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!("truncated record at byte {}", c.len())),
        "{t}"
    );
    for id in ["good-1", "good-2", "good-3", "good-4"] {
        let s = Scene::load(&out_dir.join(format!("{id}.dkscene"))).unwrap();
        assert_eq!(s.agents.len(), 256);
    }
    // No input of the kind at all: exit 2 with the directory named.
    let out = simulate(&["import", "womd", out_dir.to_str().unwrap(), "-o", "/tmp/x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("no TFRecord files found"),
        "{}",
        text(&out)
    );
    // A glob of shards.
    let glob = format!("{}/training.tfrecord-0000[01]-*", input.display());
    let report = import_to(
        ImportKind::Womd,
        &[PathBuf::from(glob)],
        &d.path().join("g"),
        &ImportOptions::default(),
    )
    .unwrap();
    assert_eq!(
        (report.inputs, report.written.len(), report.skipped.len()),
        (2, 3, 4)
    );
}

/// Damaged GPUDrive input: wrong schema, bad JSON, no ego — named and skipped.
#[test]
fn bad_gpudrive_json_is_named_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join("a.json"), "{\"objects\": [").unwrap();
    fs::write(d.path().join("b.json"), "{\"name\": \"x\", \"roads\": []}").unwrap();
    fs::write(
        d.path().join("c.json"),
        "{\"scenario_id\": \"c\", \"objects\": [{\"position\": [{\"x\": 0, \"y\": 0}], \"heading\": [0], \"velocity\": [{\"x\": 0, \"y\": 0}], \"valid\": [false], \"width\": 2, \"length\": 4, \"type\": \"vehicle\"}], \"roads\": [{\"type\": \"road_edge\", \"geometry\": [{\"x\": 0, \"y\": 5}, {\"x\": 9, \"y\": 5}]}], \"metadata\": {\"sdc_track_index\": 0, \"tracks_to_predict\": [], \"objects_of_interest\": []}}",
    )
    .unwrap();
    let (scenes, skipped) =
        import(ImportKind::Gpudrive, d.path(), &ImportOptions::default()).unwrap();
    assert!(scenes.is_empty());
    let all = skipped.join("\n");
    assert!(all.contains("a.json: invalid JSON at line 1"), "{all}");
    assert!(
        all.contains("b.json: not a GPUDrive/Nocturne scene: no `objects` list"),
        "{all}"
    );
    assert!(all.contains("c.json: the ego is never valid"), "{all}");
    let out = simulate(&[
        "import",
        "gpudrive",
        d.path().to_str().unwrap(),
        "-o",
        d.path().join("o").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("nothing imported: 3 input(s) skipped"),
        "{}",
        text(&out)
    );
}
