//! `aggregate` on other benchmarks' result files. Every real file in
//! `../shared/data/peer_results` (written by the benchmarks' own code; not redistributable, so read
//! from there) reproduces its own stored global numbers; small files written here test merging,
//! duplicates, missing routes, bad input, `--validate` and `--compare`.

mod util;

use std::fs;
use std::path::{Path, PathBuf};

use drivekit::peer_results::{self, Format};

fn read(p: &Path) -> peer_results::PeerResults {
    peer_results::read(&[p.to_path_buf()], None, false)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn carla_files_reproduce_their_global_records() {
    let Some(dir) = util::dataset("peer_results/carla", "peer_results::carla_files") else {
        return;
    };
    let mut checked = 0;
    for f in files(&dir, "json") {
        let r = read(&f);
        assert_eq!(r.format, Format::Carla, "{}", f.display());
        let bad: Vec<_> = r.checks.iter().filter(|c| !c.equal).collect();
        assert!(bad.is_empty(), "{}: {bad:?}", f.display());
        if r.checks.is_empty() {
            // The one unfinished run: named, its records still aggregated.
            assert!(
                r.problems
                    .iter()
                    .any(|p| p.contains("unfinished run (entry_status Crashed")),
                "{}: {:?}",
                f.display(),
                r.problems
            );
            assert_eq!(r.units.len(), 4);
        } else {
            checked += 1;
            assert!(r.checks.iter().any(|c| c.name.ends_with("score_composed")));
        }
    }
    assert_eq!(checked, 9, "nine finished files");
    // The rules differ: LB 1.0's 2020 km bug, LB 1.0 2021, LB 2.0 2022–23 and 2.x 2024 are all
    // among them.
    let rules: std::collections::BTreeSet<String> =
        files(&dir, "json").iter().map(|f| read(f).rule).collect();
    assert!(
        rules.iter().any(|r| r.contains("km without /100")),
        "{rules:?}"
    );
    assert!(rules.iter().any(|r| r.contains("2022-10")), "{rules:?}");
    assert!(rules.iter().any(|r| r.contains("2024 on")), "{rules:?}");
}

#[test]
fn bench2drive_reproduces_driving_score_and_success_rate() {
    let Some(dir) = util::dataset("peer_results/bench2drive", "peer_results::bench2drive") else {
        return;
    };
    for f in files(&dir, "json") {
        let r = read(&f);
        assert_eq!(r.format, Format::Bench2Drive);
        assert_eq!(r.mismatches(), 0, "{}: {:?}", f.display(), r.checks);
        assert!(r.checks.iter().any(|c| c.name == "success rate" && c.equal));
        assert_eq!(r.planned, Some(220));
    }
    // A folder of per-route files: each file's own global record, and DS / SR over 220 routes
    // (recomputed here as merge_route_json.py does).
    let folder = dir.join("lloitesa013_lead_tfv6_per_route");
    let r = read(&folder);
    assert_eq!(
        r.mismatches(),
        0,
        "{:?}",
        r.checks.iter().find(|c| !c.equal)
    );
    assert!(r.checks.len() > 200, "every finished file checked");
    let ds: f64 = r.units.iter().filter_map(|u| u.score).sum::<f64>() / 220.0;
    let got = r
        .globals
        .iter()
        .find(|(k, _)| k == "driving score")
        .unwrap()
        .1;
    assert!((got - ds).abs() < 1e-9);
    assert!(r
        .problems
        .iter()
        .any(|p| p.contains("of 220 planned routes have no record")));
    assert!(r
        .problems
        .iter()
        .any(|p| p.contains("entry_status Started")));
}

#[test]
fn navsim_files_reproduce_rows_and_average() {
    let Some(dir) = util::dataset("peer_results/navsim", "peer_results::navsim") else {
        return;
    };
    let v11 = read(
        &dir.join("LUOaini1213_navsim-ability-ladder__e0ef3e2__per_scene_human_agent_mini.csv"),
    );
    assert!(v11.rule.contains("v1.1"));
    assert_eq!(v11.mismatches(), 0, "{:?}", v11.checks);
    // The average row (numpy's pairwise sum order) for all seven columns, and every row.
    assert_eq!(v11.checks.len(), 8);
    assert!(v11.checks[0].computed.starts_with("563 of 563 rows equal"));
    let v2 = read(
        &dir.join("WZiang_navsim-score-basis-audit__9c934ad__human_replay_stock_nonreactive.csv"),
    );
    assert!(v2.rule.contains("v2"));
    assert!(v2.checks[0].equal, "{:?}", v2.checks[0]);
    // That file's summary row was written by its authors' tool with math.fsum, not pandas: said.
    let differs: Vec<_> = v2.checks.iter().filter(|c| !c.equal).collect();
    assert!(!differs.is_empty());
    assert!(
        differs
            .iter()
            .all(|c| c.computed.contains("math.fsum mean")),
        "{differs:?}"
    );
}

/// A LB 2.x checkpoint with the given (route id, route %, penalty) records and `planned` routes;
/// its stored global record filled in as the leaderboard computes it (so the file is consistent).
fn checkpoint(records: &[(&str, f64, f64)], planned: usize, sensors: &str) -> serde_json::Value {
    let recs: Vec<serde_json::Value> = records
        .iter()
        .enumerate()
        .map(|(i, (id, route, penalty))| {
            serde_json::json!({
                "index": i, "route_id": id, "status": if *route == 100.0 { "Completed" } else { "Failed - Agent timed out" },
                "infractions": {"collisions_vehicle": if *penalty < 1.0 { vec!["Agent collided"] } else { vec![] }},
                "scores": {"score_route": route, "score_penalty": penalty, "score_composed": route * penalty},
                "meta": {"route_length": 1000.0},
            })
        })
        .collect();
    let t = planned as f64;
    let mean = |f: &dyn Fn(f64, f64) -> f64| {
        let m: f64 = records.iter().map(|(_, r, p)| f(*r, *p) / t).sum();
        (m * 1e6).round() / 1e6
    };
    serde_json::json!({
        "_checkpoint": {
            "progress": [records.len(), planned],
            "records": recs,
            "global_record": {
                "scores_mean": {
                    "score_composed": mean(&|r, p| r * p),
                    "score_route": mean(&|r, _| r),
                    "score_penalty": mean(&|_, p| p),
                },
                "status": "Failed",
            },
        },
        "entry_status": "Finished",
        "sensors": [sensors],
    })
}

#[test]
fn shards_merge_with_duplicates_missing_routes_and_configurations_checked() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("shard_a.json");
    let b = d.path().join("shard_b.json");
    fs::write(
        &a,
        checkpoint(&[("r0", 100.0, 0.6), ("r1", 50.0, 1.0)], 2, "cam").to_string(),
    )
    .unwrap();
    fs::write(
        &b,
        checkpoint(&[("r1", 40.0, 1.0), ("r2", 100.0, 1.0)], 2, "cam").to_string(),
    )
    .unwrap();
    let out = util::bin(
        "aggregate",
        &[
            a.to_str().unwrap(),
            b.to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
            "--validate",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("duplicate route r1: in"), "{text}");
    assert!(
        text.contains("shard_a.json and") || text.contains("shard_a.json"),
        "{text}"
    );
    // Three distinct routes: r0 (60), r1 from the first shard (50), r2 (100).
    let r = peer_results::read(&[a.clone(), b.clone()], None, false).unwrap();
    assert_eq!(r.units.len(), 3);
    let ds = r
        .globals
        .iter()
        .find(|(k, _)| k == "Avg. driving score")
        .unwrap()
        .1;
    assert_eq!(ds, 70.0);
    // Each shard's stored record is consistent with its own records.
    assert_eq!(r.mismatches(), 0, "{:?}", r.checks);
    let summary: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.path().join("o/results-summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["units"].as_array().unwrap().len(), 3);
    let pq = fs::File::open(d.path().join("o/metrics_results.parquet")).unwrap();
    let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(pq)
        .unwrap()
        .build()
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert!(batch.column_by_name("score_p95").is_some());
    assert!(batch.column_by_name("score_ci95_low").is_some());

    // Different sensors: refused, unless --allow-mixed-config.
    let c = d.path().join("shard_c.json");
    fs::write(
        &c,
        checkpoint(&[("r3", 100.0, 1.0)], 1, "lidar").to_string(),
    )
    .unwrap();
    let out = util::bin(
        "aggregate",
        &[
            a.to_str().unwrap(),
            c.to_str().unwrap(),
            "--out",
            d.path().join("o2").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("different sensors"));
    let out = util::bin(
        "aggregate",
        &[
            a.to_str().unwrap(),
            c.to_str().unwrap(),
            "--allow-mixed-config",
            "-q",
            "--out",
            d.path().join("o2").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "merged, the difference reported"
    );

    // A stored number changed by hand: --validate exits 1 naming it with both numbers.
    let mut v = checkpoint(&[("r0", 100.0, 0.6)], 1, "cam");
    v["_checkpoint"]["global_record"]["scores_mean"]["score_composed"] = serde_json::json!(61.0);
    let e = d.path().join("edited.json");
    fs::write(&e, v.to_string()).unwrap();
    let out = util::bin(
        "aggregate",
        &[
            e.to_str().unwrap(),
            "--validate",
            "--out",
            d.path().join("o3").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("DIFFERS scores_mean.score_composed: recomputed 60, stored 61"),
        "{text}"
    );
    let out = util::bin(
        "aggregate",
        &[
            e.to_str().unwrap(),
            "-q",
            "--out",
            d.path().join("o3").to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --validate a difference is reported only"
    );
}

#[test]
fn bad_input_is_named() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("truncated.json");
    let full = checkpoint(&[("r0", 100.0, 1.0)], 1, "cam").to_string();
    fs::write(&t, &full[..full.len() / 2]).unwrap();
    let out = util::bin(
        "aggregate",
        &[
            t.to_str().unwrap(),
            "--format",
            "carla",
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("truncated.json") && err.contains("not valid JSON"),
        "{err}"
    );
    // Among shards a broken file is left out, the rest aggregated.
    let good = d.path().join("good.json");
    fs::write(&good, &full).unwrap();
    let r = peer_results::read(&[good.clone(), t.clone()], Some(Format::Carla), false).unwrap();
    assert_eq!(r.units.len(), 1);
    assert!(r
        .problems
        .iter()
        .any(|p| p.contains("truncated.json") && p.contains("left out")));
    // A CSV with other columns is not a NAVSIM file; forced, it names its columns.
    let csv = d.path().join("other.csv");
    fs::write(&csv, "token,foo,score\na,1,1\n").unwrap();
    let out = util::bin(
        "aggregate",
        &[
            csv.to_str().unwrap(),
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let out = util::bin(
        "aggregate",
        &[
            csv.to_str().unwrap(),
            "--format",
            "navsim",
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("columns token, foo, score"));
}

/// A NAVSIM v1.1 CSV of `(token, EP)` rows (other metrics 1), with its average row as pandas
/// writes it.
fn navsim_csv(rows: &[(&str, f64)]) -> String {
    let mut s = String::from(",token,valid,no_at_fault_collisions,drivable_area_compliance,ego_progress,time_to_collision_within_bound,comfort,driving_direction_compliance,score\n");
    let mut scores = Vec::new();
    for (i, (t, ep)) in rows.iter().enumerate() {
        let score = drivekit::metrics::profiles::navsim_pdms(1.0, 1.0, *ep, 1.0, 1.0, 1.0);
        scores.push(score);
        s.push_str(&format!("{i},{t},True,1.0,1.0,{ep},1.0,1.0,1.0,{score}\n"));
    }
    let eps: Vec<f64> = rows.iter().map(|r| r.1).collect();
    let m = |v: &[f64]| drivekit::peer_results::navsim::pandas_mean(v);
    s.push_str(&format!(
        "{},average,True,1.0,1.0,{},1.0,1.0,1.0,{}\n",
        rows.len(),
        m(&eps),
        m(&scores)
    ));
    s
}

#[test]
fn compare_two_agents_pairs_tokens() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.csv");
    let b = d.path().join("b.csv");
    fs::write(&a, navsim_csv(&[("t1", 0.9), ("t2", 0.5), ("t3", 0.7)])).unwrap();
    fs::write(&b, navsim_csv(&[("t1", 0.8), ("t2", 0.6), ("t4", 0.7)])).unwrap();
    let out = util::bin(
        "aggregate",
        &[
            a.to_str().unwrap(),
            "--compare",
            b.to_str().unwrap(),
            "--validate",
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Paired units: 2 (only in current: 1, only in baseline: 1)"),
        "{text}"
    );
    assert!(text.contains("| t2 |"), "t2 got worse: {text}");
    let c: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.path().join("o/comparison.json")).unwrap())
            .unwrap();
    assert_eq!(c["worse"][0][0], "t2");
}

#[test]
fn nuplan_devkit_outputs_reproduce() {
    if let Some(dir) = util::dataset(
        "peer_results/nuplan/LucasChen-Turing_nuPlan-BM",
        "peer_results::nuplan_files",
    ) {
        let r = read(&dir);
        assert_eq!(r.format, Format::Nuplan);
        assert_eq!(r.mismatches(), 0, "{:?}", r.checks);
        assert!(r.checks.iter().any(|c| c.name == "final_score"));
        assert!(r
            .counts
            .iter()
            .any(|(k, n)| k == "simulations succeeded" && *n == 1));
        assert!(r.problems.is_empty(), "{:?}", r.problems);
    }

    // A small aggregator output written here: three scenarios of two types, with nuPlan's
    // numbers filled in by hand, and a runner report where one simulation failed.
    use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let write = |path: &Path, cols: Vec<(&str, ArrayRef)>| {
        let batch = RecordBatch::try_from_iter(cols).unwrap();
        let f = fs::File::create(path).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    };
    let s1 = (5.0 * 0.8 + 5.0 + 2.0) / 12.0;
    let s3 = 0.5 * ((5.0 + 0.0 + 2.0) / 12.0);
    let (a, b) = ((s1 + 0.0) / 2.0, s3);
    let fin = (a * 2.0 + b) / 3.0;
    let agg = |final_score: f64| -> Vec<(&'static str, ArrayRef)> {
        let s = |v: Vec<Option<&str>>| Arc::new(StringArray::from(v)) as ArrayRef;
        let f = |v: Vec<Option<f64>>| Arc::new(Float64Array::from(v)) as ArrayRef;
        vec![
            (
                "scenario",
                s(vec![
                    Some("s1"),
                    Some("s2"),
                    Some("s3"),
                    Some("A"),
                    Some("B"),
                    Some("final_score"),
                ]),
            ),
            (
                "log_name",
                s(vec![Some("l"), Some("l"), Some("l"), None, None, None]),
            ),
            (
                "scenario_type",
                s(vec![
                    Some("A"),
                    Some("A"),
                    Some("B"),
                    Some("A"),
                    Some("B"),
                    Some("final_score"),
                ]),
            ),
            (
                "num_scenarios",
                f(vec![None, None, None, Some(2.0), Some(1.0), Some(3.0)]),
            ),
            ("planner_name", s(vec![Some("p"); 6])),
            ("aggregator_type", s(vec![Some("weighted_average"); 6])),
            (
                "no_ego_at_fault_collisions",
                f(vec![
                    Some(1.0),
                    Some(0.0),
                    Some(0.5),
                    Some(1.5),
                    Some(0.5),
                    Some(0.5),
                ]),
            ),
            (
                "ego_progress_along_expert_route",
                f(vec![
                    Some(0.8),
                    Some(1.0),
                    Some(1.0),
                    Some(1.8),
                    Some(1.0),
                    Some(0.93),
                ]),
            ),
            (
                "time_to_collision_within_bound",
                f(vec![
                    Some(1.0),
                    Some(1.0),
                    Some(0.0),
                    Some(2.0),
                    Some(0.0),
                    Some(0.67),
                ]),
            ),
            (
                "ego_is_comfortable",
                f(vec![
                    Some(1.0),
                    Some(1.0),
                    Some(1.0),
                    Some(2.0),
                    Some(1.0),
                    Some(1.0),
                ]),
            ),
            (
                "score",
                f(vec![
                    Some(s1),
                    Some(0.0),
                    Some(s3),
                    Some(a),
                    Some(b),
                    Some(final_score),
                ]),
            ),
        ]
    };
    let exp = d.path().join("exp");
    fs::create_dir_all(exp.join("aggregator_metric")).unwrap();
    write(
        &exp.join("aggregator_metric/weighted_average_metrics_2026.01.01.parquet"),
        agg(fin),
    );
    write(
        &exp.join("runner_report.parquet"),
        vec![
            (
                "succeeded",
                Arc::new(BooleanArray::from(vec![true, false, true])) as ArrayRef,
            ),
            (
                "scenario_name",
                Arc::new(StringArray::from(vec!["s1", "s2", "s3"])) as ArrayRef,
            ),
            (
                "error_message",
                Arc::new(StringArray::from(vec![None, Some("planner crashed"), None])) as ArrayRef,
            ),
        ],
    );
    let r = read(&exp);
    assert_eq!(r.mismatches(), 0, "{:?}", r.checks);
    assert_eq!(r.globals[0], ("final_score".to_string(), fin));
    assert!(r
        .problems
        .iter()
        .any(|p| p.contains("simulation s2 failed: planner crashed")));
    // A final score replaced by hand: --validate names it.
    write(
        &exp.join("aggregator_metric/weighted_average_metrics_2026.01.01.parquet"),
        agg(0.9),
    );
    let out = util::bin(
        "aggregate",
        &[
            exp.to_str().unwrap(),
            "--validate",
            "--out",
            d.path().join("o").to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("DIFFERS final_score"));
    // A parquet of another table is named and left out.
    write(
        &exp.join("other.parquet"),
        vec![("foo", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)],
    );
    let r = read(&exp);
    assert!(r
        .problems
        .iter()
        .any(|p| p.contains("other.parquet: not a nuPlan table")));
}
