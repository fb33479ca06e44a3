//! An external driver: any policy served over AlpaSim's `egodriver.EgodriverService` gRPC
//! contract (proto/alpasim_grpc/v0), so a policy written for AlpaSim is evaluated unchanged.
//!
//! Per rollout one session (`session_uuid` = the rollout id, `random_seed` = the rollout's seed):
//! `start_session` before the first step (no cameras are declared until the renderer exists);
//! every step the observations the clocks say are due — `submit_egomotion_observation` (the rig
//! pose in the local frame and its velocity in the rig frame) and `submit_route` (the route ahead
//! as waypoints in the rig frame), plus `submit_recording_ground_truth` once at the start when
//! `driver.send_ground_truth` is set; from the takeover on, `drive` at each decision time with
//! `time_query_us` one control step later; the returned trajectory (rig poses in the local frame)
//! becomes the plan the controller tracks. `terminate_session` ends the rollout; `close_session`
//! after its last step.
//!
//! Frames (AlpaSim's CONTRIBUTING.md): the rig is x forward, y left, z up, on the ground below
//! the rear axle; the local frame is the scene frame shifted to the ego's start position (so f32
//! positions keep centimetres). All rollouts of a chunk have their requests in flight at once;
//! each address serves at most `deploy.driver.n_concurrent_rollouts` at a time; calls time out
//! after `driver.timeout_s` and are retried `driver.retries` times with exponential backoff. A
//! rollout whose calls still fail ends as failed, naming the address and the call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use super::services::{DriverService, Observations, Plans, PLAN_POINTS};
use crate::alpasim_grpc::common;
use crate::alpasim_grpc::egodriver::{self, egodriver_service_client::EgodriverServiceClient};
use crate::sim_config::SimConfig;
use crate::state::{BatchState, SceneCtx};

/// Route waypoints sent per step.
pub const ROUTE_POINTS: usize = 50;
/// Spacing of route waypoints (m).
pub const ROUTE_SPACING_M: f64 = 2.0;
/// Most rollouts an external driver's chunk holds.
pub const MAX_CHUNK: usize = 4096;
/// First retry delay; doubled for each further retry.
pub const BACKOFF: Duration = Duration::from_millis(50);

/// Why the external driver cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    /// No address configured.
    #[error("--driver external needs at least one driver address: set driver.addresses in wizard-config.yaml or pass --driver-address host:port")]
    NoAddress,
    /// An address that does not parse.
    #[error("driver address {address}: {message}")]
    BadAddress {
        /// the address
        address: String,
        /// what is wrong
        message: String,
    },
    /// The health check (`get_version`) failed.
    #[error("driver at {address} does not answer get_version (timeout {timeout_s} s): {message} (is the policy server running and serving egodriver.EgodriverService?)")]
    Unreachable {
        /// the address
        address: String,
        /// the timeout
        timeout_s: f64,
        /// the cause
        message: String,
    },
    /// The async runtime could not start.
    #[error("starting the gRPC runtime: {0}")]
    Runtime(String),
}

/// Latencies of one RPC method.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MethodStats {
    /// Duration of each successful call (s).
    pub durations_s: Vec<f64>,
    /// Per call: time it waited for a free slot at its address (s), and how many calls were
    /// waiting when it started.
    pub waits: Vec<(f64, usize)>,
    /// Calls that failed after their retries.
    pub failures: u64,
    /// Retries made.
    pub retries: u64,
}

/// RPC statistics per method name (for telemetry and the benchmark).
pub type RpcStats = HashMap<&'static str, MethodStats>;

struct Address {
    name: String,
    client: EgodriverServiceClient<Channel>,
    permits: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
}

/// Waits for a slot at an address; returns it with the wait (s) and the queue depth at the start.
async fn slot(
    permits: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
) -> (Option<tokio::sync::OwnedSemaphorePermit>, f64, usize) {
    use std::sync::atomic::Ordering;
    let depth = waiting.fetch_add(1, Ordering::Relaxed);
    let t = Instant::now();
    let permit = permits.acquire_owned().await.ok();
    waiting.fetch_sub(1, Ordering::Relaxed);
    (permit, t.elapsed().as_secs_f64(), depth)
}

fn record_wait(stats: &Mutex<RpcStats>, method: &'static str, wait: f64, depth: usize) {
    stats
        .lock()
        .expect("stats lock")
        .entry(method)
        .or_default()
        .waits
        .push((wait, depth));
}

/// The frame a rollout's messages use and what its session needs to know.
#[derive(Debug, Clone, Copy)]
struct Session {
    address: usize,
    origin: [f64; 2],
    open: bool,
}

/// Client of one or more driver servers.
pub struct ExternalDriver {
    rt: tokio::runtime::Runtime,
    addresses: Vec<Address>,
    timeout: Duration,
    retries: u32,
    send_ground_truth: bool,
    sessions: Mutex<HashMap<String, Session>>,
    stats: Arc<Mutex<RpcStats>>,
    version: String,
    /// The bird's-eye camera (side in px), if one is sent.
    camera_px: Option<usize>,
}

/// Logical id of the bird's-eye camera declared to drivers.
pub const CAMERA_ID: &str = "camera_bev";
/// Height (m) of the virtual camera above the rig (for its declared pinhole model).
pub const CAMERA_HEIGHT_M: f64 = 50.0;

/// The camera as `start_session` declares it: a pinhole looking straight down from
/// [`CAMERA_HEIGHT_M`] above the rig, image up = the rig's forward axis, with the focal length
/// that gives the renderer's metres per pixel on the ground (AlpaSim's optical frame: x right,
/// y down, z along the optical axis).
fn camera(
    px: usize,
) -> crate::alpasim_grpc::nre::grpc::protos::sensorsim::available_cameras_return::AvailableCamera {
    use crate::alpasim_grpc::nre::grpc::protos::sensorsim as ss;
    let view = crate::video::render::View::default();
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

fn endpoint(address: &str) -> Result<(Endpoint, Option<String>), ExternalError> {
    let bad = |m: String| ExternalError::BadAddress {
        address: address.to_string(),
        message: m,
    };
    if let Some(path) = address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("unix:"))
    {
        // The URI is only a placeholder: the connector below dials the socket.
        let e = Endpoint::try_from("http://[::1]:50051").map_err(|e| bad(e.to_string()))?;
        return Ok((e, Some(path.to_string())));
    }
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok((
        Endpoint::from_shared(uri).map_err(|e| bad(e.to_string()))?,
        None,
    ))
}

fn vec3(x: f64, y: f64) -> common::Vec3 {
    common::Vec3 {
        x: x as f32,
        y: y as f32,
        z: 0.0,
    }
}

fn pose(x: f64, y: f64, yaw: f64) -> common::Pose {
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

fn yaw_of(q: &common::Quat) -> f64 {
    2.0 * f64::from(q.z).atan2(f64::from(q.w))
}

/// Calls `f` with a timeout, retrying with backoff; records the duration or the failure.
async fn call<T, F, Fut>(
    stats: &Mutex<RpcStats>,
    method: &'static str,
    timeout: Duration,
    retries: u32,
    mut f: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let mut delay = BACKOFF;
    let mut attempt = 0;
    loop {
        let start = Instant::now();
        let (error, transient) = match tokio::time::timeout(timeout, f()).await {
            Ok(Ok(r)) => {
                let mut s = stats.lock().expect("stats lock");
                s.entry(method)
                    .or_default()
                    .durations_s
                    .push(start.elapsed().as_secs_f64());
                return Ok(r.into_inner());
            }
            Ok(Err(status)) => (
                format!(
                    "{method} failed: {} ({:?})",
                    status.message(),
                    status.code()
                ),
                // Worth another try: the server is (re)starting, overloaded or slow.
                matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::ResourceExhausted
                        | tonic::Code::Unknown
                ),
            ),
            Err(_) => (
                format!("{method} timed out after {:.1} s", timeout.as_secs_f64()),
                true,
            ),
        };
        if attempt >= retries || !transient {
            stats
                .lock()
                .expect("stats lock")
                .entry(method)
                .or_default()
                .failures += 1;
            return Err(error);
        }
        stats
            .lock()
            .expect("stats lock")
            .entry(method)
            .or_default()
            .retries += 1;
        attempt += 1;
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
}

/// What one rollout's step sends and gets back.
struct StepWork {
    r: usize,
    session: String,
    address: usize,
    egomotion: egodriver::RolloutEgoTrajectory,
    route: egodriver::RouteRequest,
    image: Option<egodriver::RolloutCameraImage>,
    drive: Option<egodriver::DriveRequest>,
}

enum StepOutcome {
    Observed,
    Plan(Box<egodriver::DriveResponse>),
    Failed(String),
}

impl ExternalDriver {
    /// Connects to every address of `cfg.driver` and checks each with `get_version`.
    pub fn connect(cfg: &SimConfig) -> Result<ExternalDriver, ExternalError> {
        let d = &cfg.driver;
        if d.addresses.is_empty() {
            return Err(ExternalError::NoAddress);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ExternalError::Runtime(e.to_string()))?;
        let timeout = Duration::from_secs_f64(d.timeout_s);
        let per_address = cfg
            .deploy
            .get("driver")
            .map_or(64, |x| x.n_concurrent_rollouts.max(1) as usize);
        let stats = Arc::new(Mutex::new(RpcStats::new()));
        let mut addresses = Vec::new();
        let mut versions = Vec::new();
        // Channels spawn their connection tasks on the runtime they are created in.
        let _guard = rt.enter();
        for a in &d.addresses {
            let (ep, unix) = endpoint(a)?;
            let ep = ep.connect_timeout(timeout);
            let channel = match unix {
                Some(path) => ep.connect_with_connector_lazy(tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        tokio::net::UnixStream::connect(path)
                            .await
                            .map(hyper_util::rt::TokioIo::new)
                    }
                })),
                None => ep.connect_lazy(),
            };
            let client = EgodriverServiceClient::new(channel);
            let version = rt
                .block_on(call(&stats, "get_version", timeout, 0, || {
                    let mut c = client.clone();
                    let req = common::Empty {};
                    async move { c.get_version(req).await }
                }))
                .map_err(|message| ExternalError::Unreachable {
                    address: a.clone(),
                    timeout_s: d.timeout_s,
                    message,
                })?;
            versions.push(format!("{a}: {}", version.version_id));
            addresses.push(Address {
                name: a.clone(),
                client,
                permits: Arc::new(Semaphore::new(per_address)),
                waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            });
        }
        Ok(ExternalDriver {
            rt,
            addresses,
            timeout,
            retries: d.retries,
            send_ground_truth: d.send_ground_truth,
            sessions: Mutex::new(HashMap::new()),
            stats,
            version: versions.join(", "),
            camera_px: (d.camera_px > 0).then_some(d.camera_px as usize),
        })
    }

    /// The servers' `get_version` answers, for logs.
    pub fn versions(&self) -> &str {
        &self.version
    }

    /// RPC statistics so far.
    pub fn stats(&self) -> RpcStats {
        self.stats.lock().expect("stats lock").clone()
    }

    fn session_id(ctx: &SceneCtx, st: &BatchState, r: usize) -> String {
        format!("{}-{}", ctx.batch_uuid, st.rollout[r])
    }

    /// Rig (rear-axle) position of rollout `r`'s ego, in the local frame.
    fn rig(ctx: &SceneCtx, st: &BatchState, r: usize, origin: [f64; 2]) -> [f64; 2] {
        let back = ctx.ego_params.wheelbase_m / 2.0;
        let (s, c) = st.ego_yaw[r].sin_cos();
        [
            st.ego_x[r] - c * back - origin[0],
            st.ego_y[r] - s * back - origin[1],
        ]
    }

    fn step_work(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        r: usize,
        s: &Session,
        dt_us: i64,
    ) -> StepWork {
        let ctx = &scenes[st.scene[r] as usize];
        let id = Self::session_id(ctx, st, r);
        let t = st.t_us[r] as u64;
        let rig = Self::rig(ctx, st, r, s.origin);
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
                .project([rig[0] + s.origin[0], rig[1] + s.origin[1]])
                .1;
            // The route ends where the recording ends (the straight extension the IDM driver
            // uses is not sent): a route follower stops there instead of leaving the road.
            let end = route.length() - crate::state::PATH_EXTENSION_M;
            (0..ROUTE_POINTS)
                .map(|k| s0 + k as f64 * ROUTE_SPACING_M)
                .take_while(|&a| a <= end.max(s0))
                .map(|a| {
                    let (p, _) = route.at(a);
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
        // The camera frame of this decision (the sensor clocks make it complete now).
        let image = self.camera_px.map(|px| {
            let view = crate::video::render::View {
                size: px,
                ..crate::video::render::View::default()
            };
            let frame = crate::video::render::camera_frame(ctx, st, r, &view);
            egodriver::RolloutCameraImage {
                session_uuid: id.clone(),
                camera_image: Some(egodriver::rollout_camera_image::CameraImage {
                    frame_start_us: t,
                    frame_end_us: t,
                    image_bytes: crate::video::render::png(&frame),
                    logical_id: CAMERA_ID.into(),
                }),
            }
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
            egomotion,
            route,
            image,
            drive,
        }
    }

    /// Turns a returned trajectory (rig poses in the local frame) into the controller's plan:
    /// box-centre points at t + k·dt, interpolated in time; an empty or one-pose plan holds.
    fn plan_from(
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
}

impl DriverService for ExternalDriver {
    fn name(&self) -> &'static str {
        "external"
    }

    fn drives(&self) -> bool {
        true
    }

    fn chunk_hint(&self) -> Option<usize> {
        // Every rollout in flight (as AlpaSim's runtime keeps them); each address's
        // n_concurrent_rollouts gates how many it serves at once, the rest queue.
        Some(MAX_CHUNK)
    }

    fn begin(&self, st: &BatchState, scenes: &[SceneCtx], plans: &mut Plans) {
        let mut jobs = Vec::new();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        for r in 0..st.len() {
            let ctx = &scenes[st.scene[r] as usize];
            let id = Self::session_id(ctx, st, r);
            let address =
                (st.scene[r] as usize * 7919 + st.rollout[r] as usize) % self.addresses.len();
            let origin = [st.ego_x[r].round(), st.ego_y[r].round()];
            sessions.insert(
                id.clone(),
                Session {
                    address,
                    origin,
                    open: false,
                },
            );
            let gt = self.send_ground_truth.then(|| {
                let ts = &ctx.scene.timestamps_us;
                let (sn, cs) = st.ego_yaw[r].sin_cos();
                let rig = Self::rig(ctx, st, r, origin);
                let poses = (0..ts.len())
                    .filter(|&i| ctx.scene.ego.valid[i] && ts[i] >= st.t_us[r])
                    .map(|i| {
                        let (dx, dy) = (
                            ctx.scene.ego.x[i] - origin[0] - rig[0],
                            ctx.scene.ego.y[i] - origin[1] - rig[1],
                        );
                        common::PoseAtTime {
                            pose: Some(pose(
                                dx * cs + dy * sn,
                                -dx * sn + dy * cs,
                                ctx.scene.ego.yaw[i] - st.ego_yaw[r],
                            )),
                            timestamp_us: ts[i] as u64,
                        }
                    })
                    .collect();
                egodriver::GroundTruthRequest {
                    session_uuid: id.clone(),
                    ground_truth: Some(egodriver::GroundTruth {
                        timestamp_us: st.t_us[r] as u64,
                        trajectory: Some(common::Trajectory { poses }),
                    }),
                }
            });
            let request = egodriver::DriveSessionRequest {
                session_uuid: id.clone(),
                random_seed: st.seed[r],
                debug_info: Some(egodriver::drive_session_request::DebugInfo {
                    scene_id: ctx.scene.scene_id.clone(),
                }),
                rollout_spec: Some(egodriver::drive_session_request::RolloutSpec {
                    vehicle: Some(
                        egodriver::drive_session_request::rollout_spec::VehicleDefinition {
                            available_cameras: self.camera_px.map(camera).into_iter().collect(),
                        },
                    ),
                }),
            };
            jobs.push((r, id, address, request, gt));
        }
        drop(sessions);
        let results = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (r, id, a, request, gt) in jobs {
                let client = self.addresses[a].client.clone();
                let permits = self.addresses[a].permits.clone();
                let waiting = self.addresses[a].waiting.clone();
                let (stats, timeout, retries) = (self.stats.clone(), self.timeout, self.retries);
                let name = self.addresses[a].name.clone();
                set.spawn(async move {
                    let (_permit, wait, depth) = slot(permits, waiting).await;
                    record_wait(&stats, "start_session", wait, depth);
                    let mut out = call(&stats, "start_session", timeout, retries, || {
                        let mut c = client.clone();
                        let req = request.clone();
                        async move { c.start_session(req).await }
                    })
                    .await
                    .map(|_| ());
                    if let (Ok(()), Some(gt)) = (&out, gt) {
                        out = call(
                            &stats,
                            "submit_recording_ground_truth",
                            timeout,
                            retries,
                            || {
                                let mut c = client.clone();
                                let req = gt.clone();
                                async move { c.submit_recording_ground_truth(req).await }
                            },
                        )
                        .await
                        .map(|_| ());
                    }
                    (r, id, out.map_err(|e| format!("driver {name}: {e}")))
                });
            }
            let mut out = Vec::new();
            while let Some(j) = set.join_next().await {
                out.push(j.expect("session task does not panic"));
            }
            out
        });
        let mut sessions = self.sessions.lock().expect("sessions lock");
        for (r, id, result) in results {
            match result {
                Ok(()) => {
                    if let Some(s) = sessions.get_mut(&id) {
                        s.open = true;
                    }
                }
                Err(e) => plans.failed[r] = Some(e),
            }
        }
    }

    fn drive(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        _obs: &Observations,
        plans: &mut Plans,
        dt_s: f64,
    ) {
        let dt_us = (dt_s * 1e6).round() as i64;
        let work: Vec<(StepWork, [f64; 2])> = {
            let live: Vec<(usize, Session)> = {
                let sessions = self.sessions.lock().expect("sessions lock");
                (0..st.len())
                    .filter(|&r| st.alive[r])
                    .filter_map(|r| {
                        let ctx = &scenes[st.scene[r] as usize];
                        sessions.get(&Self::session_id(ctx, st, r)).map(|s| (r, *s))
                    })
                    .collect()
            };
            // Requests (camera frames included: rendering and PNG encoding) built on all cores.
            use rayon::prelude::*;
            live.par_iter()
                .map(|(r, s)| (self.step_work(st, scenes, *r, s, dt_us), s.origin))
                .collect()
        };
        for r in 0..st.len() {
            plans.active[r] = false;
        }
        let origins: HashMap<usize, [f64; 2]> = work.iter().map(|(w, o)| (w.r, *o)).collect();
        let results = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (w, _) in work {
                let client = self.addresses[w.address].client.clone();
                let permits = self.addresses[w.address].permits.clone();
                let waiting = self.addresses[w.address].waiting.clone();
                let (stats, timeout, retries) = (self.stats.clone(), self.timeout, self.retries);
                let name = self.addresses[w.address].name.clone();
                set.spawn(async move {
                    // A rollout's step holds one slot for its three calls; the wait is the
                    // first call's, the others start at once.
                    let (_permit, wait, depth) = slot(permits, waiting).await;
                    record_wait(&stats, "submit_egomotion_observation", wait, depth);
                    let run = async {
                        call(
                            &stats,
                            "submit_egomotion_observation",
                            timeout,
                            retries,
                            || {
                                let mut c = client.clone();
                                let req = w.egomotion.clone();
                                async move { c.submit_egomotion_observation(req).await }
                            },
                        )
                        .await?;
                        if let Some(img) = &w.image {
                            call(&stats, "submit_image_observation", timeout, retries, || {
                                let mut c = client.clone();
                                let req = img.clone();
                                async move { c.submit_image_observation(req).await }
                            })
                            .await?;
                        }
                        call(&stats, "submit_route", timeout, retries, || {
                            let mut c = client.clone();
                            let req = w.route.clone();
                            async move { c.submit_route(req).await }
                        })
                        .await?;
                        match &w.drive {
                            Some(req) => call(&stats, "drive", timeout, retries, || {
                                let mut c = client.clone();
                                let req = req.clone();
                                async move { c.drive(req).await }
                            })
                            .await
                            .map(|resp| StepOutcome::Plan(Box::new(resp))),
                            None => Ok(StepOutcome::Observed),
                        }
                    };
                    let outcome = run.await.unwrap_or_else(|e| {
                        StepOutcome::Failed(format!("driver {name}, session {}: {e}", w.session))
                    });
                    (w.r, outcome)
                });
            }
            let mut out = Vec::new();
            while let Some(j) = set.join_next().await {
                out.push(j.expect("step task does not panic"));
            }
            out
        });
        for (r, outcome) in results {
            match outcome {
                StepOutcome::Observed => {}
                StepOutcome::Failed(e) => plans.failed[r] = Some(e),
                StepOutcome::Plan(resp) => {
                    if resp.terminate_session {
                        plans.terminate[r] = true;
                        continue;
                    }
                    let ctx = &scenes[st.scene[r] as usize];
                    Self::plan_from(&resp, ctx, st, r, origins[&r], dt_us, plans);
                    plans.active[r] = true;
                }
            }
        }
    }

    fn end(&self, st: &BatchState, scenes: &[SceneCtx]) {
        let closing: Vec<(String, usize)> = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            (0..st.len())
                .filter_map(|r| {
                    let id = Self::session_id(&scenes[st.scene[r] as usize], st, r);
                    sessions
                        .remove(&id)
                        .filter(|s| s.open)
                        .map(|s| (id, s.address))
                })
                .collect()
        };
        self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for (id, a) in closing {
                let client = self.addresses[a].client.clone();
                let (stats, timeout) = (self.stats.clone(), self.timeout);
                set.spawn(async move {
                    // Best effort: the rollout's results do not depend on it.
                    let _ = call(&stats, "close_session", timeout, 0, || {
                        let mut c = client.clone();
                        let req = egodriver::DriveSessionCloseRequest {
                            session_uuid: id.clone(),
                        };
                        async move { c.close_session(req).await }
                    })
                    .await;
                });
            }
            while set.join_next().await.is_some() {}
        });
    }
}
