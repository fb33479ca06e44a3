//! `render runs/X`: evaluation videos afterwards, from each batch's rollout.asl and its scene.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use drivekit::render::{self, RenderOptions};
use drivekit::video::{render::View, VideoMode};

/// Render bird's-eye evaluation videos (H.264 MP4, one per rollout) from a run's logs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The run directory.
    run: PathBuf,
    /// Scene files (`<scene_id>.dkscene`); without them the map is not drawn.
    #[arg(long)]
    scenes: Option<PathBuf>,
    /// Which rollouts: all, those with an at-fault collision, offroad or at least
    /// --max-dist-to-gt off the recorded path (violations), or none.
    #[arg(long, value_enum, default_value = "violations")]
    video: VideoMode,
    /// Only this scene.
    #[arg(long)]
    scene: Option<String>,
    /// Frame size (px, square, even).
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Metres per pixel.
    #[arg(long, default_value_t = 0.25)]
    scale: f64,
    /// With --video violations: a rollout at least this far (m) from the recorded path counts
    /// as a violation (default: the run's evaluation.max_dist_to_gt_m, 4 m unless configured; use
    /// the value you pass to `aggregate --max-dist-to-gt`).
    #[arg(long, value_name = "METRES")]
    max_dist_to_gt: Option<f64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let a = Args::parse();
    if a.max_dist_to_gt
        .is_some_and(|m| !(m.is_finite() && m > 0.0))
    {
        eprintln!("render: --max-dist-to-gt must be a positive number of metres");
        return ExitCode::from(2);
    }
    let view = match View::video(a.size, a.scale) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("render: --size/--scale: {e}");
            return ExitCode::from(2);
        }
    };
    let opts = RenderOptions {
        run_dir: a.run.clone(),
        scenes_dir: a.scenes,
        mode: a.video,
        scene: a.scene,
        view,
        progress: !a.quiet,
        max_dist_to_gt_m: a.max_dist_to_gt,
    };
    match render::run(&opts) {
        Ok(o) => {
            println!(
                "{}: {} videos from {} batches, {} failed",
                a.run.display(),
                o.videos,
                o.batches,
                o.failed.len()
            );
            for w in &o.warnings {
                eprintln!("render: warning: {w}");
            }
            for (d, e) in &o.failed {
                eprintln!("render: {}: {e}", d.display());
            }
            if o.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("render: {e}");
            ExitCode::from(2)
        }
    }
}
