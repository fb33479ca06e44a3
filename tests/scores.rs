//! Benchmark score profiles against the peers' own numbers: nuPlan's comfort cases (each JSON's
//! `expected` block, motional/nuplan-devkit), NAVSIM's result files (every row's score from its
//! metric columns: v1.1 bit for bit, v2 within 1e-12) and the rollout metrics of a simulated run.

mod util;

use std::fs;
use std::path::Path;

use drivekit::metrics::nuplan_comfort::{self, ComfortSignals, EgoSeries};
use drivekit::metrics::profiles::{navsim_epdms, navsim_pdms};

/// A nuPlan case's ego states (the initial one, then `ego_future_states`).
fn ego_states(case: &Path) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(case).unwrap()).unwrap();
    let mut s = vec![v["ego"].clone()];
    s.extend(v["ego_future_states"].as_array().unwrap().iter().cloned());
    s
}

fn xy(v: &serde_json::Value) -> [f64; 2] {
    [v[0].as_f64().unwrap(), v[1].as_f64().unwrap()]
}

/// The case's states as nuPlan's `EgoState`s give them to the comfort metrics: rear-axle
/// acceleration from the JSON, no angular velocity (so the centre's acceleration is the rear
/// axle's).
fn series(case: &Path) -> EgoSeries {
    let states = ego_states(case);
    let acc: Vec<[f64; 2]> = states.iter().map(|s| xy(&s["acceleration"])).collect();
    EgoSeries {
        time_us: states
            .iter()
            .map(|s| s["time_us"].as_i64().unwrap())
            .collect(),
        heading: states
            .iter()
            .map(|s| s["pose"][2].as_f64().unwrap())
            .collect(),
        center_accel_x: acc.iter().map(|a| a[0]).collect(),
        center_accel_y: acc.iter().map(|a| a[1]).collect(),
        accel_magnitude: acc.iter().map(|a| a[0].hypot(a[1])).collect(),
    }
}

fn two_decimals(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// The case's `expected.time_series.values`.
fn expected_series(case: &Path) -> Vec<f64> {
    let v: serde_json::Value = serde_json::from_str(&fs::read_to_string(case).unwrap()).unwrap();
    v["expected"]["time_series"]["values"]
        .as_array()
        .map(|a| a.iter().map(|x| x.as_f64().unwrap()).collect())
        .unwrap_or_default()
}

/// Compares as nuPlan's own metric tests do (nuplan-devkit's `metric_statistic_test`): each
/// statistic with `np.isclose(expected, value, atol=1e-2)` (rtol 1e-5), the time series rounded
/// to 2 decimals and compared equal.
fn assert_matches(case: &Path, signal: &[f64], bounded: Option<bool>) {
    let stats = nuplan_comfort::statistics(signal).unwrap();
    let expected = util::nuplan_expected(case);
    assert!(!expected.is_empty());
    for (kind, want) in &expected {
        let have = match kind.as_str() {
            "MAX" => stats[0],
            "MIN" => stats[1],
            "MEAN" => stats[2],
            "P90" => stats[3],
            "BOOLEAN" => f64::from(u8::from(bounded.expect("a bounded metric"))),
            other => panic!("{}: statistic {other}", case.display()),
        };
        assert!(
            (have - want).abs() <= 1e-2 + 1e-5 * want.abs(),
            "{} {kind}: {have} vs nuPlan's {want}",
            case.display()
        );
    }
    let want = expected_series(case);
    assert_eq!(want.len(), signal.len(), "{}", case.display());
    for (k, (h, w)) in signal.iter().zip(&want).enumerate() {
        assert_eq!(
            two_decimals(*h),
            two_decimals(*w),
            "{} sample {k}",
            case.display()
        );
    }
}

#[test]
fn nuplan_comfort_cases_give_nuplans_expected_statistics() {
    let cases = util::test_data().join("nuplan_metric_cases");
    let acc = cases.join("ego_acceleration/ego_acceleration.json");
    let s = ComfortSignals::of(&series(&acc)).unwrap();
    assert_matches(&acc, &s.acceleration, None);

    let jerk = cases.join("ego_jerk/ego_jerk.json");
    let s = ComfortSignals::of(&series(&jerk)).unwrap();
    let limits = drivekit::metrics::comfort::ComfortLimits::default();
    let bounded = s.within_bounds(&limits)[2];
    assert_matches(&jerk, &s.jerk, Some(bounded));

    // ego_mean_speed: the mean of the rear-axle speeds.
    let speed = cases.join("ego_mean_speed/ego_mean_speed.json");
    let v: Vec<f64> = ego_states(&speed)
        .iter()
        .map(|s| {
            let v = xy(&s["velocity"]);
            v[0].hypot(v[1])
        })
        .collect();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let expected = util::nuplan_expected(&speed);
    assert_eq!(expected[0].0, "VALUE");
    assert!((mean - expected[0].1).abs() <= 1e-2 + 1e-5 * expected[0].1.abs());
}

/// A CSV's rows as header → value maps.
fn csv_rows(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    lines
        .map(|l| {
            header
                .iter()
                .cloned()
                .zip(l.split(',').map(str::to_string))
                .collect()
        })
        .collect()
}

#[test]
fn navsim_v1_result_rows_reproduce_bit_for_bit() {
    let Some(dir) = util::dataset("peer_results/navsim", "scores::navsim_v1_result_rows") else {
        return;
    };
    let file =
        dir.join("LUOaini1213_navsim-ability-ladder__e0ef3e2__per_scene_human_agent_mini.csv");
    let rows = csv_rows(&file);
    let mut n = 0;
    for r in rows.iter().filter(|r| r["token"] != "average") {
        let f = |k: &str| r[k].parse::<f64>().unwrap();
        let score = navsim_pdms(
            f("no_at_fault_collisions"),
            f("drivable_area_compliance"),
            f("ego_progress"),
            f("time_to_collision_within_bound"),
            f("comfort"),
            f("driving_direction_compliance"),
        );
        assert_eq!(score, f("score"), "token {}", r["token"]);
        n += 1;
    }
    assert_eq!(n, 563, "every token row of the file");
}

#[test]
fn navsim_v2_result_rows_reproduce() {
    let Some(dir) = util::dataset("peer_results/navsim", "scores::navsim_v2_result_rows") else {
        return;
    };
    let file =
        dir.join("WZiang_navsim-score-basis-audit__9c934ad__human_replay_stock_nonreactive.csv");
    let rows = csv_rows(&file);
    let (mut n, mut worst) = (0, 0.0f64);
    for r in rows
        .iter()
        .filter(|r| r["token"] != "aggregate_summary_row")
    {
        let f = |k: &str| r[k].parse::<f64>().unwrap();
        // The file has no extended-comfort column: v2 drops EC's weight (/14).
        let score = navsim_epdms(
            f("no_at_fault_collisions"),
            f("drivable_area_compliance"),
            f("driving_direction_compliance"),
            f("traffic_light_compliance"),
            f("ego_progress"),
            f("time_to_collision_within_bound"),
            f("lane_keeping"),
            f("history_comfort"),
            None,
        );
        worst = worst.max((score - f("score")).abs());
        n += 1;
    }
    assert_eq!(n, 12146, "every token row of the file");
    assert!(worst <= 1e-12, "largest difference {worst}");
}

/// A simulated run through `aggregate`: every profile scored, each score column equal to the
/// profile's formula applied to the rollout metrics in results-summary.json (recomputed here), the
/// peers' conventions in the report, the scores per scene tag, and a run without rollout metrics
/// (the bundled synthetic one) leaving those profiles out with the reason.
#[test]
fn simulated_run_gets_every_profile() {
    use drivekit::scene::Scene;
    let d = tempfile::tempdir().unwrap();
    let scenes = d.path().join("scenes");
    fs::create_dir_all(&scenes).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let mut tagged = 0;
    for (i, e) in fs::read_dir(&fixtures).unwrap().enumerate() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "dkscene") {
            continue;
        }
        let mut s = Scene::load(&p).unwrap();
        s.tags = if i % 2 == 0 {
            tagged += 1;
            vec!["even".into(), "all".into()]
        } else {
            vec!["all".into()]
        };
        s.save(&scenes.join(p.file_name().unwrap())).unwrap();
    }
    let run = d.path().join("run");
    let out = util::bin(
        "simulate",
        &[
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--rollouts",
            "2",
            "--driver",
            "idm",
            "--traffic",
            "idm",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = util::bin("aggregate", &[run.to_str().unwrap(), "-q"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agg = run.join("aggregate");
    let txt = fs::read_to_string(agg.join("metrics_results.txt")).unwrap();
    assert!(txt.contains("Benchmark scores"), "{txt}");
    for s in [
        "nuplan_cls",
        "navsim_pdms",
        "navsim_epdms",
        "carla_ds",
        "alpasim_score",
        "waymax_log_divergence",
    ] {
        assert!(txt.contains(s), "{s} in the report");
    }
    assert!(txt.contains("nuPlan: failed dropped") && txt.contains("CARLA: failed = 0"));
    assert!(txt.contains("Benchmark scores by scene tag"));
    assert!(txt.lines().all(|l| l.chars().count() <= 160));

    // Each trajectory's scores from its rollout metrics, by the peers' formulas written out here.
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(agg.join("results-summary.json")).unwrap())
            .unwrap();
    let rollouts = summary["rollouts"].as_array().unwrap();
    assert_eq!(rollouts.len(), 12);
    for r in rollouts {
        let m = &r["metrics"];
        let g = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k} in {m}"));
        let mut mult = g("nuplan_no_ego_at_fault_collisions")
            * g("nuplan_drivable_area_compliance")
            * g("nuplan_ego_is_making_progress");
        if m.get("nuplan_driving_direction_compliance")
            .is_some_and(|v| !v.is_null())
        {
            mult *= g("nuplan_driving_direction_compliance");
        }
        let cls = mult
            * (5.0 * g("nuplan_ego_progress_along_expert_route")
                + 5.0 * g("nuplan_time_to_collision_within_bound")
                + 2.0 * g("nuplan_ego_is_comfortable"))
            / 12.0;
        assert!((g("nuplan_cls") - cls).abs() < 1e-12, "{m}");
        let nc_dac = g("navsim_no_at_fault_collisions") * g("nuplan_drivable_area_compliance");
        let (ego, expert) = (
            g("ego_route_progress_m").max(0.0),
            g("expert_route_progress_m"),
        );
        let max = (ego * nc_dac).max(expert);
        let ep = if max > 5.0 { ego * nc_dac / max } else { 1.0 };
        let pdms = nc_dac
            * (5.0 * ep
                + 5.0 * g("navsim_time_to_collision_within_bound")
                + 2.0 * g("nuplan_ego_is_comfortable"))
            / 12.0;
        assert!((g("navsim_pdms") - pdms).abs() < 1e-12, "{m}");
        let penalty = 0.5f64.powf(g("carla_collisions_pedestrian"))
            * 0.6f64.powf(g("carla_collisions_vehicle"))
            * 0.65f64.powf(g("carla_collisions_layout"))
            * 0.7f64.powf(g("carla_red_light"))
            * 0.8f64.powf(g("carla_stop_sign"))
            * (1.0 - g("carla_outside_route_lanes") / 100.0);
        assert!(
            (g("carla_ds") - g("carla_route_completion") * penalty).abs() < 1e-9,
            "{m}"
        );
        assert_eq!(g("alpasim_score"), r["score"].as_f64().unwrap());
    }

    // Per tag: "all" holds every trajectory, "even" the tagged scenes' ones.
    let by_tag = agg.join("metrics_results_by_tag.parquet");
    let file = fs::File::open(&by_tag).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for b in reader {
        let b = b.unwrap();
        let tags = b.column_by_name("tag").unwrap();
        let tags = tags
            .as_any()
            .downcast_ref::<arrow_array::StringArray>()
            .unwrap();
        let n = b.column_by_name("n_rollouts").unwrap();
        let n = n
            .as_any()
            .downcast_ref::<arrow_array::UInt32Array>()
            .unwrap();
        assert!(b.column_by_name("nuplan_cls_p95").is_some());
        for i in 0..b.num_rows() {
            counts.insert(tags.value(i).to_string(), n.value(i));
        }
    }
    assert_eq!(counts["all"], 12);
    assert_eq!(counts["even"], 2 * tagged);

    // The bundled synthetic run has no rollout metrics: those profiles are left out, saying why.
    let old = d.path().join("old");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/runs/demo");
    let status = std::process::Command::new("cp")
        .args(["-r", src.to_str().unwrap(), old.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = util::bin(
        "aggregate",
        &[old.to_str().unwrap(), "-q", "--profiles", "nuplan,alpasim"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let txt = fs::read_to_string(old.join("aggregate/metrics_results.txt")).unwrap();
    assert!(
        txt.contains("nuplan: left out — needs nuplan_no_ego_at_fault_collisions"),
        "{txt}"
    );
    assert!(txt.contains("alpasim_score") && !txt.contains("navsim_pdms"));
    let out = util::bin(
        "aggregate",
        &[old.to_str().unwrap(), "--profiles", "nuplan,bogus"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown score profile `bogus`"));
}
