//! The pipelines of `pipelines/`: the Makefile nightly end to end on the bundled scenes
//! (baseline, no-regression rerun, a regression, resume after a crash), and the Slurm array
//! scripts on a real single-node Slurm (slurm-wlm + munge started by
//! `pipelines/slurm/local-slurm.sh`; `scripts/test-deps.sh` installs them). The Slurm test is
//! SKIPPED (in make test's summary; a failure under CI=true) where Slurm is not installed or the
//! test does not run as root.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn nightly(run: &Path, flags: &str, baseline: Option<&Path>) -> Output {
    let mut cmd = Command::new("make");
    cmd.current_dir(root())
        .arg("--no-print-directory")
        .arg("nightly")
        .arg(format!("RUN={}", run.display()))
        .arg("SCENES=fixtures/scenes")
        .arg("SHARDS=2")
        .arg(format!("NIGHTLY_SIM_FLAGS={flags}"))
        // The binaries this test run built, wherever the target dir is.
        .arg(format!(
            "NIGHTLY_BIN={}",
            Path::new(env!("CARGO_BIN_EXE_simulate"))
                .parent()
                .unwrap()
                .display()
        ));
    if let Some(b) = baseline {
        cmd.arg(format!("BASELINE={}", b.display()));
    }
    cmd.output().unwrap()
}

fn metrics_files(run: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    util::files_named(&run.join("rollouts"), "metrics.parquet")
        .into_iter()
        .map(|p| {
            let b = fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn makefile_nightly_compares_reports_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let idm = "--driver idm --traffic idm --rollouts 2";
    let base = d.path().join("base");
    let out = nightly(&base, idm, None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        util::files_named(&base.join("rollouts"), "_complete").len(),
        6
    );
    let report = fs::read_to_string(base.join("nightly_report.md")).unwrap();
    assert!(
        report.contains("## Results") && report.contains("## Telemetry"),
        "{report}"
    );

    // The same evaluation again against the baseline: no regression.
    let same = d.path().join("same");
    let out = nightly(&same, idm, Some(&base));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = fs::read_to_string(same.join("nightly_report.md")).unwrap();
    assert!(report.contains("**No regression.**"), "{report}");
    assert!(same.join("aggregate/comparison.png").exists());

    // A worse policy: the nightly fails and the report names the regression.
    let worse = d.path().join("worse");
    let out = nightly(
        &worse,
        "--driver constant-velocity --traffic idm --rollouts 2",
        Some(&base),
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("REGRESSION"));
    let report = fs::read_to_string(worse.join("nightly_report.md")).unwrap();
    assert!(report.contains("**Regression in"), "{report}");

    // A crash mid-run (a shard's stamp and a batch's _complete gone): rerunning resumes, redoes
    // only that batch and ends with the same results.
    let before = metrics_files(&same);
    let stamp = same.join(".nightly/shard-1-of-2.done");
    fs::remove_file(&stamp).unwrap();
    let victim = &before[1].0;
    fs::remove_file(victim.with_file_name("_complete")).unwrap();
    let out = nightly(&same, idm, Some(&base));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stamp.exists());
    for (p, b) in &before {
        assert_eq!(
            &fs::read(p).unwrap(),
            b,
            "{} changed on resume",
            p.display()
        );
    }
}

#[test]
fn slurm_array_then_aggregation_on_a_real_slurm() {
    let have = |b: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let test = "pipelines: the Slurm array on a real Slurm";
    if !["slurmctld", "slurmd", "munged", "sbatch"]
        .iter()
        .all(|b| have(b))
    {
        util::skip(
            test,
            "Slurm is not installed here (apt-get install slurm-wlm munge; scripts/test-deps.sh does as root)",
        );
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        util::skip(test, "the Slurm daemons need root to start without systemd");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("slurm");
    let script = root().join("pipelines/slurm/local-slurm.sh");
    let up = Command::new(&script)
        .args(["start", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "local Slurm did not start: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let conf = state.join("slurm.conf");
    struct Stop(PathBuf, PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0)
                .args(["stop", self.1.to_str().unwrap()])
                .status();
        }
    }
    let _stop = Stop(script.clone(), state.clone());
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_simulate"))
        .parent()
        .unwrap()
        .to_path_buf();
    let run = d.path().join("run");
    let submit = || {
        let out = Command::new(root().join("pipelines/slurm/submit.sh"))
            .current_dir(root())
            .env("SLURM_CONF", &conf)
            .env("RUN", &run)
            .env("SCENES", root().join("fixtures/scenes"))
            .env("ARRAY", "3-7:2")
            .env("THROTTLE", "2")
            .env("SIM_FLAGS", "--rollouts 2 --driver idm --traffic idm")
            .env("DRIVEKIT_BIN", &bin_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            text.contains("simulate array job:") && text.contains("aggregate job:"),
            "{text}"
        );
        // Wait until the queue is empty.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let q = Command::new("squeue")
                .args(["-h"])
                .env("SLURM_CONF", &conf)
                .output()
                .unwrap();
            if q.status.success() && q.stdout.iter().all(|c| c.is_ascii_whitespace()) {
                break;
            }
            assert!(Instant::now() < deadline, "Slurm jobs did not finish");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    submit();
    // Stepped array 3, 5, 7 = shards 0, 1, 2 of 3; every scene ran once; then the aggregation.
    assert_eq!(
        util::files_named(&run.join("rollouts"), "_complete").len(),
        6
    );
    let logs = util::files_named(&run, "shard-2-of-3.log");
    assert_eq!(logs.len(), 1);
    for task in [3, 5, 7] {
        assert!(
            fs::read_dir(run.join("txt-logs"))
                .unwrap()
                .flatten()
                .any(|e| e
                    .file_name()
                    .to_string_lossy()
                    .ends_with(&format!("_{task}.out"))),
            "no Slurm log for task {task}"
        );
    }
    assert!(run.join("aggregate/metrics_results.txt").exists());
    assert!(run.join("telemetry/metrics_plot.png").exists());
    // Map-reduce: each task reduced its shard (`aggregate --partial`, shard from Slurm's array
    // variables), and the aggregation job merged them without reading any batch...
    for shard in 0..3 {
        let dir = run.join(format!("aggregate/partials/shard-{shard}-of-3"));
        assert!(
            dir.join("reductions.bin").is_file()
                && dir.join("metrics_unprocessed.parquet").is_file(),
            "no partial of shard {shard}"
        );
    }
    let agg_log = fs::read_dir(run.join("txt-logs"))
        .unwrap()
        .flatten()
        .find(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("slurm-aggregate-")
        })
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .expect("the aggregation job's log");
    assert!(
        agg_log.contains("6 aggregated (0 read, 6 from the cache or partials)"),
        "{agg_log}"
    );
    // ...into the same bytes as a cold aggregate of the run.
    util::assert_outputs_are_cold(&run);
    // The same submission again (a repeated/requeued array): identical results.
    let before = metrics_files(&run);
    submit();
    for (p, b) in &before {
        assert_eq!(&fs::read(p).unwrap(), b, "{} changed", p.display());
    }
}
