//! The CUDA stepper: the CPU stepper's loop ([`crate::sim::stepper::run_chunk`]) with the state on
//! the device. Per step the host receives only what it needs: the metric values, which rollouts
//! are alive, and the agent-step counts — plus the poses when traces are recorded (the logs and
//! videos need them) or when the driver runs on the host (an external driver's requests). The
//! sensor clocks run on the host (they depend on time only); the built-in drivers, controller,
//! vehicle model, traffic and evaluation run in the kernels.

use std::time::Instant;

use super::device::{CudaError, Device};
use super::source::{DkArgs, Kernel};
use super::tables::{bytes_u8, DeviceState, DeviceTables, SceneTables};
use crate::metrics::table::N_METRICS;
use crate::rollout::trace::RolloutTrace;
use crate::sim::services::{DeviceDriver, Observations, Plans, StepError};
use crate::sim::stepper::{
    record_plans, take_driver_verdicts, Probe, ServiceTimes, Services, StepCounts,
};
use crate::sim_config::SimConfig;
use crate::state::{BatchState, SceneCtx};

fn dev_err(e: CudaError) -> StepError {
    StepError::Device(e.to_string())
}

/// A device with a shard's scenes uploaded.
pub struct DeviceSession<'d> {
    /// The device.
    pub device: &'d Device,
    tables: DeviceTables,
    base: DkArgs,
}

/// Length of the driving-direction window for control step `dt_s`.
fn direction_window(dt_s: f64) -> usize {
    (crate::metrics::direction::HORIZON_S / dt_s)
        .round()
        .max(1.0) as usize
}

impl<'d> DeviceSession<'d> {
    /// Uploads `scenes` under `cfg`'s evaluation settings.
    pub fn new(
        device: &'d Device,
        scenes: &[SceneCtx],
        cfg: &SimConfig,
    ) -> Result<DeviceSession<'d>, CudaError> {
        let tables = SceneTables::build(scenes).upload(device)?;
        let dt_us = cfg.control_timestep_us as i64;
        let base = DkArgs {
            dt_s: dt_us as f64 / 1e6,
            dt_us,
            ttc_step_s: cfg.evaluation.ttc_step_s,
            ttc_horizon_s: cfg.evaluation.ttc_horizon_s,
            ..tables.args
        };
        Ok(DeviceSession {
            device,
            tables,
            base,
        })
    }

    /// Device bytes of the scene tables.
    pub fn table_bytes(&self) -> usize {
        self.tables.bytes()
    }

    /// Runs a chunk to its end, as [`crate::sim::stepper::run_chunk`] does on the CPU, with the
    /// sensor and driver of `services` (the controller, traffic and evaluation are the kernels';
    /// `services.traffic` says whether traffic is reactive). Returns the traces, the time per
    /// service, the counts and the device bytes the chunk's state took.
    pub fn run_chunk(
        &self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        services: Services<'_>,
        record: bool,
        mut probe: Option<Probe<'_>>,
    ) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts, usize), StepError> {
        let chunk_start = Instant::now();
        let dev = self.device;
        let n = st.len();
        let mut a = self.base;
        let dt_us = a.dt_us;
        let dt_s = a.dt_s;
        let on_device = services.driver.on_device();
        a.drives = u32::from(services.driver.drives());
        a.driver_kind = match on_device {
            Some(DeviceDriver::ConstantVelocity) => 1,
            Some(DeviceDriver::Idm) => 2,
            _ => 0,
        };
        a.idm_traffic = u32::from(services.traffic.reactive());
        let mut ds =
            DeviceState::upload(dev, st, direction_window(dt_s), &mut a).map_err(dev_err)?;
        let state_bytes = ds.bytes();
        let n32 = n as u32;
        let na32 = ds.n_agents as u32;
        let mut times = ServiceTimes::default();
        let mut counts = StepCounts::default();
        let mut obs = Observations::default();
        let mut plans = Plans::new(n);
        let mut traces = vec![RolloutTrace::default(); n];
        let mut metrics = vec![0.0f64; n * N_METRICS];
        let mut present = vec![0u32; n];
        let mut alive = vec![0u8; n];
        let mut plan_active = vec![0u8; n];
        let host_driver = on_device.is_none();
        let sync = probe.is_some();
        services.driver.begin(st, scenes, &mut plans);
        take_driver_verdicts(st, &mut plans, &mut traces);
        // Rollouts the driver could not start end before the first step.
        dev.upload(&mut ds.alive, &bytes_u8(&st.alive))
            .map_err(dev_err)?;
        loop {
            if !st.alive.iter().any(|a| *a) {
                break;
            }
            let t0 = Instant::now();
            dev.launch(Kernel::Evaluate, &a, n32).map_err(dev_err)?;
            dev.download(&ds.present, &mut present).map_err(dev_err)?;
            dev.download(&ds.alive, &mut alive).map_err(dev_err)?;
            dev.download(&ds.metrics, &mut metrics).map_err(dev_err)?;
            let t1 = Instant::now();
            times.evaluation += t1 - t0;
            if record || host_driver {
                download_state(dev, &ds, st).map_err(dev_err)?;
            }
            let mut ended = 0usize;
            for r in 0..n {
                if present[r] == 0 {
                    // Not evaluated: it ended before (on the device in the last control step, at
                    // a recording gap, while the host still had it alive).
                    st.alive[r] = false;
                    continue;
                }
                counts.rollout_steps += 1;
                counts.agent_steps += u64::from(present[r]);
                if record {
                    traces[r].push_step(st, r, &metrics[r * N_METRICS..(r + 1) * N_METRICS]);
                }
                st.step[r] += 1;
                st.alive[r] = alive[r] != 0;
                if !st.alive[r] {
                    ended += 1;
                }
            }
            counts.iterations += 1;
            let t2 = Instant::now();
            times.record += t2 - t1;
            if let Some(p) = probe.as_mut() {
                p.rollouts_ended(ended, (t2 - chunk_start).as_secs_f64());
            }
            if !st.alive.iter().any(|a| *a) {
                if let Some(p) = probe.as_mut() {
                    p.step(&[("evaluation", "evaluate", t1 - t0)], t2 - t0);
                }
                break;
            }
            services.sensor.observe(st, scenes, &mut obs)?;
            let t3 = Instant::now();
            times.sensor += t3 - t2;
            match on_device {
                Some(DeviceDriver::Replay) => {}
                Some(_) => {
                    if a.driver_kind == 2 {
                        dev.launch(Kernel::Bodies, &a, na32).map_err(dev_err)?;
                    }
                    dev.launch(Kernel::Drive, &a, n32).map_err(dev_err)?;
                    if record {
                        dev.download(&ds.plan_active, &mut plan_active)
                            .map_err(dev_err)?;
                        dev.download(&ds.plans[0], &mut plans.x).map_err(dev_err)?;
                        dev.download(&ds.plans[1], &mut plans.y).map_err(dev_err)?;
                        for (p, f) in plans.active.iter_mut().zip(&plan_active) {
                            *p = *f != 0;
                        }
                    }
                }
                None => {
                    services.driver.drive(st, scenes, &obs, &mut plans, dt_s);
                    let before: Vec<bool> = st.alive.clone();
                    take_driver_verdicts(st, &mut plans, &mut traces);
                    if before != st.alive {
                        dev.upload(&mut ds.alive, &bytes_u8(&st.alive))
                            .map_err(dev_err)?;
                    }
                    dev.upload(&mut ds.plan_active, &bytes_u8(&plans.active))
                        .map_err(dev_err)?;
                    for (b, src) in ds.plans.iter_mut().zip([&plans.x, &plans.y, &plans.v]) {
                        dev.upload(b, src).map_err(dev_err)?;
                    }
                }
            }
            if record {
                record_plans(&mut traces, st, &plans);
            }
            if sync {
                dev.synchronize().map_err(dev_err)?;
            }
            let t4 = Instant::now();
            times.driver += t4 - t3;
            dev.launch(Kernel::Control, &a, n32).map_err(dev_err)?;
            if sync {
                dev.synchronize().map_err(dev_err)?;
            }
            let t5 = Instant::now();
            times.controller += t5 - t4;
            if a.idm_traffic != 0 {
                // Agents have not moved since the driver's leader search: same headings.
                if a.driver_kind != 2 {
                    dev.launch(Kernel::Bodies, &a, na32).map_err(dev_err)?;
                }
                dev.launch(Kernel::TrafficAccel, &a, na32)
                    .map_err(dev_err)?;
            }
            dev.launch(Kernel::TrafficMove, &a, na32).map_err(dev_err)?;
            dev.launch(Kernel::Clock, &a, n32).map_err(dev_err)?;
            if sync {
                dev.synchronize().map_err(dev_err)?;
            }
            let t6 = Instant::now();
            times.traffic += t6 - t5;
            for r in (0..n).filter(|&r| st.alive[r]) {
                st.t_us[r] += dt_us;
            }
            if let Some(p) = probe.as_mut() {
                p.services_step([t0, t1, t2, t3, t4, t5, t6]);
            }
        }
        if let Some(p) = probe.as_mut() {
            p.chunk_end(&traces, chunk_start);
        }
        // The host copy ends as the CPU stepper leaves it.
        download_state(dev, &ds, st).map_err(dev_err)?;
        services.driver.end(st, scenes);
        Ok((traces, times, counts, state_bytes))
    }
}

/// Copies the poses and flags the host reads (traces, host drivers) into `st`.
fn download_state(dev: &Device, ds: &DeviceState, st: &mut BatchState) -> Result<(), CudaError> {
    for (buf, dst) in ds.ego.iter().zip([
        &mut st.ego_x,
        &mut st.ego_y,
        &mut st.ego_yaw,
        &mut st.ego_speed,
        &mut st.plan_x,
        &mut st.plan_y,
    ]) {
        dev.download(buf, dst)?;
    }
    for (buf, dst) in
        ds.agents
            .iter()
            .zip([&mut st.a_x, &mut st.a_y, &mut st.a_yaw, &mut st.a_speed])
    {
        dev.download(buf, dst)?;
    }
    let mut flags = vec![0u8; ds.n_agents];
    dev.download(&ds.a_valid, &mut flags)?;
    for (v, f) in st.a_valid.iter_mut().zip(&flags) {
        *v = *f != 0;
    }
    let mut flags = vec![0u8; ds.n];
    dev.download(&ds.ego_controlled, &mut flags)?;
    for (v, f) in st.ego_controlled.iter_mut().zip(&flags) {
        *v = *f != 0;
    }
    Ok(())
}
