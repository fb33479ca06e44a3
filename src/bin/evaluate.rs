//! `evaluate runs/X`: recompute the per-step metrics of a run from its rollout logs, without
//! simulating again.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use drivekit::evaluate::{self, EvaluateOptions};

/// Score a run's rollouts again from their logs (rollout.asl / .xz) with the current metric code
/// and rewrite each batch's metrics.parquet; batches already scored by this version are skipped.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The run directory.
    run: PathBuf,
    /// Scene files (`<scene_id>.dkscene`); without them scenes are rebuilt from the logs, with no
    /// map (offroad and driving direction are then skipped).
    #[arg(long)]
    scenes: Option<PathBuf>,
    /// Recompute only these metrics (comma-separated); the others keep their rows.
    #[arg(long, value_delimiter = ',')]
    metrics: Option<Vec<String>>,
    /// Redo batches already evaluated by this version.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let a = Args::parse();
    let opts = EvaluateOptions {
        run_dir: a.run.clone(),
        scenes_dir: a.scenes,
        metrics: a.metrics,
        force: a.force,
        progress: !a.quiet,
    };
    match evaluate::run(&opts) {
        Ok(o) => {
            println!(
                "{}: {} batches evaluated ({} rollouts), {} already up to date (metrics {}), {} not complete, {} failed",
                a.run.display(),
                o.evaluated,
                o.rollouts,
                o.up_to_date,
                drivekit::metrics::table::metrics_version(),
                o.not_complete,
                o.failed.len()
            );
            for w in &o.warnings {
                eprintln!("evaluate: warning: {w}");
            }
            for (d, e) in &o.failed {
                eprintln!("evaluate: {}: {e}", d.display());
            }
            if o.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("evaluate: {e}");
            ExitCode::from(2)
        }
    }
}
