//! Reliability: the binaries killed at many points and rerun, bad input, two writers, stale
//! temporary files, symlinks out of the run dir, a closed stdout. Each case is one found by
//! trying to break the binaries (issue #21), kept here.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const SCENES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scenes");

fn simulate_args(out: &Path) -> Vec<String> {
    [
        "run",
        "--scenes",
        SCENES,
        "--out",
        out.to_str().unwrap(),
        "--rollouts",
        "2",
        "--driver",
        "idm",
        "--traffic",
        "idm",
        "--video",
        "none",
    ]
    .map(String::from)
    .to_vec()
}

/// Runs `simulate run` into `out` with `args` (simulate_args by default); panics on failure.
fn simulate_ok(out: &Path) {
    let o = Command::new(util::exe("simulate"))
        .args(simulate_args(out))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A new run dir `name` beside `whole` that shares its run_metadata.yaml (so its run_uuid and
/// batch uuids), for reruns compared byte for byte with `whole`.
fn sibling_run(whole: &Path, name: &str) -> PathBuf {
    let run = whole.with_file_name(name);
    fs::create_dir_all(&run).unwrap();
    fs::copy(
        whole.join("run_metadata.yaml"),
        run.join("run_metadata.yaml"),
    )
    .unwrap();
    run
}

/// Every metrics.parquet of a run, by scene, as bytes.
fn metrics_files(run: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for f in util::files_named(&run.join("rollouts"), "metrics.parquet") {
        let scene = f
            .parent()
            .and_then(|b| b.parent())
            .and_then(|s| s.file_name())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            f.parent().unwrap().join("_complete").exists(),
            "{}: a metrics.parquet counted without _complete",
            f.display()
        );
        assert!(
            out.insert(scene, fs::read(&f).unwrap()).is_none(),
            "one batch per scene"
        );
    }
    out
}

/// No temporary file of a dead writer is left where outputs live.
fn no_temps(dir: &Path) {
    for e in walk(dir) {
        let name = e.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !name.contains(".tmp-"),
            "leftover temporary {}",
            e.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn simulate_killed_anywhere_resumes_to_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    let whole = d.path().join("whole");
    let out = Command::new(util::exe("simulate"))
        .args(simulate_args(&whole))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = metrics_files(&whole);
    assert_eq!(want.len(), 6);

    // The same run (its run_uuid and batch uuids come from run_metadata.yaml) killed with SIGKILL
    // after 10, 30, 60 … ms, five times in a row, then finished.
    let mut kill_points = 0;
    for (i, delays) in [[10u64, 30, 60, 120, 250], [40, 80, 160, 320, 640]]
        .iter()
        .enumerate()
    {
        let run = d.path().join(format!("killed-{i}"));
        fs::create_dir_all(&run).unwrap();
        fs::copy(
            whole.join("run_metadata.yaml"),
            run.join("run_metadata.yaml"),
        )
        .unwrap();
        for &ms in delays {
            let mut child = Command::new(util::exe("simulate"))
                .args(simulate_args(&run))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            let _ = child.kill();
            let _ = child.wait();
            kill_points += 1;
        }
        let out = Command::new(util::exe("simulate"))
            .args(simulate_args(&run))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(metrics_files(&run), want, "kill sequence {delays:?}");
        no_temps(&run.join("rollouts"));
        // The claim of the killed writers was taken over and released.
        assert!(!walk(&run)
            .iter()
            .any(|p| p.to_string_lossy().ends_with(".claim")));
    }
    eprintln!("simulate: {kill_points} kill points, every rerun byte-identical");
}

#[test]
fn aggregate_killed_anywhere_leaves_no_temporary_and_reruns_to_the_same_results() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let out = Command::new(util::exe("simulate"))
        .args(simulate_args(&run))
        .output()
        .unwrap();
    assert!(out.status.success());
    let agg = |extra: &[&str]| {
        Command::new(util::exe("aggregate"))
            .arg(&run)
            .args(["-q", "--no-cache"])
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(agg(&[]).status.success());
    assert!(
        run.join("aggregate/_complete").exists(),
        "a finished set is marked"
    );
    let want = fs::read(run.join("aggregate/metrics_results.parquet")).unwrap();
    for ms in [5u64, 15, 40, 80, 150] {
        let mut child = Command::new(util::exe("aggregate"))
            .arg(&run)
            .args(["-q", "--no-cache"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    }
    // Stopped after its second write: the outputs are not marked a consistent set.
    let out = Command::new(util::exe("aggregate"))
        .arg(&run)
        .args(["-q", "--no-cache"])
        .env(drivekit::fsutil::ABORT_AFTER_WRITES_ENV, "2")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !run.join("aggregate/_complete").exists(),
        "a half-written set is not marked"
    );
    // A temporary file of a dead aggregate, as a kill at the wrong moment leaves it.
    fs::write(
        run.join("aggregate/.metrics_unprocessed.parquet.tmp-999999999-0"),
        b"half",
    )
    .unwrap();
    assert!(agg(&[]).status.success());
    no_temps(&run.join("aggregate"));
    assert!(run.join("aggregate/_complete").exists());
    assert_eq!(
        fs::read(run.join("aggregate/metrics_results.parquet")).unwrap(),
        want
    );
}

#[test]
fn a_second_writer_of_the_same_shard_is_refused_and_a_dead_ones_claim_taken_over() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    fs::create_dir_all(run.join("rollouts")).unwrap();
    let claim = run.join("rollouts/.shard-0-of-1.claim");
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // Held by a live process (this test).
    fs::write(&claim, format!("{} {}\n", std::process::id(), host.trim())).unwrap();
    let out = Command::new(util::exe("simulate"))
        .args(simulate_args(&run))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already claimed by pid") && err.contains(".shard-0-of-1.claim"),
        "{err}"
    );
    assert!(
        util::files_named(&run.join("rollouts"), "metrics.parquet").is_empty(),
        "nothing written"
    );
    // Left by a dead process: taken over.
    fs::write(&claim, format!("999999999 {}\n", host.trim())).unwrap();
    let out = Command::new(util::exe("simulate"))
        .args(simulate_args(&run))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!claim.exists());
    // Another shard may run beside it.
    fs::write(
        run.join("rollouts/.shard-0-of-2.claim"),
        format!("{} {}\n", std::process::id(), host.trim()),
    )
    .unwrap();
    let mut args = simulate_args(&run);
    args.extend(["--shard".into(), "1/2".into()]);
    let out = Command::new(util::exe("simulate"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.code() != Some(2) || !String::from_utf8_lossy(&out.stderr).contains("claimed")
    );
}

#[test]
fn resuming_with_another_configuration_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let before = metrics_files(&run);
    let mut args = simulate_args(&run);
    args[6] = "3".into(); // --rollouts 3
    let out = Command::new(util::exe("simulate"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("wizard-config.yaml")
            && err.contains("n_rollouts: 2")
            && err.contains("n_rollouts: 3"),
        "{err}"
    );
    assert_eq!(metrics_files(&run), before, "nothing changed");
}

#[test]
fn bad_batches_are_named_and_the_rest_aggregated() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let files = util::files_named(&run.join("rollouts"), "metrics.parquet");
    // A 0-row metrics.parquet with the right schema (aggregate panicked on it).
    drivekit::metrics_file::write_metrics_file(
        &files[0],
        &[drivekit::metrics_file::MetricsBuilder::new().finish()],
    )
    .unwrap();
    // A batch moved under another scene's directory: its clipgt_id disagrees.
    let moved_from = files[1].parent().unwrap().to_path_buf();
    let other_scene = run.join("rollouts/not-its-scene");
    fs::create_dir_all(&other_scene).unwrap();
    let moved = other_scene.join(moved_from.file_name().unwrap());
    fs::rename(&moved_from, &moved).unwrap();
    let out = Command::new(util::exe("aggregate"))
        .arg(&run)
        .arg("-q")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let txt = fs::read_to_string(run.join("aggregate/metrics_results.txt")).unwrap();
    assert!(
        txt.contains("no rows: a complete batch without metrics"),
        "{txt}"
    );
    assert!(
        txt.contains("differs from its scene directory `not-its-scene`"),
        "{txt}"
    );
    let summary: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(run.join("aggregate/results-summary.json")).unwrap(),
    )
    .unwrap();
    // Five batches × 2 rollouts still aggregated (the empty one counts none).
    assert_eq!(summary["totals"]["n_trajectories"], 10);
}

#[test]
fn evaluate_and_render_do_not_write_through_a_symlink_out_of_the_run_dir() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let batch = util::files_named(&run.join("rollouts"), "metrics.parquet")[0]
        .parent()
        .unwrap()
        .to_path_buf();
    let outside = d.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let target = outside.join(batch.file_name().unwrap());
    fs::rename(&batch, &target).unwrap();
    std::os::unix::fs::symlink(&target, &batch).unwrap();
    let before: Vec<(PathBuf, Vec<u8>)> = walk(&outside)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    let out = Command::new(util::exe("evaluate"))
        .arg(&run)
        .args(["--force"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("outside the run dir (a symlink): not written into"),
        "{err}"
    );
    let out = Command::new(util::exe("render"))
        .arg(&run)
        .args(["--video", "all"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("outside the run dir (a symlink): not written into"),
        "{err}"
    );
    let after: Vec<(PathBuf, Vec<u8>)> = walk(&outside)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();
    assert_eq!(before, after, "nothing written outside");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let scene = format!("{SCENES}/DEU_A9-3_1_T-1.dkscene");
    for (bin, args) in [
        ("telemetry", vec![run.to_str().unwrap().to_string()]),
        ("simulate", vec!["scene-info".to_string(), scene]),
    ] {
        let mut child = Command::new(util::exe(bin))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader goes away at once
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{bin}: {err}");
        assert_ne!(out.status.code(), Some(101), "{bin}");
    }
}

#[test]
fn evaluate_refuses_a_log_cut_at_a_record_boundary() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let metrics = util::files_named(&run.join("rollouts"), "metrics.parquet")[0].clone();
    let log = metrics.with_file_name("rollout.asl");
    let bytes = fs::read(&log).unwrap();
    // Record boundaries of the length-prefixed stream (u32 big-endian lengths).
    let mut bounds = vec![0usize];
    while *bounds.last().unwrap() < bytes.len() {
        let o = *bounds.last().unwrap();
        let len = u32::from_be_bytes(bytes[o..o + 4].try_into().unwrap()) as usize;
        bounds.push(o + 4 + len);
    }
    assert_eq!(*bounds.last().unwrap(), bytes.len());
    let before = fs::read(&metrics).unwrap();
    for cut in [bounds[bounds.len() * 3 / 5], bounds[bounds.len() - 2]] {
        fs::write(&log, &bytes[..cut]).unwrap();
        let out = Command::new(util::exe("evaluate"))
            .arg(&run)
            .arg("--force")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("in full (missing or cut:") && err.contains("left as it was"),
            "{err}"
        );
        assert_eq!(fs::read(&metrics).unwrap(), before, "metrics.parquet kept");
    }
}

#[test]
fn reruns_keep_earlier_telemetry_and_bad_worker_files_are_named() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    simulate_ok(&run);
    let tele = run.join("telemetry");
    // A rerun with nothing to do adds no worker file.
    simulate_ok(&run);
    assert!(!tele.join("metrics_worker_0.1.prom").exists());
    // A rerun that redoes a batch adds its own attempt, keeping the first.
    let first = fs::read(tele.join("metrics_worker_0.prom")).unwrap();
    let batch = util::files_named(&run.join("rollouts"), "_complete")[0].clone();
    fs::remove_file(&batch).unwrap();
    simulate_ok(&run);
    assert_eq!(fs::read(tele.join("metrics_worker_0.prom")).unwrap(), first);
    assert!(tele.join("metrics_worker_0.1.prom").exists());
    let merged = fs::read_to_string(tele.join("metrics.prom")).unwrap();
    assert!(merged.contains("worker_id=\"0\"") && merged.contains("worker_id=\"0.1\""));
    let log = fs::read_to_string(run.join("txt-logs/shard-0-of-1.log")).unwrap();
    assert_eq!(log.matches("=== attempt started").count(), 3, "{log}");

    // Worker files that would break the merge: named and left out.
    fs::write(
        tele.join("metrics_worker_7.prom"),
        "# HELP rollout_duration_seconds x\n# TYPE rollout_duration_seconds histogram\nrollout_duration_seconds_bucket{le=\"abc\"} 1\n",
    )
    .unwrap();
    fs::write(tele.join("metrics_worker_8.prom"), "").unwrap();
    fs::write(
        tele.join("metrics_worker_9.prom"),
        "# HELP up x\n# TYPE up gauge\nup 1\n",
    )
    .unwrap();
    let out = Command::new(util::exe("telemetry"))
        .arg(&run)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("metrics_worker_7.prom") && text.contains("le=\"abc\" is not a number"),
        "{text}"
    );
    assert!(
        text.contains("metrics_worker_8.prom") && text.contains("empty worker file"),
        "{text}"
    );
    assert!(
        text.contains("metrics_worker_9.prom") && text.contains("not a drivekit worker file"),
        "{text}"
    );
    let merged = fs::read_to_string(tele.join("metrics.prom")).unwrap();
    assert!(!merged.contains("abc") && !merged.contains("worker_id=\"9\""));
    if util::have_tool(
        "promtool",
        "apt-get install prometheus",
        "reliability::telemetry_promtool",
    ) {
        let out = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(fs::File::open(tele.join("metrics.prom")).unwrap())
            .output()
            .unwrap();
        let lint = String::from_utf8_lossy(&out.stderr);
        assert!(!lint.contains("error"), "{lint}");
    }
}

/// Writes that fail part-way (RLIMIT_FSIZE: the process is stopped at the first write past the
/// limit, as a full disk stops a write) leave the previous outputs intact, nothing that looks
/// complete, and a rerun with room finishes the same.
#[test]
fn a_write_limit_mid_run_leaves_earlier_outputs_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let whole = d.path().join("whole");
    simulate_ok(&whole);
    let want = metrics_files(&whole);
    let run = sibling_run(&whole, "run");
    let limited = |bin: &str, args: &[String], kb: u32| {
        let mut cmd = format!("ulimit -f {kb}; exec {}", util::exe(bin));
        for a in args {
            cmd.push_str(&format!(" '{a}'"));
        }
        Command::new("sh").args(["-c", &cmd]).output().unwrap()
    };
    // 1 KiB blocks: the first rollout.asl outgrows 64 KiB.
    let out = limited("simulate", &simulate_args(&run), 64);
    assert!(!out.status.success(), "stopped by the limit");
    for (scene, bytes) in metrics_files(&run) {
        assert_eq!(bytes, want[&scene], "a batch counted complete is whole");
    }
    let out = Command::new(util::exe("simulate"))
        .args(simulate_args(&run))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(metrics_files(&run), want);

    // aggregate stopped while writing its outputs: the previous ones stay as they were.
    assert!(Command::new(util::exe("aggregate"))
        .arg(&run)
        .arg("-q")
        .status()
        .unwrap()
        .success());
    let agg = run.join("aggregate");
    let before: Vec<(PathBuf, Vec<u8>)> = [
        "metrics_results.parquet",
        "metrics_results.txt",
        "results-summary.json",
    ]
    .iter()
    .map(|f| (agg.join(f), fs::read(agg.join(f)).unwrap()))
    .collect();
    let args = vec![
        run.to_str().unwrap().to_string(),
        "-q".into(),
        "--no-cache".into(),
    ];
    let out = limited("aggregate", &args, 8);
    assert!(!out.status.success(), "stopped by the limit");
    for (f, bytes) in &before {
        assert_eq!(&fs::read(f).unwrap(), bytes, "{} intact", f.display());
    }
    assert!(Command::new(util::exe("aggregate"))
        .arg(&run)
        .args(["-q", "--no-cache"])
        .status()
        .unwrap()
        .success());
    no_temps(&agg);
    assert_eq!(
        fs::read(agg.join("metrics_results.parquet")).unwrap(),
        before[0].1
    );
}

/// Stops a binary right after each of its atomic writes in turn (the test hook
/// `DRIVEKIT_TEST_ABORT_AFTER_WRITES=N`), reruns it, and compares with an uninterrupted run:
/// `simulate`, `evaluate`, `aggregate`, `render` and `telemetry` at every write point they have.
#[test]
fn every_write_point_of_every_binary_resumes() {
    let d = tempfile::tempdir().unwrap();
    let args = |out: &Path| {
        let mut a = simulate_args(out);
        a[6] = "1".into(); // one rollout per scene keeps the loop short
        a
    };
    let whole = d.path().join("whole");
    assert!(Command::new(util::exe("simulate"))
        .args(args(&whole))
        .output()
        .unwrap()
        .status
        .success());
    let want = metrics_files(&whole);
    let run_until_done = |name: &str,
                          prepare: &dyn Fn(&Path),
                          cmd: &dyn Fn(&Path) -> Command,
                          check: &dyn Fn(&Path)|
     -> usize {
        let mut points = 0;
        for n in 1.. {
            let dir = d.path().join(format!("{name}-{n}"));
            prepare(&dir);
            let out = cmd(&dir)
                .env(drivekit::fsutil::ABORT_AFTER_WRITES_ENV, n.to_string())
                .output()
                .unwrap();
            if out.status.success() {
                break; // fewer than n writes: every point tried
            }
            points += 1;
            let out = cmd(&dir).output().unwrap();
            assert!(
                out.status.success(),
                "{name} after write {n}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            check(&dir);
            fs::remove_dir_all(&dir).unwrap();
        }
        points
    };
    let meta = whole.join("run_metadata.yaml");
    let sim_points = run_until_done(
        "simulate",
        &|dir| {
            fs::create_dir_all(dir).unwrap();
            fs::copy(&meta, dir.join("run_metadata.yaml")).unwrap();
        },
        &|dir| {
            let mut c = Command::new(util::exe("simulate"));
            c.args(args(dir));
            c
        },
        &|dir| {
            same_files(&metrics_files(dir), &want);
            no_temps(&dir.join("rollouts"));
        },
    );
    // evaluate on a copy of the finished run re-scores to the same bytes.
    let eval_points = run_until_done(
        "evaluate",
        &|dir| copy(&whole, dir),
        &|dir| {
            let mut c = Command::new(util::exe("evaluate"));
            c.arg(dir).args(["--force", "--scenes", SCENES]);
            c
        },
        &|dir| same_files(&metrics_files(dir), &want),
    );
    assert!(Command::new(util::exe("aggregate"))
        .arg(&whole)
        .arg("-q")
        .status()
        .unwrap()
        .success());
    let table = fs::read(whole.join("aggregate/metrics_results.parquet")).unwrap();
    let agg_points = run_until_done(
        "aggregate",
        &|dir| {
            copy(&whole, dir);
            fs::remove_dir_all(dir.join("aggregate")).unwrap();
        },
        &|dir| {
            let mut c = Command::new(util::exe("aggregate"));
            c.arg(dir).arg("-q");
            c
        },
        &|dir| {
            assert_eq!(
                fs::read(dir.join("aggregate/metrics_results.parquet")).unwrap(),
                table
            );
            no_temps(&dir.join("aggregate"));
        },
    );
    // render: every video of an uninterrupted render, byte for byte.
    let videos = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        walk(&dir.join("rollouts"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "mp4"))
            .map(|p| {
                (
                    p.strip_prefix(dir).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect()
    };
    let reference = d.path().join("render-reference");
    copy(&whole, &reference);
    assert!(Command::new(util::exe("render"))
        .arg(&reference)
        .args(["--video", "all"])
        .status()
        .unwrap()
        .success());
    let want_videos = videos(&reference);
    assert_eq!(want_videos.len(), 6);
    let render_points = run_until_done(
        "render",
        &|dir| copy(&whole, dir),
        &|dir| {
            let mut c = Command::new(util::exe("render"));
            c.arg(dir).args(["--video", "all"]);
            c
        },
        &|dir| {
            assert!(
                videos(dir) == want_videos,
                "videos differ after a stopped render"
            );
            no_temps(&dir.join("rollouts"));
        },
    );
    // telemetry: the merged metrics.prom of an uninterrupted report.
    assert!(Command::new(util::exe("telemetry"))
        .arg(&whole)
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success());
    let prom = fs::read(whole.join("telemetry/metrics.prom")).unwrap();
    let tele_points = run_until_done(
        "telemetry",
        &|dir| copy(&whole, dir),
        &|dir| {
            let mut c = Command::new(util::exe("telemetry"));
            c.arg(dir);
            c
        },
        &|dir| {
            assert_eq!(fs::read(dir.join("telemetry/metrics.prom")).unwrap(), prom);
            no_temps(&dir.join("telemetry"));
        },
    );
    eprintln!(
        "write points: simulate {sim_points}, evaluate {eval_points}, aggregate {agg_points}, render {render_points}, telemetry {tele_points}"
    );
    assert!(
        sim_points >= 18 && eval_points >= 6 && agg_points >= 5,
        "{sim_points} {eval_points} {agg_points}"
    );
    assert!(
        render_points >= 6 && tele_points >= 1,
        "{render_points} {tele_points}"
    );
}

/// Equal file sets, naming the first file that differs (not dumping bytes).
fn same_files(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (k, v) in got {
        assert!(
            v == &want[k],
            "{k}: metrics.parquet differs ({} vs {} bytes)",
            v.len(),
            want[k].len()
        );
    }
}

fn copy(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .args(["-r", from.to_str().unwrap(), to.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Two shards writing one run dir at once, and `aggregate` reading it meanwhile: the run-level
/// files stay whole (one run_uuid, both workers in the merged telemetry), every batch equals a
/// one-shard run's, and no aggregate counts a half-written batch.
#[test]
fn shards_and_aggregate_run_concurrently() {
    let d = tempfile::tempdir().unwrap();
    let whole = d.path().join("whole");
    simulate_ok(&whole);
    let want = metrics_files(&whole);
    let run = sibling_run(&whole, "run");
    let shard = |s: &str| {
        let mut a = simulate_args(&run);
        a.extend(["--shard".into(), s.into()]);
        Command::new(util::exe("simulate"))
            .args(a)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (shard("0/2"), shard("1/2"));
    let mut reads = 0;
    while reads < 200 {
        let out = Command::new(util::exe("aggregate"))
            .arg(&run)
            .args(["-q", "--no-cache"])
            .output()
            .unwrap();
        let code = out.status.code();
        assert!(
            matches!(code, Some(0) | Some(1) | Some(2)),
            "{:?}: {}",
            code,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        if let Ok(t) = fs::read_to_string(run.join("aggregate/results-summary.json")) {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            // Every trajectory counted has all its rows: 2 per complete batch.
            let n = v["totals"]["n_trajectories"].as_u64().unwrap();
            assert_eq!(n % 2, 0, "a half-read batch: {n} trajectories");
        }
        reads += 1;
        if fs::read_dir(run.join("rollouts")).map_or(0, |r| r.count()) >= 7 && reads > 3 {
            break;
        }
    }
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    same_files(&metrics_files(&run), &want);
    let merged = fs::read_to_string(run.join("telemetry/metrics.prom")).unwrap();
    assert!(merged.contains("worker_id=\"0\"") && merged.contains("worker_id=\"1\""));
    assert!(!run.join("telemetry/.merge.claim").exists());
    let out = Command::new(util::exe("aggregate"))
        .arg(&run)
        .arg("-q")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn fixtures_added_with_a_scene_offset_join_the_scene_list() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let r = run.to_str().unwrap();
    assert!(util::bin("drivekit-fixtures", &[r, "--scenes", "3"])
        .status
        .success());
    assert!(util::bin(
        "drivekit-fixtures",
        &[r, "--scenes", "2", "--scene-offset", "3"]
    )
    .status
    .success());
    let cfg = drivekit::config::SimConfig::load(&run.join("wizard-config.yaml")).unwrap();
    assert_eq!(cfg.scenes.scene_ids.len(), 5);
    // Removing one added batch is then reported as a missing scene.
    let last = util::files_named(&run.join("rollouts"), "metrics.parquet")
        .into_iter()
        .find(|p| p.to_string_lossy().contains("scene-000004"))
        .unwrap();
    fs::remove_dir_all(last.parent().unwrap().parent().unwrap()).unwrap();
    let out = util::bin("aggregate", &[r, "-q"]);
    assert_eq!(out.status.code(), Some(1));
    let txt = fs::read_to_string(run.join("aggregate/metrics_results.txt")).unwrap();
    assert!(txt.contains("MISSING scene scene-000004"), "{txt}");
}

/// Runs `script` with a private mount namespace (`unshare -m` as root, `unshare -rm` as
/// anyone else where user namespaces are allowed), so it may mount a tmpfs; `None` (and a
/// SKIPPED line) where neither is permitted.
fn in_mount_namespace(script: &str, test: &str) -> Option<std::process::Output> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let flags: &[&str] = if root {
        &["-m", "--propagation", "private"]
    } else {
        &["-r", "-m"]
    };
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = Command::new("unshare")
        .args(flags)
        .args([
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs \"$1\"",
            "probe",
        ])
        .arg(probe_dir.path())
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        other => {
            let why = match other {
                Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_string(),
                Err(e) => e.to_string(),
            };
            // Not a dataset: a sandbox that forbids mounts cannot be fixed by the checkout, so
            // this is reported, not failed (RLIMIT_FSIZE above covers a stopped write there).
            util::record_skip(test, &format!("cannot mount a tmpfs here ({why})"));
            return None;
        }
    }
    Some(
        Command::new("unshare")
            .args(flags)
            .args(["sh", "-c", script])
            .output()
            .unwrap(),
    )
}

fn du(dir: &Path) -> u64 {
    walk(dir)
        .iter()
        .filter(|p| p.is_file())
        .map(|p| fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// A real full disk and a read-only one: a small tmpfs as the run dir (in a private mount
/// namespace). `simulate` and `aggregate` stop with an error that names the file and says "No
/// space left on device" / "Read-only file system", count nothing half-written as complete,
/// leave the previous aggregate's files as they were, and a rerun with room resumes to the bytes
/// of an uninterrupted run.
#[test]
fn a_full_or_read_only_disk_gives_a_clear_error_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let whole = d.path().join("whole");
    simulate_ok(&whole);
    let want = metrics_files(&whole);
    let half_kb = (du(&whole) / 2 / 1024).max(64);
    let mnt = d.path().join("mnt");
    let out = d.path().join("out");
    fs::create_dir_all(&mnt).unwrap();
    fs::create_dir_all(&out).unwrap();
    let run = mnt.join("run");
    let sim: String = std::iter::once(util::exe("simulate").to_string())
        .chain(simulate_args(&run))
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let agg = format!(
        "'{}' '{}' -q --no-cache",
        util::exe("aggregate"),
        run.display()
    );
    let script = format!(
        r#"set -u
M='{m}'; O='{o}'
mount -t tmpfs -o size={half_kb}k tmpfs "$M" || exit 90
mkdir -p "$M/run" && cp '{meta}' "$M/run/"
step() {{ name=$1; shift; "$@" >"$O/$name.out" 2>"$O/$name.err"; echo $? >"$O/$name.rc"; }}
step sim_full {sim}
cp -a "$M/run" "$O/after_full"
mount -o remount,size=256m "$M"
step sim_resume {sim}
step agg_first {agg}
cp -a "$M/run/aggregate" "$O/agg_before"
dd if=/dev/zero of="$M/fill" bs=4k 2>/dev/null
step agg_full {agg}
cp -a "$M/run/aggregate" "$O/agg_full"
rm -f "$M/fill"
mount -o remount,ro "$M"
step agg_ro {agg}
step sim_ro {sim}
cp -a "$M/run/aggregate" "$O/agg_ro"
mount -o remount,rw "$M"
step agg_again {agg}
cp -a "$M/run" "$O/final"
"#,
        m = mnt.display(),
        o = out.display(),
        meta = whole.join("run_metadata.yaml").display(),
    );
    let Some(o) = in_mount_namespace(&script, "reliability_full_disk") else {
        return;
    };
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let step = |name: &str| {
        let rc: i32 = fs::read_to_string(out.join(format!("{name}.rc")))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let err = fs::read_to_string(out.join(format!("{name}.err"))).unwrap();
        (rc, err)
    };
    let (rc, err) = step("sim_full");
    assert!(
        rc != 0 && rc != 101,
        "simulate on a full disk: exit {rc}\n{err}"
    );
    assert!(
        err.contains("No space left on device") && err.contains(&run.display().to_string()),
        "the error names the file and the problem:\n{err}"
    );
    let partial = metrics_files(&out.join("after_full"));
    assert!(partial.len() < want.len(), "the disk filled before the end");
    for (scene, bytes) in &partial {
        assert_eq!(bytes, &want[scene], "a batch counted complete is whole");
    }
    let (rc, err) = step("sim_resume");
    assert_eq!(rc, 0, "{err}");
    let (rc, err) = step("agg_first");
    assert_eq!(rc, 0, "{err}");

    let before = out.join("agg_before");
    let outputs = [
        "metrics_results.parquet",
        "metrics_results.txt",
        "results-summary.json",
        "metrics_unprocessed.parquet",
    ];
    for (name, dir, problem) in [
        ("agg_full", "agg_full", "No space left on device"),
        ("agg_ro", "agg_ro", "Read-only file system"),
    ] {
        let (rc, err) = step(name);
        assert!(rc != 0 && rc != 101, "{name}: exit {rc}\n{err}");
        assert!(
            err.contains(problem) && err.contains(&run.display().to_string()),
            "{name}: the error names the file and the problem:\n{err}"
        );
        for f in outputs {
            assert_eq!(
                file_or_dir(&out.join(dir).join(f)),
                file_or_dir(&before.join(f)),
                "{name}: the previous {f} is intact"
            );
        }
        no_temps(&out.join(dir));
    }
    let (rc, err) = step("sim_ro");
    assert!(
        rc != 0 && rc != 101,
        "simulate on a read-only disk: exit {rc}\n{err}"
    );
    assert!(err.contains("Read-only file system"), "{err}");
    let (rc, err) = step("agg_again");
    assert_eq!(rc, 0, "{err}");
    let fin = out.join("final");
    assert_eq!(metrics_files(&fin), want);
    assert!(fin.join("aggregate/_complete").exists());
    assert_eq!(
        fs::read(fin.join("aggregate/metrics_results.parquet")).unwrap(),
        fs::read(before.join("metrics_results.parquet")).unwrap()
    );
    no_temps(&fin);
}

/// A file's bytes, or (for a dataset directory such as metrics_unprocessed.parquet) every file in
/// it by name; fails when `p` is neither.
fn file_or_dir(p: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    if p.is_dir() {
        let m: std::collections::BTreeMap<_, _> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        assert!(!m.is_empty(), "{} is empty", p.display());
        m
    } else {
        [(String::new(), fs::read(p).unwrap())].into()
    }
}
