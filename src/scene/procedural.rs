//! Procedural scenes for scale benchmarks: a straight multi-lane one-way road (lanes with
//! boundaries and connectivity, one drivable-area polygon), the ego in the middle lane and the
//! other vehicles spread over the lanes, each lane flowing at its own constant speed with safe
//! gaps, recorded at 10 Hz. Deterministic for a seed.

use super::{AgentClass, Lane, Map, Polygon, Scene, Track};
use crate::rng::SplitMix64;

/// Lane width (m).
pub const LANE_WIDTH_M: f64 = 3.5;
/// Recording rate: one sample every this many µs.
pub const SAMPLE_US: i64 = 100_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProceduralSpec {
    /// Seed.
    pub seed: u64,
    /// Actors including the ego (≥ 1).
    pub agents: usize,
    /// Lanes (≥ 1).
    pub lanes: usize,
    /// Recording length (s).
    pub duration_s: f64,
}

impl Default for ProceduralSpec {
    fn default() -> Self {
        ProceduralSpec {
            seed: 0,
            agents: 32,
            lanes: 3,
            duration_s: 20.0,
        }
    }
}

/// Generates the scene `procedural-{seed}-{agents}`.
pub fn generate(spec: &ProceduralSpec) -> Scene {
    let mut rng = SplitMix64::new(spec.seed);
    let n_lanes = spec.lanes.max(1);
    let n_agents = spec.agents.max(1);
    let n_t = (spec.duration_s * 1e6 / SAMPLE_US as f64).round() as usize + 1;
    let timestamps_us: Vec<i64> = (0..n_t as i64).map(|k| k * SAMPLE_US).collect();
    let lane_speed: Vec<f64> = (0..n_lanes).map(|_| 8.0 + 6.0 * rng.uniform()).collect();
    let lane_y = |i: usize| (i as f64 - (n_lanes as f64 - 1.0) / 2.0) * LANE_WIDTH_M;
    let per_lane = n_agents.div_ceil(n_lanes);
    let spacing = 22.0;
    let road_len = per_lane as f64 * spacing + 14.0 * spec.duration_s + 200.0;
    let (x0, x1) = (-100.0, road_len);
    let lanes: Vec<Lane> = (0..n_lanes)
        .map(|i| Lane {
            speed_limit_mps: None,
            id: i as i64,
            centerline: vec![[x0, lane_y(i)], [x1, lane_y(i)]],
            left_boundary: vec![
                [x0, lane_y(i) + LANE_WIDTH_M / 2.0],
                [x1, lane_y(i) + LANE_WIDTH_M / 2.0],
            ],
            right_boundary: vec![
                [x0, lane_y(i) - LANE_WIDTH_M / 2.0],
                [x1, lane_y(i) - LANE_WIDTH_M / 2.0],
            ],
            predecessors: vec![],
            successors: vec![],
            left_neighbor: (i + 1 < n_lanes).then_some(i as i64 + 1),
            right_neighbor: (i > 0).then(|| i as i64 - 1),
            is_intersection: false,
            lane_type: "VEHICLE".into(),
        })
        .collect();
    let half = n_lanes as f64 * LANE_WIDTH_M / 2.0;
    let map = Map {
        road_lines: Vec::new(),
        road_edges: Vec::new(),
        speed_bumps: Vec::new(),
        driveways: Vec::new(),
        stop_signs: Vec::new(),
        lanes,
        drivable_areas: vec![Polygon {
            id: 0,
            points: vec![[x0, -half], [x1, -half], [x1, half], [x0, half]],
        }],
        crosswalks: vec![],
    };
    // Slots along each lane; the ego takes the middle lane's middle slot.
    let ego_lane = n_lanes / 2;
    let mut slots: Vec<(usize, usize)> = (0..per_lane)
        .flat_map(|k| (0..n_lanes).map(move |l| (l, k)))
        .collect();
    let ego_slot = (ego_lane, per_lane / 2);
    slots.retain(|s| *s != ego_slot);
    let track = |id: String, lane: usize, slot: usize, rng: &mut SplitMix64| {
        let (length, width) = (4.2 + 0.8 * rng.uniform(), 1.8 + 0.3 * rng.uniform());
        let mut t = Track::empty(id, AgentClass::Vehicle, (length, width, 1.6), n_t);
        let v = lane_speed[lane];
        let start = slot as f64 * spacing + 4.0 * rng.uniform();
        for (k, ts) in timestamps_us.iter().enumerate() {
            t.valid[k] = true;
            t.x[k] = start + v * *ts as f64 / 1e6;
            t.y[k] = lane_y(lane);
            t.vx[k] = v;
        }
        t
    };
    let ego = track("EGO".into(), ego_slot.0, ego_slot.1, &mut rng);
    let agents = slots
        .iter()
        .take(n_agents - 1)
        .enumerate()
        .map(|(i, &(lane, slot))| track(format!("veh-{i}"), lane, slot, &mut rng))
        .collect();
    Scene {
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id: format!("procedural-{}-{}", spec.seed, n_agents),
        source: format!(
            "drivekit procedural generator (seed {}, {} lanes, {} actors, {} s)",
            spec.seed, n_lanes, n_agents, spec.duration_s
        ),
        timestamps_us,
        map,
        ego,
        agents,
    }
}

/// Timestamps of [`traffic_rules_scene`] with the signal red: from 6 s to 12 s.
pub const RULES_RED_US: (i64, i64) = (6_000_000, 12_000_000);

/// A scene with every traffic rule drivekit simulates and scores, for tests and examples
/// (`procedural-traffic-rules`): an eastbound two-lane road split into a lane graph — lanes 1/2
/// (x 0–100 m, limit 12 m/s), signal-controlled connectors 3/4 (x 100–110 m, red from 6 to 12 s,
/// green before and after), lanes 5/6 (x 110–180 m, limit 8 m/s, a stop sign at their end),
/// lanes 7/8 (x 180–300 m, limit 12 m/s). The recorded ego drives the right lane from x = 20 m at
/// 9 m/s, crossing the stop line on red and rolling through the stop sign (the recording obeys no
/// rule, so a policy has something to do better); a vehicle starts 40 m ahead of it at 9 m/s, and
/// one in the left lane at 10 m/s. 40 s at 10 Hz.
pub fn traffic_rules_scene() -> Scene {
    let n_t = 401;
    let timestamps_us: Vec<i64> = (0..n_t as i64).map(|k| k * SAMPLE_US).collect();
    let w = LANE_WIDTH_M;
    let lane = |id: i64,
                y: f64,
                x0: f64,
                x1: f64,
                limit: Option<f64>,
                pred: Option<i64>,
                succ: Option<i64>,
                inter: bool| Lane {
        id,
        centerline: vec![[x0, y], [x1, y]],
        left_boundary: vec![[x0, y + w / 2.0], [x1, y + w / 2.0]],
        right_boundary: vec![[x0, y - w / 2.0], [x1, y - w / 2.0]],
        predecessors: pred.into_iter().collect(),
        successors: succ.into_iter().collect(),
        left_neighbor: None,
        right_neighbor: None,
        is_intersection: inter,
        lane_type: "VEHICLE".into(),
        speed_limit_mps: limit,
    };
    let (yr, yl) = (0.0, w);
    let lanes = vec![
        lane(1, yr, 0.0, 100.0, Some(12.0), None, Some(3), false),
        lane(2, yl, 0.0, 100.0, Some(12.0), None, Some(4), false),
        lane(3, yr, 100.0, 110.0, Some(12.0), Some(1), Some(5), true),
        lane(4, yl, 100.0, 110.0, Some(12.0), Some(2), Some(6), true),
        lane(5, yr, 110.0, 180.0, Some(8.0), Some(3), Some(7), false),
        lane(6, yl, 110.0, 180.0, Some(8.0), Some(4), Some(8), false),
        lane(7, yr, 180.0, 300.0, Some(12.0), Some(5), None, false),
        lane(8, yl, 180.0, 300.0, Some(12.0), Some(6), None, false),
    ];
    let red = |t: i64| (RULES_RED_US.0..RULES_RED_US.1).contains(&t);
    let signal = |lane: i64| super::LaneSignal {
        lane,
        states: timestamps_us
            .iter()
            .map(|&t| {
                if red(t) {
                    super::SignalState::Stop
                } else {
                    super::SignalState::Go
                }
            })
            .collect(),
        stop_point: Some([100.0, if lane == 3 { yr } else { yl }]),
    };
    let map = Map {
        lanes,
        drivable_areas: vec![Polygon {
            id: 0,
            points: vec![
                [-50.0, -w / 2.0 - 0.5],
                [400.0, -w / 2.0 - 0.5],
                [400.0, yl + w / 2.0 + 0.5],
                [-50.0, yl + w / 2.0 + 0.5],
            ],
        }],
        crosswalks: vec![],
        road_lines: vec![super::MapLine {
            id: 100,
            kind: "TYPE_BROKEN_SINGLE_WHITE".into(),
            points: vec![[0.0, w / 2.0], [300.0, w / 2.0]],
        }],
        road_edges: vec![],
        speed_bumps: vec![],
        driveways: vec![],
        stop_signs: vec![super::StopSign {
            id: 200,
            position: [179.0, -w / 2.0 - 0.5],
            lanes: vec![5, 6],
        }],
    };
    let track = |id: &str, x0: f64, y: f64, v: f64| {
        let mut t = Track::empty(id.into(), AgentClass::Vehicle, (4.6, 1.9, 1.5), n_t);
        for (k, ts) in timestamps_us.iter().enumerate() {
            t.valid[k] = true;
            t.x[k] = x0 + v * *ts as f64 / 1e6;
            t.y[k] = y;
            t.vx[k] = v;
        }
        t
    };
    let ego = track("EGO", 20.0, yr, 9.0);
    let agents = vec![track("lead", 60.0, yr, 9.0), track("left", 0.0, yl, 10.0)];
    let signals = vec![signal(3), signal(4)];
    Scene {
        scene_id: "procedural-traffic-rules".into(),
        source: "drivekit procedural generator (traffic rules: signal, stop sign, speed limits)"
            .into(),
        timestamps_us,
        map,
        ego,
        agents,
        signals,
        tags: vec!["procedural".into(), "traffic-rules".into()],
        meta: Default::default(),
    }
}

/// Why procedural scenes could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// A spec that describes no scene.
    #[error("--agents and --lanes must be ≥ 1 and --duration positive")]
    BadSpec,
    /// The output directory cannot be created.
    #[error("{path}: {source}")]
    Io {
        /// the directory
        path: std::path::PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// A scene file cannot be written.
    #[error(transparent)]
    Scene(#[from] super::SceneError),
}

/// `simulate generate`: `count` scenes of `spec` with seeds `spec.seed`, `spec.seed + 1`, …,
/// each written to `out/<scene_id>.dkscene`; returns how many.
pub fn write_scenes(
    spec: &ProceduralSpec,
    count: u64,
    out: &std::path::Path,
) -> Result<u64, GenerateError> {
    if spec.agents < 1 || spec.lanes < 1 || spec.duration_s.is_nan() || spec.duration_s <= 0.0 {
        return Err(GenerateError::BadSpec);
    }
    std::fs::create_dir_all(out).map_err(|e| GenerateError::Io {
        path: out.to_path_buf(),
        source: e,
    })?;
    for seed in spec.seed..spec.seed + count {
        let scene = generate(&ProceduralSpec { seed, ..*spec });
        scene.save(&out.join(format!("{}.{}", scene.scene_id, super::EXTENSION)))?;
    }
    Ok(count)
}

/// Distinct procedural scenes the step benchmarks spread their rollouts over.
pub const BENCH_SCENES: usize = 8;

/// The scenes of the step benchmarks (`make bench`, `simulate bench-backends`): [`BENCH_SCENES`]
/// straight 3-lane roads with 32 actors (the ego and 31 vehicles), seeds 0, 1, …, each long
/// enough for `steps` control steps at 10 Hz after the 3-step start offset.
pub fn bench_scenes(steps: usize) -> Vec<Scene> {
    (0..BENCH_SCENES as u64)
        .map(|seed| {
            generate(&ProceduralSpec {
                seed,
                agents: 32,
                lanes: 3,
                duration_s: (steps as f64 + 3.0) / 10.0,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_deterministic_and_sized() {
        let spec = ProceduralSpec {
            seed: 3,
            agents: 32,
            lanes: 3,
            duration_s: 5.0,
        };
        let s = generate(&spec);
        s.validate().unwrap();
        assert_eq!(s.agents.len(), 31);
        assert_eq!(s.timestamps_us.len(), 51);
        assert_eq!(s.map.lanes.len(), 3);
        assert_eq!(generate(&spec), s);
        assert_ne!(generate(&ProceduralSpec { seed: 4, ..spec }), s);
        // No two actors of a lane overlap in the recording.
        use crate::geometry::OrientedBox;
        let bx = |t: &Track, k: usize| OrientedBox {
            x: t.x[k],
            y: t.y[k],
            yaw: t.yaw[k],
            length: t.length_m,
            width: t.width_m,
        };
        let all: Vec<&Track> = std::iter::once(&s.ego).chain(&s.agents).collect();
        for k in [0, 50] {
            for (i, a) in all.iter().enumerate() {
                for b in &all[i + 1..] {
                    assert!(!bx(a, k).overlaps(&bx(b, k)), "{} {}", a.id, b.id);
                }
            }
        }
    }
}
