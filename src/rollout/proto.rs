//! The LogEntry messages of AlpaSim's `logging.proto` that drivekit writes and reads, with the
//! field numbers of DESIGN §5. Readers skip fields they do not know, so logs with more entry
//! kinds (AlpaSim's own) still decode.
#![allow(missing_docs)] // field names are the proto's; DESIGN §5 documents them

/// 3-D vector (m).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Vec3 {
    #[prost(float, tag = "1")]
    pub x: f32,
    #[prost(float, tag = "2")]
    pub y: f32,
    #[prost(float, tag = "3")]
    pub z: f32,
}

/// Unit quaternion.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Quat {
    #[prost(float, tag = "1")]
    pub w: f32,
    #[prost(float, tag = "2")]
    pub x: f32,
    #[prost(float, tag = "3")]
    pub y: f32,
    #[prost(float, tag = "4")]
    pub z: f32,
}

/// Position + orientation.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Pose {
    #[prost(message, optional, tag = "1")]
    pub vec: Option<Vec3>,
    #[prost(message, optional, tag = "2")]
    pub quat: Option<Quat>,
}

/// Box extents (m).
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Aabb {
    #[prost(float, tag = "1")]
    pub size_x: f32,
    #[prost(float, tag = "2")]
    pub size_y: f32,
    #[prost(float, tag = "3")]
    pub size_z: f32,
}

/// A pose at a time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PoseAtTime {
    #[prost(message, optional, tag = "1")]
    pub pose: Option<Pose>,
    #[prost(fixed64, tag = "2")]
    pub timestamp_us: u64,
}

/// A sequence of poses.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Trajectory {
    #[prost(message, repeated, tag = "1")]
    pub poses: Vec<PoseAtTime>,
}

/// Session identity and clock.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionMetadata {
    #[prost(string, tag = "1")]
    pub session_uuid: String,
    #[prost(string, tag = "2")]
    pub scene_id: String,
    #[prost(uint32, tag = "3")]
    pub batch_size: u32,
    #[prost(uint32, tag = "4")]
    pub n_sim_steps: u32,
    #[prost(fixed64, tag = "5")]
    pub start_timestamp_us: u64,
    #[prost(fixed64, tag = "6")]
    pub control_timestep_us: u64,
}

/// An actor's box.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActorAabb {
    #[prost(string, tag = "1")]
    pub actor_id: String,
    #[prost(message, optional, tag = "2")]
    pub aabb: Option<Aabb>,
    #[prost(string, tag = "3")]
    pub actor_label: String,
}

/// Every actor's box.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActorDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub actor_aabb: Vec<ActorAabb>,
}

/// First record of each rollout.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RolloutMetadata {
    #[prost(message, optional, tag = "1")]
    pub session_metadata: Option<SessionMetadata>,
    #[prost(message, optional, tag = "2")]
    pub actor_definitions: Option<ActorDefinitions>,
    #[prost(fixed64, tag = "3")]
    pub force_gt_duration: u64,
    #[prost(int32, tag = "5")]
    pub rollout_index: i32,
    #[prost(message, optional, tag = "7")]
    pub ego_rig_recorded_ground_truth_trajectory: Option<Trajectory>,
    /// drivekit extension (AlpaSim's readers skip unknown fields): the rollout's seed.
    #[prost(uint64, tag = "1001")]
    pub drivekit_seed: u64,
    /// drivekit extension: what the seed drew, as JSON (ego offsets, IDM agent parameters).
    #[prost(string, tag = "1002")]
    pub drivekit_perturbation: String,
    /// drivekit extension: driver and traffic models of the rollout.
    #[prost(string, tag = "1003")]
    pub drivekit_models: String,
}

/// One actor's pose.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActorPose {
    #[prost(string, tag = "1")]
    pub actor_id: String,
    #[prost(message, optional, tag = "2")]
    pub actor_pose: Option<Pose>,
    /// drivekit extension (skipped by AlpaSim's readers): the full-precision state the metrics
    /// used — ego `[x, y, yaw, speed, plan_x, plan_y]` (plan NaN without a plan), other actors
    /// `[x, y, yaw, speed]` — so `evaluate` recomputes the metrics exactly.
    #[prost(double, repeated, tag = "1001")]
    pub drivekit_state: Vec<f64>,
}

/// Every actor's pose at one control step (ego first, id "EGO").
#[derive(Clone, PartialEq, prost::Message)]
pub struct ActorPoses {
    #[prost(fixed64, tag = "1")]
    pub timestamp_us: u64,
    #[prost(message, repeated, tag = "2")]
    pub actor_poses: Vec<ActorPose>,
}

/// A call to the driver.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DriveRequest {
    #[prost(string, tag = "1")]
    pub session_uuid: String,
    #[prost(fixed64, tag = "3")]
    pub time_now_us: u64,
    #[prost(fixed64, tag = "4")]
    pub time_query_us: u64,
}

/// The driver's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DriveResponse {
    #[prost(message, optional, tag = "2")]
    pub trajectory: Option<Trajectory>,
    #[prost(bool, tag = "4")]
    pub terminate_session: bool,
}

/// One record of the log.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LogEntry {
    #[prost(oneof = "Entry", tags = "1, 2, 4, 5, 12")]
    pub entry: Option<Entry>,
}

/// The kinds of record drivekit knows.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Entry {
    #[prost(message, tag = "1")]
    RolloutMetadata(RolloutMetadata),
    #[prost(message, tag = "2")]
    ActorPoses(ActorPoses),
    #[prost(message, tag = "4")]
    DriverRequest(DriveRequest),
    #[prost(message, tag = "5")]
    DriverReturn(DriveResponse),
    #[prost(message, tag = "12")]
    DriverEgoTrajectory(Trajectory),
}
