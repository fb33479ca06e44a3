//! `simulate`: closed-loop simulation of scene shards: `run` (built-in drivers, log-replay or IDM
//! traffic, or an external driver), `check-config` (and the older `--check-config`), `config
//! migrate`, `import` (public datasets → drivekit scenes), `generate`, `scene-info`, and the CUDA
//! backend's `gpu-check` and `bench-backends`.
//! Flags are parsed here; each command is one library call.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use drivekit::cuda::{self, Backend, KernelBackend};
use drivekit::rollout::sink::LogCompression;
use drivekit::runner::{self, RunRequest};
use drivekit::scene::{self, import::ImportKind, Scene};
use drivekit::sim::driver::Driver;
use drivekit::sim::traffic::Traffic;
use drivekit::video::VideoMode;

/// Simulate driving policies on real scenes: import scenes, check a configuration, run shards
/// of closed-loop rollouts into AlpaSim-layout run directories.
///
/// Exit status: 0 everything written; 1 the run finished but some scenes failed (each batch has
/// _failed.json; a rerun retries them); 2 nothing could run (bad flags or configuration, no
/// scenes, an unreachable driver, an unusable backend, a failed check).
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Check a wizard-config.yaml, print its clock and capacity tables and exit (the older
    /// spelling of `simulate check-config CONFIG`).
    #[arg(long, value_name = "WIZARD_CONFIG")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate this shard's scenes into a run dir (rollout.asl, metrics.parquet, _complete per
    /// batch). Rollouts of all scenes are stepped together in chunks across all cores.
    Run(RunArgs),
    /// Compose and check a configuration (AlpaSim's wizard-config.yaml or config groups, as
    /// Hydra does: CONFIG's directory holds the groups), then print the files composed, the clock
    /// table per camera, the capacity table with its bottleneck and every warning. Nothing is
    /// written. Example: `simulate check-config wizard/base_config.yaml deploy=local
    /// topology=2gpu driver=vavam`.
    CheckConfig {
        /// The configuration file.
        config: PathBuf,
        /// Hydra-style overrides: `key=value`, `group=option`, `+key=value` (add),
        /// `++key=value` (force), `~key` (delete).
        overrides: Vec<String>,
        /// Also list the keys drivekit does not read, with the file each came from.
        #[arg(short, long)]
        verbose: bool,
        /// Print the resolved configuration (AlpaSim's nesting, as a run's wizard-config.yaml)
        /// instead of the tables.
        #[arg(long)]
        print: bool,
    },
    /// Configuration tools.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Convert public-dataset recordings into drivekit's scene format (`<scene_id>.dkscene`),
    /// files in parallel on all cores. A file or scenario that cannot be imported is named and
    /// skipped (exit 1); nothing imported is exit 2.
    Import {
        /// Dataset format of the inputs.
        kind: ImportKind,
        /// Inputs: for av2-forecasting, the directory holding scenario_<id>.parquet and
        /// log_map_archive_<id>.json; for av2-sensor, the log directory; for the others files,
        /// directories searched for the kind's files (womd: `*.tfrecord*`; gpudrive and
        /// nuplan-case: `*.json`; commonroad: `*.xml`), or quoted globs.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Output directory.
        #[arg(short, long, default_value = "fixtures/scenes")]
        out: PathBuf,
        /// Do not draw a progress bar.
        #[arg(long)]
        quiet: bool,
        /// nuplan-db: the maps' root (NUPLAN_MAPS_ROOT; `<location>/<version>/map.gpkg` below
        /// it). Without it scenes have no map.
        #[arg(long, env = "NUPLAN_MAPS_ROOT")]
        map_root: Option<PathBuf>,
        /// nuplan-db: scenario length (s).
        #[arg(long, default_value_t = 15.0)]
        duration: f64,
        /// nuplan-db: scenario start relative to its tag (s; nuPlan's mapping starts 3 s before).
        #[arg(long, default_value_t = -3.0, allow_hyphen_values = true)]
        offset: f64,
        /// nuplan-db: only these scenario types (comma-separated; default all).
        #[arg(long, value_delimiter = ',')]
        scenario_types: Vec<String>,
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
        /// Write the traffic-rules scene instead (a lane graph with a signal, a stop sign and
        /// speed limits; `procedural-traffic-rules`).
        #[arg(long)]
        traffic_rules: bool,
        /// Output directory.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// List the scenes of a directory: dataset, duration, agents, lanes, signals, stop signs,
    /// speed limits, tags.
    Scenes {
        /// Directory of .dkscene files.
        #[arg(default_value = "fixtures/scenes")]
        dir: PathBuf,
        /// Print JSON lines (one object per scene) instead of the table.
        #[arg(long)]
        json: bool,
        /// Print only the scene ids (a split file).
        #[arg(long, conflicts_with = "json")]
        ids: bool,
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
        backend: KernelBackend,
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
        backend: KernelBackend,
        /// Measure the kernels only.
        #[arg(long)]
        skip_cpu: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Convert an older drivekit configuration (flat keys, `deploy:`) to AlpaSim's nesting with
    /// drivekit's section; the result is checked to load. Prints to stdout without `--out`.
    Migrate {
        /// The older configuration.
        old: PathBuf,
        /// Where to write the converted file (written atomically; may be OLD itself).
        #[arg(short, long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Directory of .dkscene files.
    #[arg(long, default_value = "fixtures/scenes")]
    scenes: PathBuf,
    /// Run directory to write (created; a rerun resumes).
    #[arg(short, long)]
    out: PathBuf,
    /// The configuration to compose: a wizard-config.yaml, or an AlpaSim config such as
    /// wizard/base_config.yaml whose directory holds its groups (default: drivekit's defaults,
    /// AlpaSim's 10 Hz clocks).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Hydra-style overrides after the flags: `key=value`, `group=option`, `+key=value` (add),
    /// `++key=value` (force), `~key` (delete); e.g.
    /// `runtime.simulation_config.control_timestep_us=200000 topology=8gpu_64rollouts`.
    overrides: Vec<String>,
    /// Shard i/n of the sorted scene list; default: Slurm's array variables, else 0/1.
    #[arg(long)]
    shard: Option<String>,
    /// Run the scene ids listed in FILE (one per line, # comments), e.g. a benchmark split such
    /// as nuPlan's Val14 or NAVSIM's navtest kept as text [config: scenes.scene_ids].
    #[arg(long, value_name = "FILE")]
    split: Option<PathBuf>,
    /// Rollouts per scene [config: runtime.simulation_config.n_rollouts, default 1].
    #[arg(long)]
    rollouts: Option<u32>,
    /// run_name for a new run dir [config: wizard.run_name, default drivekit].
    #[arg(long)]
    run_name: Option<String>,
    /// The policy under test [config: drivekit.driver, default log-replay].
    #[arg(long, value_enum)]
    driver: Option<Driver>,
    /// Address of an external driver server (host:port or unix:/path); repeat for several
    /// [config: drivekit.external_driver.addresses].
    #[arg(long = "driver-address", value_name = "ADDRESS")]
    driver_addresses: Vec<String>,
    /// How the other agents move [config: drivekit.traffic, default log-replay].
    #[arg(long, value_enum)]
    traffic: Option<Traffic>,
    /// Seed mixed into every rollout's seed [config: drivekit.perturbation.seed, default 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Do not draw a progress bar.
    #[arg(long)]
    quiet: bool,
    /// Store rollout logs as rollout.asl.xz (LZMA) instead of rollout.asl
    /// [config: drivekit.log_compression, default none].
    #[arg(long, value_enum)]
    log_compression: Option<LogCompression>,
    /// Evaluation videos (H.264 MP4 per rollout, bird's-eye view): for every rollout, only for
    /// rollouts with a violation (at-fault collision, offroad, ≥
    /// drivekit.evaluation.max_dist_to_gt_m off the recorded path), or none
    /// [config: drivekit.video.mode, default violations].
    #[arg(long, value_enum)]
    video: Option<VideoMode>,
    /// Video frame size (px, square, even) [config: drivekit.video.size_px, default 256].
    #[arg(long)]
    video_size: Option<usize>,
    /// Which backend steps the rollouts: auto (CUDA when a usable GPU, driver and NVRTC are
    /// found and a start-up self-check — one rollout on the GPU and on the CPU, compared —
    /// passes, else the CPU; the choice and why are printed, logged and written to
    /// run_metadata.yaml), cpu, cuda (fail without a GPU), or cuda-emulated (the CUDA kernels
    /// compiled as C++ on one core, for checking them without a GPU; needs g++). Note: the CUDA
    /// backend has not yet run on a real GPU; it is tested through the kernel emulator only
    /// (docs/cuda.md) [config: drivekit.backend, default auto].
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Video scale (metres per pixel) [config: drivekit.video.scale_m_per_px, default 0.25].
    #[arg(long)]
    video_scale: Option<f64>,
}

impl RunArgs {
    fn request(self) -> RunRequest {
        RunRequest {
            scenes_dir: self.scenes,
            run_dir: self.out,
            config: self.config,
            overrides: self.overrides,
            split: self.split,
            shard: self.shard,
            rollouts: self.rollouts,
            run_name: self.run_name,
            driver: self.driver,
            driver_addresses: self.driver_addresses,
            traffic: self.traffic,
            seed: self.seed,
            progress: !self.quiet,
            log_compression: self.log_compression,
            video: self.video,
            video_size: self.video_size,
            video_scale: self.video_scale,
            backend: self.backend,
        }
    }
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    match run(Args::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("simulate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Composes and checks a configuration and prints what `check-config` reports.
fn check_config(
    path: &std::path::Path,
    overrides: &[String],
    verbose: bool,
    print: bool,
) -> anyhow::Result<u8> {
    let cfg = drivekit::config::SimConfig::compose(path, overrides)?;
    if print {
        for w in &cfg.warnings {
            eprintln!("simulate: warning: {w}");
        }
        print!("{}", cfg.to_yaml());
    } else {
        print!("{}", cfg.check_report(verbose));
        println!(
            "{}: the clocks line up and every rule holds",
            path.display()
        );
    }
    Ok(0)
}

fn run(args: Args) -> anyhow::Result<u8> {
    if let Some(path) = &args.check_config {
        return check_config(path, &[], false, false);
    }
    let Some(command) = args.command else {
        anyhow::bail!("nothing to do: give --check-config FILE or a subcommand (see --help)");
    };
    let print = &mut |line: &str| println!("{line}");
    match command {
        Command::Run(a) => {
            let opts = a.request().resolve(|k| std::env::var(k).ok())?;
            for w in &opts.config.warnings {
                eprintln!("simulate: warning: {w}");
            }
            let started = std::time::Instant::now();
            let o = runner::run(&opts)?;
            print!("{}", o.summary(&opts, started.elapsed().as_secs_f64()));
            for (scene, err) in &o.failed {
                eprintln!("simulate: {scene}: {err}");
            }
            if !o.failed.is_empty() {
                eprintln!(
                    "simulate: {} scene(s) failed; see _failed.json in their batch dirs (a rerun retries them)",
                    o.failed.len()
                );
            }
            return Ok(o.exit_code());
        }
        Command::CheckConfig {
            config,
            overrides,
            verbose,
            print,
        } => return check_config(&config, &overrides, verbose, print),
        Command::Config(ConfigCommand::Migrate { old, out }) => {
            let Some(yaml) = drivekit::config::migrate::migrate_file(&old)? else {
                println!(
                    "{}: already in AlpaSim's nesting; nothing to convert",
                    old.display()
                );
                return Ok(0);
            };
            match out {
                Some(out) => {
                    drivekit::fsutil::write_atomic(&out, yaml.as_bytes())
                        .with_context(|| format!("writing {}", out.display()))?;
                    eprintln!("{} → {} (AlpaSim's nesting)", old.display(), out.display());
                }
                None => print!("{yaml}"),
            }
        }
        Command::Import {
            kind,
            inputs,
            out,
            quiet,
            map_root,
            duration,
            offset,
            scenario_types,
        } => {
            let opts = scene::import::ImportOptions {
                progress: !quiet,
                nuplan: scene::nuplan_db::NuplanDbOptions {
                    map_root,
                    duration_s: duration,
                    offset_s: offset,
                    types: scenario_types,
                    ..Default::default()
                },
            };
            let report = scene::import::import_to(kind, &inputs, &out, &opts)?;
            let (stdout, stderr) = report.text(&out);
            print!("{stdout}");
            eprint!("{stderr}");
            return Ok(report.exit_code());
        }
        Command::Generate {
            count,
            agents,
            lanes,
            duration,
            seed,
            traffic_rules,
            out,
        } => {
            if traffic_rules {
                let scene = scene::procedural::traffic_rules_scene();
                let path = out.join(format!("{}.{}", scene.scene_id, scene::EXTENSION));
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("creating {}", out.display()))?;
                scene.save(&path)?;
                println!("{}\n  written to {}", scene.summary(), path.display());
                return Ok(0);
            }
            let spec = scene::procedural::ProceduralSpec {
                seed,
                agents,
                lanes,
                duration_s: duration,
            };
            let n = scene::procedural::write_scenes(&spec, count, &out)?;
            println!(
                "{n} procedural scenes ({agents} actors, {lanes} lanes, {duration} s) → {}",
                out.display()
            );
        }
        Command::Scenes { dir, json, ids } => {
            let (entries, bad) = scene::catalogue::catalogue(&dir)
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            if json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else if ids {
                for e in &entries {
                    println!("{}", e.scene_id);
                }
            } else {
                println!("{}", scene::catalogue::table(&entries));
                println!("{} scenes in {}", entries.len(), dir.display());
            }
            for b in &bad {
                eprintln!("simulate: unreadable: {b}");
            }
            if !bad.is_empty() {
                eprintln!("simulate: {} file(s) could not be read", bad.len());
                return Ok(1);
            }
        }
        Command::SceneInfo { file } => println!("{}", Scene::load(&file)?.summary()),
        Command::GpuCheck {
            scenes,
            backend,
            rollouts,
            tolerance,
            require_gpu,
        } => match cuda::check::kernel_device(backend, require_gpu)? {
            Ok(dev) => cuda::check::gpu_check(&dev, &scenes, rollouts, tolerance, print)?,
            Err(why) => println!("SKIPPED: no usable GPU here ({why}); nothing was checked"),
        },
        Command::BenchBackends {
            rollouts,
            steps,
            backend,
            skip_cpu,
        } => match cuda::check::kernel_device(backend, false)? {
            Ok(dev) => cuda::bench::report(&dev, &rollouts, steps, skip_cpu, print)?,
            Err(why) => println!("SKIPPED: no usable GPU here ({why}); nothing was measured"),
        },
    }
    Ok(0)
}
