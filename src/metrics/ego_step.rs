//! The ego's per-step metrics (DESIGN §3) as pure functions of one step's boxes, map and
//! recording. Collisions are classified when they start, in nuPlan's order
//! (`no_ego_at_fault_collisions.py`, motional/nuplan-devkit): the ego stopped (≤ 0.05 m/s) → not
//! at fault; the track stopped (≤ 5 mm/s, or a static object) → at fault; the track's centre more
//! than 150° off the ego's heading seen from its rear axle → rear, not at fault; the track touching
//! the ego's front edge → front, at fault; else lateral, at fault. A collision already under way
//! keeps its class (nuPlan counts each collision once, when it starts).
//!
//! DESIGN §3's columns: front and lateral are the at-fault classes (a stopped-track collision goes
//! to front when it touches the front edge, else lateral); rear holds both not-at-fault classes.

use crate::geometry::{box_distance, OrientedBox, Polyline};
use crate::metrics::ttc::{self, Mover, TtcParams};

/// Where the rear axle sits behind the box centre, as a fraction of the box length (the
/// Pacifica of nuPlan: 1.461 m of 5.176 m).
pub const REAR_AXLE_BEHIND_CENTRE_FRAC: f64 = 1.461 / 5.176;
/// nuPlan's drivable-area tolerance (m).
pub const OFFROAD_TOLERANCE_M: f64 = 0.3;
/// nuPlan's ego "stopped" speed for collisions (m/s).
pub const EGO_STOPPED_MPS: f64 = 5e-2;
/// nuPlan's track "stopped" speed (m/s).
pub const TRACK_STOPPED_MPS: f64 = 5e-3;

/// nuPlan's collision classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollisionClass {
    /// The ego was stopped (not at fault).
    StoppedEgo,
    /// The track was stopped or static (at fault); `front`: it touches the ego's front edge.
    StoppedTrack {
        /// touches the front edge
        front: bool,
    },
    /// The track is behind the ego (not at fault).
    Rear,
    /// The track touches the ego's front edge (at fault).
    Front,
    /// Side contact (at fault).
    Lateral,
}

impl CollisionClass {
    /// nuPlan's fault assignment.
    pub fn at_fault(self) -> bool {
        !matches!(self, CollisionClass::StoppedEgo | CollisionClass::Rear)
    }
}

/// The ego's rear-axle position.
pub fn rear_axle(ego: &OrientedBox) -> [f64; 2] {
    let (s, c) = ego.yaw.sin_cos();
    let back = REAR_AXLE_BEHIND_CENTRE_FRAC * ego.length;
    [ego.x - c * back, ego.y - s * back]
}

fn touches_front_edge(ego: &OrientedBox, track: &OrientedBox) -> bool {
    let (s, c) = ego.yaw.sin_cos();
    let front_edge = OrientedBox {
        x: ego.x + c * ego.length / 2.0,
        y: ego.y + s * ego.length / 2.0,
        yaw: ego.yaw,
        length: 0.0,
        width: ego.width,
    };
    front_edge.overlaps(track)
}

/// Classifies a new collision between the ego and a track whose boxes overlap.
pub fn classify(ego: &OrientedBox, ego_speed: f64, track: &TrackBox) -> CollisionClass {
    if ego_speed <= EGO_STOPPED_MPS {
        return CollisionClass::StoppedEgo;
    }
    if track.is_static || track.speed <= TRACK_STOPPED_MPS {
        return CollisionClass::StoppedTrack {
            front: touches_front_edge(ego, &track.bx),
        };
    }
    if ttc::is_behind(rear_axle(ego), ego.yaw, [track.bx.x, track.bx.y]) {
        return CollisionClass::Rear;
    }
    if touches_front_edge(ego, &track.bx) {
        return CollisionClass::Front;
    }
    CollisionClass::Lateral
}

/// Another actor at one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackBox {
    /// Stable id within the scene (track index).
    pub id: usize,
    /// Its box.
    pub bx: OrientedBox,
    /// Speed along its heading (m/s).
    pub speed: f64,
    /// A static object (never moves; speed 0 for TTC).
    pub is_static: bool,
}

/// One step's inputs.
pub struct StepInput<'a> {
    /// The ego box.
    pub ego: OrientedBox,
    /// The ego's speed (m/s).
    pub ego_speed: f64,
    /// The other actors present at this step.
    pub tracks: &'a [TrackBox],
    /// Drivable-area polygons (empty: the scene has no map; offroad is not computed).
    pub drivable: &'a [Vec<[f64; 2]>],
    /// The recorded ego path, when the ego has a recording.
    pub gt_path: Option<&'a Polyline>,
    /// The recorded ego position at this time, when recorded.
    pub gt_here: Option<[f64; 2]>,
    /// TTC settings.
    pub ttc: &'a TtcParams,
}

/// One step's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMetrics {
    /// At-fault contact at the front (DESIGN §3 column).
    pub collision_front: bool,
    /// At-fault side contact.
    pub collision_lateral: bool,
    /// Not-at-fault contact (rear-ended, or the ego stopped).
    pub collision_rear: bool,
    /// Any contact.
    pub collision_any: bool,
    /// A box corner is outside the drivable area (None without a map).
    pub offroad: Option<bool>,
    /// Distance to the nearest track's outline (m; inf when alone).
    pub min_distance_to_obstacle_m: f64,
    /// Lateral distance to the recorded path (m).
    pub dist_to_gt_trajectory: Option<f64>,
    /// Distance to the recorded position at this time (m).
    pub dist_to_gt_location: Option<f64>,
    /// Arc length of the ego's projection on the recorded path (m).
    pub progress_m: Option<f64>,
    /// nuPlan's time to collision (s; inf when none).
    pub time_to_collision_s: f64,
}

/// What persists across steps: the class of each ongoing contact and every track ever collided
/// with (nuPlan's TTC ignores those from the collision on).
#[derive(Debug, Default, Clone)]
pub struct ContactMemory {
    ongoing: Vec<(usize, CollisionClass)>,
    collided: Vec<usize>,
}

/// Bounding-circle radius of a box.
fn radius(b: &OrientedBox) -> f64 {
    0.5 * crate::geometry::norm(b.length, b.width)
}

/// Computes the step's metrics; `memory` carries contacts across steps.
pub fn step(input: &StepInput<'_>, memory: &mut ContactMemory) -> StepMetrics {
    let mut m = StepMetrics {
        collision_front: false,
        collision_lateral: false,
        collision_rear: false,
        collision_any: false,
        offroad: None,
        min_distance_to_obstacle_m: f64::INFINITY,
        dist_to_gt_trajectory: None,
        dist_to_gt_location: None,
        progress_m: None,
        time_to_collision_s: f64::INFINITY,
    };
    let ego = &input.ego;
    let ego_r = radius(ego);
    let mut ongoing = Vec::new();
    let mut new_at_fault = false;
    for t in input.tracks {
        // Broad phase: bounding circles; boxes whose circles are apart are at least that far
        // apart, which bounds the distance without the exact test.
        let centre_gap =
            crate::geometry::norm(t.bx.x - ego.x, t.bx.y - ego.y) - ego_r - radius(&t.bx);
        if centre_gap >= m.min_distance_to_obstacle_m {
            continue;
        }
        let d = box_distance(ego, &t.bx);
        m.min_distance_to_obstacle_m = m.min_distance_to_obstacle_m.min(d);
        if d > 0.0 || !ego.overlaps(&t.bx) {
            continue;
        }
        let known = memory.ongoing.iter().find(|(i, _)| *i == t.id);
        let class = match known {
            Some((_, c)) => *c,
            None => {
                let c = classify(ego, input.ego_speed, t);
                new_at_fault |= c.at_fault();
                c
            }
        };
        if let Err(pos) = memory.collided.binary_search(&t.id) {
            memory.collided.insert(pos, t.id);
        }
        ongoing.push((t.id, class));
        m.collision_any = true;
        match class {
            CollisionClass::Front | CollisionClass::StoppedTrack { front: true } => {
                m.collision_front = true
            }
            CollisionClass::Lateral | CollisionClass::StoppedTrack { front: false } => {
                m.collision_lateral = true
            }
            CollisionClass::Rear | CollisionClass::StoppedEgo => m.collision_rear = true,
        }
    }
    memory.ongoing = ongoing;
    let movers: Vec<Mover> = input
        .tracks
        .iter()
        .filter(|t| memory.collided.binary_search(&t.id).is_err())
        .map(|t| Mover {
            bx: t.bx,
            speed: if t.is_static { 0.0 } else { t.speed },
        })
        .collect();
    m.time_to_collision_s = ttc::time_to_collision(
        &Mover {
            bx: *ego,
            speed: input.ego_speed,
        },
        rear_axle(ego),
        &movers,
        new_at_fault,
        input.ttc,
    );
    if !input.drivable.is_empty() {
        m.offroad = Some(!ego.inside_any(input.drivable, OFFROAD_TOLERANCE_M));
    }
    if let Some(path) = input.gt_path {
        let (d, s) = path.project([ego.x, ego.y]);
        m.dist_to_gt_trajectory = Some(d);
        m.progress_m = Some(s);
    }
    if let Some(p) = input.gt_here {
        m.dist_to_gt_location = Some(crate::geometry::norm(ego.x - p[0], ego.y - p[1]));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x: f64, y: f64, yaw: f64) -> OrientedBox {
        OrientedBox {
            x,
            y,
            yaw,
            length: 4.0,
            width: 2.0,
        }
    }

    fn moving(id: usize, bx: OrientedBox) -> TrackBox {
        TrackBox {
            id,
            bx,
            speed: 5.0,
            is_static: false,
        }
    }

    fn input<'a>(ego: OrientedBox, speed: f64, tracks: &'a [TrackBox]) -> StepInput<'a> {
        StepInput {
            ego,
            ego_speed: speed,
            tracks,
            drivable: &[],
            gt_path: None,
            gt_here: None,
            ttc: &TtcParams {
                step_s: 0.1,
                horizon_s: 3.0,
                stopped_speed_mps: 5e-3,
            },
        }
    }

    #[test]
    fn classes_in_nuplans_order() {
        let ego = b(0.0, 0.0, 0.0);
        let c = |t: TrackBox, v: f64| classify(&ego, v, &t);
        assert_eq!(c(moving(1, b(3.5, 0.0, 0.0)), 5.0), CollisionClass::Front);
        assert_eq!(c(moving(1, b(-3.5, 0.0, 0.0)), 5.0), CollisionClass::Rear);
        assert_eq!(c(moving(1, b(0.0, 1.8, 0.0)), 5.0), CollisionClass::Lateral);
        // Stopped ego first, whatever the geometry: not at fault.
        assert_eq!(
            c(moving(1, b(3.5, 0.0, 0.0)), 0.01),
            CollisionClass::StoppedEgo
        );
        // A stopped track is at fault even behind the ego.
        let parked = TrackBox {
            speed: 0.0,
            ..moving(1, b(-3.5, 0.0, 0.0))
        };
        assert_eq!(
            c(parked, 5.0),
            CollisionClass::StoppedTrack { front: false }
        );
        assert!(c(parked, 5.0).at_fault() && !CollisionClass::Rear.at_fault());
    }

    #[test]
    fn a_contact_keeps_the_class_it_started_with_and_leaves_ttc() {
        let ego = b(0.0, 0.0, 0.0);
        let mut mem = ContactMemory::default();
        let m = step(&input(ego, 5.0, &[moving(7, b(-3.5, 0.0, 0.0))]), &mut mem);
        assert!(m.collision_rear && m.collision_any && !m.collision_front);
        assert!(m.time_to_collision_s.is_infinite(), "not at fault");
        // The track pushes forward until its centre is beside the ego: still the rear collision.
        let m = step(&input(ego, 5.0, &[moving(7, b(-1.0, 0.5, 0.0))]), &mut mem);
        assert!(m.collision_rear && !m.collision_lateral);
        let m = step(&input(ego, 5.0, &[moving(7, b(-9.0, 0.0, 0.0))]), &mut mem);
        assert!(!m.collision_any && (m.min_distance_to_obstacle_m - 5.0).abs() < 1e-12);
        // A new at-fault collision: TTC 0 at that step only; the track is ignored afterwards.
        let lead = |x| TrackBox {
            speed: 0.0,
            ..moving(8, b(x, 0.0, 0.0))
        };
        let mut mem = ContactMemory::default();
        let m = step(&input(ego, 5.0, &[lead(3.5)]), &mut mem);
        assert!(m.collision_front && m.time_to_collision_s == 0.0);
        let m = step(&input(ego, 5.0, &[lead(3.6)]), &mut mem);
        assert!(m.collision_front && m.time_to_collision_s.is_infinite());
    }

    #[test]
    fn offroad_and_path_distances() {
        let road = vec![vec![
            [-10.0, -2.0],
            [100.0, -2.0],
            [100.0, 2.0],
            [-10.0, 2.0],
        ]];
        let path = Polyline::new(vec![[0.0, 0.0], [100.0, 0.0]]).unwrap();
        let mut mem = ContactMemory::default();
        let mut i = input(b(10.0, 0.5, 0.0), 1.0, &[]);
        i.drivable = &road;
        i.gt_path = Some(&path);
        i.gt_here = Some([12.0, 0.5]);
        let m = step(&i, &mut mem);
        assert_eq!(
            m.offroad,
            Some(false),
            "corners at y = 1.5 inside the 2 m half-width"
        );
        assert_eq!(
            (m.dist_to_gt_trajectory, m.progress_m, m.dist_to_gt_location),
            (Some(0.5), Some(10.0), Some(2.0))
        );
        let mut i = input(b(10.0, 1.5, 0.0), 1.0, &[]);
        i.drivable = &road;
        let m = step(&i, &mut mem);
        assert_eq!(
            m.offroad,
            Some(true),
            "corners 0.5 m outside, beyond the 0.3 m tolerance"
        );
        assert!(m.min_distance_to_obstacle_m.is_infinite());
    }
}
