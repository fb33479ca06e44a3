//! A rollout trace as rollout.asl records (DESIGN §5): the scene's shared metadata encoded once per
//! batch, each rollout's metadata with drivekit's extension fields (seed, perturbation, models),
//! one ActorPoses per step (the full-precision state in extension field 1001) and the driver's
//! plans as AlpaSim's driver_ego_trajectory records.

use super::metadata::MetadataEncoder;
use super::poses::{encode_actor_poses, encode_trajectory, pose_message, PoseMemo, PoseRow};
use super::proto;
use super::trace::RolloutTrace;
use crate::config::SimConfig;
use crate::scene::Scene;
use crate::state::{BatchState, EgoPerturbation, SceneCtx};

/// Encodes one rollout's log records (metadata, then one ActorPoses per step) into `out`;
/// `shared` holds the scene's pre-encoded actor definitions and recorded trajectory.
pub fn encode_rollout_log(
    out: &mut Vec<u8>,
    ctx: &SceneCtx,
    shared: &MetadataEncoder,
    metadata: &proto::RolloutMetadata,
    trace: &RolloutTrace,
) {
    shared.encode(out, metadata);
    let n_agents = ctx.scene.agents.len();
    let mut memo = PoseMemo::default();
    let mut next_plan = 0;
    for (k, &t) in trace.times_us.iter().enumerate() {
        let e = &trace.ego[k];
        let ego = std::iter::once(PoseRow {
            id: b"EGO",
            x: e[0],
            y: e[1],
            yaw: e[2],
            state: e,
        });
        let agents = trace.agents[k * n_agents..(k + 1) * n_agents]
            .iter()
            .zip(&ctx.scene.agents)
            .filter(|(p, _)| !p[0].is_nan())
            .map(|(p, a)| PoseRow {
                id: a.id.as_bytes(),
                x: p[0],
                y: p[1],
                yaw: p[2],
                state: p,
            });
        encode_actor_poses(out, &mut memo, t as u64, ego.chain(agents));
        // The plan made at this step (AlpaSim's driver_ego_trajectory, entry 12).
        while next_plan < trace.plans.len() && trace.plans[next_plan].0 as usize == k {
            let pts = &trace.plans[next_plan].1;
            let dt = metadata
                .session_metadata
                .as_ref()
                .map_or(100_000, |m| m.control_timestep_us);
            let poses = pts.iter().enumerate().map(|(j, p)| {
                let prev = if j == 0 { [e[0], e[1]] } else { pts[j - 1] };
                (
                    PoseRow {
                        id: b"",
                        x: p[0],
                        y: p[1],
                        yaw: (p[1] - prev[1]).atan2(p[0] - prev[0]),
                        state: &[],
                    },
                    t as u64 + (j as u64 + 1) * dt,
                )
            });
            encode_trajectory(out, &mut memo, poses);
            next_plan += 1;
        }
    }
}

/// The parts of a rollout_metadata record every rollout of the scene shares (actor definitions,
/// the recorded ego trajectory), encoded once.
pub fn scene_metadata(ctx: &SceneCtx) -> MetadataEncoder {
    let scene = &ctx.scene;
    let ts = &scene.timestamps_us;
    MetadataEncoder::new(&proto::RolloutMetadata {
        actor_definitions: Some(proto::ActorDefinitions {
            actor_aabb: std::iter::once(&scene.ego)
                .chain(&scene.agents)
                .map(|t| proto::ActorAabb {
                    actor_id: t.id.clone(),
                    aabb: Some(proto::Aabb {
                        size_x: t.length_m as f32,
                        size_y: t.width_m as f32,
                        size_z: t.height_m as f32,
                    }),
                    actor_label: format!("{:?}", t.class).to_lowercase(),
                })
                .collect(),
        }),
        ego_rig_recorded_ground_truth_trajectory: Some(proto::Trajectory {
            poses: (0..ts.len())
                .filter(|&i| scene.ego.valid[i])
                .map(|i| proto::PoseAtTime {
                    pose: Some(pose_message(
                        scene.ego.x[i],
                        scene.ego.y[i],
                        scene.ego.yaw[i],
                    )),
                    timestamp_us: ts[i] as u64,
                })
                .collect(),
        }),
        ..proto::RolloutMetadata::default()
    })
}

/// The per-rollout fields of rollout `index`'s metadata record (seed, perturbation and models as
/// drivekit extensions); the shared ones come from [`scene_metadata`].
pub fn rollout_metadata(
    ctx: &SceneCtx,
    cfg: &SimConfig,
    index: u32,
    seed: u64,
    perturbation: &str,
    models: &str,
) -> proto::RolloutMetadata {
    proto::RolloutMetadata {
        session_metadata: Some(proto::SessionMetadata {
            session_uuid: format!("{}-{index}", ctx.batch_uuid),
            scene_id: ctx.scene.scene_id.clone(),
            batch_size: cfg.simulation.n_rollouts,
            n_sim_steps: ctx.n_steps,
            start_timestamp_us: ctx.start_us as u64,
            control_timestep_us: cfg.simulation.control_timestep_us,
        }),
        force_gt_duration: cfg.simulation.force_gt_duration_us as u64,
        rollout_index: index as i32,
        drivekit_seed: seed,
        drivekit_perturbation: perturbation.to_string(),
        drivekit_models: models.to_string(),
        ..proto::RolloutMetadata::default()
    }
}

/// The JSON recorded in rollout.asl for what a rollout's seed drew.
pub fn perturbation_json(st: &BatchState, r: usize, scene: &Scene) -> String {
    #[derive(serde::Serialize)]
    struct Agent<'a> {
        id: &'a str,
        desired_speed_mps: f64,
        headway_s: f64,
    }
    #[derive(serde::Serialize)]
    struct Drawn<'a> {
        ego: EgoPerturbation,
        idm_agents: Vec<Agent<'a>>,
    }
    let drawn = Drawn {
        ego: st.perturbation[r],
        idm_agents: st
            .agents(r)
            .filter(|&a| st.a_idm[a])
            .map(|a| Agent {
                id: &scene.agents[st.a_track[a] as usize].id,
                desired_speed_mps: st.a_v0[a],
                headway_s: st.a_headway[a],
            })
            .collect(),
    };
    serde_json::to_string(&drawn).expect("plain data")
}
