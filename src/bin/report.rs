//! `report runs/X [--compare runs/BASE]`: rebuilds the run report, aggregate/report.html.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use drivekit::aggregate::{self, export::page, trajectory::ChainParams};

/// Rebuild RUN_DIR/aggregate/report.html, the run report: overview and scorecard, scenes
/// (sortable, filterable, with a heat map), every rollout with its metrics over time and its
/// video, and with --compare the paired differences against a baseline run.
///
/// `aggregate` writes the same page; this rebuilds it (e.g. with a baseline) without rewriting
/// the other outputs. The page is one self-contained HTML file plus report/ beside it: open it
/// from a file browser or serve aggregate/ from any static file server.
///
/// Exit status: 0 written; 2 the run or the baseline could not be read.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run directory (runs/X) or Slurm array directory.
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// Add the comparison with this baseline run.
    #[arg(long, value_name = "BASE_RUN")]
    compare: Option<PathBuf>,
    /// Cut each rollout after the first timestep with dist_to_gt_trajectory ≥ this many metres
    /// (as aggregate's --max-dist-to-gt).
    #[arg(long, value_name = "METRES", default_value_t = 4.0)]
    max_dist_to_gt: f64,
    /// Accept job dirs whose wizard-config.yaml differ.
    #[arg(long)]
    allow_mixed_config: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let args = Args::parse();
    let mut opts = aggregate::Options::new(args.run_dir.clone());
    opts.chain = ChainParams {
        max_dist_to_gt_m: args.max_dist_to_gt,
    };
    opts.allow_mixed_config = args.allow_mixed_config;
    opts.progress = !args.quiet;
    match page::rebuild(&opts, args.compare.as_deref()) {
        Ok(path) => {
            if !args.quiet {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("report: {e}");
            ExitCode::from(2)
        }
    }
}
