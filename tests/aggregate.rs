//! End-to-end tests of `aggregate` on run dirs written with chosen values, so every expected
//! number below is worked out by hand from DESIGN §4 / AlpaSim's processing.py.

mod util;

use std::fs;
use std::path::Path;

use drivekit::aggregate::{self, Options, ProblemKind};
use util::{batch, bin, job};

fn col(o: &aggregate::Outcome, name: &str) -> drivekit::metrics::stats::Summary {
    let i = o
        .results
        .columns
        .iter()
        .position(|c| c.name == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    o.results.run.columns[i]
}

fn close(a: Option<f64>, b: f64) {
    let a = a.expect("value present");
    assert!(
        (a - b).abs() < 1e-9 || (a.is_infinite() && a == b),
        "{a} != {b}"
    );
}

fn quiet(dir: &Path) -> Options {
    let mut o = Options::new(dir.to_path_buf());
    o.progress = false;
    o
}

/// Two scenes × two rollouts with known values.
///  scene A rollout 0: eval_relevant from t1, collision_front at t3 (rows t4.. cut), speed mean over t1..t3
///  scene A rollout 1: clean; dist_to_gt reaches 4.0 at t2 (rows after t2 cut)
///  scene B rollout 0: clean, offroad never, dist 10 m
///  scene B rollout 1: img_is_black → dropped
fn write_known_run(root: &Path) {
    job(root, &["A", "B", "C"]);
    let z = [0.0; 5];
    batch(
        root,
        "A",
        "ba",
        &[
            &[
                ("eval_relevant", "max", &[0.0, 1.0, 1.0, 1.0, 1.0]),
                ("collision_any", "max", &[0.0, 0.0, 0.0, 1.0, 1.0]),
                ("collision_front", "max", &[0.0, 0.0, 0.0, 1.0, 1.0]),
                ("collision_lateral", "max", &z),
                ("collision_rear", "max", &z),
                ("offroad", "max", &z),
                ("speed", "mean", &[100.0, 1.0, 2.0, 3.0, 100.0]),
                (
                    "dist_traveled_m",
                    "last",
                    &[0.0, 100.0, 200.0, 300.0, 400.0],
                ),
                ("dist_to_gt_trajectory", "max", &[0.0, 0.5, 1.0, 1.5, 9.0]),
                ("gt_dist_traveled_m", "last", &[0.0, 10.0, 20.0, 30.0, 40.0]),
                ("progress_rel_to_total", "last", &[0.0, 0.1, 0.2, 0.5, 0.9]),
            ],
            &[
                ("eval_relevant", "max", &[1.0; 5]),
                ("collision_any", "max", &z),
                ("collision_front", "max", &z),
                ("collision_lateral", "max", &z),
                ("collision_rear", "max", &z),
                ("offroad", "max", &z),
                ("speed", "mean", &[4.0, 5.0, 6.0, 100.0, 100.0]),
                (
                    "dist_traveled_m",
                    "last",
                    &[0.0, 100.0, 300.0, 400.0, 500.0],
                ),
                ("dist_to_gt_trajectory", "max", &[0.0, 3.0, 4.0, 1.0, 1.0]),
                ("gt_dist_traveled_m", "last", &[0.0, 1.0, 2.0, 3.0, 4.0]),
                ("progress_rel_to_total", "last", &[0.0, 0.1, 0.2, 0.3, 0.4]),
            ],
        ],
    );
    batch(
        root,
        "B",
        "bb",
        &[
            &[
                ("eval_relevant", "max", &[1.0; 5]),
                ("collision_any", "max", &z),
                ("collision_front", "max", &z),
                ("collision_lateral", "max", &z),
                ("collision_rear", "max", &z),
                ("offroad", "max", &z),
                ("speed", "mean", &[7.0; 5]),
                ("dist_traveled_m", "last", &[0.0, 2.0, 5.0, 8.0, 10.0]),
                ("dist_to_gt_trajectory", "max", &z),
                ("gt_dist_traveled_m", "last", &[0.0, 20.0, 30.0, 40.0, 50.0]),
                ("progress_rel_to_total", "last", &[0.0, 0.1, 0.2, 0.3, 0.5]),
                ("img_is_black", "max", &z),
            ],
            &[
                ("eval_relevant", "max", &[1.0; 5]),
                ("speed", "mean", &[1000.0; 5]),
                ("img_is_black", "max", &[0.0, 0.0, 1.0, 0.0, 0.0]),
            ],
        ],
    );
}

#[test]
fn hand_checked_aggregation() {
    let d = tempfile::tempdir().unwrap();
    write_known_run(d.path());
    let o = aggregate::run(&quiet(d.path())).unwrap();

    // Rollout uids: rank of rollout_id within each scene → uid 1 = {A r0, B r0}, uid 2 = {A r1}
    // (B r1 was dropped by img_is_black, so uid 2 averages one clip).
    assert_eq!(o.results.run.n_rollouts, 2);
    close(col(&o, "speed").mean, ((2.0 + 7.0) / 2.0 + 5.0) / 2.0);
    // speed per rollout uid: uid1 = mean(2, 7) = 4.5 (A r0 kept t1..t3), uid2 = 5 (A r1 kept t0..t2)
    close(col(&o, "speed").std, (0.125f64).sqrt()); // sample std of {4.5, 5}
    close(col(&o, "speed").quantiles[2], 4.75);
    close(col(&o, "speed").quantiles[0], 4.5 + 0.05 * 0.5);
    // n_clips: uid1 2 clips, uid2 1 clip.
    close(o.results.run.n_clips.mean, 1.5);
    // collision_at_fault: A r0 1, B r0 0 → uid1 0.5; uid2 0 → mean 0.25.
    close(col(&o, "collision_at_fault").mean, 0.25);
    // dist_to_gt max: A r0 kept t1..t3 → 1.5; A r1 t0..t2 → 4.0; B r0 0 → uid1 0.75, uid2 4.
    close(col(&o, "dist_to_gt_trajectory").mean, (0.75 + 4.0) / 2.0);
    // km per incident: uid1 Σdist = 300 + 10, incidents 1 → 0.31 km; uid2 300 m, 0 incidents → inf.
    let km = col(&o, "avg_dist_between_incidents");
    close(km.quantiles[0], 0.31 + 0.05 * (f64::INFINITY - 0.31));
    assert!(km.mean.unwrap().is_infinite());
    // duration_frac_20s: A r0 t1..t3 → 0.2 s / 20 s = 0.01.
    let a0 = o
        .results
        .trajectories
        .iter()
        .find(|t| t.rollout_id == "ba-0")
        .unwrap();
    let i = o
        .results
        .metric_columns
        .iter()
        .position(|c| c.name == "duration_frac_20s")
        .unwrap();
    close(a0.values[i], 0.01);
    // Modifier counts: eval_relevant cut 1 row; img_is_black drops B r1's 5 rows; collision cut
    // 1 row of A r0; dist_to_gt cut 2 rows of A r1.
    let c = o.modifier_counts;
    assert_eq!((c[0].rows, c[0].trajectories), (1, 1));
    assert_eq!((c[2].rows, c[2].trajectories), (5, 1));
    assert_eq!((c[3].rows, c[3].trajectories), (1, 1));
    assert_eq!((c[4].rows, c[4].trajectories), (2, 1));
    // Scene C is listed in wizard-config.yaml but absent.
    assert_eq!(o.count(ProblemKind::MissingScene), 1);
    assert_eq!(o.exit_code(), 1);

    // Scene scores: A r0 collision → 0; A r1 gt < 5 m → 1.0; B r0 progress 0.5 → 0.625.
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(d.path().join("aggregate/results-summary.json")).unwrap())
            .unwrap();
    let score = |id: &str| {
        summary["rollouts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["rollout_id"] == id)
            .unwrap()["score"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(score("ba-0"), 0.0);
    assert_eq!(score("ba-1"), 1.0);
    assert_eq!(score("bb-0"), 0.625);
    assert_eq!(summary["totals"]["n_excluded"], 1);
    assert_eq!(summary["totals"]["n_missing_scenes"], 1);
    let txt = fs::read_to_string(d.path().join("aggregate/metrics_results.txt")).unwrap();
    assert!(
        txt.lines().all(|l| l.chars().count() <= 160),
        "table wider than 160 columns"
    );
    assert!(txt.contains("MISSING scene C"));
}

/// AlpaSim's own test fixture (NVlabs/alpasim, src/eval/tests/test_processing.py,
/// `unified_metrics_df`, one run): clips ×1/×10, rollouts ×1/×2, collision_any at t=2000 so rows
/// after it are cut; metric_a (max of [1,2,3]·m) becomes 2·m; metric_b (mean of [.5,1.5,2.5]·m)
/// becomes 1·m. Its ratio checks (rollout2 = 2 × rollout1, clip2 = 10 × clip1) must hold.
#[test]
fn alpasim_processing_fixture_ratios() {
    let d = tempfile::tempdir().unwrap();
    job(d.path(), &["clip1", "clip2"]);
    for (clip, cm) in [("clip1", 1.0), ("clip2", 10.0)] {
        let mut rollouts = Vec::new();
        let mut data = Vec::new();
        for rm in [1.0, 2.0] {
            let m = cm * rm;
            data.push((
                [m, 2.0 * m, 3.0 * m],
                [0.5 * m, 1.5 * m, 2.5 * m],
                [m, 2.0 * m, 3.0 * m],
            ));
        }
        for (a, b, dist) in &data {
            rollouts.push(vec![
                ("collision_any", "max", &[0.0, 1.0, 0.0][..]),
                ("collision_front", "max", &[0.0, 0.0, 1.0][..]),
                ("collision_lateral", "max", &[0.0, 0.0, 0.0][..]),
                ("offroad", "max", &[0.0, 0.0, 1.0][..]),
                ("img_is_black", "max", &[0.0, 0.0, 0.0][..]),
                ("dist_traveled_m", "max", &dist[..]),
                ("progress", "last", &[0.1, 0.5, 0.8][..]),
                ("metric_a", "max", &a[..]),
                ("metric_b", "mean", &b[..]),
            ]);
        }
        let series: Vec<&[(&str, &str, &[f64])]> = rollouts.iter().map(|r| r.as_slice()).collect();
        batch(d.path(), clip, &format!("{clip}-batch"), &series);
    }
    let o = aggregate::run(&quiet(d.path())).unwrap();
    let t = |id: &str, m: &str| {
        let i = o
            .results
            .metric_columns
            .iter()
            .position(|c| c.name == m)
            .unwrap();
        o.results
            .trajectories
            .iter()
            .find(|t| t.rollout_id == id)
            .unwrap()
            .values[i]
            .unwrap()
    };
    assert_eq!(t("clip1-batch-0", "metric_a"), 2.0);
    assert_eq!(
        t("clip1-batch-1", "metric_a") / t("clip1-batch-0", "metric_a"),
        2.0
    );
    assert_eq!(
        t("clip2-batch-0", "metric_a") / t("clip1-batch-0", "metric_a"),
        10.0
    );
    assert_eq!(t("clip1-batch-0", "metric_b"), 1.0);
    assert_eq!(t("clip1-batch-0", "progress"), 0.5);
    // collision_front only at t=3000, after the cut: collision_at_fault stays 0.
    assert_eq!(t("clip1-batch-0", "collision_at_fault"), 0.0);
    // Every rollout uid averages 2 clips (AlpaSim asserts n_clips == 2).
    assert!(o.results.rollouts.iter().all(|r| r.n_clips == 2));
    close(col(&o, "metric_a").mean, (2.0 + 20.0 + 4.0 + 40.0) / 4.0);
}

#[test]
fn bad_inputs_are_named_counted_and_the_rest_aggregated() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    job(
        root,
        &["good", "corrupt", "trunc", "types", "aggs", "inc", "failed"],
    );
    let ok: &[(&str, &str, &[f64])] = &[
        ("speed", "mean", &[1.0, 2.0]),
        ("eval_relevant", "max", &[1.0, 1.0]),
    ];
    batch(root, "good", "g1", &[ok]);
    let c = batch(root, "corrupt", "c1", &[ok]);
    fs::write(c.join("metrics.parquet"), b"this is not parquet").unwrap();
    let t = batch(root, "trunc", "t1", &[ok]);
    let bytes = fs::read(t.join("metrics.parquet")).unwrap();
    fs::write(t.join("metrics.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    batch(
        root,
        "aggs",
        "a1",
        &[&[("speed", "mean", &[1.0]), ("speed", "max", &[2.0])]],
    );
    // wrong column type: write values as strings with a different writer
    {
        use arrow_array::{ArrayRef, RecordBatch, StringArray};
        let cols: Vec<(&str, ArrayRef)> = drivekit::metrics_file::COLUMNS
            .iter()
            .map(|c| {
                (
                    *c,
                    std::sync::Arc::new(StringArray::from(vec!["x"])) as ArrayRef,
                )
            })
            .collect();
        let rb = RecordBatch::try_from_iter(cols).unwrap();
        let dir = root.join("rollouts/types/y1");
        fs::create_dir_all(&dir).unwrap();
        let f = fs::File::create(dir.join("metrics.parquet")).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(f, rb.schema(), None).unwrap();
        w.write(&rb).unwrap();
        w.close().unwrap();
        fs::write(dir.join("_complete"), "").unwrap();
    }
    let inc = batch(root, "inc", "i1", &[ok]);
    fs::remove_file(inc.join("_complete")).unwrap();
    let failed = root.join("rollouts/failed/f1");
    fs::create_dir_all(&failed).unwrap();
    fs::write(failed.join("_failed.json"), r#"{"error":"driver timed out","scene_id":"failed","batch_uuid":"f1","rollout_ids":["f1-0","f1-1"]}"#).unwrap();
    // a dangling video next to the good batch
    #[cfg(unix)]
    std::os::unix::fs::symlink(
        "/nonexistent/x.mp4",
        root.join("rollouts/good/g1/good_0_0.mp4"),
    )
    .unwrap();

    let out = bin("aggregate", &[root.to_str().unwrap(), "--quiet"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = aggregate::run(&quiet(root)).unwrap();
    assert_eq!(
        o.results.trajectories.len(),
        1,
        "only the good batch is aggregated"
    );
    assert_eq!(o.count(ProblemKind::SkippedFile), 4, "{:#?}", o.problems);
    assert_eq!(o.count(ProblemKind::IncompleteBatch), 1);
    assert_eq!(o.failed_rollouts.len(), 2);
    let msg = |needle: &str| o.problems.iter().any(|p| p.message.contains(needle));
    assert!(msg("not a readable Parquet file"));
    assert!(msg("has two time_aggregation values"));
    assert!(msg("column `timestamps_us` has type Utf8, expected Int64"));
    assert!(msg("dangling video"));
    let txt = fs::read_to_string(root.join("aggregate/metrics_results.txt")).unwrap();
    for needle in [
        "SKIPPED rollouts/corrupt/c1",
        "SKIPPED rollouts/trunc/t1",
        "INCOMPLETE rollouts/inc/i1",
        "FAILED rollout f1-0",
        "driver timed out",
    ] {
        assert!(txt.contains(needle), "missing {needle:?} in\n{txt}");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("aggregate/results-summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["totals"]["n_skipped_files"], 4);
    assert_eq!(summary["totals"]["n_failed_rollouts"], 2);
    assert_eq!(summary["totals"]["n_incomplete_batches"], 1);
}

#[test]
fn duplicate_rollouts_across_shards_name_both_files() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let s: &[(&str, &str, &[f64])] = &[("speed", "mean", &[1.0, 2.0])];
    for task in ["task0", "task1"] {
        job(&root.join(task), &["A"]);
        batch(&root.join(task), "A", "same", &[s]);
    }
    let o = aggregate::run(&quiet(root)).unwrap();
    let p = o
        .problems
        .iter()
        .find(|p| p.message.contains("duplicate rollout"))
        .expect("duplicate reported");
    assert!(
        p.message.contains("task0/rollouts/A/same/metrics.parquet")
            && p.message.contains("task1/rollouts/A/same"),
        "{}",
        p.message
    );
    assert_eq!(o.results.trajectories.len(), 1);
    assert_eq!(o.exit_code(), 1);
}

#[test]
fn mixed_configs_are_an_error_unless_allowed() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let s: &[(&str, &str, &[f64])] = &[("speed", "mean", &[1.0])];
    job(&root.join("task0"), &["A"]);
    batch(&root.join("task0"), "A", "b0", &[s]);
    job(&root.join("task1"), &["A", "B"]);
    batch(&root.join("task1"), "B", "b1", &[s]);
    let err = aggregate::run(&quiet(root)).unwrap_err();
    assert!(err.to_string().contains("--allow-mixed-config"), "{err}");
    let out = bin("aggregate", &[root.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wizard-config.yaml"));
    let out = bin(
        "aggregate",
        &[root.to_str().unwrap(), "--quiet", "--allow-mixed-config"],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn unusable_inputs_exit_2_with_a_clear_message() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    fs::write(&f, "").unwrap();
    for (path, needle) in [
        (f.clone(), "is a file"),
        (d.path().join("missing"), "no such run directory"),
        (d.path().to_path_buf(), "no rollouts/"),
    ] {
        let out = bin("aggregate", &[path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    fs::create_dir_all(d.path().join("rollouts")).unwrap();
    let out = bin("aggregate", &[d.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no batch directories"));
}

#[test]
fn incremental_rerun_reads_only_new_batches_and_matches_a_cold_run() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let rs = root.to_str().unwrap();
    fixtures(&[rs, "--scenes", "6", "--rollouts", "3", "--steps", "40"]);
    let first = aggregate::run(&quiet(&root)).unwrap();
    assert_eq!(first.n_batches_read, 6);
    // Nothing new: nothing read, and metrics_unprocessed.parquet is left as it is.
    let unp = root.join("aggregate/metrics_unprocessed.parquet");
    let before = fs::metadata(&unp).unwrap().modified().unwrap();
    // The report's series files (one per batch) by name, with their inodes.
    let series = || -> std::collections::BTreeMap<String, u64> {
        use std::os::unix::fs::MetadataExt;
        fs::read_dir(root.join("aggregate/report"))
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("series-"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().ino(),
                )
            })
            .collect()
    };
    let series_before = series();
    assert_eq!(series_before.len(), 6);
    let again = aggregate::run(&quiet(&root)).unwrap();
    assert_eq!(again.n_batches_read, 0);
    // Nothing changed: the same series files, reused (hard-linked), not written again.
    assert_eq!(series(), series_before);
    assert_eq!(fs::metadata(&unp).unwrap().modified().unwrap(), before);
    assert_eq!(
        serde_json::to_string(&again.results).unwrap(),
        serde_json::to_string(&first.results).unwrap()
    );
    fixtures(&[
        rs,
        "--scenes",
        "1",
        "--rollouts",
        "3",
        "--steps",
        "40",
        "--scene-offset",
        "6",
    ]);
    let inc = aggregate::run(&quiet(&root)).unwrap();
    assert_eq!((inc.n_batches_read, inc.n_batches_used), (1, 7));
    let series_inc = series();
    assert_eq!(series_inc.len(), 7);
    assert!(series_before
        .iter()
        .all(|(k, v)| series_inc.get(k) == Some(v)));
    let mut cold_opts = quiet(&root);
    cold_opts.use_cache = false;
    let cold_json = |o: &aggregate::Outcome| serde_json::to_string(&o.results).unwrap();
    let inc_unprocessed = parts(&unp);
    let cold = aggregate::run(&cold_opts).unwrap();
    assert_eq!(cold_json(&inc), cold_json(&cold));
    // Copied row groups are the bytes of freshly encoded ones.
    let cold_unprocessed = parts(&unp);
    assert_eq!(part_bytes(&inc_unprocessed), part_bytes(&cold_unprocessed));
}

/// `drivekit-fixtures ARGS`, which must succeed.
fn fixtures(args: &[&str]) {
    let out = bin("drivekit-fixtures", args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bytes of each part by name.
fn part_bytes(parts: &std::collections::BTreeMap<String, (u64, Vec<u8>)>) -> Vec<(&str, &[u8])> {
    parts.iter().map(|(k, v)| (k.as_str(), &v.1[..])).collect()
}

/// The part files of a metrics_unprocessed.parquet dataset directory: name → (inode, bytes).
fn parts(dir: &Path) -> std::collections::BTreeMap<String, (u64, Vec<u8>)> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                name.starts_with("part-") && name.ends_with(".parquet"),
                "{name} in {}",
                dir.display()
            );
            (
                name,
                (e.metadata().unwrap().ino(), fs::read(e.path()).unwrap()),
            )
        })
        .collect()
}

/// Rows in one parquet file's bytes.
fn rows(bytes: &[u8]) -> i64 {
    let r = parquet::file::serialized_reader::SerializedFileReader::new(
        bytes::Bytes::copy_from_slice(bytes),
    )
    .unwrap();
    parquet::file::reader::FileReader::metadata(&r)
        .file_metadata()
        .num_rows()
}

#[test]
fn a_single_file_metrics_unprocessed_of_an_older_drivekit_becomes_parts_without_reading_rows() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let rs = root.to_str().unwrap();
    fixtures(&[rs, "--scenes", "8", "--rollouts", "2", "--steps", "20"]);
    // A one-shard partial's metrics_unprocessed.parquet is the single file drivekit 0.x wrote
    // (one row group per batch, the same encoding).
    aggregate_json(&[rs, "--partial", "--shard", "0/1"], 0);
    let agg = root.join("aggregate");
    let mut first = quiet(&root);
    first.part_batches = 2;
    aggregate::run(&first).unwrap();
    fs::remove_dir_all(agg.join("metrics_unprocessed.parquet")).unwrap();
    fs::rename(
        agg.join("partials/shard-0-of-1/metrics_unprocessed.parquet"),
        agg.join("metrics_unprocessed.parquet"),
    )
    .unwrap();
    fs::remove_dir_all(agg.join("partials")).unwrap();
    // Every batch is in the cache; the rows are copied out of the old file.
    let mut again = quiet(&root);
    again.part_batches = 2;
    let out = aggregate::run(&again).unwrap();
    assert_eq!(out.n_batches_read, 0);
    assert!(agg.join("metrics_unprocessed.parquet").is_dir());
    let upgraded = parts(&agg.join("metrics_unprocessed.parquet"));
    assert!(upgraded.len() > 1);
    fs::remove_dir_all(&agg).unwrap();
    let mut cold = quiet(&root);
    cold.part_batches = 2;
    cold.use_cache = false;
    aggregate::run(&cold).unwrap();
    assert_eq!(
        part_bytes(&upgraded),
        part_bytes(&parts(&agg.join("metrics_unprocessed.parquet")))
    );
}

#[test]
fn metrics_unprocessed_parts_change_only_where_their_batches_do() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let rs = root.to_str().unwrap();
    fixtures(&[rs, "--scenes", "24", "--rollouts", "2", "--steps", "20"]);
    let opts = || {
        let mut o = quiet(&root);
        o.part_batches = 3;
        o
    };
    let unp = root.join("aggregate/metrics_unprocessed.parquet");
    aggregate::run(&opts()).unwrap();
    let first = parts(&unp);
    assert!(first.len() >= 3, "{} parts", first.len());
    let first_rows = first.values().map(|p| rows(&p.1)).sum::<i64>();
    assert_eq!(first_rows % 24, 0);
    // Nothing new: the same files (inodes).
    aggregate::run(&opts()).unwrap();
    let inodes = |p: &std::collections::BTreeMap<String, (u64, Vec<u8>)>| {
        p.iter().map(|(k, v)| (k.clone(), v.0)).collect::<Vec<_>>()
    };
    assert_eq!(inodes(&parts(&unp)), inodes(&first));
    // One more batch: at most the part it lands in (and, at a boundary, one new part) changes;
    // every other part is the same file, and the whole equals a cold aggregate's bytes.
    fixtures(&[
        rs,
        "--scenes",
        "1",
        "--rollouts",
        "2",
        "--steps",
        "20",
        "--scene-offset",
        "24",
    ]);
    let inc = aggregate::run(&opts()).unwrap();
    assert_eq!(inc.n_batches_read, 1);
    let after = parts(&unp);
    let same = after
        .iter()
        .filter(|(k, v)| first.get(*k).map(|f| f.0) == Some(v.0))
        .count();
    assert!(
        same + 2 >= after.len() && same + 1 >= first.len(),
        "{same} of {} parts kept ({} before)",
        after.len(),
        first.len()
    );
    let after_rows = after.values().map(|p| rows(&p.1)).sum::<i64>();
    assert_eq!(after_rows, first_rows / 24 * 25);
    let mut cold_opts = opts();
    cold_opts.use_cache = false;
    fs::remove_dir_all(root.join("aggregate")).unwrap();
    aggregate::run(&cold_opts).unwrap();
    let cold = parts(&unp);
    assert_eq!(part_bytes(&after), part_bytes(&cold));
    // A smaller part size only splits differently: the same rows, in the same order.
    let mut fine = cold_opts.clone();
    fine.part_batches = 1;
    aggregate::run(&fine).unwrap();
    assert!(parts(&unp).len() > cold.len());
    assert_eq!(
        parts(&unp).values().map(|p| rows(&p.1)).sum::<i64>(),
        after_rows
    );
}

/// `aggregate --json` (or `--partial --json`) on `args`, parsed; the exit status checked.
fn aggregate_json(args: &[&str], code: i32) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = bin("aggregate", &all);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn partial_aggregations_merge_into_the_bytes_of_a_cold_aggregate() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("run");
    let rs = root.to_str().unwrap();
    let gen = bin(
        "drivekit-fixtures",
        &[rs, "--scenes", "9", "--rollouts", "3", "--steps", "40"],
    );
    assert!(gen.status.success());
    let partial = |i: usize| aggregate_json(&[rs, "--partial", "--shard", &format!("{i}/3")], 0);
    for i in 0..3 {
        let p = partial(i);
        // Scenes dealt round-robin over the sorted scene ids, as `simulate run --shard` deals them.
        assert_eq!(
            (
                &p["n_scenes"],
                &p["n_batches"],
                &p["n_batches_read"],
                &p["n_rollouts"]
            ),
            (&3.into(), &3.into(), &3.into(), &9.into()),
            "{p}"
        );
    }
    // A requeued task finds its previous partial current.
    assert_eq!(partial(1)["n_batches_read"], 0);
    let merged = aggregate_json(&[rs], 0);
    assert_eq!(
        (&merged["n_batches_read"], &merged["n_scenes"]),
        (&0.into(), &9.into())
    );
    util::assert_outputs_are_cold(&root);

    // A shard whose partial never ran and a batch rewritten after its partial: those batches are
    // read again, and the outputs are still a cold aggregate's.
    fs::remove_dir_all(root.join("aggregate")).unwrap();
    partial(0);
    partial(1);
    let touched = util::files_named(&root.join("rollouts"), "metrics.parquet")[0].clone();
    let f = fs::File::options().append(true).open(&touched).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let merged = aggregate_json(&[rs], 0);
    assert_eq!(merged["n_batches_read"], 4, "{merged}");
    util::assert_outputs_are_cold(&root);

    // Shards need the run's scene list (simulate run writes it into wizard-config.yaml).
    let bare = d.path().join("bare");
    util::batch(&bare, "A", "b0", &[&[("speed", "mean", &[1.0, 2.0])]]);
    let out = bin(
        "aggregate",
        &[bare.to_str().unwrap(), "--partial", "--shard", "0/2"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scenes.scene_ids"));
    let out = bin("aggregate", &[rs, "--partial"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--shard I/N"));
}

#[test]
fn violation_videos_are_linked_relative_and_inside_the_run() {
    let d = tempfile::tempdir().unwrap();
    write_known_run(d.path());
    let a = d.path().join("rollouts/A/ba");
    fs::write(a.join("A_0_0.mp4"), b"fake").unwrap();
    fs::write(a.join("A_0_1.mp4"), b"fake").unwrap();
    aggregate::run(&quiet(d.path())).unwrap();
    let v = d.path().join("aggregate/videos");
    assert!(v.join("all/A_0_0.mp4").exists() && v.join("all/A_0_1.mp4").exists());
    // A r0 collided at fault, A r1 reached 4 m from the recorded path; violation links carry
    // their rank (worst first).
    let link = fs::read_link(v.join("violations/collision_at_fault/001_A_0_0.mp4")).unwrap();
    assert_eq!(link, Path::new("../../all/A_0_0.mp4"));
    assert!(v
        .join("violations/dist_to_gt_trajectory/001_A_0_1.mp4")
        .exists());
    assert!(!v
        .join("violations/collision_at_fault/001_A_0_1.mp4")
        .exists());
    let index = fs::read_to_string(v.join("index.html")).unwrap();
    assert!(
        index.contains("src=\"violations/collision_at_fault/001_A_0_0.mp4\"")
            && index.contains("src=\"violations/dist_to_gt_trajectory/001_A_0_1.mp4\""),
        "{index}"
    );
    let target = fs::read_link(v.join("all/A_0_0.mp4")).unwrap();
    assert!(
        target.is_relative()
            && fs::canonicalize(v.join("all/A_0_0.mp4"))
                .unwrap()
                .starts_with(fs::canonicalize(d.path()).unwrap())
    );
}

#[test]
fn json_flag_prints_a_machine_readable_summary() {
    let d = tempfile::tempdir().unwrap();
    write_known_run(d.path());
    let out = bin("aggregate", &[d.path().to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["n_scenes"], 2);
    assert_eq!(v["exit_code"], 1);
    assert_eq!(v["metrics"]["avg_dist_between_incidents"]["mean"], "inf");
    let help = bin("aggregate", &["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("Exit status"));
}

#[test]
fn bad_flags_are_rejected_with_the_fix() {
    let d = tempfile::tempdir().unwrap();
    write_known_run(d.path());
    let out = bin(
        "aggregate",
        &[d.path().to_str().unwrap(), "--max-dist-to-gt=-1"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--max-dist-to-gt must be a positive number")
    );
    let out = bin(
        "aggregate",
        &[d.path().to_str().unwrap(), "--max-dist-to-gt", "abc"],
    );
    assert_eq!(out.status.code(), Some(2), "clap rejects a non-number");
    let out = bin("aggregate", &[d.path().to_str().unwrap(), "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    // A different threshold changes the cut: A r1 reaches exactly 4.0 m, below 6 m.
    let out = bin(
        "aggregate",
        &[
            d.path().to_str().unwrap(),
            "--max-dist-to-gt",
            "6",
            "--json",
            "-j",
            "1",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["metrics"]["dist_to_gt_trajectory"]["mean"],
        serde_json::json!((0.75 + 4.0) / 2.0)
    );
}

#[test]
fn single_rollout_has_null_std_and_equal_quantiles() {
    let d = tempfile::tempdir().unwrap();
    job(d.path(), &["A"]);
    batch(d.path(), "A", "b", &[&[("speed", "mean", &[2.0, 4.0])]]);
    let o = aggregate::run(&quiet(d.path())).unwrap();
    let s = col(&o, "speed");
    assert_eq!((s.mean, s.std), (Some(3.0), None));
    assert!(s.quantiles.iter().all(|q| *q == Some(3.0)));
}

/// r15: `--compare BASE` reads the baseline without rewriting its aggregate/, and a tolerance for
/// a metric neither run has (or a malformed one) is an error naming it, never ignored.
#[test]
fn compare_leaves_the_baseline_untouched_and_checks_tolerances() {
    let d = tempfile::tempdir().unwrap();
    let (cur, base) = (d.path().join("cur"), d.path().join("base"));
    write_known_run(&cur);
    write_known_run(&base);
    let out = bin("aggregate", &[base.to_str().unwrap(), "--quiet"]);
    assert_eq!(out.status.code(), Some(1));
    let snapshot = |dir: &Path| -> Vec<(std::path::PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut v: Vec<_> = util::files_named_with(dir, "")
            .into_iter()
            .map(|p| {
                let m = fs::metadata(&p).unwrap().modified().unwrap();
                (p.clone(), fs::read(&p).unwrap(), m)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = snapshot(&base.join("aggregate"));
    assert!(before.len() > 5);
    let (c, b) = (cur.to_str().unwrap(), base.to_str().unwrap());
    let out = bin(
        "aggregate",
        &[
            c,
            "--quiet",
            "--compare",
            b,
            "--tolerance",
            "collision_at_fault=0.5",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cur.join("aggregate/comparison.md").exists());
    assert_eq!(
        snapshot(&base.join("aggregate")),
        before,
        "the baseline's aggregate/ changed"
    );
    assert!(!base.join("aggregate/comparison.md").exists());
    let out = bin(
        "aggregate",
        &[
            c,
            "--quiet",
            "--compare",
            b,
            "--tolerance",
            "colision_at_fault=0.5",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("colision_at_fault") && err.contains("collision_at_fault"),
        "{err}"
    );
    for bad in [
        "collision_at_fault",
        "collision_at_fault=x",
        "collision_at_fault=-1",
    ] {
        let out = bin(
            "aggregate",
            &[c, "--quiet", "--compare", b, "--tolerance", bad],
        );
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("expected METRIC=VALUE"));
    }
    let out = bin("aggregate", &[c, "--quiet", "--tolerance", "offroad=0.1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--compare"));
}
