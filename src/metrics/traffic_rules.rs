//! Traffic rules of a scene — stop lines at signals and stop signs, signal states per step — and
//! the two infractions the CARLA leaderboard counts (carla-simulator/leaderboard
//! `leaderboard/scenarios/..` via scenario_runner `srunner/scenariomanager/scenarioatomics/
//! atomic_criteria.py`): **running a red light** (`RunningRedLightTest`: the segment behind the
//! vehicle, from 0.8 half-lengths to one half-length + 1 m behind its centre, crosses the stop line
//! of a red signal within 15 m, heading along the lane; one infraction per light until another
//! light is run) and **running a stop sign** (`RunningStopTest`: once a vehicle is within 4 m of
//! a stop line on its lane it must drop below 0.1 m/s before it leaves; one infraction per sign).
//! CARLA's stop lines span ±0.6 lane widths around the stop waypoint, and so do drivekit's.
//!
//! Approximations of CARLA's map queries: "on the same lane as the stop waypoint" is a heading
//! within 90° of the lane's at the stop line and the tail segment crossing the ±0.6-lane-width
//! line; "within the stop trigger" is the vehicle centre between 4 m before and 1 m past the stop
//! line along the lane and within ±0.6 lane widths across it.
//!
//! Stop lines: a signal's at its stop point (WOMD's `stop_point`), else at the start of its lane;
//! a stop sign's on each lane it controls, where the sign's position projects onto the lane.

use crate::geometry::norm;
use crate::scene::{Point, Scene};

/// CARLA's `DISTANCE_LIGHT`: signals farther than this (m) are not checked.
pub const RED_LIGHT_DISTANCE_M: f64 = 15.0;
/// CARLA's stop line: ± this many lane widths around the stop point.
pub const STOP_LINE_HALF_WIDTH_LANES: f64 = 0.6;
/// CARLA's `PROXIMITY_THRESHOLD` (m) before a stop line.
pub const STOP_PROXIMITY_M: f64 = 4.0;
/// How far (m) past a stop sign's line a vehicle still counts as at the sign.
pub const STOP_PAST_M: f64 = 1.0;
/// CARLA's `SPEED_THRESHOLD`: below this (m/s) a vehicle has stopped.
pub const STOP_SPEED_MPS: f64 = 0.1;
/// Lane width assumed where a lane has no boundaries (m).
pub const DEFAULT_LANE_WIDTH_M: f64 = 3.7;

/// A stop line: where traffic on a lane stops, for a signal or a stop sign.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopLine {
    /// Its middle.
    pub p: Point,
    /// The lane's direction there (unit).
    pub dir: Point,
    /// Half its length (0.6 lane widths).
    pub half_width: f64,
    /// The signal (index into the scene's signals), or −1.
    pub signal: i32,
    /// The stop sign (index into the map's stop signs), or −1.
    pub sign: i32,
    /// The lane (index into the map's lanes).
    pub lane: usize,
}

/// A scene's stop lines and its signals' red states per timestamp.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficRules {
    /// Every stop line.
    pub lines: Vec<StopLine>,
    /// `red[signal × n_ts + i]`: the signal is red at timestamp i.
    pub red: Vec<u8>,
    /// Timestamps of the scene.
    pub n_ts: usize,
}

/// Nearest point of `line` to `p`: (arc length, point, unit direction of its segment).
fn nearest(line: &[Point], p: Point) -> Option<(f64, Point, Point)> {
    if line.len() < 2 {
        return None;
    }
    let mut best: Option<(f64, f64, Point, Point)> = None;
    let mut acc = 0.0;
    for w in line.windows(2) {
        let seg = norm(w[1][0] - w[0][0], w[1][1] - w[0][1]);
        let (d, t) = crate::geometry::segment_distance(w[0], w[1], p);
        if seg > 1e-9 && best.is_none_or(|b| d < b.0) {
            let q = [
                w[0][0] + (w[1][0] - w[0][0]) * t,
                w[0][1] + (w[1][1] - w[0][1]) * t,
            ];
            let dir = [(w[1][0] - w[0][0]) / seg, (w[1][1] - w[0][1]) / seg];
            best = Some((d, acc + t * seg, q, dir));
        }
        acc += seg;
    }
    best.map(|(_, s, q, d)| (s, q, d))
}

/// The lane's width at point `q` (distance between its boundaries), else the default.
fn width_at(lane: &crate::scene::Lane, q: Point) -> f64 {
    let l = crate::geometry::project_on_polyline(&lane.left_boundary, q).map(|x| x.0);
    let r = crate::geometry::project_on_polyline(&lane.right_boundary, q).map(|x| x.0);
    match (l, r) {
        (Some(a), Some(b)) if a + b > 0.5 => a + b,
        _ => DEFAULT_LANE_WIDTH_M,
    }
}

impl TrafficRules {
    /// The stop lines and red states of `scene`.
    pub fn new(scene: &Scene) -> TrafficRules {
        let lanes = &scene.map.lanes;
        let by_id = |id: i64| lanes.iter().position(|l| l.id == id);
        let mut lines = Vec::new();
        for (k, sig) in scene.signals.iter().enumerate() {
            let Some(li) = by_id(sig.lane) else { continue };
            let lane = &lanes[li];
            let Some(&start) = lane.centerline.first() else {
                continue;
            };
            let target = sig.stop_point.unwrap_or(start);
            if let Some((_, q, dir)) = nearest(&lane.centerline, target) {
                lines.push(StopLine {
                    p: q,
                    dir,
                    half_width: STOP_LINE_HALF_WIDTH_LANES * width_at(lane, q),
                    signal: k as i32,
                    sign: -1,
                    lane: li,
                });
            }
        }
        for (j, sign) in scene.map.stop_signs.iter().enumerate() {
            for id in &sign.lanes {
                let Some(li) = by_id(*id) else { continue };
                let lane = &lanes[li];
                if let Some((_, q, dir)) = nearest(&lane.centerline, sign.position) {
                    lines.push(StopLine {
                        p: q,
                        dir,
                        half_width: STOP_LINE_HALF_WIDTH_LANES * width_at(lane, q),
                        signal: -1,
                        sign: j as i32,
                        lane: li,
                    });
                }
            }
        }
        let n_ts = scene.timestamps_us.len();
        let red = scene
            .signals
            .iter()
            .flat_map(|s| s.states.iter().map(|x| u8::from(x.is_red())))
            .collect();
        TrafficRules { lines, red, n_ts }
    }

    /// Whether signal `k` is red at timestamp index `i`.
    pub fn red_at(&self, k: i32, i: usize) -> bool {
        k >= 0
            && self
                .red
                .get(k as usize * self.n_ts + i)
                .is_some_and(|r| *r != 0)
    }

    /// Whether the scene has a signal with a stop line (the red-light check applies).
    pub fn has_signals(&self) -> bool {
        self.lines.iter().any(|l| l.signal >= 0)
    }

    /// Whether the scene has a stop sign with a stop line (the stop-sign check applies).
    pub fn has_stop_signs(&self) -> bool {
        self.lines.iter().any(|l| l.sign >= 0)
    }
}

/// The index of the last timestamp at or before `t` (0 before the first): signal states hold
/// from their timestamp to the next.
pub fn ts_index(ts: &[i64], t: i64) -> usize {
    ts.partition_point(|&x| x <= t).saturating_sub(1)
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Whether segments p1–p2 and q1–q2 intersect (touching counts).
pub fn segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool {
    let d1 = cross(q1, q2, p1);
    let d2 = cross(q1, q2, p2);
    let d3 = cross(p1, p2, q1);
    let d4 = cross(p1, p2, q2);
    (d1 * d2 <= 0.0) && (d3 * d4 <= 0.0)
}

/// What the rule checks remember per rollout (CARLA's criteria state).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RuleMemory {
    /// The signal of the last red light run (−1: none).
    pub red_last: i32,
    /// The stop sign being approached (−1: none).
    pub stop_target: i32,
    /// The vehicle has stopped at it.
    pub stop_done: bool,
    /// The last stop sign run (−1: none).
    pub stop_failed: i32,
}

impl Default for RuleMemory {
    fn default() -> Self {
        RuleMemory {
            red_last: -1,
            stop_target: -1,
            stop_done: false,
            stop_failed: -1,
        }
    }
}

/// The vehicle at `c` heading `yaw` is at stop sign `sign`'s line on its lane.
fn at_sign(rules: &TrafficRules, sign: i32, c: Point, fwd: Point) -> bool {
    rules.lines.iter().any(|l| {
        if l.sign != sign || fwd[0] * l.dir[0] + fwd[1] * l.dir[1] < -0.17 {
            return false;
        }
        let (dx, dy) = (l.p[0] - c[0], l.p[1] - c[1]);
        let ahead = dx * l.dir[0] + dy * l.dir[1];
        let side = -dx * l.dir[1] + dy * l.dir[0];
        (-STOP_PAST_M..=STOP_PROXIMITY_M).contains(&ahead) && side.abs() <= l.half_width
    })
}

/// One step of both checks for a vehicle (centre `c`, heading `yaw`, length `len`, `speed`) at
/// timestamp index `ti`: (ran a red light now, ran a stop sign now).
pub fn check(
    rules: &TrafficRules,
    mem: &mut RuleMemory,
    c: Point,
    yaw: f64,
    len: f64,
    speed: f64,
    ti: usize,
) -> (bool, bool) {
    let fwd = [yaw.cos(), yaw.sin()];
    let ext = len / 2.0;
    let tail_close = [c[0] - 0.8 * ext * fwd[0], c[1] - 0.8 * ext * fwd[1]];
    let tail_far = [c[0] - (ext + 1.0) * fwd[0], c[1] - (ext + 1.0) * fwd[1]];
    let mut red = false;
    for l in rules.lines.iter().filter(|l| l.signal >= 0) {
        if l.signal == mem.red_last
            || norm(l.p[0] - c[0], l.p[1] - c[1]) > RED_LIGHT_DISTANCE_M
            || !rules.red_at(l.signal, ti)
            || fwd[0] * l.dir[0] + fwd[1] * l.dir[1] <= 0.0
        {
            continue;
        }
        let n = [-l.dir[1], l.dir[0]];
        let a = [l.p[0] - n[0] * l.half_width, l.p[1] - n[1] * l.half_width];
        let b = [l.p[0] + n[0] * l.half_width, l.p[1] + n[1] * l.half_width];
        if segments_intersect(tail_close, tail_far, a, b) {
            red = true;
            mem.red_last = l.signal;
            break;
        }
    }
    let mut ran_stop = false;
    if mem.stop_target < 0 {
        // Scan for a sign; the check starts at the next step (as CARLA's update returns).
        if let Some(l) = rules
            .lines
            .iter()
            .find(|l| l.sign >= 0 && at_sign(rules, l.sign, c, fwd))
        {
            mem.stop_target = l.sign;
            mem.stop_done = false;
        }
    } else {
        if speed < STOP_SPEED_MPS {
            mem.stop_done = true;
        }
        if !at_sign(rules, mem.stop_target, c, fwd) {
            if !mem.stop_done && mem.stop_target != mem.stop_failed {
                ran_stop = true;
                mem.stop_failed = mem.stop_target;
            }
            mem.stop_target = -1;
            mem.stop_done = false;
        }
    }
    (red, ran_stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(signal: bool) -> TrafficRules {
        TrafficRules {
            lines: vec![StopLine {
                p: [50.0, 0.0],
                dir: [1.0, 0.0],
                half_width: 2.2,
                signal: if signal { 0 } else { -1 },
                sign: if signal { -1 } else { 0 },
                lane: 0,
            }],
            red: vec![1, 1, 1, 0],
            n_ts: 4,
        }
    }

    #[test]
    fn the_tail_crossing_a_red_stop_line_counts_once() {
        let r = rules(true);
        let mut m = RuleMemory::default();
        // A 5 m car: its tail segment spans 2–3.5 m behind its centre.
        let mut hits = 0;
        for step in 0..80 {
            let x = 40.0 + 0.25 * step as f64;
            let (red, _) = check(&r, &mut m, [x, 0.0], 0.0, 5.0, 10.0, 1);
            hits += usize::from(red);
            if red {
                assert!((52.0..=53.5).contains(&x), "{x}");
            }
        }
        assert_eq!(hits, 1);
        // Green (index 3), the other way, or beside the line: no infraction.
        for (c, yaw, ti) in [
            ([52.5, 0.0], 0.0, 3),
            ([47.5, 0.0], std::f64::consts::PI, 1),
            ([52.5, 4.0], 0.0, 1),
        ] {
            let mut m = RuleMemory::default();
            assert!(!check(&r, &mut m, c, yaw, 5.0, 10.0, ti).0, "{c:?}");
        }
    }

    #[test]
    fn a_stop_sign_needs_a_stop_before_leaving() {
        let r = rules(false);
        let drive = |speeds: &[f64]| {
            let mut m = RuleMemory::default();
            let mut ran = 0;
            for (i, v) in speeds.iter().enumerate() {
                let x = 44.0 + 0.5 * i as f64;
                ran += usize::from(check(&r, &mut m, [x, 0.0], 0.0, 5.0, *v, 0).1);
            }
            ran
        };
        assert_eq!(drive(&[5.0; 20]), 1, "rolled through");
        let mut stopped = vec![5.0; 20];
        stopped[6] = 0.05;
        assert_eq!(drive(&stopped), 0, "stopped at the line");
    }

    #[test]
    fn timestamps_index_the_last_state_at_or_before() {
        let ts = [0, 100, 200];
        assert_eq!(
            [
                ts_index(&ts, -5),
                ts_index(&ts, 0),
                ts_index(&ts, 150),
                ts_index(&ts, 900)
            ],
            [0, 0, 1, 2]
        );
    }
}
