//! `render runs/X`: evaluation videos afterwards, from each complete batch's rollout.asl and its
//! scene. Each log is replayed into traces (`crate::rollout::replay`), scored again by the
//! evaluation service (the overlay and `--video violations` need the metrics), and rendered as
//! during the run — the same bytes, since drivekit's logs hold the exact state.

use std::path::PathBuf;

use crate::rollout::replay::replay_log;
use crate::sim::evaluation::score_trace;
use crate::video::{is_violation, video_path, write_rollout_video, VideoMode};

/// Why a run cannot be rendered at all (one batch's problem only fails that batch).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The run's wizard-config.yaml is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// rollouts/ cannot be listed.
    #[error("{path}: {source}")]
    Io {
        /// the directory
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
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
    pub view: crate::video::render::View,
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
pub fn run(opts: &RenderOptions) -> Result<RenderOutcome, RenderError> {
    use rayon::prelude::*;
    let cfg_path = opts.run_dir.join(crate::run_dir::WIZARD_CONFIG);
    let cfg = crate::config::SimConfig::load(&cfg_path)?;
    let cfg_file = cfg_path.clone();
    let fps = (1e6 / cfg.simulation.control_timestep_us as f64)
        .round()
        .max(1.0) as u32;
    let max_dist = opts
        .max_dist_to_gt_m
        .unwrap_or(cfg.drivekit.evaluation.max_dist_to_gt_m);
    let rollouts = opts.run_dir.join(crate::run_dir::ROLLOUTS);
    let mut dirs = Vec::new();
    for scene in std::fs::read_dir(&rollouts)
        .map_err(|e| RenderError::Io {
            path: rollouts.clone(),
            source: e,
        })?
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
    let mut outside = Vec::new();
    dirs.retain(|d| match crate::run_dir::writes_outside(&opts.run_dir, d) {
        Some(why) => {
            outside.push((d.clone(), why));
            false
        }
        None => true,
    });
    let bar = crate::report::progress::bar(dirs.len() as u64, "batches", opts.progress);
    /// Videos written and warnings, or the error, of one batch.
    type BatchRender = Result<(usize, Vec<String>), String>;
    let results: Vec<(PathBuf, BatchRender)> = dirs
        .into_par_iter()
        .map(|dir| {
            let r = (|| {
                let mut b = replay_log(&dir, opts.scenes_dir.as_deref(), &cfg)
                    .map_err(|e| e.to_string())?;
                let mut warnings = b.warnings;
                if let Some(e) = &b.stopped {
                    warnings.push(format!("{e}: rendered what comes before it"));
                }
                for (index, trace) in &mut b.rollouts {
                    score_trace(&b.ctx, &cfg, *index, trace);
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
    let mut out = RenderOutcome {
        failed: outside,
        ..RenderOutcome::default()
    };
    out.warnings.extend(
        cfg.warnings
            .iter()
            .map(|w| crate::config::in_file(w, &cfg_file)),
    );
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
