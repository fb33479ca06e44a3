//! `make bench` (video part): rendered + H.264-encoded frames per second on one core at 256×256
//! and 512×512 (a real Argoverse 2 scene, 58 actors, IDM rollout), and the share of `simulate`'s
//! time spent on video with `--video violations` (the default) and `--video all` on the bundled
//! scenes.

use std::path::PathBuf;
use std::time::Instant;

use drivekit::config::SimConfig;
use drivekit::rollout::sink::LogCompression;
use drivekit::run_dir::Shard;
use drivekit::runner::{self, RunOptions};
use drivekit::scene::Scene;
use drivekit::sim::driver::Driver;
use drivekit::sim::stepper::ConfiguredServices;
use drivekit::sim::traffic::Traffic;
use drivekit::state::{BatchState, SceneCtx};
use drivekit::video::render::View;
use drivekit::video::{self, VideoMode};

fn main() {
    let scenes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let cfg = SimConfig::default();
    let scene = Scene::load(&scenes.join("0a1e6f0a-1817-4a98-b02e-db8c9327d151.dkscene")).unwrap();
    let ctxs = vec![SceneCtx::new(scene, &cfg, "bench".into()).unwrap()];
    let configured = ConfiguredServices::new(&cfg);
    let mut st = BatchState::new(&ctxs, &[(0, 0)], &cfg, true);
    let (traces, _, _) = configured
        .run_cpu(
            &mut st,
            &ctxs,
            Driver::Idm.builtin().unwrap(),
            Traffic::Idm.service(),
            true,
            None,
        )
        .unwrap();
    let trace = &traces[0];
    let dir = tempfile::tempdir().unwrap();
    println!(
        "video benchmark (1 core): {} frames of a real Argoverse 2 scene per video\n",
        trace.times_us.len()
    );
    println!("| size | frames/s (render + encode) | render only | MP4 size |");
    println!("|---|---:|---:|---:|");
    for size in [256usize, 512] {
        let view = View {
            size,
            ..View::default()
        };
        let path = dir.path().join(format!("v{size}.mp4"));
        let reps = 3;
        let t = Instant::now();
        for _ in 0..reps {
            video::write_rollout_video(&path, &ctxs[0], trace, &view, 10, None).unwrap();
        }
        let total = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            for k in 0..trace.times_us.len() {
                std::hint::black_box(video::render::frame(&ctxs[0], trace, k, &view));
            }
        }
        let render = t.elapsed().as_secs_f64() / reps as f64;
        let n = trace.times_us.len() as f64;
        println!(
            "| {size}×{size} | {:.0} | {:.0} | {} kB |",
            n / total,
            n / render,
            std::fs::metadata(&path).unwrap().len() / 1000
        );
    }
    println!(
        "\n| simulate (6 bundled scenes × 4 rollouts, IDM, 1 thread) | wall s | share on video |"
    );
    println!("|---|---:|---:|");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut base = f64::NAN;
    for (label, mode) in [
        ("--video none", VideoMode::None),
        ("--video violations", VideoMode::Violations),
        ("--video all", VideoMode::All),
    ] {
        let out = dir.path().join(label.replace(' ', "_"));
        let t = Instant::now();
        pool.install(|| {
            runner::run(&RunOptions {
                backend: drivekit::cuda::Backend::Cpu,
                scenes_dir: scenes.clone(),
                run_dir: out,
                config: {
                    let mut c = SimConfig::default();
                    c.simulation.n_rollouts = 4;
                    c
                },
                shard: Shard { index: 0, count: 1 },
                run_name: "bench".into(),
                driver: Driver::Idm,
                traffic: Traffic::Idm,
                progress: false,
                log_compression: LogCompression::None,
                video: mode,
                view: View::default(),
            })
            .unwrap()
        });
        let wall = t.elapsed().as_secs_f64();
        if mode == VideoMode::None {
            base = wall;
        }
        println!(
            "| {label} | {wall:.2} | {:.0} % |",
            100.0 * (wall - base).max(0.0) / wall
        );
    }
}
