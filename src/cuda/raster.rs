//! Bird's-eye frames on the device: the renderer draws each frame's polygons into a
//! [`PolygonList`] on the host (transforms, culling), the raster kernel fills every pixel of a
//! batch of frames at once, and the text overlay is added on the host. The pixels are the CPU
//! rasteriser's (tests compare them byte for byte through the emulator).

use super::device::{CudaError, Device};
use super::source::{DkRasterArgs, Kernel};
use crate::sim::stepper::RolloutTrace;
use crate::state::SceneCtx;
use crate::video::raster::{PolygonList, Raster, Rgb};
use crate::video::render::{self, View, OFF};

/// Frames rasterised per launch (bounds the device memory: 64 × 512² × 3 B = 48 MiB).
pub const FRAMES_PER_LAUNCH: usize = 64;

/// Fills frames on the device: frame f is polygons `frame_poly[f]..frame_poly[f + 1]` of `all`
/// over `background`. Returns the RGB8 pixels, frame after frame.
pub fn rasterise(
    dev: &Device,
    all: &PolygonList,
    frame_poly: &[i32],
    background: Rgb,
) -> Result<Vec<u8>, CudaError> {
    let (w, h) = (all.width, all.height);
    let n_frames = frame_poly.len().saturating_sub(1);
    let out_bytes = n_frames * w * h * 3;
    let bufs = [
        dev.upload_new(&all.xs)?,
        dev.upload_new(&all.ys)?,
        dev.upload_new(&all.bbox)?,
        dev.upload_new(&all.start)?,
        dev.upload_new(&all.colour)?,
        dev.upload_new(frame_poly)?,
        dev.alloc(out_bytes)?,
    ];
    let args = DkRasterArgs {
        vx: bufs[0].addr,
        vy: bufs[1].addr,
        bbox: bufs[2].addr,
        poly_start: bufs[3].addr,
        colour: bufs[4].addr,
        frame_poly: bufs[5].addr,
        out: bufs[6].addr,
        width: w as u32,
        height: h as u32,
        frames: n_frames as u32,
        background: u32::from(background[0]) << 16
            | u32::from(background[1]) << 8
            | u32::from(background[2]),
    };
    let threads = u32::try_from(n_frames * w * h)
        .map_err(|_| CudaError::Driver("too many pixels for one launch".into()))?;
    dev.launch(Kernel::Raster, &args, threads)?;
    let mut pixels = vec![0u8; out_bytes];
    dev.download(&bufs[6], &mut pixels)?;
    Ok(pixels)
}

/// Renders steps `steps` of a rollout, overlay included.
pub fn frames(
    dev: &Device,
    ctx: &SceneCtx,
    trace: &RolloutTrace,
    steps: std::ops::Range<usize>,
    view: &View,
) -> Result<Vec<Raster>, CudaError> {
    let (w, h) = (view.size, view.size);
    let mut all = PolygonList::new(w, h);
    let mut frame_poly = vec![0i32];
    for k in steps.clone() {
        render::draw(&mut all, ctx, trace, k, view);
        frame_poly.push(all.len() as i32);
    }
    let n_frames = steps.len();
    let pixels = rasterise(dev, &all, &frame_poly, OFF)?;
    let mut out = Vec::with_capacity(n_frames);
    for (i, k) in steps.enumerate() {
        let mut r = Raster {
            width: w,
            height: h,
            pixels: pixels[i * w * h * 3..(i + 1) * w * h * 3].to_vec(),
        };
        render::finish(&mut r, trace, k, view);
        out.push(r);
    }
    Ok(out)
}
