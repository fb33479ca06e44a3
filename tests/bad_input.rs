//! Bad input of every kind, table-driven: each case breaks one input of a good run (or the
//! command line), runs the binary that reads it, and requires its exit code, a message naming the
//! file (or argument) and the problem, no panic — and, where the rest can go on, that it did.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCENES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scenes");

fn simulate_into(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(util::exe("simulate"))
        .args([
            "run",
            "--scenes",
            SCENES,
            "--out",
            out.to_str().unwrap(),
            "--rollouts",
            "2",
            "--video",
            "none",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-r", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn batches(run: &Path) -> Vec<PathBuf> {
    util::files_named(&run.join("rollouts"), "_complete")
        .into_iter()
        .map(|p| p.parent().unwrap().to_path_buf())
        .collect()
}

struct Case {
    name: &'static str,
    /// Breaks the copy of the good run; returns the command to run on it.
    setup: fn(&Path) -> Command,
    /// Accepted exit codes.
    codes: &'static [i32],
    /// What the output (stdout, stderr or the report) must say.
    says: &'static [&'static str],
}

fn aggregate(run: &Path) -> Command {
    let mut c = Command::new(util::exe("aggregate"));
    c.arg(run).arg("-q");
    c
}

fn evaluate(run: &Path) -> Command {
    let mut c = Command::new(util::exe("evaluate"));
    c.arg(run).arg("--force");
    c
}

fn write_parquet(path: &Path, cols: Vec<(&str, arrow_array::ArrayRef)>) {
    let batch = arrow_array::RecordBatch::try_from_iter(cols).unwrap();
    let f = fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn metrics_with(path: &Path, values: arrow_array::ArrayRef, extra: bool) {
    use arrow_array::{ArrayRef, BooleanArray, Int64Array, StringArray};
    use std::sync::Arc;
    let n = values.len();
    let s = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    let mut cols = vec![
        ("name", s("progress")),
        (
            "timestamps_us",
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())) as ArrayRef,
        ),
        ("values", values),
        (
            "valid",
            Arc::new(BooleanArray::from(vec![true; n])) as ArrayRef,
        ),
        ("time_aggregation", s("last")),
        (
            "clipgt_id",
            s(path
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()),
        ),
        ("rollout_id", s("x-0")),
        ("run_uuid", s("u")),
        ("run_name", s("n")),
    ];
    if extra {
        cols.push(("something_else", s("z")));
    }
    write_parquet(path, cols);
}

const CASES: &[Case] = &[
    Case {
        name: "truncated metrics.parquet",
        setup: |r| {
            let f = batches(r)[0].join("metrics.parquet");
            let b = fs::read(&f).unwrap();
            fs::write(&f, &b[..b.len() / 2]).unwrap();
            aggregate(r)
        },
        codes: &[1],
        says: &["metrics.parquet"],
    },
    Case {
        name: "garbage metrics.parquet",
        setup: |r| {
            fs::write(batches(r)[0].join("metrics.parquet"), b"not parquet at all").unwrap();
            aggregate(r)
        },
        codes: &[1],
        says: &["metrics.parquet"],
    },
    Case {
        name: "metrics.parquet with a wrong column type",
        setup: |r| {
            let f = batches(r)[0].join("metrics.parquet");
            metrics_with(
                &f,
                std::sync::Arc::new(arrow_array::StringArray::from(vec!["1.0"; 3])),
                false,
            );
            aggregate(r)
        },
        codes: &[1],
        says: &["metrics.parquet", "values"],
    },
    Case {
        name: "metrics.parquet with an extra column",
        setup: |r| {
            let f = batches(r)[0].join("metrics.parquet");
            metrics_with(
                &f,
                std::sync::Arc::new(arrow_array::Float64Array::from(vec![1.0, 2.0, 3.0])),
                true,
            );
            aggregate(r)
        },
        codes: &[0],
        says: &[],
    },
    Case {
        name: "NaN and infinite values",
        setup: |r| {
            let f = batches(r)[0].join("metrics.parquet");
            metrics_with(
                &f,
                std::sync::Arc::new(arrow_array::Float64Array::from(vec![
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ])),
                false,
            );
            aggregate(r)
        },
        codes: &[0],
        says: &[],
    },
    Case {
        name: "_complete without its files",
        setup: |r| {
            fs::remove_file(batches(r)[0].join("metrics.parquet")).unwrap();
            aggregate(r)
        },
        codes: &[1],
        says: &["metrics.parquet"],
    },
    Case {
        name: "garbage _failed.json",
        setup: |r| {
            let b = batches(r)[0].clone();
            fs::remove_file(b.join("_complete")).unwrap();
            fs::write(b.join("_failed.json"), b"{not json").unwrap();
            aggregate(r)
        },
        codes: &[1],
        says: &["_failed.json"],
    },
    Case {
        name: "a batch duplicated under a second uuid",
        setup: |r| {
            let b = batches(r)[0].clone();
            copy_dir(&b, &b.with_file_name("00000000-dup"));
            aggregate(r)
        },
        codes: &[1],
        says: &["duplicate rollout"],
    },
    Case {
        name: "truncated rollout.asl",
        setup: |r| {
            let f = batches(r)[0].join("rollout.asl");
            let b = fs::read(&f).unwrap();
            fs::write(&f, &b[..b.len() / 3 + 1]).unwrap();
            evaluate(r)
        },
        codes: &[1],
        says: &["rollout.asl"],
    },
    Case {
        name: "corrupted rollout.asl",
        setup: |r| {
            let f = batches(r)[0].join("rollout.asl");
            let mut b = fs::read(&f).unwrap();
            for x in b.iter_mut().skip(4).take(64) {
                *x = 0xff;
            }
            fs::write(&f, &b).unwrap();
            evaluate(r)
        },
        codes: &[1],
        says: &["rollout.asl"],
    },
    Case {
        name: "corrupted rollout.asl.xz",
        setup: |r| {
            let b = batches(r)[0].clone();
            fs::remove_file(b.join("rollout.asl")).unwrap();
            fs::write(b.join("rollout.asl.xz"), b"\xfd7zXZ\x00garbage").unwrap();
            evaluate(r)
        },
        codes: &[1],
        says: &["rollout.asl.xz"],
    },
    Case {
        name: "a run dir that is a file",
        setup: |r| {
            let f = r.with_extension("file");
            fs::write(&f, b"x").unwrap();
            aggregate(&f)
        },
        codes: &[2],
        says: &["run.file"],
    },
    Case {
        name: "a run dir without rollouts",
        setup: |r| {
            fs::remove_dir_all(r.join("rollouts")).unwrap();
            aggregate(r)
        },
        codes: &[2],
        says: &["rollouts"],
    },
];

#[test]
fn every_bad_run_dir_input_is_named() {
    let d = tempfile::tempdir().unwrap();
    let good = d.path().join("good");
    let out = simulate_into(&good, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, case) in CASES.iter().enumerate() {
        let run = d.path().join(format!("case{i}")).join("run");
        fs::create_dir_all(run.parent().unwrap()).unwrap();
        copy_dir(&good, &run);
        let out = (case.setup)(&run).output().unwrap();
        let mut text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if let Ok(t) = fs::read_to_string(run.join("aggregate/metrics_results.txt")) {
            text.push_str(&t);
        }
        assert!(!text.contains("panicked"), "{}: {text}", case.name);
        let code = out.status.code().unwrap_or(-1);
        assert!(
            case.codes.contains(&code),
            "{}: exit {code}, expected {:?}: {text}",
            case.name,
            case.codes
        );
        for s in case.says {
            assert!(
                text.contains(s),
                "{}: does not say {s:?}: {text}",
                case.name
            );
        }
    }
    eprintln!("{} bad run-dir inputs", CASES.len());
}

#[test]
fn bad_scenes_configs_and_arguments_are_named() {
    let d = tempfile::tempdir().unwrap();
    let scenes = d.path().join("scenes");
    fs::create_dir_all(&scenes).unwrap();
    let one = Path::new(SCENES).join("DEU_A9-3_1_T-1.dkscene");
    fs::copy(&one, scenes.join("DEU_A9-3_1_T-1.dkscene")).unwrap();
    // A scene file named after another scene than the one it holds.
    fs::copy(&one, scenes.join("misnamed.dkscene")).unwrap();
    let bytes = fs::read(&one).unwrap();
    // A scene of a future format version, a truncated one, garbage.
    let mut future = bytes.clone();
    future[8..12].copy_from_slice(&99u32.to_le_bytes());
    fs::write(scenes.join("future.dkscene"), &future).unwrap();
    fs::write(scenes.join("truncated.dkscene"), &bytes[..bytes.len() / 2]).unwrap();
    fs::write(scenes.join("garbage.dkscene"), b"hello").unwrap();
    let run = d.path().join("run");
    let out = Command::new(util::exe("simulate"))
        .args([
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--rollouts",
            "1",
            "--video",
            "none",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "failed scenes: exit 1: {err}");
    assert!(!err.contains("panicked"), "{err}");
    for s in ["future", "truncated", "garbage"] {
        assert!(err.contains(s), "{s} named: {err}");
    }
    assert!(
        err.contains("the scene inside is `DEU_A9-3_1_T-1`, not `misnamed`"),
        "{err}"
    );
    // The good scene ran.
    assert_eq!(batches(&run).len(), 1);
    let failed = util::files_named(&run.join("rollouts"), "_failed.json");
    assert_eq!(failed.len(), 4);
    let version = fs::read_to_string(
        failed
            .iter()
            .find(|p| p.to_string_lossy().contains("future"))
            .unwrap(),
    )
    .unwrap();
    assert!(version.contains("99"), "{version}");

    // An empty scenes dir.
    let empty = d.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = Command::new(util::exe("simulate"))
        .args([
            "run",
            "--scenes",
            empty.to_str().unwrap(),
            "--out",
            d.path().join("r2").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no .dkscene files"));

    // Configurations: misaligned clocks, an unknown key, a wrong type, a negative value.
    let sc = "runtime:\n  simulation_config:\n";
    for (yaml, says) in [
        (
            format!("{sc}    control_timestep_us: 100000\n    egopose_interval_us: 30000\n"),
            "egopose_interval_us",
        ),
        (format!("{sc}    n_rollouts: many\n"), "n_rollouts"),
        (format!("{sc}    n_sim_steps: -5\n"), "n_sim_steps"),
        (
            format!("{sc}    control_timestep_us: 0\n"),
            "control_timestep_us",
        ),
    ] {
        let f = d.path().join("cfg.yaml");
        fs::write(&f, &yaml).unwrap();
        let out = Command::new(util::exe("simulate"))
            .args(["check-config", f.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{yaml}: {text}");
        assert!(
            text.contains(says) && text.contains("cfg.yaml"),
            "{yaml}: {text}"
        );
        assert!(!text.contains("panicked"));
    }
    let f = d.path().join("cfg.yaml");
    fs::write(&f, "runtime:\n  simulation_config:\n    n_rolouts: 3\n").unwrap();
    let out = Command::new(util::exe("simulate"))
        .args(["check-config", f.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("n_rolouts"),
        "an unknown key is named: {text}"
    );

    // Scene ids that would name a directory outside the run.
    for id in ["../escape", "..", "a/b"] {
        let f = d.path().join("ids.yaml");
        fs::write(&f, format!("scenes:\n  scene_ids: [\"{id}\"]\n")).unwrap();
        let run = d.path().join("ids-run");
        let out = Command::new(util::exe("simulate"))
            .args([
                "run",
                "--scenes",
                SCENES,
                "--out",
                run.to_str().unwrap(),
                "--config",
                f.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{id}: {err}");
        assert!(
            err.contains("cannot name a directory of the run"),
            "{id}: {err}"
        );
        assert!(!d.path().join("escape").exists() && !run.join("rollouts/a").exists());
    }
    // A scene id read from a log names a file, never a path.
    let p = drivekit::video::video_path(Path::new("/run/b"), "../../x", 0);
    assert_eq!(p, Path::new("/run/b/.._.._x_0_0.mp4"));

    // Shard arguments and Slurm variables.
    for shard in ["3/2", "0/0", "-1/4", "a/b"] {
        let out = Command::new(util::exe("simulate"))
            .args([
                "run",
                "--scenes",
                SCENES,
                "--out",
                d.path().join("r3").to_str().unwrap(),
                &format!("--shard={shard}"),
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--shard {shard}: {err}");
        assert!(
            err.contains("shard") && !err.contains("panicked"),
            "--shard {shard}: {err}"
        );
    }
    let out = Command::new(util::exe("simulate"))
        .args([
            "run",
            "--scenes",
            SCENES,
            "--out",
            d.path().join("r4").to_str().unwrap(),
        ])
        .env("SLURM_ARRAY_TASK_ID", "9")
        .env("SLURM_ARRAY_TASK_MIN", "0")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("SLURM_ARRAY_TASK"), "{err}");
}
