//! `evaluate runs/X` recomputes metrics.parquet from rollout logs with the simulator's own
//! evaluation service: bit for bit on a fresh run (plain and xz logs), incremental by metric
//! version, partial with --metrics, from AlpaSim-style logs (no drivekit state) approximately,
//! without scenes (no map), and a truncated log fails only its batch.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drivekit::rollout::asl::{encode_record, AslReader, Record};
use drivekit::rollout::proto::Entry;

fn scenes() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes")
}

fn bin(name: &str, args: &[&str]) -> Output {
    let exe = match name {
        "simulate" => env!("CARGO_BIN_EXE_simulate"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        _ => env!("CARGO_BIN_EXE_aggregate"),
    };
    Command::new(exe).args(args).output().unwrap()
}

fn simulate(run: &Path, extra: &[&str]) {
    let sc = scenes();
    let mut args = vec![
        "run",
        "--scenes",
        sc.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--rollouts",
        "2",
        "--driver",
        "idm",
        "--traffic",
        "idm",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    let out = bin("simulate", &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn evaluate(run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![run.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    bin("evaluate", &args)
}

fn files(run: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    util::files_named(&run.join("rollouts"), "metrics.parquet")
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn a_fresh_run_evaluates_to_the_same_bytes_and_reruns_are_incremental() {
    let d = tempfile::tempdir().unwrap();
    for (name, extra) in [("plain", vec![]), ("xz", vec!["--log-compression", "xz"])] {
        let run = d.path().join(name);
        simulate(&run, &extra);
        let before = files(&run);
        assert_eq!(before.len(), 6);
        let s = scenes();
        let out = evaluate(&run, &["--scenes", s.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("6 batches evaluated (12 rollouts)"));
        for (p, b) in &before {
            assert_eq!(&fs::read(p).unwrap(), b, "{} changed", p.display());
            assert!(p.with_file_name("_evaluated").exists());
            assert!(!p.with_file_name("metrics.parquet.prev").exists());
        }
        let out = evaluate(&run, &["--scenes", s.to_str().unwrap()]);
        assert!(String::from_utf8_lossy(&out.stdout)
            .contains("0 batches evaluated (0 rollouts), 6 already up to date"));
        let out = evaluate(&run, &["--scenes", s.to_str().unwrap(), "--force"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("6 batches evaluated"));
        for (p, b) in &before {
            assert_eq!(&fs::read(p).unwrap(), b);
        }
    }
}

#[test]
fn partial_metrics_missing_scenes_alpasim_logs_and_truncation() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate(&run, &[]);
    let s = scenes();
    let original = files(&run);
    // --metrics: one metric recomputed, the others' rows kept; aggregate reads the result.
    let out = evaluate(
        &run,
        &[
            "--scenes",
            s.to_str().unwrap(),
            "--metrics",
            "time_to_collision_s,offroad",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agg = bin(
        "aggregate",
        &[run.to_str().unwrap(), "--quiet", "--no-cache"],
    );
    assert_eq!(
        agg.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&agg.stderr)
    );
    // r15: another set of the same size is not "up to date" (the check compared counts), and
    // the metrics of both passes stay current.
    let again = |metrics: &str| {
        let out = evaluate(
            &run,
            &["--scenes", s.to_str().unwrap(), "--metrics", metrics],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let o = again("dist_to_gt_trajectory,progress");
    assert!(o.contains("6 batches evaluated"), "{o}");
    let o = again("offroad,progress");
    assert!(
        o.contains("0 batches evaluated (0 rollouts), 6 already up to date"),
        "{o}"
    );
    let o = again("ego_is_comfortable");
    assert!(o.contains("6 batches evaluated"), "{o}");
    let bad = evaluate(&run, &["--metrics", "no_such_metric"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no_such_metric"));

    // Without scenes: rebuilt from the log, no map → offroad absent, warning given.
    let out = evaluate(&run, &["--force"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rebuilt from the log without a map"));
    let rows = fs::read(&original[0].0).unwrap();
    assert!(!rows.is_empty());

    // An AlpaSim-style log (no drivekit state): evaluated approximately (speeds from pose
    // differences), with a warning; aggregate reads every batch.
    for (p, _) in &original {
        let log = p.with_file_name("rollout.asl");
        let mut bytes = Vec::new();
        for r in AslReader::open(&log).unwrap() {
            if let Record::Entry(_, mut e) = r.unwrap() {
                if let Some(Entry::ActorPoses(poses)) = e.entry.as_mut() {
                    for a in &mut poses.actor_poses {
                        a.drivekit_state.clear();
                    }
                }
                encode_record(&mut bytes, &e);
            }
        }
        fs::write(&log, bytes).unwrap();
    }
    let out = evaluate(&run, &["--scenes", s.to_str().unwrap(), "--force"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no drivekit state"));
    let agg = bin(
        "aggregate",
        &[run.to_str().unwrap(), "--json", "--no-cache"],
    );
    let v: serde_json::Value = serde_json::from_slice(&agg.stdout).unwrap();
    assert_eq!(v["n_failed_rollouts"], 0, "{v}");

    // A truncated log: that batch fails (file and byte named), its metrics stay; others go on.
    let victim = original[1].0.with_file_name("rollout.asl");
    let before = fs::read(&original[1].0).unwrap();
    let bytes = fs::read(&victim).unwrap();
    fs::write(&victim, &bytes[..bytes.len() - 7]).unwrap();
    let out = evaluate(&run, &["--scenes", s.to_str().unwrap(), "--force"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("rollout.asl: truncated at byte"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 batches evaluated"));
    assert_eq!(fs::read(&original[1].0).unwrap(), before);
}
