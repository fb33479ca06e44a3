//! nuPlan's driving-direction compliance (`drivable_direction_compliance`): the ego's progress
//! along the direction of the lane it is in, summed over the last second; going backwards against
//! the lane by less than 2 m scores 1, by less than 6 m 0.5, more 0. Off every lane the ego makes
//! no progress either way.
//!
//! The lane at a point: among the lanes whose polygon (left boundary, then the right boundary
//! reversed) contains it — or, for lanes without boundaries, whose centerline passes within
//! 2 m — the one whose direction is closest to the ego's heading, so overlapping intersection
//! lanes do not count a turning ego as wrong-way.

use crate::geometry::{contains, Polyline};
use crate::scene::{Map, Point};

/// Backward progress (m) below which the score is 1.
pub const COMPLIANCE_THRESHOLD_M: f64 = 2.0;
/// Backward progress (m) below which the score is 0.5 (above: 0).
pub const VIOLATION_THRESHOLD_M: f64 = 6.0;
/// Window of the sum (s).
pub const HORIZON_S: f64 = 1.0;
/// Half-width assumed for lanes with no boundaries (m).
pub const DEFAULT_HALF_WIDTH_M: f64 = 2.0;

struct IndexedLane {
    centerline: Polyline,
    polygon: Option<Vec<Point>>,
    bbox: [f64; 4],
    speed_limit: Option<f64>,
    id: i64,
    /// Lanes it leads into and lanes leading into it (dataset ids).
    neighbours: Vec<i64>,
    is_intersection: bool,
}

/// The lanes of a map, ready for point look-ups.
pub struct LaneIndex {
    lanes: Vec<IndexedLane>,
}

impl LaneIndex {
    /// Indexes the lanes with a usable centerline; `None` when the map has none (the metric
    /// does not apply).
    pub fn new(map: &Map) -> Option<LaneIndex> {
        let lanes: Vec<IndexedLane> = map
            .lanes
            .iter()
            .filter_map(|l| {
                let centerline = Polyline::new(l.centerline.clone())?;
                let polygon =
                    (l.left_boundary.len() >= 2 && l.right_boundary.len() >= 2).then(|| {
                        let mut p = l.left_boundary.clone();
                        p.extend(l.right_boundary.iter().rev());
                        p
                    });
                let pts = polygon.as_deref().unwrap_or(&l.centerline);
                let margin = if polygon.is_some() {
                    0.0
                } else {
                    DEFAULT_HALF_WIDTH_M
                };
                let mut bbox = [f64::INFINITY, f64::INFINITY, -f64::INFINITY, -f64::INFINITY];
                for p in pts {
                    bbox = [
                        bbox[0].min(p[0] - margin),
                        bbox[1].min(p[1] - margin),
                        bbox[2].max(p[0] + margin),
                        bbox[3].max(p[1] + margin),
                    ];
                }
                Some(IndexedLane {
                    centerline,
                    polygon,
                    bbox,
                    speed_limit: l.speed_limit_mps,
                    id: l.id,
                    neighbours: l
                        .successors
                        .iter()
                        .chain(&l.predecessors)
                        .copied()
                        .collect(),
                    is_intersection: l.is_intersection,
                })
            })
            .collect();
        (!lanes.is_empty()).then_some(LaneIndex { lanes })
    }

    /// Every indexed lane: centre line, polygon (left boundary then right reversed, when both
    /// exist) and bounding box (min x, min y, max x, max y).
    pub fn lanes(&self) -> impl Iterator<Item = (&Polyline, Option<&[Point]>, [f64; 4])> {
        self.lanes
            .iter()
            .map(|l| (&l.centerline, l.polygon.as_deref(), l.bbox))
    }

    /// Whether any lane has a speed limit (the speed-limit metric applies).
    pub fn has_speed_limits(&self) -> bool {
        self.lanes.iter().any(|l| l.speed_limit.is_some())
    }

    /// The speed limit (m/s) of indexed lane `i`, when its map gives one.
    pub fn speed_limit(&self, i: usize) -> Option<f64> {
        self.lanes.get(i).and_then(|l| l.speed_limit)
    }

    /// Every indexed lane containing `p` (its polygon, or within 2 m of a centre line without
    /// boundaries).
    pub fn containing(&self, p: Point) -> Vec<usize> {
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                let b = l.bbox;
                p[0] >= b[0] && p[0] <= b[2] && p[1] >= b[1] && p[1] <= b[3]
            })
            .filter(|(_, l)| match &l.polygon {
                Some(poly) => contains(poly, p),
                None => l.centerline.project(p).0 <= DEFAULT_HALF_WIDTH_M,
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether indexed lane `i` lies in an intersection.
    pub fn is_intersection(&self, i: usize) -> bool {
        self.lanes.get(i).is_some_and(|l| l.is_intersection)
    }

    /// nuPlan's "in common or connected route objects" (`EgoLaneChangeStatistics`): every one of
    /// `corners` lies in one lane, or in that lane and lanes connected to it (successors,
    /// predecessors). False when a corner is in no lane: the ego is between lanes or off them.
    pub fn in_common_or_connected(&self, corners: &[Point]) -> bool {
        let sets: Vec<Vec<usize>> = corners.iter().map(|&c| self.containing(c)).collect();
        if sets.iter().any(|s| s.is_empty()) {
            return false;
        }
        sets[0].iter().any(|&base| {
            let l = &self.lanes[base];
            sets.iter().all(|s| {
                s.iter()
                    .any(|&i| i == base || l.neighbours.contains(&self.lanes[i].id))
            })
        })
    }

    /// The lane at `p` best aligned with `heading`: (lane index, arc length, lane heading there).
    pub fn locate(&self, p: Point, heading: f64) -> Option<(usize, f64, f64)> {
        let mut best: Option<(usize, f64, f64, f64)> = None;
        for (i, l) in self.lanes.iter().enumerate() {
            let b = l.bbox;
            if p[0] < b[0] || p[0] > b[2] || p[1] < b[1] || p[1] > b[3] {
                continue;
            }
            let inside = match &l.polygon {
                Some(poly) => contains(poly, p),
                None => l.centerline.project(p).0 <= DEFAULT_HALF_WIDTH_M,
            };
            if !inside {
                continue;
            }
            let s = l.centerline.project(p).1;
            let lane_heading = l.centerline.at(s).1;
            let misalignment = crate::geometry::wrap_angle(heading - lane_heading).abs();
            if best.is_none_or(|b| misalignment < b.3) {
                best = Some((i, s, lane_heading, misalignment));
            }
        }
        best.map(|(i, s, h, _)| (i, s, h))
    }
}

/// Per-rollout state: the last lane position and the progress of the last second.
#[derive(Debug, Clone, Default)]
pub struct DirectionTracker {
    last: Option<(Option<(usize, f64)>, Point)>,
    window: std::collections::VecDeque<f64>,
}

impl DirectionTracker {
    /// Adds the ego's position and heading at the next control step; returns the score (1, 0.5
    /// or 0) of the progress summed over the last [`HORIZON_S`].
    pub fn push(&mut self, lanes: &LaneIndex, p: Point, heading: f64, dt_s: f64) -> f64 {
        let here = lanes.locate(p, heading);
        let progress = match (self.last, here) {
            (Some((Some((li, ls)), _)), Some((i, s, _))) if li == i => s - ls,
            (Some((_, q)), Some((_, _, h))) => {
                let (sn, cs) = h.sin_cos();
                (p[0] - q[0]) * cs + (p[1] - q[1]) * sn
            }
            _ => 0.0,
        };
        self.last = Some((here.map(|(i, s, _)| (i, s)), p));
        let n = (HORIZON_S / dt_s).round().max(1.0) as usize;
        self.window.push_back(progress);
        while self.window.len() > n {
            self.window.pop_front();
        }
        let sum: f64 = self.window.iter().sum();
        if sum > -COMPLIANCE_THRESHOLD_M {
            1.0
        } else if sum > -VIOLATION_THRESHOLD_M {
            0.5
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scene::Lane;

    fn eastbound() -> Map {
        Map {
            lanes: vec![Lane {
                id: 1,
                centerline: vec![[0.0, 0.0], [200.0, 0.0]],
                left_boundary: vec![[0.0, 1.75], [200.0, 1.75]],
                right_boundary: vec![[0.0, -1.75], [200.0, -1.75]],
                predecessors: vec![],
                successors: vec![],
                left_neighbor: None,
                right_neighbor: None,
                is_intersection: false,
                lane_type: "VEHICLE".into(),
                speed_limit_mps: None,
            }],
            ..Map::default()
        }
    }

    #[test]
    fn wrong_way_driving_scores_by_distance_per_second() {
        let idx = LaneIndex::new(&eastbound()).unwrap();
        let drive = |speed: f64| {
            let mut t = DirectionTracker::default();
            let mut worst: f64 = 1.0;
            for k in 0..30 {
                let x = 100.0 + speed * 0.1 * k as f64;
                worst = worst.min(t.push(&idx, [x, 0.0], 0.0, 0.1));
            }
            worst
        };
        assert_eq!(drive(10.0), 1.0, "with the lane");
        assert_eq!(drive(-1.5), 1.0, "reversing 1.5 m/s: 1.5 m per second");
        assert_eq!(drive(-4.0), 0.5);
        assert_eq!(drive(-8.0), 0.0);
        // Off the lane nothing counts.
        let mut t = DirectionTracker::default();
        assert!((0..30).all(|k| t.push(&idx, [100.0 - k as f64, 10.0], 0.0, 0.1) == 1.0));
    }
}
