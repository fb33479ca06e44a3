//! `simulate run --driver external` against real policy servers speaking AlpaSim's
//! EgodriverService gRPC contract: the third-party `carla-driver-interface` route follower and
//! drivekit's own `examples/driver_server.py`. Both are Python (`pip install
//! carla-driver-interface`, which `scripts/test-deps.sh` does).

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn simulate(out: &Path, server: u16, extra: &[&str]) -> Output {
    let address = format!("127.0.0.1:{server}");
    let scenes = root().join("fixtures/scenes");
    let mut args = vec![
        "run",
        "--scenes",
        scenes.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--rollouts",
        "2",
        "--driver",
        "external",
        "--driver-address",
        &address,
        "--quiet",
    ];
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(&args)
        .output()
        .unwrap()
}

/// Per trajectory (scene, rollout) the given metric's maximum, from aggregate's results.
fn max_per_rollout(run: &Path, metric: &str) -> Vec<(String, f64)> {
    let mut o = drivekit::aggregate::Options::new(run.to_path_buf());
    o.progress = false;
    let r = drivekit::aggregate::run(&o).unwrap();
    let col = r
        .results
        .metric_columns
        .iter()
        .position(|c| c.name == metric)
        .unwrap();
    r.results
        .trajectories
        .iter()
        .map(|t| (t.clipgt_id.clone(), t.values[col].unwrap_or(f64::NAN)))
        .collect()
}

/// The third-party server: carla-driver-interface's route follower (alpasim mode) keeps the ego
/// on the road on every bundled scene, driven over the contract end to end.
#[test]
fn carla_driver_interface_route_follower_stays_on_the_road() {
    if !util::have_python(
        "grpc, carla_driver_interface",
        "external_driver::carla_driver_interface_route_follower_stays_on_the_road",
    ) {
        return;
    }
    let port = util::free_port();
    let port_s = port.to_string();
    let server = util::start_python(
        &[
            "-m",
            "carla_driver_interface.cli",
            "serve",
            "--mode",
            "alpasim",
            "--policy",
            "route_follower",
            "--port",
            &port_s,
        ],
        port,
    );
    let d = tempfile::tempdir().unwrap();
    let run = d.path().join("run");
    let out = simulate(&run, server.port, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        util::files_named(&run.join("rollouts"), "_complete").len(),
        6
    );
    let offroad = max_per_rollout(&run, "offroad");
    assert_eq!(offroad.len(), 12);
    assert!(offroad.iter().all(|(_, v)| *v == 0.0), "{offroad:?}");
    // It drove: the ego followed its route rather than standing still (the follower sees no
    // other agents, so some trajectories end early at a collision, which aggregate cuts at).
    let progress = max_per_rollout(&run, "progress");
    assert!(progress.iter().all(|(_, v)| *v > 5.0), "{progress:?}");
    let log =
        fs::read_to_string(util::files_named(&run.join("txt-logs"), "shard-0-of-1.log")[0].clone())
            .unwrap();
    assert!(log.contains("driver rpc drive:"), "{log}");
}

/// drivekit's own example server: on the road, near the route; a scene the policy refuses fails
/// alone (named in `_failed.json` with the address and the call); a slow server times out; an
/// address with no server stops the run before anything is written; a server that dies mid-run
/// fails the rollouts in flight, and a restarted one is picked up on resume.
#[test]
fn example_server_and_driver_failures() {
    if !util::have_python(
        "grpc, carla_driver_interface",
        "external_driver::example_server_and_driver_failures",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    // Healthy; the server insists on a camera image before each session's first drive.
    let server = util::example_server(&["--require-camera"]);
    let run = d.path().join("ok");
    let out = simulate(&run, server.port, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offroad = max_per_rollout(&run, "offroad");
    assert!(offroad.iter().all(|(_, v)| *v == 0.0), "{offroad:?}");
    let dev = max_per_rollout(&run, "dist_to_gt_trajectory");
    assert!(dev.iter().all(|(_, v)| *v < 1.0), "{dev:?}");
    let log =
        fs::read_to_string(util::files_named(&run.join("txt-logs"), "shard-0-of-1.log")[0].clone())
            .unwrap();
    assert!(
        log.contains("driver rpc submit_image_observation:"),
        "{log}"
    );
    // Without the camera (drivekit.camera.size_px: 0) the same server refuses to drive.
    let cfg = d.path().join("nocam.yaml");
    fs::write(&cfg, "drivekit:\n  camera:\n    size_px: 0\n").unwrap();
    let out = simulate(
        &d.path().join("nocam"),
        server.port,
        &["--config", cfg.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no camera image before drive"));
    drop(server);

    // One scene refused.
    let server = util::example_server(&["--fail-scene", "USA_Lanker-1_1_T-1"]);
    let run = d.path().join("refused");
    let out = simulate(&run, server.port, &[]);
    assert_eq!(out.status.code(), Some(1));
    let failed = util::files_named(&run.join("rollouts"), "_failed.json");
    assert_eq!(failed.len(), 1);
    let text = fs::read_to_string(&failed[0]).unwrap();
    assert!(
        text.contains("USA_Lanker-1_1_T-1")
            && text.contains(&format!("127.0.0.1:{}", server.port))
            && text.contains("drive failed"),
        "{text}"
    );
    assert_eq!(
        util::files_named(&run.join("rollouts"), "_complete").len(),
        5
    );
    drop(server);

    // Too slow for the timeout (one retry): every rollout fails, naming the timeout.
    let server = util::example_server(&["--delay-ms", "1500"]);
    let cfg = d.path().join("fast.yaml");
    fs::write(&cfg, "driver:\n  timeout_s: 0.3\n  retries: 1\n").unwrap();
    let run = d.path().join("slow");
    let out = simulate(&run, server.port, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let failed = util::files_named(&run.join("rollouts"), "_failed.json");
    assert_eq!(failed.len(), 6);
    assert!(fs::read_to_string(&failed[0])
        .unwrap()
        .contains("timed out after 0.3 s"));
    drop(server);

    // Nobody listening: a clear error naming the address, nothing written.
    let port = util::free_port();
    let run = d.path().join("nobody");
    let out = simulate(&run, port, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("127.0.0.1:{port}")) && err.contains("get_version"),
        "{err}"
    );
    assert!(!run.exists());

    // The server dies after 150 drive calls: the rollouts then in flight fail; a rerun against a
    // restarted server completes the run (resume).
    let port = util::free_port();
    let port_s = port.to_string();
    let script = root().join("examples/driver_server.py");
    let dying = util::start_python(
        &[
            script.to_str().unwrap(),
            "--port",
            &port_s,
            "--die-after",
            "150",
        ],
        port,
    );
    let run = d.path().join("resume");
    let cfg = d.path().join("quick.yaml");
    fs::write(&cfg, "driver:\n  timeout_s: 2\n  retries: 1\n").unwrap();
    let out = simulate(&run, port, &["--config", cfg.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let failed = util::files_named(&run.join("rollouts"), "_failed.json").len();
    assert!(failed > 0);
    drop(dying);
    let again = util::start_python(&[script.to_str().unwrap(), "--port", &port_s], port);
    let out = simulate(&run, again.port, &["--config", cfg.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("{failed} batches simulated")),
        "{stdout}"
    );
    assert_eq!(
        util::files_named(&run.join("rollouts"), "_complete").len(),
        6
    );
    assert!(util::files_named(&run.join("rollouts"), "_failed.json").is_empty());
}

/// A policy served on a Unix socket (`--driver-address unix:/path`).
#[test]
fn unix_socket_addresses_work() {
    if !util::have_python(
        "grpc, carla_driver_interface",
        "external_driver::unix_socket_addresses_work",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("policy.sock");
    let script = root().join("examples/driver_server.py");
    let mut child = Command::new("python3")
        .args([script.to_str().unwrap(), "--unix", sock.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "no socket");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let run = d.path().join("run");
    let scenes = root().join("fixtures/scenes");
    let out = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--driver",
            "external",
            "--driver-address",
            &format!("unix:{}", sock.display()),
            "--video",
            "none",
            "--quiet",
        ])
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        util::files_named(&run.join("rollouts"), "_complete").len(),
        6
    );
}

/// Every file under `dir` (relative path → bytes).
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    util::files_named_with(dir, "")
        .into_iter()
        .map(|p| {
            (
                p.strip_prefix(dir).unwrap().to_path_buf(),
                fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Per batch (the session ids' prefix) its sessions' (slow, last drive answer in s of the
/// server's clock, drive calls), from the example server's `--session-log`.
fn sessions_by_batch(log: &Path) -> std::collections::BTreeMap<String, Vec<(bool, f64, u64)>> {
    let mut out: std::collections::BTreeMap<String, Vec<(bool, f64, u64)>> = Default::default();
    for line in fs::read_to_string(log).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = v["session"].as_str().unwrap();
        let batch = id.rsplit_once('-').unwrap().0.to_string();
        out.entry(batch).or_default().push((
            v["slow"].as_bool().unwrap(),
            v["last_drive_s"].as_f64().unwrap(),
            v["drives"].as_u64().unwrap(),
        ));
    }
    out
}

/// A rollout waiting on its driver holds only itself: against a server that delays one session
/// in 2 by 200 ms per drive call, the other rollouts finish their drives seconds before the slow
/// ones (in lockstep, as `drivekit.external_driver.lockstep: true`
/// steps them, they finish within a step of each other), and every output file is the same,
/// byte for byte, either way.
#[test]
fn a_slow_rollout_holds_only_itself_and_results_match_lockstep() {
    if !util::have_python(
        "grpc, carla_driver_interface",
        "external_driver::a_slow_rollout_holds_only_itself_and_results_match_lockstep",
    ) {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let delay_s = 0.2;
    let mut runs = Vec::new();
    for lockstep in [false, true] {
        let log = d.path().join(format!("sessions-{lockstep}.jsonl"));
        let server = util::example_server(&[
            "--delay-ms",
            "200",
            "--slow-one-in",
            "2",
            "--workers",
            "32",
            "--session-log",
            log.to_str().unwrap(),
        ]);
        let run = d.path().join(format!("run-{lockstep}"));
        if let Some(first) = runs.first() {
            // The same run uuid (the only thing two runs do not share).
            fs::create_dir_all(&run).unwrap();
            fs::copy(
                Path::new(first).join("run_metadata.yaml"),
                run.join("run_metadata.yaml"),
            )
            .unwrap();
        }
        let out = simulate(
            &run,
            server.port,
            &[
                "runtime.simulation_config.n_sim_steps=20",
                // No camera: the other rollouts' steps stay short beside the delay.
                "drivekit.camera.size_px=0",
                &format!("drivekit.external_driver.lockstep={lockstep}"),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        drop(server);
        // Every rollout has the same 20 steps (19 decisions after the first).
        let sessions: Vec<(bool, f64, u64)> =
            sessions_by_batch(&log).into_values().flatten().collect();
        let last = |slow: bool| {
            sessions
                .iter()
                .filter(|x| x.0 == slow)
                .map(|x| x.1)
                .fold(f64::NAN, f64::max)
        };
        let drives = sessions.iter().map(|x| x.2).max().unwrap() as f64;
        let lead = last(true) - last(false);
        assert!(lead.is_finite(), "slow and other sessions: {sessions:?}");
        if lockstep {
            assert!(
                lead < 2.0 * delay_s,
                "lockstep: {lead} s apart: {sessions:?}"
            );
        } else {
            assert!(
                lead > 0.4 * drives * delay_s,
                "the other rollouts finished only {lead} s before the slow ones ({drives} drives): {sessions:?}"
            );
        }
        runs.push(run);
    }
    let (a, b) = (
        tree(&runs[0].join("rollouts")),
        tree(&runs[1].join("rollouts")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(v == &b[k], "{} differs", k.display());
    }
}
