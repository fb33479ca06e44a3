//! `simulate`: closed-loop simulation of scene shards: `run` (built-in drivers, log-replay or IDM
//! traffic), `import` (public datasets → drivekit scenes), `scene-info`, and `--check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use drivekit::cuda::device::Device;
use drivekit::cuda::Backend;
use drivekit::rollout::sink::LogCompression;
use drivekit::runner::{self, RunOptions, Shard};
use drivekit::scene::{self, Scene};
use drivekit::sim::driver::Driver;
use drivekit::sim::traffic::Traffic;

/// Simulate driving policies on real scenes: import scenes, check a configuration, run shards
/// of closed-loop rollouts into AlpaSim-layout run directories.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Check a wizard-config.yaml against the clock rules, print its clock table and exit.
    #[arg(long, value_name = "WIZARD_CONFIG")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate this shard's scenes into a run dir (rollout.asl, metrics.parquet, _complete per
    /// batch). Rollouts of all scenes are stepped together in chunks across all cores.
    Run {
        /// Directory of .dkscene files.
        #[arg(long, default_value = "fixtures/scenes")]
        scenes: PathBuf,
        /// Run directory to write (created; a rerun resumes).
        #[arg(short, long)]
        out: PathBuf,
        /// wizard-config.yaml to use (default: the 10 Hz base config).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Shard i/n of the sorted scene list; default: Slurm's array variables, else 0/1.
        #[arg(long)]
        shard: Option<String>,
        /// Rollouts per scene (overrides the config).
        #[arg(long)]
        rollouts: Option<u32>,
        /// run_name for a new run dir.
        #[arg(long, default_value = "drivekit")]
        run_name: String,
        /// The policy under test.
        #[arg(long, value_enum, default_value = "log-replay")]
        driver: DriverArg,
        /// Address of an external driver server (host:port or unix:/path); repeat for several.
        /// Overrides driver.addresses of the config.
        #[arg(long = "driver-address", value_name = "ADDRESS")]
        driver_addresses: Vec<String>,
        /// How the other agents move.
        #[arg(long, value_enum, default_value = "log-replay")]
        traffic: TrafficArg,
        /// Seed mixed into every rollout's seed (overrides perturbation.seed of the config).
        #[arg(long)]
        seed: Option<u64>,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
        /// Store rollout logs as rollout.asl.xz (LZMA) instead of rollout.asl.
        #[arg(long, value_enum, default_value = "none")]
        log_compression: CompressionArg,
        /// Evaluation videos (H.264 MP4 per rollout, bird's-eye view): for every rollout, only
        /// for rollouts with a violation (at-fault collision, offroad, ≥ 4 m off the recorded
        /// path), or none.
        #[arg(long, value_enum, default_value = "violations")]
        video: VideoArg,
        /// Video frame size (px, square, even).
        #[arg(long, default_value_t = 256)]
        video_size: usize,
        /// Which backend steps the rollouts: auto (CUDA when a usable GPU, driver and NVRTC are
        /// found and a start-up self-check — one rollout on the GPU and on the CPU, compared —
        /// passes, else the CPU; the choice and why are printed, logged and written to
        /// run_metadata.yaml), cpu, cuda (fail without a GPU), or cuda-emulated (the CUDA
        /// kernels compiled as C++ on one core, for checking them without a GPU; needs g++).
        /// Note: the CUDA backend has not yet run on a real GPU; it is tested through the kernel
        /// emulator only (docs/cuda.md).
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Video scale (metres per pixel).
        #[arg(long, default_value_t = 0.25)]
        video_scale: f64,
    },
    /// Convert a public-dataset scene into drivekit's scene format (`<scene_id>.dkscene`).
    Import {
        /// Dataset format of INPUT.
        kind: Kind,
        /// Input: for av2-forecasting, the directory holding scenario_<id>.parquet and
        /// log_map_archive_<id>.json; for av2-sensor, the log directory; for nuplan-case, a case JSON or a directory of them; for commonroad, an XML file or a
        /// directory of them.
        input: PathBuf,
        /// Output directory.
        #[arg(short, long, default_value = "fixtures/scenes")]
        out: PathBuf,
    },
    /// Generate procedural scenes (a straight multi-lane road with traffic) for scale tests.
    Generate {
        /// Number of scenes (seeds SEED, SEED+1, …).
        #[arg(long, default_value_t = 8)]
        count: u64,
        /// Actors per scene, the ego included.
        #[arg(long, default_value_t = 32)]
        agents: usize,
        /// Lanes.
        #[arg(long, default_value_t = 3)]
        lanes: usize,
        /// Recording length (s, 10 Hz).
        #[arg(long, default_value_t = 20.0)]
        duration: f64,
        /// First seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output directory.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Print a summary of a .dkscene file.
    SceneInfo {
        /// Scene file.
        file: PathBuf,
    },
    /// Check the CUDA kernels against the CPU backend on a directory of scenes: every built-in
    /// driver × traffic model, distances within --tolerance, events exactly (`make test-gpu`).
    /// Without a GPU it says so and exits 0 (or 2 with --require-gpu).
    GpuCheck {
        /// Directory of .dkscene files.
        #[arg(long, default_value = "fixtures/scenes")]
        scenes: PathBuf,
        /// Where the kernels run.
        #[arg(long, value_enum, default_value = "cuda")]
        backend: KernelBackendArg,
        /// Rollouts per scene (seeded perturbations differ per rollout).
        #[arg(long, default_value_t = 4)]
        rollouts: u32,
        /// Largest difference allowed for poses and distances (m).
        #[arg(long, default_value_t = drivekit::cuda::check::GPU_TOLERANCE)]
        tolerance: f64,
        /// Fail (exit 2) when no GPU is found instead of skipping.
        #[arg(long)]
        require_gpu: bool,
    },
    /// Benchmark the kernels against the CPU backend on the same procedural workload (32 actors
    /// per rollout, every metric): agent-steps/s at each rollout count (`make bench-gpu`).
    BenchBackends {
        /// Concurrent rollouts, comma-separated.
        #[arg(long, default_value = "1000,16000,64000", value_delimiter = ',')]
        rollouts: Vec<usize>,
        /// Control steps per rollout.
        #[arg(long, default_value_t = 100)]
        steps: usize,
        /// Where the kernels run.
        #[arg(long, value_enum, default_value = "cuda")]
        backend: KernelBackendArg,
        /// Measure the kernels only.
        #[arg(long)]
        skip_cpu: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DriverArg {
    /// The ego follows its recording (the expert).
    LogReplay,
    /// After the takeover the ego keeps its heading and speed (nuPlan's simplest baseline).
    ConstantVelocity,
    /// After the takeover the ego follows its route under IDM, braking for what is ahead.
    Idm,
    /// A policy served over AlpaSim's EgodriverService gRPC contract (--driver-address, or
    /// driver.addresses in the config).
    External,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VideoArg {
    /// A video for every rollout.
    All,
    /// Only rollouts with a violation.
    Violations,
    /// No videos.
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum CompressionArg {
    /// rollout.asl, as AlpaSim writes it.
    None,
    /// rollout.asl.xz (liblzma); `asl` and drivekit's readers open it transparently.
    Xz,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum BackendArg {
    /// CUDA when usable, else the CPU.
    Auto,
    /// The CPU backend on every core.
    Cpu,
    /// The CUDA kernels on GPU 0.
    Cuda,
    /// The CUDA kernels compiled as C++, on one core.
    CudaEmulated,
}

impl From<BackendArg> for Backend {
    fn from(b: BackendArg) -> Backend {
        match b {
            BackendArg::Auto => Backend::Auto,
            BackendArg::Cpu => Backend::Cpu,
            BackendArg::Cuda => Backend::Cuda,
            BackendArg::CudaEmulated => Backend::CudaEmulated,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KernelBackendArg {
    /// The CUDA kernels on GPU 0.
    Cuda,
    /// The CUDA kernels compiled as C++, on one core.
    CudaEmulated,
}

impl From<KernelBackendArg> for Backend {
    fn from(b: KernelBackendArg) -> Backend {
        match b {
            KernelBackendArg::Cuda => Backend::Cuda,
            KernelBackendArg::CudaEmulated => Backend::CudaEmulated,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum TrafficArg {
    /// Every agent follows its recording.
    LogReplay,
    /// Vehicles follow their recorded paths under IDM, reacting to the ego and each other.
    Idm,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Kind {
    /// Argoverse 2 motion-forecasting scenario (parquet + map JSON).
    Av2Forecasting,
    /// Argoverse 2 sensor log (annotations.feather + city_SE3_egovehicle.feather + map JSON).
    Av2Sensor,
    /// nuPlan devkit metric test case (one JSON file, or a directory searched for *.json).
    NuplanCase,
    /// CommonRoad XML scenario (one file, or a directory searched for *.xml).
    Commonroad,
}

/// Exit status: 0 every batch written; 1 the run finished but some scenes failed (each batch
/// has `_failed.json`; the others are complete); 2 nothing could run (bad flags or
/// configuration, no scenes, an unreachable driver, an unusable backend).
fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("simulate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn summary(s: &Scene) -> String {
    let dur =
        (s.timestamps_us.last().unwrap_or(&0) - s.timestamps_us.first().unwrap_or(&0)) as f64 / 1e6;
    format!(
        "{}: {} timestamps ({dur:.1} s), ego observed {} times, {} agents, {} lanes, {} drivable areas, {} crosswalks\n  source: {}",
        s.scene_id,
        s.timestamps_us.len(),
        s.ego.n_valid(),
        s.agents.len(),
        s.map.lanes.len(),
        s.map.drivable_areas.len(),
        s.map.crosswalks.len(),
        s.source
    )
}

/// `input` itself when it is a file, else every `*.{ext}` below it, sorted.
fn files_with(input: &std::path::Path, ext: &str) -> anyhow::Result<Vec<PathBuf>> {
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut dirs = vec![input.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let p = e?.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                out.push(p);
            }
        }
    }
    out.sort();
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no .json case files found",
        input.display()
    );
    Ok(out)
}

fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(path) = &args.check_config {
        let cfg = drivekit::sim_config::SimConfig::load(path)?;
        print!("{}", cfg.clock_table());
        println!("{}: the clocks line up", path.display());
        return Ok(0);
    }
    let Some(command) = args.command else {
        anyhow::bail!("nothing to do: give --check-config FILE or a subcommand (see --help)");
    };
    match command {
        Command::Run {
            scenes,
            out,
            config,
            shard,
            rollouts,
            run_name,
            driver,
            driver_addresses,
            traffic,
            seed,
            quiet,
            log_compression,
            video,
            video_size,
            video_scale,
            backend,
        } => {
            anyhow::ensure!(
                video_size >= 16 && video_size % 2 == 0 && video_size <= 4096,
                "--video-size {video_size}: use an even size between 16 and 4096"
            );
            anyhow::ensure!(
                video_scale.is_finite() && video_scale > 0.0,
                "--video-scale {video_scale}: metres per pixel must be positive"
            );
            let driver = match driver {
                DriverArg::LogReplay => Driver::LogReplay,
                DriverArg::ConstantVelocity => Driver::ConstantVelocity,
                DriverArg::Idm => Driver::Idm,
                DriverArg::External => Driver::External,
            };
            let traffic = match traffic {
                TrafficArg::LogReplay => Traffic::LogReplay,
                TrafficArg::Idm => Traffic::Idm,
            };
            let mut cfg = match &config {
                Some(p) => drivekit::sim_config::SimConfig::load(p)?,
                None => drivekit::sim_config::SimConfig::default(),
            };
            if let Some(n) = rollouts {
                cfg.n_rollouts = n;
                cfg.check(std::path::Path::new("--rollouts"))?;
            }
            if let Some(seed) = seed {
                cfg.perturbation.seed = seed;
            }
            if !driver_addresses.is_empty() {
                cfg.driver.addresses = driver_addresses;
            }
            let shard = match shard {
                Some(s) => Shard::parse(&s)?,
                None => Shard::from_slurm(|k| std::env::var(k).ok())?
                    .unwrap_or(Shard { index: 0, count: 1 }),
            };
            let opts = RunOptions {
                backend: backend.into(),
                scenes_dir: scenes,
                run_dir: out.clone(),
                config: cfg,
                shard,
                run_name,
                driver,
                traffic,
                progress: !quiet,
                log_compression: match log_compression {
                    CompressionArg::None => LogCompression::None,
                    CompressionArg::Xz => LogCompression::Xz,
                },
                video: match video {
                    VideoArg::All => drivekit::video::VideoMode::All,
                    VideoArg::Violations => drivekit::video::VideoMode::Violations,
                    VideoArg::None => drivekit::video::VideoMode::None,
                },
                view: drivekit::video::render::View {
                    size: video_size,
                    metres_per_px: video_scale,
                    overlay: true,
                    heading_up: false,
                },
            };
            let started = std::time::Instant::now();
            let o = runner::run(&opts)?;
            let wall = started.elapsed().as_secs_f64();
            println!(
                "shard {}/{}: {} batches simulated, {} already complete, {} failed → {}",
                shard.index,
                shard.count,
                o.simulated,
                o.skipped_complete,
                o.failed.len(),
                out.display()
            );
            if o.counts.agent_steps > 0 {
                println!(
                    "{} rollout-steps, {} agent-steps in {wall:.2} s ({:.0} agent-steps/s, writing included)",
                    o.counts.rollout_steps,
                    o.counts.agent_steps,
                    o.counts.agent_steps as f64 / wall.max(1e-9)
                );
            }
            for (scene, err) in &o.failed {
                eprintln!("simulate: {scene}: {err}");
            }
            if !o.failed.is_empty() {
                eprintln!(
                    "simulate: {} scene(s) failed; see _failed.json in their batch dirs (a rerun retries them)",
                    o.failed.len()
                );
                return Ok(1);
            }
        }
        Command::Import { kind, input, out } => {
            let scenes = match kind {
                Kind::Av2Forecasting => vec![scene::av2::import_forecasting_dir(&input)?],
                Kind::Av2Sensor => vec![scene::av2_sensor::import_sensor_log_dir(&input)?],
                Kind::NuplanCase => files_with(&input, "json")?
                    .iter()
                    .map(|f| scene::nuplan_case::import_case(f))
                    .collect::<Result<_, _>>()?,
                Kind::Commonroad => files_with(&input, "xml")?
                    .iter()
                    .map(|f| scene::commonroad::import(f))
                    .collect::<Result<_, _>>()?,
            };
            for scene in scenes {
                let path = out.join(format!("{}.{}", scene.scene_id, scene::EXTENSION));
                scene
                    .save(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}\n  written to {}", summary(&scene), path.display());
            }
        }
        Command::Generate {
            count,
            agents,
            lanes,
            duration,
            seed,
            out,
        } => {
            anyhow::ensure!(
                agents >= 1 && lanes >= 1 && duration > 0.0,
                "--agents and --lanes must be ≥ 1 and --duration positive"
            );
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for s in seed..seed + count {
                let scene = scene::procedural::generate(&scene::procedural::ProceduralSpec {
                    seed: s,
                    agents,
                    lanes,
                    duration_s: duration,
                });
                let path = out.join(format!("{}.{}", scene.scene_id, scene::EXTENSION));
                scene
                    .save(&path)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            println!(
                "{count} procedural scenes ({agents} actors, {lanes} lanes, {duration} s) → {}",
                out.display()
            );
        }
        Command::SceneInfo { file } => println!("{}", summary(&Scene::load(&file)?)),
        Command::GpuCheck {
            scenes,
            backend,
            rollouts,
            tolerance,
            require_gpu,
        } => gpu_check(&scenes, backend.into(), rollouts, tolerance, require_gpu)?,
        Command::BenchBackends {
            rollouts,
            steps,
            backend,
            skip_cpu,
        } => bench_backends(&rollouts, steps, backend.into(), skip_cpu)?,
    }
    Ok(0)
}

/// The kernels' device, or why there is none (`None` after printing the skip message).
fn kernel_device(backend: Backend, require_gpu: bool) -> anyhow::Result<Option<Device>> {
    match backend.choose() {
        Ok(c) => match c {
            drivekit::cuda::Chosen::Kernels(d, _) => Ok(Some(d)),
            drivekit::cuda::Chosen::Cpu(_) => {
                unreachable!("cuda and cuda-emulated never fall back")
            }
        },
        Err(e) if !require_gpu && matches!(backend, Backend::Cuda) => {
            println!("SKIPPED: no usable GPU here ({e}); nothing was checked");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

fn gpu_check(
    dir: &std::path::Path,
    backend: Backend,
    rollouts: u32,
    tolerance: f64,
    require_gpu: bool,
) -> anyhow::Result<()> {
    let Some(dev) = kernel_device(backend, require_gpu)? else {
        if require_gpu {
            std::process::exit(2);
        }
        return Ok(());
    };
    println!("kernels on {}", dev.description);
    let cfg = drivekit::sim_config::SimConfig::default();
    let mut scenes = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "dkscene"))
        .collect();
    paths.sort();
    for p in &paths {
        let s = Scene::load(p)?;
        let id = s.scene_id.clone();
        match drivekit::state::SceneCtx::new(s, &cfg, "check".into()) {
            Ok(c) => scenes.push(c),
            Err(e) => eprintln!("{id}: skipped: {e}"),
        }
    }
    anyhow::ensure!(!scenes.is_empty(), "{}: no scenes to check", dir.display());
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32)
        .flat_map(|s| (0..rollouts).map(move |r| (s, r)))
        .collect();
    let mut failed = 0;
    for driver in [Driver::LogReplay, Driver::ConstantVelocity, Driver::Idm] {
        for traffic in [Traffic::LogReplay, Traffic::Idm] {
            let d = driver.builtin().expect("built in");
            let c = drivekit::cuda::check::compare(&dev, &scenes, &members, &cfg, d, traffic)
                .map_err(anyhow::Error::msg)?;
            let ok = c.agrees(tolerance);
            failed += usize::from(!ok);
            println!(
                "{} {:<17} traffic {:<10} {} rollout-steps, max |Δ| {:.2e}{}, {} event mismatches, {} collision / {} offroad steps",
                if ok { "ok  " } else { "FAIL" },
                d.name(),
                traffic.service().name(),
                c.steps,
                c.max_abs_diff,
                c.worst
                    .as_ref()
                    .map(|(w, r, k)| format!(" ({w}, rollout {r}, step {k})"))
                    .unwrap_or_default(),
                c.event_mismatches.len(),
                c.collision_steps,
                c.offroad_steps
            );
            for s in c.structure.iter().take(5) {
                println!("     {s}");
            }
            for (m, r, k, a, b) in c.event_mismatches.iter().take(5) {
                println!("     {m} rollout {r} step {k}: cpu {a}, kernels {b}");
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of 6 combinations differ from the CPU backend"
    );
    println!("the kernels agree with the CPU backend (tolerance {tolerance:e} m, events exact)");
    Ok(())
}

fn bench_backends(
    rollouts: &[usize],
    steps: usize,
    backend: Backend,
    skip_cpu: bool,
) -> anyhow::Result<()> {
    let Some(dev) = kernel_device(backend, false)? else {
        return Ok(());
    };
    println!(
        "kernels on {}; CPU backend on {} threads; {steps} steps, 32 actors per rollout",
        dev.description,
        rayon::current_num_threads()
    );
    println!(
        "{:<26} {:>9} {:>16} {:>16} {:>8} {:>14}",
        "workload", "rollouts", "CPU agent-st/s", "kernels ag-st/s", "ratio", "device B/rollout"
    );
    for (name, driver, traffic) in [
        ("log-replay + replay", Driver::LogReplay, Traffic::LogReplay),
        ("idm driver + idm traffic", Driver::Idm, Traffic::Idm),
    ] {
        let rows = drivekit::cuda::bench::run(&dev, rollouts, steps, driver, traffic, skip_cpu)
            .map_err(anyhow::Error::msg)?;
        for r in rows {
            let fmt = |v: f64| format!("{:.1} M", v / 1e6);
            println!(
                "{:<26} {:>9} {:>16} {:>16} {:>8} {:>14.0}",
                name,
                r.rollouts,
                r.cpu_per_s.map(fmt).unwrap_or_else(|| "-".into()),
                fmt(r.kernels_per_s),
                r.cpu_per_s
                    .map(|c| format!("{:.1}×", r.kernels_per_s / c))
                    .unwrap_or_else(|| "-".into()),
                r.device_bytes_per_rollout
            );
        }
    }
    Ok(())
}
