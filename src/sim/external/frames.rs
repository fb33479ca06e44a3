//! Frames of the messages (AlpaSim's CONTRIBUTING.md): the rig is x forward, y left, z up, on the
//! ground below the rear axle; the local frame is the scene frame shifted to the ego's start
//! position (rounded to metres), so f32 positions keep centimetres. Poses out, and the returned
//! trajectory back into the controller's plan.

use crate::alpasim_grpc::{common, egodriver};
use crate::sim::services::{Plans, PLAN_POINTS};
use crate::state::{BatchState, SceneCtx};

/// A ground-plane point as AlpaSim's f32 vector.
pub(super) fn vec3(x: f64, y: f64) -> common::Vec3 {
    common::Vec3 {
        x: x as f32,
        y: y as f32,
        z: 0.0,
    }
}

/// A planar pose (heading about z) as AlpaSim's pose.
pub(super) fn pose(x: f64, y: f64, yaw: f64) -> common::Pose {
    let (s, c) = (yaw / 2.0).sin_cos();
    common::Pose {
        vec: Some(vec3(x, y)),
        quat: Some(common::Quat {
            w: c as f32,
            x: 0.0,
            y: 0.0,
            z: s as f32,
        }),
    }
}

/// The heading of a quaternion about z.
pub(super) fn yaw_of(q: &common::Quat) -> f64 {
    2.0 * f64::from(q.z).atan2(f64::from(q.w))
}

/// The session of rollout `r`: its rollout id.
pub(super) fn session_id(ctx: &SceneCtx, st: &BatchState, r: usize) -> String {
    format!("{}-{}", ctx.batch_uuid, st.rollout[r])
}

/// Rig (rear-axle) position of rollout `r`'s ego, in the local frame.
pub(super) fn rig(ctx: &SceneCtx, st: &BatchState, r: usize, origin: [f64; 2]) -> [f64; 2] {
    let back = ctx.ego_params.wheelbase_m / 2.0;
    let (s, c) = st.ego_yaw[r].sin_cos();
    [
        st.ego_x[r] - c * back - origin[0],
        st.ego_y[r] - s * back - origin[1],
    ]
}

/// Turns a returned trajectory (rig poses in the local frame) into the controller's plan:
/// box-centre points at t + k·dt, interpolated in time; an empty or one-pose plan holds.
pub(super) fn plan_from(
    resp: &egodriver::DriveResponse,
    ctx: &SceneCtx,
    st: &BatchState,
    r: usize,
    origin: [f64; 2],
    dt_us: i64,
    plans: &mut Plans,
) {
    let back = ctx.ego_params.wheelbase_m / 2.0;
    let poses: Vec<(f64, [f64; 2])> = resp
        .trajectory
        .as_ref()
        .map(|t| {
            t.poses
                .iter()
                .filter_map(|p| {
                    let pose = p.pose.as_ref()?;
                    let v = pose.vec?;
                    let yaw = pose.quat.as_ref().map_or(st.ego_yaw[r], yaw_of);
                    let (s, c) = yaw.sin_cos();
                    Some((
                        p.timestamp_us as f64,
                        [
                            f64::from(v.x) + origin[0] + c * back,
                            f64::from(v.y) + origin[1] + s * back,
                        ],
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let base = r * PLAN_POINTS;
    let here = [st.ego_x[r], st.ego_y[r]];
    if poses.len() < 2 {
        for k in 0..PLAN_POINTS {
            plans.x[base + k] = here[0];
            plans.y[base + k] = here[1];
            plans.v[base + k] = 0.0;
        }
        return;
    }
    let at = |t: f64| -> [f64; 2] {
        let i = poses.partition_point(|p| p.0 < t).clamp(1, poses.len() - 1);
        let (a, b) = (poses[i - 1], poses[i]);
        let f = if b.0 > a.0 {
            ((t - a.0) / (b.0 - a.0)).clamp(0.0, 1.0)
        } else {
            1.0
        };
        [
            a.1[0] + (b.1[0] - a.1[0]) * f,
            a.1[1] + (b.1[1] - a.1[1]) * f,
        ]
    };
    let dt_s = dt_us as f64 / 1e6;
    // Speeds from the plan itself (the plan at t need not coincide with the box centre).
    let mut prev = at(st.t_us[r] as f64);
    for k in 0..PLAN_POINTS {
        let p = at((st.t_us[r] + (k as i64 + 1) * dt_us) as f64);
        plans.x[base + k] = p[0];
        plans.y[base + k] = p[1];
        plans.v[base + k] = crate::geometry::norm(p[0] - prev[0], p[1] - prev[1]) / dt_s;
        prev = p;
    }
}
