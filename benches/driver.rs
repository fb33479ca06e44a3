//! `make bench` (external driver part): drive calls per second and their latency (p50/p95/p99)
//! with 1, 8 and 64 concurrent rollouts against `examples/driver_server.py` over gRPC (TCP on
//! localhost), with the bird's-eye camera image sent at every decision (the default,
//! `drivekit.camera.size_px: 256`) and without it (`size_px: 0`), and the share of the step time spent
//! waiting on the driver. Procedural scenes, 50 control steps, log-replay traffic. Needs
//! `pip install carla-driver-interface`.
//! `BENCH_DRIVER_ROLLOUTS=1,8,64` and `BENCH_DRIVER_STEPS=50` choose.

use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
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

fn main() {
    let sizes = env_list("BENCH_DRIVER_ROLLOUTS", "1,8,64");
    let steps = env_list("BENCH_DRIVER_STEPS", "50")[0];
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/driver_server.py");
    let mut server = Command::new("python3")
        .args([script, "--port", &port.to_string(), "--workers", "64"])
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
            let o = runner::run(&RunOptions {
                backend: drivekit::cuda::Backend::Cpu,
                scenes_dir: scenes.clone(),
                run_dir: out,
                config: cfg,
                shard: Shard { index: 0, count: 1 },
                run_name: "bench".into(),
                driver: Driver::External,
                traffic: Traffic::LogReplay,
                progress: false,
                log_compression: LogCompression::None,
                video: drivekit::video::VideoMode::None,
                view: drivekit::video::render::View::default(),
            })
            .expect("the run");
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
}
