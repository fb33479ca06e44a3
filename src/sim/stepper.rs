//! The CPU stepper: moves one [`BatchState`] chunk through the services, step by step, all
//! rollouts together, and records what the logs and metrics files need into per-rollout traces
//! (plain arrays; encoding them happens off the step loop, in the runner's writer).
//!
//! Order within a step at time t: the driver takes over where t has reached the takeover time
//! (the seeded perturbation is applied then); evaluation measures the state at t; the trace
//! records it; then sensor → driver → controller → traffic move everything to t + dt.

use std::time::{Duration, Instant};

use super::evaluation::EvalMemory;
use super::services::{
    ControllerService, DriverService, EvaluationService, Observations, Plans, SensorService,
    StepError, TrafficService,
};
use crate::metrics::table::N_METRICS;
use crate::rollout::trace::RolloutTrace;
use crate::state::{BatchState, SceneCtx};
use crate::telemetry::Telemetry;

/// The services of one backend.
#[derive(Clone, Copy)]
pub struct Services<'a> {
    /// Sensor.
    pub sensor: &'a dyn SensorService,
    /// Driver (the policy under test).
    pub driver: &'a dyn DriverService,
    /// Controller + vehicle model.
    pub controller: &'a dyn ControllerService,
    /// Traffic.
    pub traffic: &'a dyn TrafficService,
    /// Evaluation.
    pub evaluation: &'a dyn EvaluationService,
}

/// The services a configuration sets up — its sensor clocks and evaluation settings, with the
/// pure-pursuit controller — ready to lend to [`Services`] with a driver and a traffic model.
pub struct ConfiguredServices {
    sensor: super::sensor::ClockedSensor,
    evaluator: super::evaluation::Evaluator,
}

impl ConfiguredServices {
    /// The services of `cfg`.
    pub fn new(cfg: &crate::sim_config::SimConfig) -> ConfiguredServices {
        ConfiguredServices {
            sensor: super::sensor::ClockedSensor::new(cfg),
            evaluator: super::evaluation::Evaluator::new(cfg),
        }
    }

    /// With `driver` and `traffic`.
    pub fn with<'a>(
        &'a self,
        driver: &'a dyn DriverService,
        traffic: &'a dyn TrafficService,
    ) -> Services<'a> {
        Services {
            sensor: &self.sensor,
            driver,
            controller: &super::controller::PurePursuit,
            traffic,
            evaluation: &self.evaluator,
        }
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
    /// Lockstep iterations.
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
    pub(crate) fn step(&mut self, calls: &[(&str, &str, Duration)], step: Duration) {
        let q = self.queue_depth;
        for (service, method, d) in calls {
            self.telemetry
                .rpc(service, method, "batch", d.as_secs_f64(), 0.0, q);
        }
        self.telemetry.step_duration.observe(step.as_secs_f64());
    }

    /// Records a full step from its instants: start, after evaluation, after recording, after
    /// the sensor, the driver, the controller and the traffic.
    pub(crate) fn services_step(&mut self, t: [Instant; 7]) {
        self.step(
            &[
                ("evaluation", "evaluate", t[1] - t[0]),
                ("sensor", "observe", t[3] - t[2]),
                ("driver", "drive", t[4] - t[3]),
                ("controller", "control", t[5] - t[4]),
                ("traffic", "advance", t[6] - t[5]),
            ],
            t[6] - t[0],
        );
    }

    /// At the end of a chunk: the rollouts the driver ended early count too.
    pub(crate) fn chunk_end(&mut self, traces: &[RolloutTrace], chunk_start: Instant) {
        let early = traces
            .iter()
            .filter(|t| t.failure.is_some() || t.terminated)
            .count();
        self.rollouts_ended(early, chunk_start.elapsed().as_secs_f64());
    }

    /// Records `n` rollouts ending `since_s` seconds after their chunk started.
    pub(crate) fn rollouts_ended(&mut self, n: usize, since_s: f64) {
        for _ in 0..n {
            self.telemetry.rollout_duration.observe(since_s);
        }
    }
}

/// Appends the plans made this step (by alive, driver-controlled rollouts) to their traces, at
/// f32 precision as the log stores them.
pub(crate) fn record_plans(traces: &mut [RolloutTrace], st: &BatchState, plans: &Plans) {
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

/// Runs the chunk to the end of its longest rollout. With `record`, returns one trace per
/// rollout (empty traces otherwise: the benchmark's pure stepping). With a probe, every batched
/// service call, step and rollout duration is recorded (DESIGN §8).
pub fn run_chunk(
    st: &mut BatchState,
    scenes: &[SceneCtx],
    services: Services<'_>,
    dt_us: i64,
    record: bool,
    mut probe: Option<Probe<'_>>,
) -> Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError> {
    let chunk_start = Instant::now();
    let n = st.len();
    let dt_s = dt_us as f64 / 1e6;
    let mut times = ServiceTimes::default();
    let mut counts = StepCounts::default();
    let mut memory = vec![EvalMemory::default(); n];
    let mut values = vec![f64::NAN; n * N_METRICS];
    let mut obs = Observations::default();
    let mut plans = Plans::new(n);
    let mut traces = vec![RolloutTrace::default(); n];
    let drives = services.driver.drives();
    services.driver.begin(st, scenes, &mut plans);
    take_driver_verdicts(st, &mut plans, &mut traces);
    loop {
        if !st.alive.iter().any(|a| *a) {
            break;
        }
        // Takeover, with the rollout's perturbation.
        if drives {
            for r in 0..n {
                let ctx = &scenes[st.scene[r] as usize];
                if st.alive[r] && !st.ego_controlled[r] && st.t_us[r] >= ctx.driven_from_us {
                    let p = st.perturbation[r];
                    st.ego_controlled[r] = true;
                    st.ego_x[r] += p.dx_m;
                    st.ego_y[r] += p.dy_m;
                    st.ego_yaw[r] += p.dyaw_rad;
                    st.ego_speed[r] = (st.ego_speed[r] * (1.0 + p.dspeed_frac)).max(0.0);
                }
            }
        }
        let t0 = Instant::now();
        services
            .evaluation
            .evaluate(st, scenes, &mut memory, &mut values);
        let t1 = Instant::now();
        times.evaluation += t1 - t0;
        let mut ended = 0usize;
        for r in 0..n {
            if !st.alive[r] {
                continue;
            }
            let agents = st.agents(r);
            counts.rollout_steps += 1;
            counts.agent_steps += 1 + agents.clone().filter(|&a| st.a_valid[a]).count() as u64;
            if record {
                traces[r].push_step(st, r, &values[r * N_METRICS..(r + 1) * N_METRICS]);
            }
            st.step[r] += 1;
            if st.step[r] >= scenes[st.scene[r] as usize].n_steps {
                st.alive[r] = false;
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
        services.driver.drive(st, scenes, &obs, &mut plans, dt_s);
        take_driver_verdicts(st, &mut plans, &mut traces);
        if record {
            record_plans(&mut traces, st, &plans);
        }
        let t4 = Instant::now();
        times.driver += t4 - t3;
        services.controller.control(st, scenes, &plans, dt_us);
        let t5 = Instant::now();
        times.controller += t5 - t4;
        services.traffic.advance(st, scenes, dt_us);
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
    services.driver.end(st, scenes);
    Ok((traces, times, counts))
}

/// Ends the rollouts the driver failed or terminated, noting why in their traces.
pub(crate) fn take_driver_verdicts(
    st: &mut BatchState,
    plans: &mut Plans,
    traces: &mut [RolloutTrace],
) {
    for (r, trace) in traces.iter_mut().enumerate() {
        if let Some(e) = plans.failed[r].take() {
            trace.failure.get_or_insert(e);
            st.alive[r] = false;
            plans.active[r] = false;
        }
        if std::mem::take(&mut plans.terminate[r]) && st.alive[r] {
            trace.terminated = true;
            st.alive[r] = false;
            plans.active[r] = false;
        }
    }
}
