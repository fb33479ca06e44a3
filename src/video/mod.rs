//! Evaluation videos (DESIGN §2, §7): the bird's-eye renderer ([`render`]), its rasteriser
//! ([`raster`]) and H.264/MP4 output ([`mp4`]). `simulate --video all|violations|none` writes one
//! `{clipgt_id}_{batch_id}_{rollout_id}.mp4` per rollout into its batch dir.

pub mod mp4;
pub mod raster;
pub mod render;

use std::path::{Path, PathBuf};

use crate::metrics::table::{index, N_METRICS};
use crate::sim::stepper::RolloutTrace;
use crate::state::SceneCtx;

/// Which rollouts get a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoMode {
    /// None.
    None,
    /// Rollouts with an at-fault collision, an offroad step or a deviation from the recorded
    /// path of at least `evaluation.max_dist_to_gt_m` (4 m by default, as `aggregate
    /// --max-dist-to-gt`): what aggregate sorts into videos/violations/.
    #[default]
    Violations,
    /// Every rollout.
    All,
}

/// True when the rollout has a violation aggregate would flag: an at-fault collision, an offroad
/// step, or a step at least `max_dist_to_gt_m` from the recorded path.
pub fn is_violation(trace: &RolloutTrace, max_dist_to_gt_m: f64) -> bool {
    trace.metrics.chunks_exact(N_METRICS).any(|row| {
        row[index::COLLISION_FRONT] > 0.0
            || row[index::COLLISION_LATERAL] > 0.0
            || row[index::OFFROAD] > 0.0
            || row[index::DIST_TO_GT_TRAJECTORY] >= max_dist_to_gt_m
    })
}

/// The video file of rollout `index` (batch 0) of a scene in its batch dir.
pub fn video_path(dir: &Path, scene_id: &str, index: u32) -> PathBuf {
    dir.join(format!("{scene_id}_0_{index}.mp4"))
}

/// Renders and encodes one rollout's video; with a device, the frames are rasterised by the CUDA
/// raster kernel (the same pixels).
pub fn write_rollout_video(
    path: &Path,
    ctx: &SceneCtx,
    trace: &RolloutTrace,
    view: &render::View,
    fps: u32,
    device: Option<&crate::cuda::device::Device>,
) -> Result<(), mp4::VideoError> {
    let mut w = mp4::Mp4Writer::new(view.size, view.size, fps)?;
    let n = trace.times_us.len();
    match device {
        Some(dev) => {
            for start in (0..n).step_by(crate::cuda::raster::FRAMES_PER_LAUNCH) {
                let end = (start + crate::cuda::raster::FRAMES_PER_LAUNCH).min(n);
                let frames = crate::cuda::raster::frames(dev, ctx, trace, start..end, view)
                    .map_err(|e| mp4::VideoError::Device(e.to_string()))?;
                for f in &frames {
                    w.push(f)?;
                }
            }
        }
        None => {
            for k in 0..n {
                w.push(&render::frame(ctx, trace, k, view))?;
            }
        }
    }
    w.finish(path)
}

/// Settings of `render runs/X`.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The run dir.
    pub run_dir: PathBuf,
    /// Scene files; `None`: scenes rebuilt from the logs (no map drawn).
    pub scenes_dir: Option<PathBuf>,
    /// Which rollouts (`All` or `Violations`; `None` renders nothing).
    pub mode: VideoMode,
    /// Only this scene.
    pub scene: Option<String>,
    /// Frame size and scale.
    pub view: render::View,
    /// Progress bar (on a terminal only).
    pub progress: bool,
    /// Violation threshold of `--video violations` (m from the recorded path); `None`: the run's
    /// `evaluation.max_dist_to_gt_m`.
    pub max_dist_to_gt_m: Option<f64>,
}

/// What `render runs/X` did.
#[derive(Debug, Clone, Default)]
pub struct RenderOutcome {
    /// Videos written.
    pub videos: usize,
    /// Batches read.
    pub batches: usize,
    /// Batches that could not be rendered: (batch dir, error).
    pub failed: Vec<(PathBuf, String)>,
    /// Warnings (truncated logs rendered as far as they go, scenes rebuilt without a map).
    pub warnings: Vec<String>,
}

/// Renders videos afterwards from each complete batch's rollout.asl and its scene, batches in
/// parallel: every rollout, or only those with a violation.
pub fn render_run(opts: &RenderOptions) -> Result<RenderOutcome, String> {
    use rayon::prelude::*;
    let cfg_path = opts.run_dir.join(crate::run_dir::WIZARD_CONFIG);
    let cfg = crate::sim_config::SimConfig::load(&cfg_path).map_err(|e| e.to_string())?;
    let fps = (1e6 / cfg.control_timestep_us as f64).round().max(1.0) as u32;
    let max_dist = opts
        .max_dist_to_gt_m
        .unwrap_or(cfg.evaluation.max_dist_to_gt_m);
    let rollouts = opts.run_dir.join(crate::run_dir::ROLLOUTS);
    let mut dirs = Vec::new();
    for scene in std::fs::read_dir(&rollouts)
        .map_err(|e| format!("{}: {e}", rollouts.display()))?
        .flatten()
    {
        if opts
            .scene
            .as_ref()
            .is_some_and(|s| scene.file_name().to_string_lossy() != s.as_str())
        {
            continue;
        }
        if let Ok(rd) = std::fs::read_dir(scene.path()) {
            dirs.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && p.join(crate::run_dir::COMPLETE).exists()),
            );
        }
    }
    dirs.sort();
    let bar = crate::report::progress::bar(dirs.len() as u64, "batches", opts.progress);
    /// Videos written and warnings, or the error, of one batch.
    type BatchRender = Result<(usize, Vec<String>), String>;
    let results: Vec<(PathBuf, BatchRender)> = dirs
        .into_par_iter()
        .map(|dir| {
            let r = (|| {
                let b = crate::evaluate::replay_batch(&dir, opts.scenes_dir.as_deref(), &cfg)?;
                let mut warnings = b.warnings;
                if let Some(e) = &b.stopped {
                    warnings.push(format!("{e}: rendered what comes before it"));
                }
                let mut n = 0;
                for (index, trace) in &b.rollouts {
                    let wanted = match opts.mode {
                        VideoMode::None => false,
                        VideoMode::All => true,
                        VideoMode::Violations => is_violation(trace, max_dist),
                    };
                    if wanted && !trace.times_us.is_empty() {
                        let path = video_path(&dir, &b.ctx.scene.scene_id, *index);
                        write_rollout_video(&path, &b.ctx, trace, &opts.view, fps, None)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                        n += 1;
                    }
                }
                Ok((n, warnings))
            })();
            bar.inc(1);
            (dir, r)
        })
        .collect();
    bar.finish_and_clear();
    let mut out = RenderOutcome::default();
    for (dir, r) in results {
        out.batches += 1;
        match r {
            Ok((n, w)) => {
                out.videos += n;
                out.warnings.extend(w);
            }
            Err(e) => out.failed.push((dir, e)),
        }
    }
    Ok(out)
}
