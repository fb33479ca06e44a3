//! Evaluation videos (DESIGN §2, §7): the bird's-eye renderer ([`render`]), its rasteriser
//! ([`raster`]) and H.264/MP4 output ([`mp4`]). `simulate --video all|violations|none` writes one
//! `{clipgt_id}_{batch_id}_{rollout_id}.mp4` per rollout into its batch dir.

pub mod mp4;
pub mod raster;
pub mod render;

use std::path::{Path, PathBuf};

use crate::metrics::table::{index, N_METRICS};
use crate::rollout::trace::RolloutTrace;
use crate::state::SceneCtx;

/// Which rollouts get a video (a command-line value: `all`, `violations`, `none`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum VideoMode {
    /// No videos.
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
    // A scene id read from a log may hold anything: it names a file in `dir`, never a path.
    let name: String = scene_id
        .chars()
        .map(|c| {
            if matches!(c, '/' | '\\' | '\0') {
                '_'
            } else {
                c
            }
        })
        .collect();
    dir.join(format!("{name}_0_{index}.mp4"))
}

/// Frames rasterised together by a [`PolygonRasteriser`] (bounds its memory: 64 × 512² × 3 B =
/// 48 MiB).
pub const FRAMES_PER_BATCH: usize = 64;

/// Fills the pixels of a batch of frames drawn into a [`raster::PolygonList`]: frame f is polygons
/// `frame_poly[f]..frame_poly[f + 1]` over `background`, RGB8 frame after frame — exactly the pixels
/// the CPU rasteriser fills. The CUDA backend's raster kernel implements it
/// (`crate::cuda::raster`), so the video code needs nothing of CUDA.
pub trait PolygonRasteriser {
    /// The pixels, or why they could not be made.
    fn rasterise(
        &self,
        all: &raster::PolygonList,
        frame_poly: &[i32],
        background: raster::Rgb,
    ) -> Result<Vec<u8>, String>;
}

/// Renders steps `steps` of a rollout through `rasteriser`, overlay included (drawn on the host).
pub fn frames_with(
    rasteriser: &dyn PolygonRasteriser,
    ctx: &SceneCtx,
    trace: &RolloutTrace,
    steps: std::ops::Range<usize>,
    view: &render::View,
) -> Result<Vec<raster::Raster>, String> {
    let (w, h) = (view.size, view.size);
    let mut all = raster::PolygonList::new(w, h);
    let mut frame_poly = vec![0i32];
    for k in steps.clone() {
        render::draw(&mut all, ctx, trace, k, view);
        frame_poly.push(all.len() as i32);
    }
    let pixels = rasteriser.rasterise(&all, &frame_poly, render::OFF)?;
    let mut out = Vec::with_capacity(steps.len());
    for (i, k) in steps.enumerate() {
        let mut r = raster::Raster {
            width: w,
            height: h,
            pixels: pixels[i * w * h * 3..(i + 1) * w * h * 3].to_vec(),
        };
        render::finish(&mut r, trace, k, view);
        out.push(r);
    }
    Ok(out)
}

/// Renders and encodes one rollout's video; with a rasteriser (the CUDA backend's), the frames'
/// pixels are filled by it (the same pixels as on the CPU).
pub fn write_rollout_video(
    path: &Path,
    ctx: &SceneCtx,
    trace: &RolloutTrace,
    view: &render::View,
    fps: u32,
    rasteriser: Option<&dyn PolygonRasteriser>,
) -> Result<(), mp4::VideoError> {
    let mut w = mp4::Mp4Writer::new(view.size, view.size, fps)?;
    let n = trace.times_us.len();
    match rasteriser {
        Some(dev) => {
            for start in (0..n).step_by(FRAMES_PER_BATCH) {
                let end = (start + FRAMES_PER_BATCH).min(n);
                let frames = frames_with(dev, ctx, trace, start..end, view)
                    .map_err(mp4::VideoError::Device)?;
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
