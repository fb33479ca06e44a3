//! Evaluation videos (DESIGN §2, §7): the bird's-eye renderer ([`render`]), its rasteriser
//! ([`raster`]) and H.264/MP4 output ([`mp4`]). `simulate --video all|violations|none` writes one
//! `{clipgt_id}_{batch_id}_{rollout_id}.mp4` per rollout into its batch dir.

pub mod mp4;
pub mod raster;
pub mod render;

use std::path::{Path, PathBuf};

use crate::sim::evaluation::METRICS;
use crate::sim::stepper::RolloutTrace;
use crate::state::SceneCtx;

/// Which rollouts get a video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VideoMode {
    /// None.
    None,
    /// Rollouts with an at-fault collision, an offroad step or a deviation ≥ 4 m from the
    /// recorded path (what aggregate sorts into videos/violations/).
    #[default]
    Violations,
    /// Every rollout.
    All,
}

/// True when the rollout has a violation aggregate would flag.
pub fn is_violation(trace: &RolloutTrace) -> bool {
    let idx = |n: &str| METRICS.iter().position(|m| *m == n).expect("registered");
    let (front, lateral, off, dev) = (
        idx("collision_front"),
        idx("collision_lateral"),
        idx("offroad"),
        idx("dist_to_gt_trajectory"),
    );
    trace
        .metrics
        .chunks_exact(METRICS.len())
        .any(|row| row[front] > 0.0 || row[lateral] > 0.0 || row[off] > 0.0 || row[dev] >= 4.0)
}

/// The video file of rollout `index` (batch 0) of a scene in its batch dir.
pub fn video_path(dir: &Path, scene_id: &str, index: u32) -> PathBuf {
    dir.join(format!("{scene_id}_0_{index}.mp4"))
}

/// Renders and encodes one rollout's video.
pub fn write_rollout_video(
    path: &Path,
    ctx: &SceneCtx,
    trace: &RolloutTrace,
    view: &render::View,
    fps: u32,
) -> Result<(), mp4::VideoError> {
    let mut w = mp4::Mp4Writer::new(view.size, view.size, fps)?;
    for k in 0..trace.times_us.len() {
        w.push(&render::frame(ctx, trace, k, view))?;
    }
    w.finish(path)
}
