//! `simulate` writes telemetry per shard; `telemetry runs/X` merges it, plots it and gives
//! advice. Prometheus files are checked with the real `promtool check metrics` (Debian package
//! prometheus, which `scripts/test-deps.sh` installs).

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn simulate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(args)
        .output()
        .unwrap()
}

fn telemetry(run: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_telemetry"))
        .arg(run)
        .output()
        .unwrap()
}

fn promtool_accepts(file: &Path) {
    if !util::have_tool(
        "promtool",
        "apt-get install prometheus",
        "telemetry: promtool check metrics",
    ) {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&fs::read(file).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool rejects {}: {}{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shards_write_worker_files_that_merge_plot_and_pass_promtool() {
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let scenes = root().join("fixtures/scenes");
    for shard in ["0/2", "1/2"] {
        let out = simulate(&[
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--shard",
            shard,
            "--rollouts",
            "2",
            "--quiet",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = run.join("telemetry");
    for f in [
        "metrics_worker_0.prom",
        "metrics_worker_1.prom",
        "metrics.prom",
    ] {
        promtool_accepts(&dir.join(f));
    }
    let merged = fs::read_to_string(dir.join("metrics.prom")).unwrap();
    for family in [
        "rpc_duration_seconds",
        "rpc_blocking_seconds",
        "rpc_queue_depth_at_start",
        "rollout_duration_seconds",
        "step_duration_seconds",
        "simulation_total_seconds",
        "event_loop_idle_seconds_total",
        "process_cpu_utilization",
    ] {
        assert!(merged.contains(&format!("# TYPE {family} ")), "{family}");
    }
    assert!(merged.contains("worker_id=\"0\"") && merged.contains("worker_id=\"1\""));
    assert!(merged.contains("service=\"evaluation\",method=\"evaluate\""));
    let out = telemetry(&run);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("2 worker file(s), 12 rollouts"), "{text}");
    assert!(fs::metadata(dir.join("metrics_plot.png")).unwrap().len() > 10_000);
    assert!(!fs::read_to_string(dir.join("bottlenecks.txt"))
        .unwrap()
        .is_empty());
    promtool_accepts(&dir.join("metrics.prom"));

    // A truncated worker file: named with its line, the other worker still merges (exit 1).
    let w1 = dir.join("metrics_worker_1.prom");
    let bytes = fs::read(&w1).unwrap();
    fs::write(&w1, &bytes[..bytes.len() / 2]).unwrap();
    let out = telemetry(&run);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("metrics_worker_1.prom:"), "{err}");
    let merged = fs::read_to_string(dir.join("metrics.prom")).unwrap();
    assert!(merged.contains("worker_id=\"0\"") && !merged.contains("worker_id=\"1\""));
    promtool_accepts(&dir.join("metrics.prom"));

    // Nothing to report: exit 2 with the reason.
    let out = telemetry(d.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no telemetry"));
}

/// Each rule fires when provoked: a slow external driver with one slot queues its calls and
/// leaves the workers waiting on it; a service capacity far below the others is named.
#[test]
fn advice_names_the_service_behind_each_bottleneck() {
    let d = tempfile::tempdir().unwrap();
    let scenes = root().join("fixtures/scenes");
    // Slow driver, one slot: calls queue and workers wait.
    let server = util::example_server(&["--delay-ms", "15"]);
    let port = server.port;
    let cfg = d.path().join("slow.yaml");
    fs::write(
        &cfg,
        "runtime:\n  simulation_config:\n    n_sim_steps: 8\n  endpoints:\n    driver: {n_concurrent_rollouts: 1}\nscenes:\n  scene_ids: [USA_Lanker-1_1_T-1, DEU_A9-3_1_T-1]\n",
    )
    .unwrap();
    let run = d.path().join("slow");
    let out = simulate(&[
        "run",
        "--scenes",
        scenes.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--rollouts",
        "4",
        "--driver",
        "external",
        "--driver-address",
        &format!("127.0.0.1:{port}"),
        "--quiet",
    ]);
    drop(server);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = telemetry(&run);
    let advice = fs::read_to_string(run.join("telemetry/bottlenecks.txt")).unwrap();
    assert!(advice.contains("driver: calls queue"), "{advice}");
    assert!(advice.contains("wait on driver"), "{advice}");
    assert!(
        advice.contains("driver: capacity 1 (gpus × replicas × concurrent) is 64× below"),
        "{advice}"
    );
    assert!(out.status.success());
    promtool_accepts(&run.join("telemetry/metrics.prom"));

    // Unbalanced: trafficsim's capacity limits the rest.
    let cfg = d.path().join("unbalanced.yaml");
    fs::write(
        &cfg,
        "runtime:\n  endpoints:\n    trafficsim: {n_concurrent_rollouts: 4}\n",
    )
    .unwrap();
    let run = d.path().join("unbalanced");
    let out = simulate(&[
        "run",
        "--scenes",
        scenes.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.status.success());
    telemetry(&run);
    let advice = fs::read_to_string(run.join("telemetry/bottlenecks.txt")).unwrap();
    assert!(
        advice.contains("trafficsim: capacity 4 (gpus × replicas × concurrent) is 16× below"),
        "{advice}"
    );
}
