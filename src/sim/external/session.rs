//! A rollout's session with its driver: which address serves it, its local frame, and the
//! requests of each step.

use super::camera::CAMERA_ID;
use super::frames::{pose, rig, session_id, vec3};
use super::{ROUTE_POINTS, ROUTE_SPACING_M};
use crate::alpasim_grpc::{common, egodriver};
use crate::state::{BatchState, SceneCtx};

/// The frame a rollout's messages use and what its session needs to know.
#[derive(Debug, Clone, Copy)]
pub(super) struct Session {
    pub(super) address: usize,
    pub(super) origin: [f64; 2],
    pub(super) open: bool,
}

/// What one rollout's step sends and gets back.
pub(super) struct StepWork {
    pub(super) r: usize,
    pub(super) session: String,
    pub(super) address: usize,
    /// The session's local frame (the answer's poses are in it).
    pub(super) origin: [f64; 2],
    pub(super) egomotion: egodriver::RolloutEgoTrajectory,
    pub(super) route: egodriver::RouteRequest,
    pub(super) image: Option<egodriver::RolloutCameraImage>,
    pub(super) drive: Option<egodriver::DriveRequest>,
}

/// How a rollout's step went.
pub(super) enum StepOutcome {
    /// Observations taken, no decision due.
    Observed,
    /// The driver's answer.
    Plan(Box<egodriver::DriveResponse>),
    /// A call failed for good (the text names the address and the call).
    Failed(String),
}

/// Rollout `r`'s requests for this step: egomotion, route, the sensor's camera `image` (when
/// it renders one), and `drive` once the driver controls the ego.
pub(super) fn step_work(
    st: &BatchState,
    scenes: &[SceneCtx],
    r: usize,
    s: &Session,
    dt_us: i64,
    image: Option<Vec<u8>>,
) -> StepWork {
    let ctx = &scenes[st.scene[r] as usize];
    let id = session_id(ctx, st, r);
    let t = st.t_us[r] as u64;
    let rig = rig(ctx, st, r, s.origin);
    let yaw = st.ego_yaw[r];
    let egomotion = egodriver::RolloutEgoTrajectory {
        session_uuid: id.clone(),
        trajectory: Some(common::Trajectory {
            poses: vec![common::PoseAtTime {
                pose: Some(pose(rig[0], rig[1], yaw)),
                timestamp_us: t,
            }],
        }),
        dynamic_states: vec![common::DynamicState {
            linear_velocity: Some(vec3(st.ego_speed[r], 0.0)),
            ..Default::default()
        }],
    };
    // The route ahead, in the rig frame.
    let (sn, cs) = yaw.sin_cos();
    let waypoints = ctx.route.as_ref().map_or_else(Vec::new, |route| {
        // From the rig's own projection on, so the first waypoint is where the rig is.
        let s0 = route
            .line
            .project([rig[0] + s.origin[0], rig[1] + s.origin[1]])
            .1;
        // The route ends where the recording ends (the straight extension the IDM driver
        // uses is not sent): a route follower stops there instead of leaving the road.
        let end = route.line.length() - crate::state::PATH_EXTENSION_M;
        (0..ROUTE_POINTS)
            .map(|k| s0 + k as f64 * ROUTE_SPACING_M)
            .take_while(|&a| a <= end.max(s0))
            .map(|a| {
                let (p, _) = route.line.at(a);
                let (dx, dy) = (p[0] - s.origin[0] - rig[0], p[1] - s.origin[1] - rig[1]);
                vec3(dx * cs + dy * sn, -dx * sn + dy * cs)
            })
            .collect()
    });
    let route = egodriver::RouteRequest {
        session_uuid: id.clone(),
        route: Some(egodriver::Route {
            timestamp_us: t,
            waypoints,
        }),
    };
    // The camera frame of this decision (the sensor renders it; its clocks make it complete now).
    let image = image.map(|bytes| egodriver::RolloutCameraImage {
        session_uuid: id.clone(),
        camera_image: Some(egodriver::rollout_camera_image::CameraImage {
            frame_start_us: t,
            frame_end_us: t,
            image_bytes: bytes,
            logical_id: CAMERA_ID.into(),
        }),
    });
    let drive = st.ego_controlled[r].then(|| egodriver::DriveRequest {
        session_uuid: id.clone(),
        time_now_us: t,
        time_query_us: t + dt_us as u64,
        renderer_data: Vec::new(),
    });
    StepWork {
        r,
        session: id,
        address: s.address,
        origin: s.origin,
        egomotion,
        route,
        image,
        drive,
    }
}
