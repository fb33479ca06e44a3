//! `drivekit-fixtures`: writes synthetic run directories in AlpaSim's layout (tests, demo, bench).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use drivekit::fixtures::{self, RunSpec};

/// Write a synthetic run directory (AlpaSim layout, seeded values) for demos and benchmarks.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Run directory to create (or add scenes to).
    out: PathBuf,
    /// Number of scenes (one batch each).
    #[arg(long, default_value_t = 8)]
    scenes: usize,
    /// Rollouts per scene.
    #[arg(long, default_value_t = 4)]
    rollouts: usize,
    /// Timesteps per rollout (10 Hz).
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Seed of the value generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write one job dir per Slurm array task (task0/, task1/, …).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// First scene number (add new scenes to an existing run).
    #[arg(long, default_value_t = 0)]
    scene_offset: usize,
    /// run_name written into run_metadata.yaml and the metrics.
    #[arg(long, default_value = "fixture")]
    run_name: String,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let a = Args::parse();
    let spec = RunSpec {
        run_name: a.run_name,
        run_uuid: fixtures::uuid_from(a.seed, "run"),
        scenes: a.scenes,
        rollouts: a.rollouts,
        steps: a.steps,
        seed: a.seed,
        jobs: a.jobs,
        scene_offset: a.scene_offset,
        ..RunSpec::default()
    };
    match fixtures::write_run(&a.out, &spec) {
        Ok(b) => {
            eprintln!("wrote {} batches under {}", b.len(), a.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("drivekit-fixtures: error: {}: {e}", a.out.display());
            ExitCode::from(2)
        }
    }
}
