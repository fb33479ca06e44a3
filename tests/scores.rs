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
