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
//! All rollouts of a chunk have their requests ([`session`]) in flight at once; each address
//! serves at most `deploy.driver.n_concurrent_rollouts` at a time; calls time out after
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

use super::services::{DriverService, Observations, Plans};
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
        let work: Vec<(StepWork, [f64; 2])> = {
            let live: Vec<(usize, Session)> = {
                let sessions = self.sessions.lock().expect("sessions lock");
                (0..st.len())
                    .filter(|&r| st.alive[r])
                    .filter_map(|r| {
                        let ctx = &scenes[st.scene[r] as usize];
                        sessions.get(&session_id(ctx, st, r)).map(|s| (r, *s))
                    })
                    .collect()
            };
            // Requests built on all cores (the sensor rendered the camera frames, also in parallel).
            use rayon::prelude::*;
            live.par_iter()
                .map(|(r, s)| {
                    let image = obs.images.get(*r).cloned().flatten();
                    (step_work(st, scenes, *r, s, dt_us, image), s.origin)
                })
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
                    plan_from(&resp, ctx, st, r, origins[&r], dt_us, plans);
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
