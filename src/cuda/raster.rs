//! Bird's-eye frames on the device: the renderer draws each frame's polygons into a
//! [`PolygonList`] on the host (transforms, culling), the raster kernel fills every pixel of a
//! batch of frames at once ([`crate::video::PolygonRasteriser`], implemented here for a
//! [`Device`]), and the text overlay is added on the host (`crate::video::frames_with`). The
//! pixels are the CPU rasteriser's (tests compare them byte for byte through the emulator).

use super::device::{CudaError, Device};
use super::source::{DkRasterArgs, Kernel};
use crate::video::raster::{PolygonList, Rgb};

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

impl crate::video::PolygonRasteriser for Device {
    fn rasterise(
        &self,
        all: &PolygonList,
        frame_poly: &[i32],
        background: Rgb,
    ) -> Result<Vec<u8>, String> {
        rasterise(self, all, frame_poly, background).map_err(|e| e.to_string())
    }
}
