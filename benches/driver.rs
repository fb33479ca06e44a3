//! `make bench` (external driver part): drive calls per second and their latency (p50/p95/p99)
//! with 1, 8 and 64 concurrent rollouts against `examples/driver_server.py` over gRPC (TCP on
//! localhost), with the bird's-eye camera image sent at every decision (the default,
//! `drivekit.camera.size_px: 256`) and without it (`size_px: 0`), and the share of the step time spent
//! waiting on the driver. Procedural scenes, 50 control steps, log-replay traffic. Needs
//! `pip install carla-driver-interface`.
//! `BENCH_DRIVER_ROLLOUTS=1,8,64` and `BENCH_DRIVER_STEPS=50` choose.
//!
//! Then a slow rollout (#23): the same server delaying one session in 16 by 200 ms per drive
//! call (`--delay-ms 200 --slow-one-in 16`), `BENCH_SLOW_ROLLOUTS=128` rollouts (8 scenes),
//! `BENCH_DRIVER_STEPS` steps, no camera, pipelined (the default) and in lockstep
//! (`drivekit.external_driver.lockstep: true`, drivekit before #23). Throughput is rollout-steps
//! per second of the server's clock from the first `start_session` to the last drive answer of
//! the rollouts counted (the server's `--session-log`): all of them in the undelayed runs, the 15
//! in 16 not delayed in the delayed runs; the ratio is against the undelayed run of the same mode.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drivekit::config::SimConfig;
use drivekit::rollout::sink::LogCompression;
use drivekit::run_dir::Shard;
use drivekit::runner::{self, RunOptions};
use drivekit::scene::procedural::{generate, ProceduralSpec};
use drivekit::sim::driver::Driver;
use drivekit::sim::traffic::Traffic;

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().expect("a number"))
        .collect()
}

/// `examples/driver_server.py` with 64 worker threads and `extra` flags on a free port, once it
/// listens.
fn start_server(extra: &[&str]) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/driver_server.py");
    let server = Command::new("python3")
        .args([script, "--port", &port.to_string(), "--workers", "64"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("python3 examples/driver_server.py (pip install carla-driver-interface)");
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the example server did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

/// The options of a benchmark run of `scenes` with the external driver.
fn options(scenes: &Path, run_dir: PathBuf, config: SimConfig) -> RunOptions {
    RunOptions {
        backend: drivekit::cuda::Backend::Cpu,
        scenes_dir: scenes.to_path_buf(),
        run_dir,
        config,
        shard: Shard { index: 0, count: 1 },
        run_name: "bench".into(),
        driver: Driver::External,
        traffic: Traffic::LogReplay,
        progress: false,
        log_compression: LogCompression::None,
        video: drivekit::video::VideoMode::None,
        view: drivekit::video::render::View::default(),
    }
}

fn main() {
    let sizes = env_list("BENCH_DRIVER_ROLLOUTS", "1,8,64");
    let steps = env_list("BENCH_DRIVER_STEPS", "50")[0];
    let (mut server, port) = start_server(&[]);
    let root = tempfile::tempdir().unwrap();
    let scenes = root.path().join("scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    for seed in 0..8 {
        generate(&ProceduralSpec {
            seed,
            agents: 32,
            lanes: 3,
            duration_s: (steps as f64 + 3.0) / 10.0,
        })
        .save(&scenes.join(format!("procedural-{seed}-32.dkscene")))
        .unwrap();
    }
    println!("external driver benchmark: examples/driver_server.py (Python, grpcio, 64 worker threads) on localhost, {steps} steps, procedural scenes\n");
    println!("| concurrent rollouts | camera | drive calls | drive calls/s | drive p50 | p95 | p99 | step time waiting on the driver |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (camera_px, camera) in [(256, "256 px PNG"), (0, "none")] {
        for &n in &sizes {
            let (n_scenes, rollouts) = if n <= 8 { (n, 1) } else { (8, n / 8) };
            let mut cfg = SimConfig::parse(
            &format!(
                "runtime:\n  simulation_config: {{n_sim_steps: {steps}, n_rollouts: {rollouts}, time_start_offset_us: 0}}\n  endpoints:\n    driver: {{n_concurrent_rollouts: {n}}}\ndrivekit:\n  external_driver: {{addresses: [\"127.0.0.1:{port}\"]}}\n  camera: {{size_px: {camera_px}}}\n"
            ),
            std::path::Path::new("bench"),
        )
        .unwrap();
            cfg.scenes.scene_ids = (0..n_scenes)
                .map(|s| format!("procedural-{s}-32"))
                .collect();
            let out = root.path().join(format!("run-{n}-{camera_px}"));
            let start = Instant::now();
            let o = runner::run(&options(&scenes, out, cfg)).expect("the run");
            let wall = start.elapsed().as_secs_f64();
            assert!(o.failed.is_empty(), "{:?}", o.failed);
            let mut d = o
                .rpc
                .get("drive")
                .map(|m| m.durations_s.clone())
                .unwrap_or_default();
            d.sort_by(f64::total_cmp);
            let q = |p: f64| d[((d.len() as f64 - 1.0) * p).round() as usize] * 1e3;
            let waiting = o.times.driver.as_secs_f64() / o.times.total().as_secs_f64();
            println!(
                "| {n} | {camera} | {} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} % |",
                d.len(),
                d.len() as f64 / wall,
                q(0.5),
                q(0.95),
                q(0.99),
                100.0 * waiting
            );
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    slow_rollout(&scenes, root.path(), steps);
}

/// From a `--session-log`: rollout-steps per second of the sessions not delayed, from the first
/// session's start to their last drive answer; the seconds to the last drive answer of any
/// session; and how many sessions were not delayed.
fn session_throughput(log: &Path, steps: usize) -> (f64, f64, usize) {
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(log)
        .expect("the session log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let t0 = lines
        .iter()
        .map(|v| v["started_s"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    let last = |pick: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .filter(|v| pick(v))
            .map(|v| v["last_drive_s"].as_f64().unwrap() - t0)
            .fold(0.0, f64::max)
    };
    let fast = |v: &serde_json::Value| !v["slow"].as_bool().unwrap();
    let n = lines.iter().filter(|v| fast(v)).count();
    let t = last(&fast);
    (n as f64 * steps as f64 / t, last(&|_| true), n)
}

/// The slow-rollout table (see the module doc).
fn slow_rollout(scenes: &Path, root: &Path, steps: usize) {
    let rollouts = env_list("BENCH_SLOW_ROLLOUTS", "128")[0];
    let per_scene = rollouts.div_ceil(8);
    println!("\nslow rollout: one session in 16 delayed by 200 ms per drive call; {} rollouts (8 scenes × {per_scene}), {steps} steps, no camera\n", 8 * per_scene);
    println!("| stepping | server | rollouts counted | rollout-steps/s | vs undelayed | last answer of all |");
    println!("|---|---|---:|---:|---:|---:|");
    for lockstep in [false, true] {
        let mut base = f64::NAN;
        for delayed in [false, true] {
            let log = root.join(format!("sessions-{lockstep}-{delayed}.jsonl"));
            let mut flags = vec!["--session-log", log.to_str().unwrap()];
            if delayed {
                flags.extend(["--delay-ms", "200", "--slow-one-in", "16"]);
            }
            let (mut server, port) = start_server(&flags);
            let mut cfg = SimConfig::parse(
                &format!(
                    "runtime:\n  simulation_config: {{n_sim_steps: {steps}, n_rollouts: {per_scene}, time_start_offset_us: 0}}\n  endpoints:\n    driver: {{n_concurrent_rollouts: 64}}\ndrivekit:\n  external_driver: {{addresses: [\"127.0.0.1:{port}\"], lockstep: {lockstep}}}\n  camera: {{size_px: 0}}\n"
                ),
                Path::new("bench"),
            )
            .unwrap();
            cfg.scenes.scene_ids = (0..8).map(|s| format!("procedural-{s}-32")).collect();
            let out = root.join(format!("slow-{lockstep}-{delayed}"));
            let o = runner::run(&options(scenes, out, cfg)).expect("the run");
            assert!(o.failed.is_empty(), "{:?}", o.failed);
            let _ = server.kill();
            let _ = server.wait();
            // Sessions are closed at the end of the run; the log is complete once the run is.
            let (tput, all_s, n) = session_throughput(&log, steps);
            if !delayed {
                base = tput;
            }
            println!(
                "| {} | {} | {n} | {tput:.0} | {:.2} | {all_s:.2} s |",
                if lockstep { "lockstep" } else { "pipelined" },
                if delayed {
                    "1 in 16 delayed"
                } else {
                    "undelayed"
                },
                tput / base
            );
        }
    }
}
