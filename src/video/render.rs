//! The bird's-eye renderer (the sensor service's camera, DESIGN §7): an ego-centred, north-up
//! raster at a fixed number of metres per pixel — drivable area, crosswalks, lane centerlines,
//! the recorded ego path, the path driven so far, agents in class colours with a heading tick, the
//! ego — and an overlay with the time, the speed and the step's metrics, so a reviewer sees why a
//! rollout failed.

use plotters::prelude::*;

use super::raster::{Canvas, Raster, Rgb};
use crate::metrics::table::{index, N_METRICS};
use crate::rollout::trace::RolloutTrace;
use crate::scene::AgentClass;
use crate::state::SceneCtx;

/// Size and scale of a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// Width and height (px, even).
    pub size: usize,
    /// Metres per pixel.
    pub metres_per_px: f64,
    /// Draw the text overlay.
    pub overlay: bool,
    /// Rotate the view so the ego's heading points up (a camera fixed to the vehicle); else
    /// north-up.
    pub heading_up: bool,
}

/// A video frame size or scale out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ViewError {
    /// Not an even size in 16…4096.
    #[error("video size {0} px: use an even size between 16 and 4096")]
    Size(usize),
    /// Not a positive scale.
    #[error("video scale {0} m/px: metres per pixel must be positive")]
    Scale(f64),
}

impl View {
    /// The north-up evaluation-video view of `size` px at `metres_per_px`, with the overlay;
    /// an error for an odd or out-of-range size or a scale that is not positive.
    pub fn video(size: usize, metres_per_px: f64) -> Result<View, ViewError> {
        if !(16..=4096).contains(&size) || !size.is_multiple_of(2) {
            return Err(ViewError::Size(size));
        }
        if !(metres_per_px.is_finite() && metres_per_px > 0.0) {
            return Err(ViewError::Scale(metres_per_px));
        }
        Ok(View {
            size,
            metres_per_px,
            ..View::default()
        })
    }
}

impl Default for View {
    fn default() -> Self {
        View {
            size: 256,
            metres_per_px: 0.25,
            overlay: true,
            heading_up: false,
        }
    }
}

/// Background (off the road).
pub const OFF: Rgb = [34, 38, 34];
const ROAD: Rgb = [88, 88, 92];
const CROSSWALK: Rgb = [140, 140, 150];
const LANE: Rgb = [150, 140, 80];
const RECORDED: Rgb = [60, 190, 80];
const DRIVEN: Rgb = [90, 170, 255];
const EGO: Rgb = [30, 110, 255];
const PLAN: Rgb = [0, 230, 230];

fn class_colour(c: AgentClass) -> Rgb {
    match c {
        AgentClass::Vehicle => [235, 145, 40],
        AgentClass::Pedestrian => [230, 70, 170],
        AgentClass::Cyclist => [60, 210, 210],
        AgentClass::Static => [160, 160, 160],
        AgentClass::Other => [210, 210, 90],
    }
}

/// Metric `m` (an [`index`] slot) of step `k`.
fn metric(trace: &RolloutTrace, k: usize, m: usize) -> f64 {
    trace.metrics[k * N_METRICS + m]
}

/// Renders step `k` of a rollout.
pub fn frame(ctx: &SceneCtx, trace: &RolloutTrace, k: usize, view: &View) -> Raster {
    let mut r = Raster::new(view.size, view.size, OFF);
    draw(&mut r, ctx, trace, k, view);
    finish(&mut r, trace, k, view);
    r
}

/// The text overlay of step `k`, when the view has one (drawn on the CPU after the polygons).
pub fn finish(r: &mut Raster, trace: &RolloutTrace, k: usize, view: &View) {
    if view.overlay {
        overlay(r, trace, k);
    }
}

/// Draws step `k`'s polygons (map, paths, plan, agents, ego) on `r`, over the background.
pub fn draw(r: &mut impl Canvas, ctx: &SceneCtx, trace: &RolloutTrace, k: usize, view: &View) {
    let n = view.size as f64;
    let ego = trace.ego[k];
    let (cx, cy) = (ego[0], ego[1]);
    let s = 1.0 / view.metres_per_px;
    // World → image: translate to the ego, rotate so the heading points up when asked, scale.
    let rot = if view.heading_up {
        std::f64::consts::FRAC_PI_2 - ego[2]
    } else {
        0.0
    };
    let (rs, rc) = rot.sin_cos();
    let px = |p: [f64; 2]| {
        let (dx, dy) = (p[0] - cx, p[1] - cy);
        let (x, y) = (dx * rc - dy * rs, dx * rs + dy * rc);
        [x * s + n / 2.0, n / 2.0 - y * s]
    };
    let half = n / 2.0 * view.metres_per_px;
    let visible = |pts: &[[f64; 2]]| {
        pts.iter()
            .any(|p| (p[0] - cx).abs() < half * 2.0 && (p[1] - cy).abs() < half * 2.0)
    };
    let map = &ctx.scene.map;
    for poly in map.drivable_areas.iter().filter(|p| visible(&p.points)) {
        let pts: Vec<[f64; 2]> = poly.points.iter().map(|p| px(*p)).collect();
        r.fill_polygon(&pts, ROAD);
    }
    for poly in map.crosswalks.iter().filter(|p| visible(&p.points)) {
        let pts: Vec<[f64; 2]> = poly.points.iter().map(|p| px(*p)).collect();
        r.fill_polygon(&pts, CROSSWALK);
    }
    for lane in map.lanes.iter().filter(|l| visible(&l.centerline)) {
        for w in lane.centerline.windows(2) {
            r.line(px(w[0]), px(w[1]), 1.0, LANE);
        }
    }
    let e = &ctx.scene.ego;
    let rec: Vec<[f64; 2]> = (0..e.valid.len())
        .filter(|&i| e.valid[i])
        .map(|i| px([e.x[i], e.y[i]]))
        .collect();
    for w in rec.windows(2) {
        r.line(w[0], w[1], 2.0, RECORDED);
    }
    for w in trace.ego[..=k].windows(2) {
        r.line(px([w[0][0], w[0][1]]), px([w[1][0], w[1][1]]), 2.0, DRIVEN);
    }
    // The driver's plan made at this step (cyan), from the ego on.
    if let Some((_, pts)) = trace.plans.iter().find(|(s, _)| *s as usize == k) {
        let mut prev = px([cx, cy]);
        for p in pts {
            let q = px(*p);
            r.line(prev, q, 2.0, PLAN);
            prev = q;
        }
    }
    let n_agents = ctx.scene.agents.len();
    // A box (its outline polygon) and its heading tick (centre → front).
    let boxed = |x: f64, y: f64, yaw: f64, l: f64, w: f64| {
        let (sn, cs) = yaw.sin_cos();
        let corner = |a: f64, b: f64| px([x + cs * a - sn * b, y + sn * a + cs * b]);
        let (hl, hw) = (l / 2.0, w / 2.0);
        (
            [
                corner(hl, hw),
                corner(-hl, hw),
                corner(-hl, -hw),
                corner(hl, -hw),
            ],
            px([x, y]),
            corner(hl, 0.0),
        )
    };
    let mut draw_box = |x: f64, y: f64, yaw: f64, l: f64, w: f64, c: Rgb| {
        let (outline, centre, front) = boxed(x, y, yaw, l, w);
        r.fill_polygon(&outline, c);
        r.line(centre, front, 1.5, [250, 250, 250]);
    };
    for (a, track) in ctx.scene.agents.iter().enumerate() {
        let p = trace.agents[k * n_agents + a];
        if p[0].is_nan() || (p[0] - cx).hypot(p[1] - cy) > 1.5 * half + 10.0 {
            continue;
        }
        draw_box(
            p[0],
            p[1],
            p[2],
            track.length_m,
            track.width_m,
            class_colour(track.class),
        );
    }
    draw_box(cx, cy, ego[2], e.length_m, e.width_m, EGO);
}

fn overlay(r: &mut Raster, trace: &RolloutTrace, k: usize) {
    crate::report::plot::register_font();
    let t0 = trace.times_us.first().copied().unwrap_or(0);
    let t = (trace.times_us[k] - t0) as f64 / 1e6;
    let at_fault = metric(trace, k, index::COLLISION_FRONT) > 0.0
        || metric(trace, k, index::COLLISION_LATERAL) > 0.0;
    let lines = [
        format!("t {t:.1} s  v {:.1} m/s", trace.ego[k][3]),
        format!(
            "{}{}",
            if at_fault {
                "COLLISION (at fault) "
            } else if metric(trace, k, index::COLLISION_ANY) > 0.0 {
                "contact "
            } else {
                ""
            },
            if metric(trace, k, index::OFFROAD) > 0.0 {
                "OFFROAD"
            } else {
                ""
            }
        ),
        format!(
            "path {:.2} m  progress {:.0} m",
            // + 0.0 turns −0 into 0 for display.
            metric(trace, k, index::DIST_TO_GT_TRAJECTORY) + 0.0,
            metric(trace, k, index::PROGRESS) + 0.0
        ),
    ];
    let (w, h) = (r.width as u32, r.height as u32);
    let root = BitMapBackend::with_buffer(&mut r.pixels, (w, h)).into_drawing_area();
    let size = (w / 20).max(10) as i32;
    for (i, line) in lines.iter().enumerate() {
        let colour = if i == 1 { RGBColor(255, 80, 80) } else { WHITE };
        let _ = root.draw_text(
            line,
            &("sans-serif", size).into_font().color(&colour),
            (4, 3 + i as i32 * (size + 2)),
        );
    }
    let _ = root.present();
}

/// The ego's camera at rollout `r`'s current state (the frame a driver receives): the same view
/// without the overlay (metrics are not known to the driver).
pub fn camera_frame(
    ctx: &SceneCtx,
    st: &crate::state::BatchState,
    r: usize,
    view: &View,
) -> Raster {
    let mut trace = RolloutTrace::default();
    trace.push_step(st, r, &[f64::NAN; N_METRICS]);
    frame(
        ctx,
        &trace,
        0,
        &View {
            overlay: false,
            heading_up: true,
            ..*view
        },
    )
}

/// PNG bytes of a raster.
pub fn png(r: &Raster) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = ::png::Encoder::new(&mut out, r.width as u32, r.height as u32);
        enc.set_color(::png::ColorType::Rgb);
        enc.set_depth(::png::BitDepth::Eight);
        enc.set_compression(::png::Compression::Fast);
        let mut w = enc.write_header().expect("writing to a Vec");
        w.write_image_data(&r.pixels).expect("writing to a Vec");
    }
    out
}
