//! Lane-graph helpers shared by the importers and the simulation: lane boundaries from the
//! painted lines and road edges around a centerline (datasets such as WOMD and GPUDrive give
//! lane centers, not lane polygons), drivable area from lanes, successors inferred from endpoints
//! (GPUDrive's JSON has none), and shortest routes through the graph.

use std::collections::{BinaryHeap, HashMap};

use super::{Lane, Point, Polygon};
use crate::geometry::norm;

/// Half lane width (m) where no line or edge bounds a lane (WOMD's lanes are ~3.7 m wide).
pub const DEFAULT_HALF_WIDTH_M: f64 = 1.85;
/// Narrowest and widest half width (m) taken from a neighbouring line.
pub const HALF_WIDTH_RANGE_M: (f64, f64) = (1.0, 3.0);
/// Lane boundaries get a point every this many metres of centerline (and at both ends).
pub const BOUNDARY_STEP_M: f64 = 2.0;
/// Largest gap (m) between a lane's end and another's start for the second to succeed the first.
pub const SUCCESSOR_GAP_M: f64 = 1.0;
/// Largest heading change (rad) from a lane's end to a successor's start.
pub const SUCCESSOR_TURN_RAD: f64 = 1.2;

/// A segment (its ends) and the index of the polyline it belongs to.
type Segment = (Point, Point, usize);

/// Segments of many polylines in a uniform grid over their bounding box, for nearest-segment
/// queries; each segment remembers the index of its polyline.
pub struct SegmentGrid {
    cell: f64,
    x0: f64,
    y0: f64,
    nx: i64,
    ny: i64,
    cells: Vec<Vec<Segment>>,
}

impl SegmentGrid {
    /// The most grid cells per indexed segment; above it the cells grow.
    pub const MAX_CELLS_PER_SEGMENT: usize = 64;

    /// Indexes every segment of `lines` in cells of `cell` metres (larger where the bounding box
    /// would need more than [`SegmentGrid::MAX_CELLS_PER_SEGMENT`] cells per segment, so a
    /// stray far-away point of a damaged input cannot make the grid outgrow the input; queries
    /// give the same answers whatever the cell size). Segments with a non-finite end are left out.
    pub fn new<'a>(lines: impl IntoIterator<Item = &'a [Point]> + Clone, cell: f64) -> SegmentGrid {
        let finite = |p: &Point| p[0].is_finite() && p[1].is_finite();
        let (mut x0, mut y0, mut x1, mut y1) = (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        );
        let mut segments = 0usize;
        for line in lines.clone() {
            for p in line.iter().filter(|p| finite(p)) {
                x0 = x0.min(p[0]);
                y0 = y0.min(p[1]);
                x1 = x1.max(p[0]);
                y1 = y1.max(p[1]);
            }
            segments += line.len().saturating_sub(1);
        }
        let empty = SegmentGrid {
            cell,
            x0: 0.0,
            y0: 0.0,
            nx: 0,
            ny: 0,
            cells: Vec::new(),
        };
        let (w, h) = (x1 - x0, y1 - y0);
        if !(w.is_finite() && h.is_finite() && cell > 0.0) {
            return empty;
        }
        let cap = (segments.saturating_mul(Self::MAX_CELLS_PER_SEGMENT)).max(4096) as f64;
        let mut cell = cell;
        let need = (w / cell + 1.0) * (h / cell + 1.0);
        if need > cap {
            cell *= (need / cap).sqrt() * 1.01;
            while (w / cell + 1.0) * (h / cell + 1.0) > cap {
                cell *= 1.1;
            }
        }
        let nx = (w / cell).floor() as i64 + 1;
        let ny = (h / cell).floor() as i64 + 1;
        let mut cells: Vec<Vec<Segment>> = vec![Vec::new(); (nx * ny) as usize];
        let at = |v: f64, n: i64| (v.floor() as i64).clamp(0, n - 1);
        for (k, line) in lines.into_iter().enumerate() {
            for w in line.windows(2) {
                let (a, b) = (w[0], w[1]);
                if !(finite(&a) && finite(&b)) {
                    continue;
                }
                let cx0 = at((a[0].min(b[0]) - x0) / cell, nx);
                let cx1 = at((a[0].max(b[0]) - x0) / cell, nx);
                let cy0 = at((a[1].min(b[1]) - y0) / cell, ny);
                let cy1 = at((a[1].max(b[1]) - y0) / cell, ny);
                for cx in cx0..=cx1 {
                    for cy in cy0..=cy1 {
                        cells[(cy * nx + cx) as usize].push((a, b, k));
                    }
                }
            }
        }
        SegmentGrid {
            cell,
            x0,
            y0,
            nx,
            ny,
            cells,
        }
    }

    /// The nearest distance from `p` to a segment lying on the side of direction `n` (the dot
    /// product of the offset with `n` at least 70 % of the distance), within `max` metres,
    /// leaving out the segments of polyline `skip`.
    pub fn nearest_towards(
        &self,
        p: Point,
        n: Point,
        max: f64,
        skip: Option<usize>,
    ) -> Option<f64> {
        if self.cells.is_empty() {
            return None;
        }
        let cx0 = (((p[0] - max - self.x0) / self.cell).floor() as i64).max(0);
        let cx1 = (((p[0] + max - self.x0) / self.cell).floor() as i64).min(self.nx - 1);
        let cy0 = (((p[1] - max - self.y0) / self.cell).floor() as i64).max(0);
        let cy1 = (((p[1] + max - self.y0) / self.cell).floor() as i64).min(self.ny - 1);
        let mut best: Option<f64> = None;
        for y in cy0..=cy1 {
            for x in cx0..=cx1 {
                for (a, b, k) in &self.cells[(y * self.nx + x) as usize] {
                    if Some(*k) == skip {
                        continue;
                    }
                    let (d, t) = crate::geometry::segment_distance(*a, *b, p);
                    if d > max || d < 1e-6 || best.is_some_and(|b| d >= b) {
                        continue;
                    }
                    let q = [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
                    let along = ((q[0] - p[0]) * n[0] + (q[1] - p[1]) * n[1]) / d;
                    if along >= 0.7 {
                        best = Some(d);
                    }
                }
            }
        }
        best
    }
}

/// The unit left normal of `line` at vertex `i`.
fn left_normal(line: &[Point], i: usize) -> Point {
    let a = line[i.saturating_sub(1)];
    let b = line[(i + 1).min(line.len() - 1)];
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let l = norm(dx, dy);
    if l < 1e-9 {
        [0.0, 1.0]
    } else {
        [-dy / l, dx / l]
    }
}

/// Left and right boundaries of a lane from its centerline: at its vertices (one per
/// [`BOUNDARY_STEP_M`], and both ends), on each side, the
/// nearest painted line or road edge of `lines` (within [`HALF_WIDTH_RANGE_M`]) or half the way
/// to the nearest other lane's centerline of `centers` (lane `me` left out), whichever is nearer;
/// else [`DEFAULT_HALF_WIDTH_M`].
pub fn boundaries(
    centerline: &[Point],
    lines: &SegmentGrid,
    centers: &SegmentGrid,
    me: usize,
) -> (Vec<Point>, Vec<Point>) {
    let (lo, hi) = HALF_WIDTH_RANGE_M;
    let mut left = Vec::with_capacity(centerline.len());
    let mut right = Vec::with_capacity(centerline.len());
    let mut since = f64::INFINITY;
    for (i, p) in centerline.iter().enumerate() {
        // Boundary points every BOUNDARY_STEP_M along the centerline, and at both ends.
        if i > 0 {
            let q = centerline[i - 1];
            since += norm(p[0] - q[0], p[1] - q[1]);
        }
        if since < BOUNDARY_STEP_M && i + 1 < centerline.len() {
            continue;
        }
        since = 0.0;
        let n = left_normal(centerline, i);
        let side = |n: Point| {
            let line = lines.nearest_towards(*p, n, hi, None);
            let lane = centers
                .nearest_towards(*p, n, 2.0 * hi, Some(me))
                .map(|d| d / 2.0);
            match (line, lane) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
            .filter(|d| *d >= lo)
            .unwrap_or(DEFAULT_HALF_WIDTH_M)
        };
        let wl = side(n);
        let wr = side([-n[0], -n[1]]);
        left.push([p[0] + n[0] * wl, p[1] + n[1] * wl]);
        right.push([p[0] - n[0] * wr, p[1] - n[1] * wr]);
    }
    (left, right)
}

/// One drivable-area polygon per lane with at least two points: its left boundary, then its
/// right boundary reversed.
pub fn lane_polygons(lanes: &[Lane]) -> Vec<Polygon> {
    lanes
        .iter()
        .filter(|l| l.left_boundary.len() >= 2 && l.right_boundary.len() >= 2)
        .map(|l| Polygon {
            id: l.id,
            points: l
                .left_boundary
                .iter()
                .chain(l.right_boundary.iter().rev())
                .copied()
                .collect(),
        })
        .collect()
}

fn heading(a: Point, b: Point) -> f64 {
    (b[1] - a[1]).atan2(b[0] - a[0])
}

/// Successors and predecessors from geometry: lane B succeeds lane A when B starts within
/// [`SUCCESSOR_GAP_M`] of A's end, heading on within [`SUCCESSOR_TURN_RAD`]. Existing links are
/// kept.
pub fn infer_links(lanes: &mut [Lane]) {
    let cell = 4.0;
    let key = |p: Point| ((p[0] / cell).floor() as i64, (p[1] / cell).floor() as i64);
    let mut starts: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
    for (i, l) in lanes.iter().enumerate() {
        if l.centerline.len() >= 2 {
            starts.entry(key(l.centerline[0])).or_default().push(i);
        }
    }
    let mut links = Vec::new();
    for (i, l) in lanes.iter().enumerate() {
        let n = l.centerline.len();
        if n < 2 {
            continue;
        }
        let end = l.centerline[n - 1];
        let h_end = heading(l.centerline[n - 2], end);
        let (kx, ky) = key(end);
        for x in kx - 1..=kx + 1 {
            for y in ky - 1..=ky + 1 {
                for &j in starts.get(&(x, y)).into_iter().flatten() {
                    if j == i {
                        continue;
                    }
                    let c = &lanes[j].centerline;
                    let gap = norm(c[0][0] - end[0], c[0][1] - end[1]);
                    let turn = crate::geometry::wrap_angle(heading(c[0], c[1]) - h_end).abs();
                    if gap <= SUCCESSOR_GAP_M && turn <= SUCCESSOR_TURN_RAD {
                        links.push((i, j));
                    }
                }
            }
        }
    }
    for (i, j) in links {
        let (a, b) = (lanes[i].id, lanes[j].id);
        if !lanes[i].successors.contains(&b) {
            lanes[i].successors.push(b);
        }
        if !lanes[j].predecessors.contains(&a) {
            lanes[j].predecessors.push(a);
        }
    }
}

/// The lane a vehicle at `p` heading `yaw` is on: the nearest centerline among lanes whose
/// direction there is within 90° of `yaw` (else the nearest of all), within `max` metres; with
/// the arc length of the nearest point.
pub fn lane_at(lanes: &[Lane], p: Point, yaw: f64, max: f64) -> Option<(usize, f64)> {
    let mut best: Option<(f64, usize, f64)> = None;
    let mut any: Option<(f64, usize, f64)> = None;
    for (i, l) in lanes.iter().enumerate() {
        let c = &l.centerline;
        if c.len() < 2 {
            continue;
        }
        let Some((d, s)) = crate::geometry::project_on_polyline(c, p) else {
            continue;
        };
        if d > max {
            continue;
        }
        if any.is_none_or(|a| d < a.0) {
            any = Some((d, i, s));
        }
        // The direction of the segment holding the nearest point.
        let mut acc = 0.0;
        let mut h = heading(c[0], c[1]);
        for w in c.windows(2) {
            let seg = norm(w[1][0] - w[0][0], w[1][1] - w[0][1]);
            if acc + seg >= s {
                h = heading(w[0], w[1]);
                break;
            }
            acc += seg;
        }
        let aligned = crate::geometry::wrap_angle(h - yaw).abs() < std::f64::consts::FRAC_PI_2;
        if aligned && best.is_none_or(|b| d < b.0) {
            best = Some((d, i, s));
        }
    }
    best.or(any).map(|(_, i, s)| (i, s))
}

/// The lanes of a map indexed for "which lane is this point on": every centerline as a
/// [`crate::geometry::Polyline`] and its segments in a uniform grid, so a query looks at the
/// lanes nearby only.
pub struct LaneLocator {
    lines: Vec<Option<crate::geometry::Polyline>>,
    cell: f64,
    cells: HashMap<(i64, i64), Vec<usize>>,
    /// Lane id → index.
    pub index: HashMap<i64, usize>,
}

impl LaneLocator {
    /// Indexes `lanes` (cells of 10 m).
    pub fn new(lanes: &[Lane]) -> LaneLocator {
        let cell = 10.0;
        let mut cells: HashMap<(i64, i64), Vec<usize>> = HashMap::new();
        for (i, l) in lanes.iter().enumerate() {
            for w in l.centerline.windows(2) {
                let (a, b) = (w[0], w[1]);
                for cx in
                    (a[0].min(b[0]) / cell).floor() as i64..=(a[0].max(b[0]) / cell).floor() as i64
                {
                    for cy in (a[1].min(b[1]) / cell).floor() as i64
                        ..=(a[1].max(b[1]) / cell).floor() as i64
                    {
                        let v = cells.entry((cx, cy)).or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
            }
        }
        for v in cells.values_mut() {
            v.sort_unstable();
            v.dedup();
        }
        LaneLocator {
            lines: lanes
                .iter()
                .map(|l| crate::geometry::Polyline::new(l.centerline.clone()))
                .collect(),
            cell,
            cells,
            index: lanes.iter().enumerate().map(|(i, l)| (l.id, i)).collect(),
        }
    }

    /// The lanes whose centerline passes within `max` m of `p` with a direction there within
    /// `max_angle` rad of `yaw`: (lane index, distance, arc length), nearest first (ties: the
    /// lower index).
    pub fn candidates(
        &self,
        p: Point,
        yaw: f64,
        max: f64,
        max_angle: f64,
    ) -> Vec<(usize, f64, f64)> {
        let r = (max / self.cell).ceil() as i64;
        let (cx, cy) = (
            (p[0] / self.cell).floor() as i64,
            (p[1] / self.cell).floor() as i64,
        );
        let mut near: Vec<usize> = Vec::new();
        for x in cx - r..=cx + r {
            for y in cy - r..=cy + r {
                if let Some(v) = self.cells.get(&(x, y)) {
                    near.extend(v);
                }
            }
        }
        near.sort_unstable();
        near.dedup();
        let mut out: Vec<(usize, f64, f64)> = near
            .into_iter()
            .filter_map(|i| {
                let line = self.lines[i].as_ref()?;
                let (d, s) = line.project(p);
                let h = line.at(s).1;
                (d <= max && crate::geometry::wrap_angle(h - yaw).abs() < max_angle)
                    .then_some((i, d, s))
            })
            .collect();
        out.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
        out
    }
}

fn lane_length(l: &Lane) -> f64 {
    l.centerline
        .windows(2)
        .map(|w| norm(w[1][0] - w[0][0], w[1][1] - w[0][1]))
        .sum()
}

/// The shortest chain of lanes (indices) from lane `from` along successors to lane `to`, by
/// centerline length (Dijkstra); `None` when `to` cannot be reached.
pub fn route(lanes: &[Lane], from: usize, to: usize) -> Option<Vec<usize>> {
    let index: HashMap<i64, usize> = lanes.iter().enumerate().map(|(i, l)| (l.id, i)).collect();
    route_indexed(lanes, &index, from, to)
}

/// [`route`] with the lane-id index given (built once per map).
pub fn route_indexed(
    lanes: &[Lane],
    index: &HashMap<i64, usize>,
    from: usize,
    to: usize,
) -> Option<Vec<usize>> {
    if from == to {
        return Some(vec![from]);
    }
    let mut dist = vec![f64::INFINITY; lanes.len()];
    let mut prev = vec![usize::MAX; lanes.len()];
    #[derive(PartialEq)]
    struct Item(f64, usize);
    impl Eq for Item {}
    impl Ord for Item {
        fn cmp(&self, o: &Self) -> std::cmp::Ordering {
            o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
        }
    }
    impl PartialOrd for Item {
        fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    let mut heap = BinaryHeap::new();
    dist[from] = 0.0;
    heap.push(Item(0.0, from));
    while let Some(Item(d, i)) = heap.pop() {
        if i == to {
            break;
        }
        if d > dist[i] {
            continue;
        }
        let step = lane_length(&lanes[i]);
        for s in &lanes[i].successors {
            let Some(&j) = index.get(s) else { continue };
            if d + step < dist[j] {
                dist[j] = d + step;
                prev[j] = i;
                heap.push(Item(d + step, j));
            }
        }
    }
    if !dist[to].is_finite() {
        return None;
    }
    let mut chain = vec![to];
    while *chain.last().expect("non-empty") != from {
        chain.push(prev[*chain.last().expect("non-empty")]);
    }
    chain.reverse();
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(id: i64, pts: Vec<Point>) -> Lane {
        Lane {
            id,
            centerline: pts,
            left_boundary: vec![],
            right_boundary: vec![],
            predecessors: vec![],
            successors: vec![],
            left_neighbor: None,
            right_neighbor: None,
            is_intersection: false,
            lane_type: String::new(),
            speed_limit_mps: None,
        }
    }

    #[test]
    fn boundaries_follow_the_nearest_line_on_each_side() {
        let c = vec![[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]];
        let left_line = vec![[0.0, 1.6], [20.0, 1.6]];
        let far_right = vec![[0.0, -7.0], [20.0, -7.0]];
        let grid = SegmentGrid::new([left_line.as_slice(), far_right.as_slice()], 5.0);
        let none = SegmentGrid::new([c.as_slice()], 5.0);
        let (l, r) = boundaries(&c, &grid, &none, 0);
        assert!(l.iter().all(|p| (p[1] - 1.6).abs() < 1e-9), "{l:?}");
        assert!(
            r.iter().all(|p| (p[1] + DEFAULT_HALF_WIDTH_M).abs() < 1e-9),
            "a line 7 m away is another lane's: {r:?}"
        );
        // A parallel lane 4.4 m to the right with no line between: the boundary is half way.
        let other = vec![[0.0, -4.4], [20.0, -4.4]];
        let centers = SegmentGrid::new([c.as_slice(), other.as_slice()], 5.0);
        let (_, r) = boundaries(&c, &grid, &centers, 0);
        assert!(r.iter().all(|p| (p[1] + 2.2).abs() < 1e-9), "{r:?}");
    }

    #[test]
    fn a_stray_far_point_does_not_grow_the_grid_or_change_answers() {
        let line = vec![[0.0, 1.6], [20.0, 1.6]];
        let stray = vec![
            [0.0, -7.0],
            [1e200, -1e150],
            [f64::NAN, 0.0],
            [f64::INFINITY, 1.0],
        ];
        let plain = SegmentGrid::new([line.as_slice()], 5.0);
        let damaged = SegmentGrid::new([line.as_slice(), stray.as_slice()], 5.0);
        assert!(damaged.cells.len() <= 4096, "{} cells", damaged.cells.len());
        for x in [0.0, 5.0, 12.5, 20.0] {
            let q = |g: &SegmentGrid| g.nearest_towards([x, 0.0], [0.0, 1.0], 3.0, None);
            assert_eq!(q(&plain), Some(1.6));
            assert_eq!(q(&damaged), q(&plain));
        }
        let inf = vec![
            [f64::NEG_INFINITY, 0.0],
            [f64::MAX, f64::MAX],
            [-f64::MAX, 0.0],
        ];
        assert!(SegmentGrid::new([inf.as_slice()], 5.0).cells.is_empty());
    }

    #[test]
    fn links_routes_and_lanes_at_a_point() {
        let mut lanes = vec![
            lane(1, vec![[0.0, 0.0], [10.0, 0.0]]),
            lane(2, vec![[10.2, 0.0], [20.0, 0.0]]),
            lane(3, vec![[10.0, 0.0], [15.0, 5.0], [15.0, 15.0]]),
            lane(4, vec![[10.0, 0.0], [0.0, 0.0]]),
            lane(5, vec![[15.0, 15.0], [15.0, 30.0]]),
        ];
        infer_links(&mut lanes);
        assert_eq!(lanes[0].successors, vec![2, 3], "not the U-turn onto 4");
        assert_eq!(lanes[2].successors, vec![5]);
        assert_eq!(lanes[4].predecessors, vec![3]);
        assert_eq!(route(&lanes, 0, 4), Some(vec![0, 2, 4]));
        assert_eq!(route(&lanes, 1, 4), None);
        assert_eq!(lane_at(&lanes, [5.0, 0.3], 0.0, 3.0), Some((0, 5.0)));
        assert_eq!(lane_at(&lanes, [5.0, 0.3], 3.1, 3.0).map(|l| l.0), Some(3));
    }
}
