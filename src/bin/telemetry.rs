//! `telemetry runs/X`: merge the shards' telemetry into telemetry/metrics.prom, draw
//! telemetry/metrics_plot.png and say where the bottleneck is (telemetry/bottlenecks.txt).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Explain a run's performance: merged Prometheus metrics, the 3×3 figure, bottleneck advice.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The run directory (with telemetry/metrics_worker_*.prom written by `simulate run`).
    run: PathBuf,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let args = Args::parse();
    match drivekit::telemetry::report(&args.run) {
        Ok(r) => {
            let s = &r.summary;
            println!(
                "{}: {} worker file(s), {} rollouts in {:.2} s, workers idle {:.0} %",
                s.run_name,
                r.workers,
                s.rollouts,
                s.wall_s,
                100.0 * s.idle_fraction()
            );
            for line in &r.advice {
                println!("  • {line}");
            }
            let dir = args.run.join("telemetry");
            println!(
                "Figure: {}  Advice: {}  Metrics: {}",
                dir.join("metrics_plot.png").display(),
                dir.join("bottlenecks.txt").display(),
                dir.join("metrics.prom").display()
            );
            for e in &r.skipped {
                eprintln!("telemetry: skipped {e}");
            }
            if r.skipped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("telemetry: {e}");
            ExitCode::from(2)
        }
    }
}
