//! A small RGB rasteriser for the bird's-eye renderer: filled polygons (even-odd scanline),
//! lines of a given width, filled oriented boxes; all in pixel coordinates, clipped to the image.

/// An RGB colour.
pub type Rgb = [u8; 3];

/// An RGB8 image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Raster {
    /// Width (px).
    pub width: usize,
    /// Height (px).
    pub height: usize,
    /// width × height × 3 bytes.
    pub pixels: Vec<u8>,
}

impl Raster {
    /// A raster filled with `bg`.
    pub fn new(width: usize, height: usize, bg: Rgb) -> Raster {
        let mut pixels = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            pixels.extend_from_slice(&bg);
        }
        Raster {
            width,
            height,
            pixels,
        }
    }

    /// Sets one pixel (ignored outside).
    #[inline]
    pub fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The colour at a pixel.
    pub fn get(&self, x: usize, y: usize) -> Rgb {
        let i = (y * self.width + x) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }
}

/// Something polygons are drawn on: a [`Raster`] (filled on the CPU), or a [`PolygonList`] (the
/// same polygons recorded for the CUDA raster kernel, which fills the same pixels).
pub trait Canvas {
    /// Width (px).
    fn width(&self) -> usize;
    /// Height (px).
    fn height(&self) -> usize;
    /// Fills a polygon (even-odd rule, pixel centres).
    fn fill_polygon(&mut self, pts: &[[f64; 2]], c: Rgb);

    /// A line `width` pixels wide.
    fn line(&mut self, a: [f64; 2], b: [f64; 2], width: f64, c: Rgb) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = dx.hypot(dy);
        if len < 1e-9 {
            return;
        }
        // Cheap reject when both ends are far outside the image on the same side.
        let (w, h) = (self.width() as f64, self.height() as f64);
        if (a[0] < -width && b[0] < -width)
            || (a[1] < -width && b[1] < -width)
            || (a[0] > w + width && b[0] > w + width)
            || (a[1] > h + width && b[1] > h + width)
        {
            return;
        }
        let (nx, ny) = (-dy / len * width / 2.0, dx / len * width / 2.0);
        self.fill_polygon(
            &[
                [a[0] + nx, a[1] + ny],
                [b[0] + nx, b[1] + ny],
                [b[0] - nx, b[1] - ny],
                [a[0] - nx, a[1] - ny],
            ],
            c,
        );
    }
}

impl Canvas for Raster {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    /// Fills a polygon (even-odd rule, pixel centres).
    fn fill_polygon(&mut self, pts: &[[f64; 2]], c: Rgb) {
        if pts.len() < 3 {
            return;
        }
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in pts {
            lo = lo.min(p[1]);
            hi = hi.max(p[1]);
        }
        let y0 = lo.floor().max(0.0) as i64;
        let y1 = (hi.ceil() as i64).min(self.height as i64 - 1);
        let mut xs: Vec<f64> = Vec::with_capacity(8);
        for y in y0..=y1 {
            let yc = y as f64 + 0.5;
            xs.clear();
            let mut j = pts.len() - 1;
            for i in 0..pts.len() {
                let (a, b) = (pts[i], pts[j]);
                if (a[1] > yc) != (b[1] > yc) {
                    xs.push(a[0] + (yc - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
                }
                j = i;
            }
            xs.sort_by(f64::total_cmp);
            for pair in xs.chunks_exact(2) {
                let xa = (pair[0] - 0.5).ceil().max(0.0) as i64;
                let xb = ((pair[1] - 0.5).floor() as i64).min(self.width as i64 - 1);
                for x in xa..=xb {
                    let i = (y as usize * self.width + x as usize) * 3;
                    self.pixels[i..i + 3].copy_from_slice(&c);
                }
            }
        }
    }
}

/// Polygons in pixel coordinates, in drawing order (later ones paint over earlier ones), for the
/// CUDA raster kernel: vertices, the first vertex of each polygon, colours (0xRRGGBB) and bounding
/// boxes (min x, min y, max x, max y).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolygonList {
    /// Width (px).
    pub width: usize,
    /// Height (px).
    pub height: usize,
    /// Vertex x.
    pub xs: Vec<f64>,
    /// Vertex y.
    pub ys: Vec<f64>,
    /// Polygon p: vertices `start[p]..start[p + 1]`.
    pub start: Vec<i32>,
    /// Colour of each polygon, 0xRRGGBB.
    pub colour: Vec<u32>,
    /// Bounding box of each polygon.
    pub bbox: Vec<f64>,
}

impl PolygonList {
    /// An empty list for a `width` × `height` image.
    pub fn new(width: usize, height: usize) -> PolygonList {
        PolygonList {
            width,
            height,
            start: vec![0],
            ..PolygonList::default()
        }
    }

    /// Polygons recorded.
    pub fn len(&self) -> usize {
        self.colour.len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.colour.is_empty()
    }
}

impl Canvas for PolygonList {
    fn width(&self) -> usize {
        self.width
    }

    fn height(&self) -> usize {
        self.height
    }

    fn fill_polygon(&mut self, pts: &[[f64; 2]], c: Rgb) {
        if pts.len() < 3 {
            return;
        }
        let mut b = [
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ];
        for p in pts {
            self.xs.push(p[0]);
            self.ys.push(p[1]);
            b = [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ];
        }
        self.start.push(self.xs.len() as i32);
        self.colour
            .push(u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]));
        self.bbox.extend_from_slice(&b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_the_inside_only_and_clips() {
        let mut r = Raster::new(10, 10, [0, 0, 0]);
        r.fill_polygon(
            &[[2.0, 2.0], [8.0, 2.0], [8.0, 8.0], [2.0, 8.0]],
            [255, 0, 0],
        );
        assert_eq!(r.get(5, 5), [255, 0, 0]);
        assert_eq!(r.get(1, 5), [0, 0, 0]);
        assert_eq!(r.get(8, 5), [0, 0, 0], "pixel centre 8.5 is outside");
        let filled = (0..100)
            .filter(|i| r.get(i % 10, i / 10) == [255, 0, 0])
            .count();
        assert_eq!(filled, 36);
        r.fill_polygon(&[[-50.0, -50.0], [50.0, -50.0], [50.0, 50.0]], [0, 255, 0]);
        r.line([0.0, 9.5], [10.0, 9.5], 1.0, [0, 0, 255]);
        assert_eq!(r.get(3, 9), [0, 0, 255]);
    }
}
