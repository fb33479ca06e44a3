//! 2-D geometry for the simulator's metrics, in f64: oriented boxes and their separating-axis
//! overlap test (as Waymax and GPUDrive do it), point-in-polygon for the drivable area, and
//! projection onto polylines for distances to a recorded path.
//!
//! Conventions: a box is centred at (x, y) with heading `yaw` (rad, counter-clockwise from +x);
//! `length` runs along the heading and `width` across it. Boxes that only touch (a shared edge or
//! corner) do **not** overlap; a box with zero length or width is a segment (or point) and
//! overlaps what it crosses.

/// An oriented box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OrientedBox {
    /// Centre x (m).
    pub x: f64,
    /// Centre y (m).
    pub y: f64,
    /// Heading (rad).
    pub yaw: f64,
    /// Extent along the heading (m).
    pub length: f64,
    /// Extent across the heading (m).
    pub width: f64,
}

/// An oriented box with its axes computed (one `sin_cos`), for repeated tests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxFrame {
    /// Centre.
    pub centre: [f64; 2],
    /// Unit vector along the heading.
    pub along: [f64; 2],
    /// Unit vector across the heading (to the left).
    pub across: [f64; 2],
    /// Half length.
    pub half_length: f64,
    /// Half width.
    pub half_width: f64,
}

impl BoxFrame {
    /// Half the box's extent projected on unit `axis`.
    #[inline]
    fn radius_on(&self, axis: [f64; 2]) -> f64 {
        self.half_length * dot(self.along, axis).abs()
            + self.half_width * dot(self.across, axis).abs()
    }

    /// The same box moved by `d`.
    #[inline]
    pub fn translated(&self, d: [f64; 2]) -> BoxFrame {
        BoxFrame {
            centre: [self.centre[0] + d[0], self.centre[1] + d[1]],
            ..*self
        }
    }

    /// Separating-axis test on the four face normals: true only when the interiors intersect
    /// (touching boxes are separated).
    pub fn overlaps(&self, other: &BoxFrame) -> bool {
        let d = [
            other.centre[0] - self.centre[0],
            other.centre[1] - self.centre[1],
        ];
        // Tolerance relative to the scene's magnitude: UTM-sized coordinates lose ~1e-9 m.
        let eps = 1e-9 * (1.0 + self.centre[0].abs().max(self.centre[1].abs()));
        for axis in [self.along, self.across, other.along, other.across] {
            let gap = dot(d, axis).abs() - (self.radius_on(axis) + other.radius_on(axis));
            if gap >= -eps {
                return false;
            }
        }
        true
    }

    /// The four corners, counter-clockwise from front-left.
    pub fn corners(&self) -> [[f64; 2]; 4] {
        let (a, b) = (self.along, self.across);
        let (hl, hw) = (self.half_length, self.half_width);
        let at = |l: f64, w: f64| {
            [
                self.centre[0] + a[0] * l + b[0] * w,
                self.centre[1] + a[1] * l + b[1] * w,
            ]
        };
        [at(hl, hw), at(-hl, hw), at(-hl, -hw), at(hl, -hw)]
    }
}

impl OrientedBox {
    /// The box with its axes computed.
    #[inline]
    pub fn frame(&self) -> BoxFrame {
        let (s, c) = self.yaw.sin_cos();
        BoxFrame {
            centre: [self.x, self.y],
            along: [c, s],
            across: [-s, c],
            half_length: self.length / 2.0,
            half_width: self.width / 2.0,
        }
    }

    /// The four corners, counter-clockwise from front-left.
    pub fn corners(&self) -> [[f64; 2]; 4] {
        self.frame().corners()
    }

    /// Separating-axis test on the four face normals: true only when the interiors intersect
    /// (touching boxes are separated).
    pub fn overlaps(&self, other: &OrientedBox) -> bool {
        self.frame().overlaps(&other.frame())
    }

    /// True when every corner lies inside the union of `polygons` (each corner may lie in a
    /// different polygon), with `tolerance_m` of slack at the boundary (nuPlan uses 0.3 m).
    pub fn inside_any(&self, polygons: &[Vec<[f64; 2]>], tolerance_m: f64) -> bool {
        self.corners().iter().all(|&c| {
            polygons
                .iter()
                .any(|p| contains(p, c) || distance_to_ring(p, c) <= tolerance_m)
        })
    }
}

/// Wraps an angle to (−π, π].
pub fn wrap_angle(a: f64) -> f64 {
    let t = std::f64::consts::TAU;
    let r = (a + std::f64::consts::PI).rem_euclid(t) - std::f64::consts::PI;
    if r <= -std::f64::consts::PI {
        r + t
    } else {
        r
    }
}

/// Length of (x, y): √(x² + y²) without `hypot`'s overflow care, which metres never need and
/// which costs several times more.
#[inline]
pub fn norm(x: f64, y: f64) -> f64 {
    (x * x + y * y).sqrt()
}

fn dot(a: [f64; 2], b: [f64; 2]) -> f64 {
    a[0] * b[0] + a[1] * b[1]
}

/// Distance between two boxes' outlines (0 when they overlap or touch): the smallest
/// corner-to-edge distance either way, exact for disjoint convex polygons.
pub fn box_distance(a: &OrientedBox, b: &OrientedBox) -> f64 {
    let (fa, fb) = (a.frame(), b.frame());
    if fa.overlaps(&fb) {
        return 0.0;
    }
    let (ca, cb) = (fa.corners(), fb.corners());
    let one_way = |p: &[[f64; 2]; 4], ring: &[[f64; 2]; 4]| {
        p.iter()
            .map(|&c| distance2_to_ring(ring, c))
            .fold(f64::INFINITY, f64::min)
    };
    one_way(&ca, &cb).min(one_way(&cb, &ca)).sqrt()
}

/// A point in `frame`'s coordinates: (along its heading, to its left) from its centre.
pub fn to_frame(frame: &OrientedBox, p: [f64; 2]) -> [f64; 2] {
    let (s, c) = frame.yaw.sin_cos();
    let (dx, dy) = (p[0] - frame.x, p[1] - frame.y);
    [dx * c + dy * s, -dx * s + dy * c]
}

/// Even-odd point-in-polygon test (boundary points may go either way; callers add a tolerance).
pub fn contains(polygon: &[[f64; 2]], p: [f64; 2]) -> bool {
    let n = polygon.len();
    if n < 3 {
        return false;
    }
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (polygon[i], polygon[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

/// Distance from `p` to segment `a`–`b`, and the parameter t ∈ [0, 1] of the nearest point.
pub fn segment_distance(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> (f64, f64) {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let len2 = dot(ab, ab);
    let t = if len2 > 0.0 {
        (dot([p[0] - a[0], p[1] - a[1]], ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let q = [a[0] + ab[0] * t, a[1] + ab[1] * t];
    (norm(p[0] - q[0], p[1] - q[1]), t)
}

/// Squared distance from `p` to segment `a`–`b`.
#[inline]
fn segment_distance2(a: [f64; 2], b: [f64; 2], p: [f64; 2]) -> f64 {
    let ab = [b[0] - a[0], b[1] - a[1]];
    let ap = [p[0] - a[0], p[1] - a[1]];
    let len2 = dot(ab, ab);
    let t = if len2 > 0.0 {
        (dot(ap, ab) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (dx, dy) = (ap[0] - ab[0] * t, ap[1] - ab[1] * t);
    dx * dx + dy * dy
}

/// Squared distance from `p` to the closed ring of `polygon`.
fn distance2_to_ring(polygon: &[[f64; 2]], p: [f64; 2]) -> f64 {
    let n = polygon.len();
    (0..n)
        .map(|i| segment_distance2(polygon[i], polygon[(i + 1) % n], p))
        .fold(f64::INFINITY, f64::min)
}

/// Distance from `p` to the closed ring of `polygon`.
pub fn distance_to_ring(polygon: &[[f64; 2]], p: [f64; 2]) -> f64 {
    distance2_to_ring(polygon, p).sqrt()
}

/// Distance from `p` to an open polyline and the arc length (m) of the nearest point along it;
/// `None` for an empty polyline.
pub fn project_on_polyline(line: &[[f64; 2]], p: [f64; 2]) -> Option<(f64, f64)> {
    match line.len() {
        0 => None,
        1 => Some((norm(p[0] - line[0][0], p[1] - line[0][1]), 0.0)),
        _ => {
            let mut best = (f64::INFINITY, 0.0);
            let mut s = 0.0;
            for w in line.windows(2) {
                let seg = norm(w[1][0] - w[0][0], w[1][1] - w[0][1]);
                let (d, t) = segment_distance(w[0], w[1], p);
                if d < best.0 {
                    best = (d, s + t * seg);
                }
                s += seg;
            }
            Some(best)
        }
    }
}

/// A polyline with its cumulative arc lengths, for walking along it.
#[derive(Debug, Clone, PartialEq)]
pub struct Polyline {
    points: Vec<[f64; 2]>,
    cum: Vec<f64>,
}

impl Polyline {
    /// Builds the arc-length table; `None` with fewer than two points.
    pub fn new(points: Vec<[f64; 2]>) -> Option<Polyline> {
        if points.len() < 2 {
            return None;
        }
        let mut cum = Vec::with_capacity(points.len());
        cum.push(0.0);
        for w in points.windows(2) {
            cum.push(cum[cum.len() - 1] + norm(w[1][0] - w[0][0], w[1][1] - w[0][1]));
        }
        Some(Polyline { points, cum })
    }

    /// The vertices.
    pub fn points(&self) -> &[[f64; 2]] {
        &self.points
    }

    /// Arc length at each vertex (0 at the first).
    pub fn cum(&self) -> &[f64] {
        &self.cum
    }

    /// Total length (m).
    pub fn length(&self) -> f64 {
        self.cum[self.cum.len() - 1]
    }

    /// The point at arc length `s` (clamped to the line) and the heading of its segment.
    pub fn at(&self, s: f64) -> ([f64; 2], f64) {
        let s = s.clamp(0.0, self.length());
        let last = self.points.len() - 2;
        let i = self
            .cum
            .partition_point(|&c| c < s)
            .saturating_sub(1)
            .min(last);
        let len = self.cum[i + 1] - self.cum[i];
        let t = if len > 0.0 {
            (s - self.cum[i]) / len
        } else {
            0.0
        };
        let (a, b) = (self.points[i], self.points[i + 1]);
        (
            [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t],
            (b[1] - a[1]).atan2(b[0] - a[0]),
        )
    }

    /// Distance from `p` and arc length of the nearest point.
    pub fn project(&self, p: [f64; 2]) -> (f64, f64) {
        project_on_polyline(&self.points, p).expect("a polyline has points")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::FRAC_PI_4;

    fn b(x: f64, y: f64, yaw: f64, length: f64, width: f64) -> OrientedBox {
        OrientedBox {
            x,
            y,
            yaw,
            length,
            width,
        }
    }

    #[test]
    fn touching_boxes_do_not_overlap() {
        let a = b(0.0, 0.0, 0.0, 2.0, 2.0);
        assert!(!a.overlaps(&b(2.0, 0.0, 0.0, 2.0, 2.0)), "shared edge");
        assert!(!a.overlaps(&b(2.0, 2.0, 0.0, 2.0, 2.0)), "shared corner");
        assert!(a.overlaps(&b(1.999, 0.0, 0.0, 2.0, 2.0)));
        assert!(!a.overlaps(&b(2.001, 0.0, 0.0, 2.0, 2.0)));
    }

    #[test]
    fn rotated_boxes_use_all_four_axes() {
        // A diamond whose corner points at the square's corner: axis-aligned projections
        // overlap, but the diamond's own axes separate them.
        let square = b(0.0, 0.0, 0.0, 2.0, 2.0);
        let d = 2f64.sqrt();
        assert!(!square.overlaps(&b(
            1.0 + d / 2.0 + 0.6,
            1.0 + d / 2.0 + 0.6,
            FRAC_PI_4,
            2.0,
            2.0
        )));
        assert!(square.overlaps(&b(1.5, 0.0, FRAC_PI_4, 2.0, 2.0)));
        // Symmetric.
        let (p, q) = (b(0.3, -0.2, 0.7, 4.5, 1.8), b(2.5, 1.1, -1.2, 4.5, 1.8));
        assert_eq!(p.overlaps(&q), q.overlaps(&p));
    }

    #[test]
    fn degenerate_sizes() {
        let seg = b(0.0, 0.0, 0.0, 2.0, 0.0);
        assert!(
            seg.overlaps(&b(0.0, 0.0, std::f64::consts::FRAC_PI_2, 2.0, 0.5)),
            "segment crossing a box"
        );
        assert!(
            !seg.overlaps(&b(0.0, 1.0, 0.0, 2.0, 1.0)),
            "segment touching a box edge"
        );
        let point = b(0.0, 0.0, 0.0, 0.0, 0.0);
        assert!(point.overlaps(&b(0.0, 0.0, 0.3, 1.0, 1.0)));
        assert!(!point.overlaps(&b(5.0, 0.0, 0.3, 1.0, 1.0)));
    }

    #[test]
    fn utm_sized_coordinates_keep_touching_separate() {
        let (x, y) = (664751.662199684, 3999461.989363281);
        let a = b(x, y, 0.0, 2.0, 2.0);
        assert!(!a.overlaps(&b(x + 2.0, y, 0.0, 2.0, 2.0)));
        assert!(a.overlaps(&b(x + 1.99, y, 0.0, 2.0, 2.0)));
    }

    #[test]
    fn polygon_containment_with_tolerance() {
        let sq = vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]];
        assert!(contains(&sq, [5.0, 5.0]) && !contains(&sq, [11.0, 5.0]));
        let car = b(5.0, 5.0, 0.3, 4.0, 2.0);
        assert!(car.inside_any(std::slice::from_ref(&sq), 0.0));
        let edge = b(9.0, 5.0, 0.0, 2.4, 2.0); // front corners 0.2 m outside
        assert!(!edge.inside_any(std::slice::from_ref(&sq), 0.0));
        assert!(edge.inside_any(std::slice::from_ref(&sq), 0.3));
        // A box straddling two adjacent polygons is inside their union.
        let right = vec![[10.0, 0.0], [20.0, 0.0], [20.0, 10.0], [10.0, 10.0]];
        assert!(b(10.0, 5.0, 0.0, 4.0, 2.0).inside_any(&[sq, right], 0.0));
    }

    #[test]
    fn box_distance_and_frames() {
        let a = b(0.0, 0.0, 0.0, 2.0, 2.0);
        assert_eq!(box_distance(&a, &b(5.0, 0.0, 0.0, 2.0, 2.0)), 3.0);
        assert_eq!(box_distance(&a, &b(1.5, 0.0, 0.3, 2.0, 2.0)), 0.0);
        let d = box_distance(&a, &b(4.0, 4.0, 0.0, 2.0, 2.0));
        assert!((d - 2f64.hypot(2.0)).abs() < 1e-12);
        let f = b(1.0, 1.0, std::f64::consts::FRAC_PI_2, 4.0, 2.0);
        let p = to_frame(&f, [1.0, 3.0]);
        assert!((p[0] - 2.0).abs() < 1e-12 && p[1].abs() < 1e-12, "{p:?}");
    }

    #[test]
    fn polyline_walk() {
        let l = Polyline::new(vec![[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]]).unwrap();
        assert_eq!(l.length(), 20.0);
        assert_eq!(l.at(5.0), ([5.0, 0.0], 0.0));
        let (p, h) = l.at(15.0);
        assert_eq!(p, [10.0, 5.0]);
        assert!((h - std::f64::consts::FRAC_PI_2).abs() < 1e-12);
        assert_eq!(l.at(99.0).0, [10.0, 10.0]);
        assert_eq!(l.at(-1.0).0, [0.0, 0.0]);
        assert!(Polyline::new(vec![[0.0, 0.0]]).is_none());
    }

    #[test]
    fn polyline_projection() {
        let line = [[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]];
        let (d, s) = project_on_polyline(&line, [5.0, 2.0]).unwrap();
        assert!((d - 2.0).abs() < 1e-12 && (s - 5.0).abs() < 1e-12);
        let (d, s) = project_on_polyline(&line, [12.0, 4.0]).unwrap();
        assert!((d - 2.0).abs() < 1e-12 && (s - 14.0).abs() < 1e-12);
        assert_eq!(project_on_polyline(&[], [0.0, 0.0]), None);
    }
}
