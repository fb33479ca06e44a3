//! An external driver: any policy served over AlpaSim's `egodriver.EgodriverService` gRPC
//! contract (proto/alpasim_grpc/v0), so a policy written for AlpaSim is evaluated unchanged.
//!
//! Per rollout one session (`session_uuid` = the rollout id, `random_seed` = the rollout's seed):
//! `start_session` before the first step, declaring the camera ([`camera`]); every step the
//! observations the clocks say are due — `submit_egomotion_observation` (the rig pose in the
//! local frame and its velocity in the rig frame), `submit_image_observation` (the camera frame
//! the sensor service rendered for this decision) and `submit_route` (the route ahead as
//! waypoints in the rig frame), plus `submit_recording_ground_truth` once at the start when
//! `driver.send_ground_truth` is set; from the takeover on, `drive` at each decision time with
//! `time_query_us` one control step later; the returned trajectory (rig poses in the local frame)
//! becomes the plan the controller tracks ([`frames`]). `terminate_session` ends the rollout;
//! `close_session` after its last step.
//!
//! All rollouts of a chunk have their requests ([`session`]) in flight at once, and each steps
//! on as soon as its own answers are in (the step loop's pipeline; `drivekit.external_driver.
//! lockstep: true` makes every step wait for the whole chunk instead, with the same results);
//! each address serves at most `deploy.driver.n_concurrent_rollouts` at a time; calls time out after
//! `driver.timeout_s` and are retried `driver.retries` times with exponential backoff
//! ([`client`]). A rollout whose calls still fail ends as failed, naming the address and the
//! call.

pub mod camera;
pub mod client;
pub mod frames;
pub mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::services::{DriverPipeline, DriverService, Observations, Plans};
use crate::alpasim_grpc::common;
use crate::alpasim_grpc::egodriver::{self, egodriver_service_client::EgodriverServiceClient};
use crate::config::SimConfig;
use crate::state::{BatchState, SceneCtx};
use camera::camera;
use client::{call, endpoint, record_wait, slot, Address};
pub use client::{MethodStats, RpcStats};
use frames::{plan_from, pose, rig, session_id};
use session::{step_work, Session, StepOutcome, StepWork};

/// Route waypoints sent per step.
pub const ROUTE_POINTS: usize = 50;
/// Spacing of route waypoints (m).
pub const ROUTE_SPACING_M: f64 = 2.0;
/// Most rollouts an external driver's chunk holds.
pub const MAX_CHUNK: usize = 4096;

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

/// Client of one or more driver servers.
pub struct ExternalDriver {
    rt: tokio::runtime::Runtime,
    addresses: Vec<Address>,
    timeout: Duration,
    retries: u32,
    send_ground_truth: bool,
    lockstep: bool,
    sessions: Mutex<HashMap<String, Session>>,
    stats: Arc<Mutex<RpcStats>>,
    version: String,
    /// The bird's-eye camera (side in px), if one is sent.
    camera_px: Option<usize>,
}

impl ExternalDriver {
    /// Connects to every address of `drivekit.external_driver` and checks each with
    /// `get_version`.
    pub fn connect(cfg: &SimConfig) -> Result<ExternalDriver, ExternalError> {
        let d = &cfg.drivekit.external_driver;
        if d.addresses.is_empty() {
            return Err(ExternalError::NoAddress);
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| ExternalError::Runtime(e.to_string()))?;
        let timeout = Duration::from_secs_f64(d.timeout_s);
        let per_address = cfg.driver_concurrency();
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
            lockstep: d.lockstep,
            sessions: Mutex::new(HashMap::new()),
            stats,
            version: versions.join(", "),
            camera_px: (cfg.drivekit.camera.size_px > 0)
                .then_some(cfg.drivekit.camera.size_px as usize),
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
}

impl ExternalDriver {
    /// The requests of this step for each of `rollouts` (which have sessions); built on all
    /// cores (the sensor rendered the camera frames, also in parallel).
    fn step_works(
        &self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &Observations,
        rollouts: &[usize],
        dt_us: i64,
    ) -> Vec<StepWork> {
        let live: Vec<(usize, Session)> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            rollouts
                .iter()
                .filter_map(|&r| {
                    let ctx = &scenes[st.scene[r] as usize];
                    sessions.get(&session_id(ctx, st, r)).map(|s| (r, *s))
                })
                .collect()
        };
        use rayon::prelude::*;
        live.par_iter()
            .map(|(r, s)| {
                let image = obs.images.get(*r).cloned().flatten();
                step_work(st, scenes, *r, s, dt_us, image)
            })
            .collect()
    }

    /// One rollout's calls of a step, in order: egomotion, the image, the route, and `drive`
    /// when a decision is due; yields the rollout, its session's origin and the outcome. A step
    /// holds one slot at its address for all its calls; the wait is the first call's, the
    /// others start at once.
    fn step_calls(
        &self,
        w: StepWork,
    ) -> impl std::future::Future<Output = Answer> + Send + 'static {
        let client = self.addresses[w.address].client.clone();
        let permits = self.addresses[w.address].permits.clone();
        let waiting = self.addresses[w.address].waiting.clone();
        let (stats, timeout, retries) = (self.stats.clone(), self.timeout, self.retries);
        let name = self.addresses[w.address].name.clone();
        async move {
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
            (w.r, w.origin, outcome)
        }
    }
}

/// A rollout's step done: the rollout, its session's origin, the outcome.
type Answer = (usize, [f64; 2], StepOutcome);

/// Rollout `r`'s answer into `plans`: `active` only when it planned.
fn apply(
    (r, origin, outcome): Answer,
    st: &BatchState,
    scenes: &[SceneCtx],
    dt_us: i64,
    plans: &mut Plans,
) {
    plans.active[r] = false;
    match outcome {
        StepOutcome::Observed => {}
        StepOutcome::Failed(e) => plans.failed[r] = Some(e),
        StepOutcome::Plan(resp) => {
            if resp.terminate_session {
                plans.terminate[r] = true;
                return;
            }
            let ctx = &scenes[st.scene[r] as usize];
            plan_from(&resp, ctx, st, r, origin, dt_us, plans);
            plans.active[r] = true;
        }
    }
}

/// Once the first answer of a collect has arrived, the answers arriving within this share of
/// the time it took are taken with it (between [`GAP_MIN`] and [`GAP_MAX`]): the rollouts
/// answered together step together, and a straggler steps on its own when it is answered.
const GAP_SHARE: u32 = 16;
/// Shortest wait for a further answer.
const GAP_MIN: Duration = Duration::from_micros(500);
/// Longest wait for a further answer.
const GAP_MAX: Duration = Duration::from_millis(5);

/// One chunk's steps in flight ([`DriverService::pipeline`]): each rollout's calls run as a task
/// on the runtime and report to the channel when done.
struct Pipeline<'a> {
    driver: &'a ExternalDriver,
    tx: tokio::sync::mpsc::UnboundedSender<Answer>,
    rx: tokio::sync::mpsc::UnboundedReceiver<Answer>,
    in_flight: usize,
}

impl DriverPipeline for Pipeline<'_> {
    fn submit(
        &mut self,
        st: &BatchState,
        scenes: &[SceneCtx],
        obs: &Observations,
        rollouts: &[usize],
        dt_s: f64,
    ) {
        let dt_us = (dt_s * 1e6).round() as i64;
        for w in self.driver.step_works(st, scenes, obs, rollouts, dt_us) {
            let tx = self.tx.clone();
            let step = self.driver.step_calls(w);
            self.driver.rt.spawn(async move {
                // The receiver lives as long as the chunk's loop.
                let _ = tx.send(step.await);
            });
            self.in_flight += 1;
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn collect(
        &mut self,
        st: &BatchState,
        scenes: &[SceneCtx],
        plans: &mut Plans,
        dt_s: f64,
    ) -> Vec<usize> {
        if self.in_flight == 0 {
            return Vec::new();
        }
        let dt_us = (dt_s * 1e6).round() as i64;
        let (rx, in_flight) = (&mut self.rx, self.in_flight);
        let answers = self.driver.rt.block_on(async {
            let start = tokio::time::Instant::now();
            let mut out = Vec::new();
            // Every task sends once; the sender held here keeps the channel open.
            if let Some(a) = rx.recv().await {
                out.push(a);
            }
            let gap = (start.elapsed() / GAP_SHARE).clamp(GAP_MIN, GAP_MAX);
            while out.len() < in_flight {
                while let Ok(a) = rx.try_recv() {
                    out.push(a);
                }
                if out.len() >= in_flight {
                    break;
                }
                match tokio::time::timeout(gap, rx.recv()).await {
                    Ok(Some(a)) => out.push(a),
                    _ => break,
                }
            }
            out
        });
        self.in_flight -= answers.len();
        let mut answered: Vec<usize> = answers.iter().map(|a| a.0).collect();
        for a in answers {
            apply(a, st, scenes, dt_us, plans);
        }
        answered.sort_unstable();
        answered
    }
}

impl DriverService for ExternalDriver {
    fn name(&self) -> &'static str {
        "external"
    }

    fn drives(&self) -> bool {
        true
    }

    fn wants_images(&self) -> bool {
        self.camera_px.is_some()
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
            let id = session_id(ctx, st, r);
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
                let rig = rig(ctx, st, r, origin);
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
        obs: &Observations,
        plans: &mut Plans,
        dt_s: f64,
    ) {
        let dt_us = (dt_s * 1e6).round() as i64;
        let live: Vec<usize> = (0..st.len()).filter(|&r| st.alive[r]).collect();
        let work = self.step_works(st, scenes, obs, &live, dt_us);
        for r in 0..st.len() {
            plans.active[r] = false;
        }
        let results = self.rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for w in work {
                set.spawn(self.step_calls(w));
            }
            let mut out = Vec::new();
            while let Some(j) = set.join_next().await {
                out.push(j.expect("step task does not panic"));
            }
            out
        });
        for a in results {
            apply(a, st, scenes, dt_us, plans);
        }
    }

    fn pipeline(&self) -> Option<Box<dyn DriverPipeline + '_>> {
        if self.lockstep {
            return None;
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        Some(Box::new(Pipeline {
            driver: self,
            tx,
            rx,
            in_flight: 0,
        }))
    }

    fn end(&self, st: &BatchState, scenes: &[SceneCtx]) {
        let closing: Vec<(String, usize)> = {
            let mut sessions = self.sessions.lock().expect("sessions lock");
            (0..st.len())
                .filter_map(|r| {
                    let id = session_id(&scenes[st.scene[r] as usize], st, r);
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
