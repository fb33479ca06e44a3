//! Backend equivalence: the same chunk stepped by the CPU backend and by the kernels (on a GPU or
//! in the emulator), compared trace by trace — distances within a tolerance (1e-4 m by default),
//! events (collisions, offroad, the 0/1 metrics) exactly. Used by the CI tests (emulator) and by
//! `simulate gpu-check` (`make test-gpu`).

use super::device::Device;
use super::stepper::DeviceSession;
use crate::metrics::table::{index, Kind, METRICS, N_METRICS};
use crate::rollout::trace::RolloutTrace;
use crate::sim::services::DriverService;
use crate::sim::stepper::ConfiguredServices;
use crate::sim::traffic::Traffic;
use crate::sim_config::SimConfig;
use crate::state::{BatchState, SceneCtx};

/// What a comparison found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Comparison {
    /// Rollout-steps compared.
    pub steps: usize,
    /// Largest difference of a pose coordinate or continuous metric (inf/NaN must match).
    pub max_abs_diff: f64,
    /// Where it was: (metric or pose field, rollout, step).
    pub worst: Option<(String, usize, usize)>,
    /// Event metric values that differ: (metric, rollout, step, cpu, kernels).
    pub event_mismatches: Vec<(String, usize, usize, f64, f64)>,
    /// Structural differences (step counts, failures, plans).
    pub structure: Vec<String>,
    /// Rollout-steps with a collision (so a test can tell it exercised them).
    pub collision_steps: usize,
    /// Rollout-steps off the road.
    pub offroad_steps: usize,
}

impl Comparison {
    /// True when everything agrees within `tol` and events exactly.
    pub fn agrees(&self, tol: f64) -> bool {
        self.max_abs_diff <= tol && self.event_mismatches.is_empty() && self.structure.is_empty()
    }

    fn value(&mut self, what: &str, r: usize, k: usize, a: f64, b: f64) {
        let d = if a.is_nan() && b.is_nan() || a == b {
            0.0
        } else {
            (a - b).abs()
        };
        let d = if d.is_nan() { f64::INFINITY } else { d };
        if d > self.max_abs_diff {
            self.max_abs_diff = d;
            self.worst = Some((what.to_string(), r, k));
        }
    }
}

/// Tolerance of the start-up self-check and of `simulate gpu-check` (m, and for continuous
/// metrics): a GPU's libdevice `sin`/`cos` may differ from the host's in the last bit.
pub const GPU_TOLERANCE: f64 = 1e-4;

/// The start-up self-check of `--backend auto`: one rollout of a procedural scene (IDM driver
/// among IDM traffic, 50 steps: every kernel runs) stepped on `device` and on the CPU, compared
/// within [`GPU_TOLERANCE`] and events exactly. `Ok` says what passed; `Err` what differed.
pub fn self_check(device: &Device) -> Result<String, String> {
    let cfg = SimConfig::default();
    let scenes = &super::bench::scenes(&cfg, 50)[..1];
    let driver = crate::sim::driver::Driver::Idm
        .builtin()
        .expect("IDM is built in");
    let c = compare(device, scenes, &[(0, 0)], &cfg, driver, Traffic::Idm)?;
    if c.agrees(GPU_TOLERANCE) && c.steps > 0 {
        Ok(format!(
            "self-check passed: 1 rollout × {} steps equal to the CPU backend within {GPU_TOLERANCE:e} m, events exact",
            c.steps
        ))
    } else {
        Err(format!(
            "max |Δ| {:e} at {:?}, {} event mismatches, {}",
            c.max_abs_diff,
            c.worst,
            c.event_mismatches.len(),
            c.structure.join("; ")
        ))
    }
}

/// Steps every rollout of `members` on the CPU and with the kernels on `device`, and compares.
pub fn compare(
    device: &Device,
    scenes: &[SceneCtx],
    members: &[(u32, u32)],
    cfg: &SimConfig,
    driver: &dyn DriverService,
    traffic: Traffic,
) -> Result<Comparison, String> {
    let configured = ConfiguredServices::new(cfg);
    let traffic = traffic.service();
    let mut st_cpu = BatchState::new(scenes, members, cfg, traffic.reactive());
    let mut st_dev = st_cpu.clone();
    let (cpu, _, cpu_counts) = configured
        .run_cpu(&mut st_cpu, scenes, driver, traffic, true, None)
        .map_err(|e| e.to_string())?;
    let session = DeviceSession::new(device, scenes, cfg).map_err(|e| e.to_string())?;
    let (dev, _, dev_counts, _) = session
        .run(
            &mut st_dev,
            scenes,
            configured.services(driver),
            traffic,
            true,
            None,
        )
        .map_err(|e| e.to_string())?;
    let mut c = Comparison::default();
    if cpu_counts != dev_counts {
        c.structure.push(format!(
            "counts: cpu {cpu_counts:?}, kernels {dev_counts:?}"
        ));
    }
    if cpu.len() != dev.len() {
        c.structure.push(format!(
            "{} traces on the CPU, {} with the kernels",
            cpu.len(),
            dev.len()
        ));
    }
    for (r, (a, b)) in cpu.iter().zip(&dev).enumerate() {
        compare_trace(&mut c, r, a, b);
    }
    Ok(c)
}

fn compare_trace(c: &mut Comparison, r: usize, a: &RolloutTrace, b: &RolloutTrace) {
    if a.times_us != b.times_us {
        c.structure.push(format!(
            "rollout {r}: {} steps on the CPU, {} with the kernels",
            a.times_us.len(),
            b.times_us.len()
        ));
        return;
    }
    if a.failure != b.failure || a.terminated != b.terminated {
        c.structure.push(format!("rollout {r}: ended differently"));
    }
    let steps = a.times_us.len();
    for (what, x, y, per_step) in [
        ("ego poses", a.ego.len(), b.ego.len(), 1),
        ("agent poses", a.agents.len(), b.agents.len(), 0),
        ("metric values", a.metrics.len(), b.metrics.len(), N_METRICS),
    ] {
        let want = per_step * steps;
        if x != y || (per_step > 0 && x != want) || (steps > 0 && x % steps != 0) {
            c.structure.push(format!(
                "rollout {r}: {x} {what} on the CPU, {y} with the kernels, over {steps} steps"
            ));
            return;
        }
    }
    // Flags and scores (the table's events) must be equal; quantities within the tolerance.
    let events: Vec<bool> = METRICS.iter().map(|m| m.kind == Kind::Event).collect();
    let n_agents = a.agents.len() / a.times_us.len().max(1);
    for k in 0..a.times_us.len() {
        c.steps += 1;
        for (f, name) in ["x", "y", "yaw", "speed", "plan_x", "plan_y"]
            .iter()
            .enumerate()
        {
            c.value(&format!("ego {name}"), r, k, a.ego[k][f], b.ego[k][f]);
        }
        for j in 0..n_agents {
            let (pa, pb) = (a.agents[k * n_agents + j], b.agents[k * n_agents + j]);
            for f in 0..4 {
                c.value("agent pose", r, k, pa[f], pb[f]);
            }
        }
        for m in 0..N_METRICS {
            let (x, y) = (a.metrics[k * N_METRICS + m], b.metrics[k * N_METRICS + m]);
            if events[m] {
                if !(x == y || x.is_nan() && y.is_nan()) {
                    c.event_mismatches
                        .push((METRICS[m].name.to_string(), r, k, x, y));
                }
            } else {
                c.value(METRICS[m].name, r, k, x, y);
            }
        }
        if a.metrics[k * N_METRICS + index::COLLISION_ANY] == 1.0 {
            c.collision_steps += 1;
        }
        if a.metrics[k * N_METRICS + index::OFFROAD] == 1.0 {
            c.offroad_steps += 1;
        }
    }
    if a.plans.len() != b.plans.len() {
        c.structure.push(format!(
            "rollout {r}: {} plans on the CPU, {} with the kernels",
            a.plans.len(),
            b.plans.len()
        ));
    } else {
        for (pa, pb) in a.plans.iter().zip(&b.plans) {
            if pa.0 != pb.0 || pa.1.len() != pb.1.len() {
                c.structure.push(format!(
                    "rollout {r}: plans at other steps or of other lengths"
                ));
                break;
            }
            for (p, q) in pa.1.iter().zip(&pb.1) {
                // Plans are logged as f32: compare at that precision.
                c.value("plan point", r, pa.0 as usize, p[0], q[0]);
                c.value("plan point", r, pa.0 as usize, p[1], q[1]);
            }
        }
    }
}
