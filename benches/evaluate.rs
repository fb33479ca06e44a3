//! `make bench` (evaluate part): rollouts re-evaluated per second from their logs on a 1K-rollout
//! run (100 procedural scenes × 10 rollouts × 50 steps, 32 actors, IDM), at 1 and 2 threads, and
//! the share of the time spent reading logs versus computing metrics (and writing Parquet).
//! `BENCH_EVAL_SCENES=100` chooses the size.

use std::time::Instant;

use drivekit::config::SimConfig;
use drivekit::evaluate::{self, EvaluateOptions};
use drivekit::rollout::sink::LogCompression;
use drivekit::run_dir::Shard;
use drivekit::runner::{self, RunOptions};
use drivekit::scene::procedural::{generate, ProceduralSpec};
use drivekit::sim::driver::Driver;
use drivekit::sim::traffic::Traffic;

fn main() {
    let n_scenes: u64 = std::env::var("BENCH_EVAL_SCENES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let root = tempfile::tempdir().unwrap();
    let scenes = root.path().join("scenes");
    std::fs::create_dir_all(&scenes).unwrap();
    for seed in 0..n_scenes {
        generate(&ProceduralSpec {
            seed,
            agents: 32,
            lanes: 3,
            duration_s: 5.3,
        })
        .save(&scenes.join(format!("procedural-{seed}-32.dkscene")))
        .unwrap();
    }
    let run = root.path().join("run");
    let cfg = SimConfig::parse(
        "runtime:\n  simulation_config: {n_sim_steps: 50, n_rollouts: 10, time_start_offset_us: 0}\n",
        std::path::Path::new("bench"),
    )
    .unwrap();
    let t = Instant::now();
    runner::run(&RunOptions {
        backend: drivekit::cuda::Backend::Cpu,
        scenes_dir: scenes.clone(),
        run_dir: run.clone(),
        config: cfg,
        shard: Shard { index: 0, count: 1 },
        run_name: "bench".into(),
        driver: Driver::Idm,
        traffic: Traffic::Idm,
        progress: false,
        log_compression: LogCompression::None,
        video: drivekit::video::VideoMode::None,
        view: drivekit::video::render::View::default(),
    })
    .unwrap();
    println!(
        "evaluate benchmark: {} rollouts × 50 steps × 32 actors (simulated in {:.2} s)\n",
        n_scenes * 10,
        t.elapsed().as_secs_f64()
    );
    println!("| threads | wall s | rollouts/s | reading logs | computing metrics + writing |");
    println!("|---:|---:|---:|---:|---:|");
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let t = Instant::now();
        let o = pool
            .install(|| {
                evaluate::run(&EvaluateOptions {
                    run_dir: run.clone(),
                    scenes_dir: Some(scenes.clone()),
                    metrics: None,
                    force: true,
                    progress: false,
                })
            })
            .unwrap();
        let wall = t.elapsed().as_secs_f64();
        assert!(o.failed.is_empty(), "{:?}", o.failed);
        let (r, c) = (o.read.as_secs_f64(), o.compute.as_secs_f64());
        println!(
            "| {threads} | {wall:.2} | {:.0} | {:.0} % | {:.0} % |",
            o.rollouts as f64 / wall,
            100.0 * r / (r + c),
            100.0 * c / (r + c)
        );
    }
}
