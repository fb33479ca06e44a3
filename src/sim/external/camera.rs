//! The camera an external driver is told about at `start_session`: `camera_bev`, a pinhole
//! looking straight down at the rig. Its frames are rendered by the sensor service
//! (`crate::sim::sensor`) and submitted at every decision.

use crate::alpasim_grpc::common;

/// Logical id of the bird's-eye camera declared to drivers.
pub const CAMERA_ID: &str = "camera_bev";
/// Height (m) of the virtual camera above the rig (for its declared pinhole model).
pub const CAMERA_HEIGHT_M: f64 = 50.0;

/// The camera as `start_session` declares it: a pinhole looking straight down from
/// [`CAMERA_HEIGHT_M`] above the rig, image up = the rig's forward axis, with the focal length
/// that gives the renderer's metres per pixel on the ground (AlpaSim's optical frame: x right,
/// y down, z along the optical axis).
pub(super) fn camera(
    px: usize,
) -> crate::alpasim_grpc::nre::grpc::protos::sensorsim::available_cameras_return::AvailableCamera {
    use crate::alpasim_grpc::nre::grpc::protos::sensorsim as ss;
    let view = crate::sim::sensor::camera_view();
    let f = CAMERA_HEIGHT_M / view.metres_per_px;
    let half = std::f32::consts::FRAC_1_SQRT_2;
    ss::available_cameras_return::AvailableCamera {
        intrinsics: Some(ss::CameraSpec {
            logical_id: CAMERA_ID.into(),
            resolution_h: px as u32,
            resolution_w: px as u32,
            shutter_type: ss::ShutterType::Global as i32,
            camera_param: Some(ss::camera_spec::CameraParam::OpencvPinholeParam(
                ss::OpenCvPinholeCameraParam {
                    principal_point_x: px as f64 / 2.0,
                    principal_point_y: px as f64 / 2.0,
                    focal_length_x: f,
                    focal_length_y: f,
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        rig_to_camera: Some(common::Pose {
            vec: Some(common::Vec3 {
                x: 0.0,
                y: 0.0,
                z: CAMERA_HEIGHT_M as f32,
            }),
            // 180° about (1, −1, 0)/√2: optical x = rig −y, y = rig −x, z = rig −z.
            quat: Some(common::Quat {
                w: 0.0,
                x: half,
                y: -half,
                z: 0.0,
            }),
        }),
        logical_id: CAMERA_ID.into(),
    }
}
