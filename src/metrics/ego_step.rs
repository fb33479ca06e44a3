//! The ego's per-step metrics (DESIGN §3) as pure functions of one step's boxes, map and
//! recording. Collision classes follow nuPlan's geometry: a track touching the ego's **front
//! edge** is a front collision, one whose centre is **behind the ego's rear axle** is a rear
//! collision (not at fault), anything else is lateral; a collision already under way keeps its
//! class (nuPlan counts each collision once, when it starts).

use crate::geometry::{box_distance, to_frame, OrientedBox, Polyline};

/// Where the rear axle sits behind the box centre, as a fraction of the box length (the
/// Pacifica of nuPlan: 1.461 m of 5.176 m).
pub const REAR_AXLE_BEHIND_CENTRE_FRAC: f64 = 1.461 / 5.176;
/// nuPlan's drivable-area tolerance (m).
pub const OFFROAD_TOLERANCE_M: f64 = 0.3;

/// Class of a collision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollisionClass {
    /// The track touches the ego's front edge (at fault).
    Front,
    /// Side contact (at fault).
    Lateral,
    /// The track is behind the ego's rear axle (not at fault).
    Rear,
}

/// Classifies a collision between the ego box and a track box that overlap.
pub fn classify(ego: &OrientedBox, track: &OrientedBox) -> CollisionClass {
    let (s, c) = ego.yaw.sin_cos();
    let front_edge = OrientedBox {
        x: ego.x + c * ego.length / 2.0,
        y: ego.y + s * ego.length / 2.0,
        yaw: ego.yaw,
        length: 0.0,
        width: ego.width,
    };
    if front_edge.overlaps(track) {
        return CollisionClass::Front;
    }
    if to_frame(ego, [track.x, track.y])[0] < -REAR_AXLE_BEHIND_CENTRE_FRAC * ego.length {
        return CollisionClass::Rear;
    }
    CollisionClass::Lateral
}

/// One step's inputs.
pub struct StepInput<'a> {
    /// The ego box.
    pub ego: OrientedBox,
    /// Boxes of the other actors present at this step, with their ids.
    pub tracks: &'a [(usize, OrientedBox)],
    /// Drivable-area polygons (empty: the scene has no map; offroad is not computed).
    pub drivable: &'a [Vec<[f64; 2]>],
    /// The recorded ego path, when the ego has a recording.
    pub gt_path: Option<&'a Polyline>,
    /// The recorded ego position at this time, when recorded.
    pub gt_here: Option<[f64; 2]>,
}

/// One step's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMetrics {
    /// A track touches the front edge.
    pub collision_front: bool,
    /// Side contact.
    pub collision_lateral: bool,
    /// Contact behind the rear axle.
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
}

/// Collision classes that persist while a contact lasts, keyed by track id.
#[derive(Debug, Default, Clone)]
pub struct ContactMemory {
    ongoing: Vec<(usize, CollisionClass)>,
}

/// Computes the step's metrics; `memory` carries the class of contacts across steps.
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
    };
    let mut ongoing = Vec::new();
    for (id, b) in input.tracks {
        let d = box_distance(&input.ego, b);
        m.min_distance_to_obstacle_m = m.min_distance_to_obstacle_m.min(d);
        if d > 0.0 || !input.ego.overlaps(b) {
            continue;
        }
        let class = memory
            .ongoing
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, c)| *c)
            .unwrap_or_else(|| classify(&input.ego, b));
        ongoing.push((*id, class));
        m.collision_any = true;
        match class {
            CollisionClass::Front => m.collision_front = true,
            CollisionClass::Lateral => m.collision_lateral = true,
            CollisionClass::Rear => m.collision_rear = true,
        }
    }
    memory.ongoing = ongoing;
    if !input.drivable.is_empty() {
        m.offroad = Some(!input.ego.inside_any(input.drivable, OFFROAD_TOLERANCE_M));
    }
    if let Some(path) = input.gt_path {
        let (d, s) = path.project([input.ego.x, input.ego.y]);
        m.dist_to_gt_trajectory = Some(d);
        m.progress_m = Some(s);
    }
    if let Some(p) = input.gt_here {
        m.dist_to_gt_location = Some((input.ego.x - p[0]).hypot(input.ego.y - p[1]));
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

    #[test]
    fn classes_by_contact_geometry() {
        let ego = b(0.0, 0.0, 0.0);
        assert_eq!(
            classify(&ego, &b(3.5, 0.0, 0.0)),
            CollisionClass::Front,
            "rear-ending the car ahead"
        );
        assert_eq!(
            classify(&ego, &b(-3.5, 0.0, 0.0)),
            CollisionClass::Rear,
            "rear-ended"
        );
        assert_eq!(
            classify(&ego, &b(0.0, 1.8, 0.0)),
            CollisionClass::Lateral,
            "side swipe"
        );
    }

    #[test]
    fn a_contact_keeps_the_class_it_started_with() {
        let ego = b(0.0, 0.0, 0.0);
        let mut mem = ContactMemory::default();
        let tracks = [(7, b(-3.5, 0.0, 0.0))];
        fn input(ego: OrientedBox, tracks: &[(usize, OrientedBox)]) -> StepInput<'_> {
            StepInput {
                ego,
                tracks,
                drivable: &[],
                gt_path: None,
                gt_here: None,
            }
        }
        let m = step(&input(ego, &tracks), &mut mem);
        assert!(m.collision_rear && m.collision_any && !m.collision_front);
        // The track pushes forward until its centre is beside the ego: still the rear collision.
        let m = step(&input(ego, &[(7, b(-1.0, 0.5, 0.0))]), &mut mem);
        assert!(m.collision_rear && !m.collision_lateral);
        let m = step(&input(ego, &[(7, b(-9.0, 0.0, 0.0))]), &mut mem);
        assert!(!m.collision_any && (m.min_distance_to_obstacle_m - 5.0).abs() < 1e-12);
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
        let m = step(
            &StepInput {
                ego: b(10.0, 0.5, 0.0),
                tracks: &[],
                drivable: &road,
                gt_path: Some(&path),
                gt_here: Some([12.0, 0.5]),
            },
            &mut mem,
        );
        assert_eq!(
            m.offroad,
            Some(false),
            "0.5 m beyond the edge is within the 0.3 m tolerance? no: 1.5 + 0.5 = 2.0 → inside"
        );
        assert_eq!(
            (m.dist_to_gt_trajectory, m.progress_m, m.dist_to_gt_location),
            (Some(0.5), Some(10.0), Some(2.0))
        );
        let m = step(
            &StepInput {
                ego: b(10.0, 1.5, 0.0),
                tracks: &[],
                drivable: &road,
                gt_path: None,
                gt_here: None,
            },
            &mut mem,
        );
        assert_eq!(
            m.offroad,
            Some(true),
            "corners 0.5 m outside, beyond the 0.3 m tolerance"
        );
        assert!(m.min_distance_to_obstacle_m.is_infinite());
    }
}
