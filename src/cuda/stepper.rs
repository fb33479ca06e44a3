//! The CUDA backend of the step loop ([`crate::sim::stepper::run_chunk`], the same loop as on the
//! CPU): a [`DeviceChunk`] keeps a chunk's state on the device and implements
//! [`StepBackend`]. Per step the host receives only what the loop needs: the metric values, the
//! agent-step counts and which rollouts the controller ended — plus the poses when traces are
//! recorded (the logs and videos need them) or when the driver runs on the host (an external
//! driver's requests). The sensor clocks run on the host (they depend on time only); the takeover
//! the loop decides, the built-in drivers, controller, vehicle model, traffic and evaluation run
//! in the kernels.

use super::device::{CudaError, Device};
use super::source::{DkArgs, Kernel};
use super::tables::{bytes_u8, DeviceState, DeviceTables, SceneTables};
use crate::config::SimConfig;
use crate::rollout::trace::RolloutTrace;
use crate::sim::evaluation::EvalParams;
use crate::sim::services::{DeviceDriver, DriverService, Plans, StepError, TrafficService};
use crate::sim::stepper::{run_chunk, Probe, ServiceTimes, Services, StepBackend, StepCounts};
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
        // The evaluation settings of the CPU evaluator, from the same place.
        let p = EvalParams::new(cfg);
        let base = DkArgs {
            dt_s: p.dt_s,
            dt_us: cfg.simulation.control_timestep_us as i64,
            ttc_step_s: p.ttc.step_s,
            ttc_horizon_s: p.ttc.horizon_s,
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

    /// Runs a chunk on the device with the loop's `services` and `traffic` ([`run_chunk`]):
    /// the traces, times and counts, and the device bytes the chunk's state took.
    #[allow(clippy::type_complexity)]
    pub fn run(
        &self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        services: Services<'_>,
        traffic: &dyn TrafficService,
        record: bool,
        probe: Option<Probe<'_>>,
    ) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts, usize), StepError> {
        let mut chunk = self.chunk(st, services.driver, traffic).map_err(dev_err)?;
        let dt_us = chunk.args.dt_us;
        let (traces, times, counts) =
            run_chunk(st, scenes, services, &mut chunk, dt_us, record, probe)?;
        Ok((traces, times, counts, chunk.bytes()))
    }

    /// A chunk's state uploaded, as the backend [`run_chunk`](crate::sim::stepper::run_chunk)
    /// steps: `driver` runs in the kernels when it is one of theirs, `traffic` says whether
    /// vehicles follow IDM.
    pub fn chunk(
        &self,
        st: &BatchState,
        driver: &dyn DriverService,
        traffic: &dyn TrafficService,
    ) -> Result<DeviceChunk<'_>, CudaError> {
        let mut a = self.base;
        let on_device = driver.on_device();
        a.driver_kind = match on_device {
            Some(DeviceDriver::ConstantVelocity) => 1,
            Some(DeviceDriver::Idm) => 2,
            _ => 0,
        };
        a.idm_traffic = u32::from(traffic.reactive());
        let ds = DeviceState::upload(self.device, st, direction_window(a.dt_s), &mut a)?;
        Ok(DeviceChunk {
            dev: self.device,
            n: st.len(),
            on_device,
            args: a,
            ds,
            flags: vec![0u8; st.len()],
        })
    }
}

/// A chunk's state on a device: the CUDA backend of the step loop. Per step the host receives
/// only what the loop needs — the metric values, the agent-step counts, which rollouts the
/// controller ended — plus the poses when traces are recorded or the driver runs on the host.
pub struct DeviceChunk<'d> {
    dev: &'d Device,
    n: usize,
    on_device: Option<DeviceDriver>,
    args: DkArgs,
    ds: DeviceState,
    /// Host scratch for flag arrays (takeovers, plans, alive).
    flags: Vec<u8>,
}

impl DeviceChunk<'_> {
    /// Device bytes of the chunk's state.
    pub fn bytes(&self) -> usize {
        self.ds.bytes()
    }

    fn launch(&self, k: Kernel, threads: usize) -> Result<(), StepError> {
        self.dev
            .launch(k, &self.args, threads as u32)
            .map_err(dev_err)
    }
}

impl StepBackend for DeviceChunk<'_> {
    fn begin(&mut self, st: &BatchState) -> Result<(), StepError> {
        // Rollouts the driver could not start end before the first step.
        self.alive_changed(st)
    }

    fn take_over(&mut self, _st: &mut BatchState, due: &[bool]) -> Result<(), StepError> {
        for (f, d) in self.flags.iter_mut().zip(due) {
            *f = u8::from(*d);
        }
        self.dev
            .upload(&mut self.ds.takeover, &self.flags)
            .map_err(dev_err)?;
        self.launch(Kernel::Takeover, self.n)
    }

    fn evaluate(
        &mut self,
        st: &mut BatchState,
        _scenes: &[SceneCtx],
        values: &mut [f64],
        present: &mut [u32],
        to_host: bool,
    ) -> Result<(), StepError> {
        self.launch(Kernel::Evaluate, self.n)?;
        self.dev
            .download(&self.ds.present, present)
            .map_err(dev_err)?;
        self.dev
            .download(&self.ds.metrics, values)
            .map_err(dev_err)?;
        if to_host {
            download_state(self.dev, &self.ds, st).map_err(dev_err)?;
        }
        Ok(())
    }

    fn alive_changed(&mut self, st: &BatchState) -> Result<(), StepError> {
        self.dev
            .upload(&mut self.ds.alive, &bytes_u8(&st.alive))
            .map_err(dev_err)
    }

    fn runs_driver(&self, driver: &dyn DriverService) -> bool {
        driver
            .on_device()
            .is_some_and(|d| Some(d) == self.on_device)
    }

    fn drive(
        &mut self,
        _st: &mut BatchState,
        plans: &mut Plans,
        to_host: bool,
    ) -> Result<(), StepError> {
        if self.on_device == Some(DeviceDriver::Replay) {
            return Ok(());
        }
        if self.args.driver_kind == 2 {
            self.launch(Kernel::Bodies, self.ds.n_agents)?;
        }
        self.launch(Kernel::Drive, self.n)?;
        if to_host {
            self.dev
                .download(&self.ds.plan_active, &mut self.flags)
                .map_err(dev_err)?;
            self.dev
                .download(&self.ds.plans[0], &mut plans.x)
                .map_err(dev_err)?;
            self.dev
                .download(&self.ds.plans[1], &mut plans.y)
                .map_err(dev_err)?;
            for (p, f) in plans.active.iter_mut().zip(&self.flags) {
                *p = *f != 0;
            }
        }
        Ok(())
    }

    fn set_plans(&mut self, plans: &Plans) -> Result<(), StepError> {
        self.dev
            .upload(&mut self.ds.plan_active, &bytes_u8(&plans.active))
            .map_err(dev_err)?;
        for (b, src) in self.ds.plans.iter_mut().zip([&plans.x, &plans.y, &plans.v]) {
            self.dev.upload(b, src).map_err(dev_err)?;
        }
        Ok(())
    }

    fn control(
        &mut self,
        st: &mut BatchState,
        _scenes: &[SceneCtx],
        _plans: &Plans,
    ) -> Result<(), StepError> {
        self.launch(Kernel::Control, self.n)?;
        // The controller ends a rollout whose undriven ego has no recorded pose next.
        self.dev
            .download(&self.ds.alive, &mut self.flags)
            .map_err(dev_err)?;
        for (a, f) in st.alive.iter_mut().zip(&self.flags) {
            *a = *f != 0;
        }
        Ok(())
    }

    fn advance_traffic(
        &mut self,
        _st: &mut BatchState,
        _scenes: &[SceneCtx],
    ) -> Result<(), StepError> {
        let na = self.ds.n_agents;
        if self.args.idm_traffic != 0 {
            // Agents have not moved since the driver's leader search: same headings.
            if self.args.driver_kind != 2 {
                self.launch(Kernel::Bodies, na)?;
            }
            self.launch(Kernel::TrafficAccel, na)?;
        }
        self.launch(Kernel::TrafficMove, na)?;
        self.launch(Kernel::Clock, self.n)
    }

    fn synchronize(&mut self) -> Result<(), StepError> {
        self.dev.synchronize().map_err(dev_err)
    }

    fn finish(&mut self, st: &mut BatchState) -> Result<(), StepError> {
        // The host copy ends as the CPU backend leaves it.
        download_state(self.dev, &self.ds, st).map_err(dev_err)
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
