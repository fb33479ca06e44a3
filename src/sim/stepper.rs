//! The step loop: moves one [`BatchState`] chunk through the services, step by step, all
//! rollouts together, and records what the logs and metrics files need into per-rollout traces
//! (plain arrays; encoding them happens off the step loop, in the runner's writer). One loop
//! ([`run_chunk`]) for every backend: the backend ([`StepBackend`]: the CPU here, the CUDA
//! backend in `crate::cuda::stepper`) says where the state lives and runs the takeover,
//! evaluation, controller and traffic on it; the loop decides which rollouts take over and when
//! one ends, calls the sensor and the driver, and records the traces.
//!
//! Order within a step at time t: the driver takes over where t has reached the takeover time
//! (the seeded perturbation is applied then); evaluation measures the state at t; the trace
//! records it; then sensor → driver → controller → traffic move everything to t + dt.
//!
//! With a driver that answers each rollout at its own pace ([`DriverService::pipeline`]: an
//! external driver) on a backend that can step some rollouts only ([`StepBackend::parks`]: the
//! CPU), the rollouts go through the same order each on its own clock: a rollout waiting on its
//! driver is parked while the others step on, so it holds only itself; the results are those of
//! the lockstep loop.

use std::time::{Duration, Instant};

use super::evaluation::EvalMemory;
use super::services::{
    ControllerService, DriverPipeline, DriverService, EvaluationService, Observations, Plans,
    SensorService, StepError, TrafficService,
};
use crate::metrics::table::N_METRICS;
use crate::rollout::trace::RolloutTrace;
use crate::state::{BatchState, SceneCtx};
use crate::telemetry::Telemetry;

/// The services the step loop calls itself, whatever the backend: the sensor clocks and the
/// driver (the policy under test). Where the state lives and how the controller, traffic and
/// evaluation steps run is the [`StepBackend`]'s.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Sensor.
    pub sensor: &'a dyn SensorService,
    /// Driver (the policy under test).
    pub driver: &'a dyn DriverService,
}

/// Where a chunk's state lives and how the steps the loop does not run itself run on it: the
/// takeover, evaluation, controller + vehicle model and traffic. The CPU ([`CpuBackend`]) keeps
/// the state in the host's [`BatchState`]; the CUDA backend (`crate::cuda::stepper`) keeps it on a
/// device and brings to the host only what the loop needs. [`run_chunk`] decides, for every
/// backend alike, which rollouts take over, when a rollout ends and what a trace records.
pub trait StepBackend {
    /// Before the first step, after the driver's `begin` (rollouts it refused are not alive).
    fn begin(&mut self, st: &BatchState) -> Result<(), StepError>;
    /// Hands the ego of every rollout with `due[r]` to the driver, applying that rollout's
    /// perturbation (the loop has set `st.ego_controlled` on the host).
    fn take_over(&mut self, st: &mut BatchState, due: &[bool]) -> Result<(), StepError>;
    /// Evaluates every alive rollout at its current time: `values[r * N_METRICS..]` (the metric
    /// table's order) and `present[r]` = 1 + the agents present (its agent-steps). With
    /// `to_host`, the host's `st` holds the current poses afterwards.
    fn evaluate(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        values: &mut [f64],
        present: &mut [u32],
        to_host: bool,
    ) -> Result<(), StepError>;
    /// The host ended rollouts (their last step, a driver's verdict): the backend stops them.
    fn alive_changed(&mut self, st: &BatchState) -> Result<(), StepError>;
    /// Whether this backend runs `driver` itself (else the loop calls it on the host and hands
    /// its plans over with [`StepBackend::set_plans`]).
    fn runs_driver(&self, driver: &dyn DriverService) -> bool;
    /// The plans of the driver this backend runs; with `to_host`, copied into `plans`.
    fn drive(
        &mut self,
        st: &mut BatchState,
        plans: &mut Plans,
        to_host: bool,
    ) -> Result<(), StepError>;
    /// The plans a host driver made this step.
    fn set_plans(&mut self, plans: &Plans) -> Result<(), StepError>;
    /// Controller + vehicle model: every alive ego one step on. It may end rollouts (an
    /// undriven ego whose recording has a gap); the host's `st.alive` says so afterwards.
    fn control(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        plans: &Plans,
    ) -> Result<(), StepError>;
    /// Moves the other agents and the clocks one step on.
    fn advance_traffic(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
    ) -> Result<(), StepError>;
    /// Waits for queued work (for timing each service).
    fn synchronize(&mut self) -> Result<(), StepError> {
        Ok(())
    }
    /// Whether a call may move only some of the alive rollouts: the loop parks the others (marks
    /// them not alive in the host's `st` for the call, and alive again after) so that each
    /// rollout of a pipelined driver ([`DriverService::pipeline`]) steps when its answer is in.
    /// The CPU backend can; a backend that keeps its own copy of `alive` says no, and its
    /// chunks step in lockstep.
    fn parks(&self) -> bool {
        false
    }
    /// After the last step: the host's `st` holds the final state.
    fn finish(&mut self, st: &mut BatchState) -> Result<(), StepError>;
}

/// The CPU backend: the state is the host's [`BatchState`]; controller, traffic and evaluation are
/// Rust services over it.
pub struct CpuBackend<'a> {
    controller: &'a dyn ControllerService,
    traffic: &'a dyn TrafficService,
    evaluation: &'a dyn EvaluationService,
    memory: Vec<EvalMemory>,
    dt_us: i64,
}

impl<'a> CpuBackend<'a> {
    /// With these services and control step.
    pub fn new(
        controller: &'a dyn ControllerService,
        traffic: &'a dyn TrafficService,
        evaluation: &'a dyn EvaluationService,
        dt_us: i64,
    ) -> CpuBackend<'a> {
        CpuBackend {
            controller,
            traffic,
            evaluation,
            memory: Vec::new(),
            dt_us,
        }
    }
}

impl StepBackend for CpuBackend<'_> {
    fn begin(&mut self, st: &BatchState) -> Result<(), StepError> {
        self.memory = vec![EvalMemory::default(); st.len()];
        Ok(())
    }

    fn take_over(&mut self, st: &mut BatchState, due: &[bool]) -> Result<(), StepError> {
        for r in (0..st.len()).filter(|&r| due[r]) {
            let p = st.perturbation[r];
            st.ego_x[r] += p.dx_m;
            st.ego_y[r] += p.dy_m;
            st.ego_yaw[r] += p.dyaw_rad;
            st.ego_speed[r] = (st.ego_speed[r] * (1.0 + p.dspeed_frac)).max(0.0);
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        values: &mut [f64],
        present: &mut [u32],
        _to_host: bool,
    ) -> Result<(), StepError> {
        self.evaluation
            .evaluate(st, scenes, &mut self.memory, values);
        for (r, p) in present.iter_mut().enumerate() {
            *p = if st.alive[r] {
                1 + st.agents(r).filter(|&a| st.a_valid[a]).count() as u32
            } else {
                0
            };
        }
        Ok(())
    }

    fn alive_changed(&mut self, _st: &BatchState) -> Result<(), StepError> {
        Ok(())
    }

    fn runs_driver(&self, _driver: &dyn DriverService) -> bool {
        false
    }

    fn drive(&mut self, _: &mut BatchState, _: &mut Plans, _: bool) -> Result<(), StepError> {
        unreachable!("the CPU backend runs no driver of its own: the loop calls it")
    }

    fn set_plans(&mut self, _plans: &Plans) -> Result<(), StepError> {
        Ok(())
    }

    fn control(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        plans: &Plans,
    ) -> Result<(), StepError> {
        self.controller.control(st, scenes, plans, self.dt_us);
        Ok(())
    }

    fn advance_traffic(
        &mut self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
    ) -> Result<(), StepError> {
        self.traffic.advance(st, scenes, self.dt_us);
        Ok(())
    }

    fn finish(&mut self, _st: &mut BatchState) -> Result<(), StepError> {
        Ok(())
    }

    fn parks(&self) -> bool {
        true
    }
}

/// What a configuration sets up for a run — its sensor clocks, its evaluation settings and its
/// control step — ready to give the loop its [`Services`] (with a driver) and to make a
/// [`CpuBackend`] (with a traffic model and the pure-pursuit controller).
pub struct ConfiguredServices {
    sensor: super::sensor::ClockedSensor,
    camera_sensor: super::sensor::ClockedSensor,
    evaluator: super::evaluation::Evaluator,
    dt_us: i64,
}

impl ConfiguredServices {
    /// The services of `cfg`.
    pub fn new(cfg: &crate::config::SimConfig) -> ConfiguredServices {
        ConfiguredServices {
            sensor: super::sensor::ClockedSensor::new(cfg),
            camera_sensor: super::sensor::ClockedSensor::with_camera(cfg),
            evaluator: super::evaluation::Evaluator::new(cfg),
            dt_us: cfg.simulation.control_timestep_us as i64,
        }
    }

    /// The loop's services with `driver` (the sensor renders the camera when it takes images).
    pub fn services<'a>(&'a self, driver: &'a dyn DriverService) -> Services<'a> {
        Services {
            sensor: if driver.wants_images() {
                &self.camera_sensor
            } else {
                &self.sensor
            },
            driver,
        }
    }

    /// The CPU backend with `traffic`.
    pub fn cpu<'a>(&'a self, traffic: &'a dyn TrafficService) -> CpuBackend<'a> {
        CpuBackend::new(
            &super::controller::PurePursuit,
            traffic,
            &self.evaluator,
            self.dt_us,
        )
    }

    /// The control step (µs).
    pub fn dt_us(&self) -> i64 {
        self.dt_us
    }

    /// Runs a chunk on the CPU backend with `driver` and `traffic` ([`run_chunk`]).
    pub fn run_cpu(
        &self,
        st: &mut BatchState,
        scenes: &[SceneCtx],
        driver: &dyn DriverService,
        traffic: &dyn TrafficService,
        record: bool,
        probe: Option<Probe<'_>>,
    ) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError> {
        run_chunk(
            st,
            scenes,
            self.services(driver),
            &mut self.cpu(traffic),
            self.dt_us,
            record,
            probe,
        )
    }
}

/// Time spent per service (and recording) over a chunk.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServiceTimes {
    /// Sensor.
    pub sensor: Duration,
    /// Driver.
    pub driver: Duration,
    /// Controller + vehicle model.
    pub controller: Duration,
    /// Traffic.
    pub traffic: Duration,
    /// Evaluation.
    pub evaluation: Duration,
    /// Copying the step into the traces.
    pub record: Duration,
}

impl ServiceTimes {
    /// Adds another chunk's times.
    pub fn add(&mut self, o: &ServiceTimes) {
        self.sensor += o.sensor;
        self.driver += o.driver;
        self.controller += o.controller;
        self.traffic += o.traffic;
        self.evaluation += o.evaluation;
        self.record += o.record;
    }

    /// Sum of all parts.
    pub fn total(&self) -> Duration {
        self.sensor + self.driver + self.controller + self.traffic + self.evaluation + self.record
    }

    /// (name, time) pairs in step order.
    pub fn parts(&self) -> [(&'static str, Duration); 6] {
        [
            ("sensor", self.sensor),
            ("driver", self.driver),
            ("controller", self.controller),
            ("traffic", self.traffic),
            ("evaluation", self.evaluation),
            ("record", self.record),
        ]
    }
}

/// Counters of a chunk run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepCounts {
    /// Rollout-steps simulated.
    pub rollout_steps: u64,
    /// Agent-steps (ego + present agents, per rollout-step).
    pub agent_steps: u64,
    /// Loop iterations (steps in lockstep; rounds of answers when pipelined).
    pub iterations: u64,
}

/// Where a chunk's telemetry goes: the measurements, and how many chunks were still waiting for
/// a worker when this one started (the queue depth its service calls see).
pub struct Probe<'a> {
    /// Measurements of this chunk.
    pub telemetry: &'a mut Telemetry,
    /// Chunks waiting for a worker when this chunk started.
    pub queue_depth: usize,
}

impl Probe<'_> {
    /// Records one step's batched service calls (service, method, time) and its duration.
    fn step(&mut self, calls: &[(&str, &str, Duration)], step: Duration) {
        let q = self.queue_depth;
        for (service, method, d) in calls {
            self.telemetry
                .rpc(service, method, "batch", d.as_secs_f64(), 0.0, q);
        }
        self.telemetry.step_duration.observe(step.as_secs_f64());
    }

    /// Records a full step from its instants: start, after evaluation, after recording, after
    /// the sensor, the driver, the controller and the traffic.
    fn services_step(&mut self, t: [Instant; 7]) {
        self.step(
            &[
                ("evaluation", "evaluate", t[1] - t[0]),
                ("renderer", "observe", t[3] - t[2]),
                ("driver", "drive", t[4] - t[3]),
                ("controller", "control", t[5] - t[4]),
                ("trafficsim", "advance", t[6] - t[5]),
            ],
            t[6] - t[0],
        );
    }

    /// At the end of a chunk: the rollouts the driver ended early count too.
    fn chunk_end(&mut self, traces: &[RolloutTrace], chunk_start: Instant) {
        let early = traces
            .iter()
            .filter(|t| t.failure.is_some() || t.terminated)
            .count();
        self.rollouts_ended(early, chunk_start.elapsed().as_secs_f64());
    }

    /// Records `n` rollouts ending `since_s` seconds after their chunk started.
    fn rollouts_ended(&mut self, n: usize, since_s: f64) {
        for _ in 0..n {
            self.telemetry.rollout_duration.observe(since_s);
        }
    }
}

/// Appends the plans made this step (by alive, driver-controlled rollouts) to their traces, at
/// f32 precision as the log stores them.
fn record_plans(traces: &mut [RolloutTrace], st: &BatchState, plans: &Plans) {
    for r in (0..st.len()).filter(|&r| plans.active[r] && st.alive[r]) {
        let k = traces[r].times_us.len().saturating_sub(1) as u32;
        let base = r * super::services::PLAN_POINTS;
        let pts = (0..super::services::PLAN_POINTS)
            .map(|j| {
                [
                    f64::from(plans.x[base + j] as f32),
                    f64::from(plans.y[base + j] as f32),
                ]
            })
            .collect();
        traces[r].plans.push((k, pts));
    }
}

/// Runs the chunk to the end of its longest rollout on `backend`, the same loop for every
/// backend. With `record`, returns one trace per rollout (empty traces otherwise: the benchmark's
/// pure stepping). With a probe, every batched service call, step and rollout duration is
/// recorded (DESIGN §8).
///
/// Each step at time t: the rollouts whose takeover time t has reached are handed to the driver
/// (their perturbation applied); evaluation measures the state at t; the trace records it and a
/// rollout at its last step ends; then sensor → driver → controller → traffic move everything
/// to t + dt.
pub fn run_chunk(
    st: &mut BatchState,
    scenes: &[SceneCtx],
    services: Services<'_>,
    backend: &mut dyn StepBackend,
    dt_us: i64,
    record: bool,
    mut probe: Option<Probe<'_>>,
) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError> {
    let chunk_start = Instant::now();
    let n = st.len();
    let dt_s = dt_us as f64 / 1e6;
    let mut times = ServiceTimes::default();
    let mut counts = StepCounts::default();
    let mut values = vec![f64::NAN; n * N_METRICS];
    let mut present = vec![0u32; n];
    let mut due = vec![false; n];
    let mut obs = Observations::default();
    let mut plans = Plans::new(n);
    let mut traces = vec![RolloutTrace::default(); n];
    let drives = services.driver.drives();
    let host_driver = !backend.runs_driver(services.driver);
    let sync = probe.is_some();
    services.driver.begin(st, scenes, &mut plans);
    take_driver_verdicts(st, &mut plans, &mut traces);
    backend.begin(st)?;
    let pipeline = if host_driver && backend.parks() {
        services.driver.pipeline()
    } else {
        None
    };
    if let Some(pipe) = pipeline {
        let mut l = Loop {
            st,
            scenes,
            services,
            backend,
            dt_us,
            record,
            probe,
            chunk_start,
            times,
            counts,
            values,
            present,
            due,
            obs,
            plans,
            traces,
            drives,
        };
        l.pipelined(pipe)?;
        return l.finish();
    }
    loop {
        if !st.alive.iter().any(|a| *a) {
            break;
        }
        if drives {
            take_over_due(st, scenes, &mut due, backend)?;
        }
        let t0 = Instant::now();
        backend.evaluate(st, scenes, &mut values, &mut present, record || host_driver)?;
        let t1 = Instant::now();
        times.evaluation += t1 - t0;
        let ended = record_step(
            st,
            scenes,
            &values,
            &present,
            &mut traces,
            &mut counts,
            record,
        );
        counts.iterations += 1;
        if ended > 0 {
            backend.alive_changed(st)?;
        }
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
        if host_driver {
            services.driver.drive(st, scenes, &obs, &mut plans, dt_s);
            if take_driver_verdicts(st, &mut plans, &mut traces) {
                backend.alive_changed(st)?;
            }
            backend.set_plans(&plans)?;
        } else {
            backend.drive(st, &mut plans, record)?;
        }
        if record {
            record_plans(&mut traces, st, &plans);
        }
        if sync {
            backend.synchronize()?;
        }
        let t4 = Instant::now();
        times.driver += t4 - t3;
        let (t5, t6) = control_and_traffic(
            st,
            scenes,
            backend,
            &plans,
            sync,
            &mut times,
            &mut probe,
            chunk_start,
            dt_us,
        )?;
        if let Some(p) = probe.as_mut() {
            p.services_step([t0, t1, t2, t3, t4, t5, t6]);
        }
    }
    if let Some(p) = probe.as_mut() {
        p.chunk_end(&traces, chunk_start);
    }
    backend.finish(st)?;
    services.driver.end(st, scenes);
    Ok((traces, times, counts))
}

/// Hands the ego of every alive, undriven rollout whose takeover time has come to the driver
/// (the backend applies the perturbation); `due` is scratch.
fn take_over_due(
    st: &mut BatchState,
    scenes: &[SceneCtx],
    due: &mut [bool],
    backend: &mut dyn StepBackend,
) -> Result<(), StepError> {
    let mut any = false;
    for r in 0..st.len() {
        let ctx = &scenes[st.scene[r] as usize];
        due[r] = st.alive[r] && !st.ego_controlled[r] && st.t_us[r] >= ctx.driven_from_us;
        if due[r] {
            st.ego_controlled[r] = true;
            any = true;
        }
    }
    if any {
        backend.take_over(st, due)?;
    }
    Ok(())
}

/// Counts and (with `record`) records the evaluated step of every alive rollout; a rollout at its
/// last step ends. Returns how many ended.
fn record_step(
    st: &mut BatchState,
    scenes: &[SceneCtx],
    values: &[f64],
    present: &[u32],
    traces: &mut [RolloutTrace],
    counts: &mut StepCounts,
    record: bool,
) -> usize {
    let mut ended = 0usize;
    for r in 0..st.len() {
        if !st.alive[r] {
            continue;
        }
        counts.rollout_steps += 1;
        counts.agent_steps += u64::from(present[r]);
        if record {
            traces[r].push_step(st, r, &values[r * N_METRICS..(r + 1) * N_METRICS]);
        }
        st.step[r] += 1;
        if st.step[r] >= scenes[st.scene[r] as usize].n_steps {
            st.alive[r] = false;
            ended += 1;
        }
    }
    ended
}

/// Controller + vehicle model, then traffic, then the clocks of the alive rollouts one step on.
/// Returns the instants after the controller and after the traffic.
#[allow(clippy::too_many_arguments)]
fn control_and_traffic(
    st: &mut BatchState,
    scenes: &[SceneCtx],
    backend: &mut dyn StepBackend,
    plans: &Plans,
    sync: bool,
    times: &mut ServiceTimes,
    probe: &mut Option<Probe<'_>>,
    chunk_start: Instant,
    dt_us: i64,
) -> Result<(Instant, Instant), StepError> {
    let t4 = Instant::now();
    let alive_before = st.alive.iter().filter(|a| **a).count();
    backend.control(st, scenes, plans)?;
    if sync {
        backend.synchronize()?;
    }
    let t5 = Instant::now();
    times.controller += t5 - t4;
    // An undriven ego whose recording ends (a gap) ends its rollout in the controller.
    let stopped = alive_before - st.alive.iter().filter(|a| **a).count();
    if let Some(p) = probe.as_mut() {
        p.rollouts_ended(stopped, (t5 - chunk_start).as_secs_f64());
    }
    backend.advance_traffic(st, scenes)?;
    if sync {
        backend.synchronize()?;
    }
    let t6 = Instant::now();
    times.traffic += t6 - t5;
    for r in (0..st.len()).filter(|&r| st.alive[r]) {
        st.t_us[r] += dt_us;
    }
    Ok((t5, t6))
}

/// Marks the alive rollouts `parked` says not alive; returns them, for [`unpark`].
fn park(st: &mut BatchState, parked: impl Fn(usize) -> bool) -> Vec<usize> {
    let out: Vec<usize> = (0..st.len())
        .filter(|&r| st.alive[r] && parked(r))
        .collect();
    for &r in &out {
        st.alive[r] = false;
    }
    out
}

/// Makes the rollouts [`park`] parked alive again.
fn unpark(st: &mut BatchState, parked: &[usize]) {
    for &r in parked {
        st.alive[r] = true;
    }
}

/// The state of a pipelined chunk's loop.
struct Loop<'a, 'b, 'p> {
    st: &'b mut BatchState,
    scenes: &'b [SceneCtx],
    services: Services<'a>,
    backend: &'b mut dyn StepBackend,
    dt_us: i64,
    record: bool,
    probe: Option<Probe<'p>>,
    chunk_start: Instant,
    times: ServiceTimes,
    counts: StepCounts,
    values: Vec<f64>,
    present: Vec<u32>,
    due: Vec<bool>,
    obs: Observations,
    plans: Plans,
    traces: Vec<RolloutTrace>,
    drives: bool,
}

impl Loop<'_, '_, '_> {
    /// The chunk with a pipelined driver: each rollout goes through the same steps in the same
    /// order as in lockstep — takeover, evaluation, record, sensor, driver, controller, traffic —
    /// but its step waits only for its own driver's answer. Each iteration moves the rollouts
    /// not waiting on their driver up to their driver call (sent at once), then waits for
    /// answers and moves those answered through the controller and the traffic to their next
    /// time; the others are parked meanwhile. Every service computes each rollout from that
    /// rollout's state alone, so the results are the lockstep loop's.
    fn pipelined(&mut self, mut pipe: Box<dyn DriverPipeline + '_>) -> Result<(), StepError> {
        let n = self.st.len();
        let dt_s = self.dt_us as f64 / 1e6;
        let mut waiting = vec![false; n];
        let sync = self.probe.is_some();
        loop {
            if !self.st.alive.iter().any(|a| *a) {
                break;
            }
            // The rollouts not waiting on their driver, up to their driver call.
            let parked = park(self.st, |r| waiting[r]);
            let t0 = Instant::now();
            let (mut t1, mut t2, mut t3) = (t0, t0, t0);
            if self.st.alive.iter().any(|a| *a) {
                if self.drives {
                    take_over_due(self.st, self.scenes, &mut self.due, self.backend)?;
                }
                self.backend.evaluate(
                    self.st,
                    self.scenes,
                    &mut self.values,
                    &mut self.present,
                    true,
                )?;
                t1 = Instant::now();
                self.times.evaluation += t1 - t0;
                let ended = record_step(
                    self.st,
                    self.scenes,
                    &self.values,
                    &self.present,
                    &mut self.traces,
                    &mut self.counts,
                    self.record,
                );
                if ended > 0 {
                    self.backend.alive_changed(self.st)?;
                }
                t2 = Instant::now();
                self.times.record += t2 - t1;
                if let Some(p) = self.probe.as_mut() {
                    p.rollouts_ended(ended, (t2 - self.chunk_start).as_secs_f64());
                }
                let ready: Vec<usize> = (0..n).filter(|&r| self.st.alive[r]).collect();
                if !ready.is_empty() {
                    self.services
                        .sensor
                        .observe(self.st, self.scenes, &mut self.obs)?;
                    t3 = Instant::now();
                    self.times.sensor += t3 - t2;
                    pipe.submit(self.st, self.scenes, &self.obs, &ready, dt_s);
                    for r in ready {
                        waiting[r] = true;
                    }
                } else {
                    t3 = t2;
                }
            }
            unpark(self.st, &parked);
            self.counts.iterations += 1;
            if pipe.in_flight() == 0 {
                // Every rollout has ended.
                break;
            }
            // Those answered: controller and traffic to their next time.
            let answered = pipe.collect(self.st, self.scenes, &mut self.plans, dt_s);
            for &r in &answered {
                waiting[r] = false;
            }
            let parked = park(self.st, |r| waiting[r]);
            if take_driver_verdicts(self.st, &mut self.plans, &mut self.traces) {
                self.backend.alive_changed(self.st)?;
            }
            self.backend.set_plans(&self.plans)?;
            if self.record {
                record_plans(&mut self.traces, self.st, &self.plans);
            }
            let t4 = Instant::now();
            self.times.driver += t4 - t3;
            let (t5, t6) = control_and_traffic(
                self.st,
                self.scenes,
                self.backend,
                &self.plans,
                sync,
                &mut self.times,
                &mut self.probe,
                self.chunk_start,
                self.dt_us,
            )?;
            unpark(self.st, &parked);
            if let Some(p) = self.probe.as_mut() {
                p.services_step([t0, t1, t2, t3, t4, t5, t6]);
            }
        }
        Ok(())
    }

    /// After the last step: what [`run_chunk`] returns.
    #[allow(clippy::type_complexity)]
    fn finish(mut self) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError> {
        if let Some(p) = self.probe.as_mut() {
            p.chunk_end(&self.traces, self.chunk_start);
        }
        self.backend.finish(self.st)?;
        self.services.driver.end(self.st, self.scenes);
        Ok((self.traces, self.times, self.counts))
    }
}

/// Ends the rollouts the driver failed or terminated, noting why in their traces.
/// Returns whether any rollout ended.
fn take_driver_verdicts(
    st: &mut BatchState,
    plans: &mut Plans,
    traces: &mut [RolloutTrace],
) -> bool {
    let mut ended = false;
    for (r, trace) in traces.iter_mut().enumerate() {
        if let Some(e) = plans.failed[r].take() {
            trace.failure.get_or_insert(e);
            ended |= st.alive[r];
            st.alive[r] = false;
            plans.active[r] = false;
        }
        if std::mem::take(&mut plans.terminate[r]) && st.alive[r] {
            trace.terminated = true;
            st.alive[r] = false;
            plans.active[r] = false;
            ended = true;
        }
    }
    ended
}
