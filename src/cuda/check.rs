//! Backend equivalence: the same chunk stepped by the CPU backend and by the kernels (on a GPU or
//! in the emulator), compared trace by trace — distances within a tolerance (1e-4 m by default),
//! events (collisions, offroad, the 0/1 metrics) exactly. Used by the CI tests (emulator) and by
//! `simulate gpu-check` (`make test-gpu`).

use std::path::{Path, PathBuf};

use super::device::{CudaError, Device};
use super::stepper::DeviceSession;
use super::{Backend, Chosen, KernelBackend};
use crate::config::SimConfig;
use crate::metrics::table::{index, Kind, METRICS, N_METRICS};
use crate::rollout::trace::RolloutTrace;
use crate::scene::{Scene, SceneError};
use crate::sim::driver::Driver;
use crate::sim::services::{DriverService, StepError};
use crate::sim::stepper::ConfiguredServices;
use crate::sim::traffic::Traffic;
use crate::state::{BatchState, SceneCtx, StateError};

/// Why a comparison or a benchmark of the kernels could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The device failed.
    #[error(transparent)]
    Cuda(#[from] CudaError),
    /// A chunk could not step.
    #[error(transparent)]
    Step(#[from] StepError),
    /// A scene file is unusable.
    #[error(transparent)]
    Scene(#[from] SceneError),
    /// The scene directory cannot be read.
    #[error("{dir}: {source}")]
    Io {
        /// the directory
        dir: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// No scene of the directory could be prepared.
    #[error("{0}: no scenes to check")]
    NoScenes(PathBuf),
    /// A comparison found differences (the report says where).
    #[error("{0} of 6 driver × traffic combinations differ from the CPU backend")]
    Differs(usize),
    /// The benchmark needs a built-in driver.
    #[error("the benchmark uses built-in drivers")]
    NotBuiltIn,
}

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
    // Err is the description of the difference, for the fallback message.
    let cfg = SimConfig::default();
    let scenes = &super::bench::scenes(&cfg, 50)[..1];
    let driver = crate::sim::driver::Driver::Idm
        .builtin()
        .expect("IDM is built in");
    let c = compare(device, scenes, &[(0, 0)], &cfg, driver, Traffic::Idm)
        .map_err(|e| e.to_string())?;
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
) -> Result<Comparison, CheckError> {
    let configured = ConfiguredServices::new(cfg);
    let traffic = traffic.service();
    let mut st_cpu = BatchState::new(scenes, members, cfg, traffic.reactive());
    let mut st_dev = st_cpu.clone();
    let (cpu, _, cpu_counts) =
        configured.run_cpu(&mut st_cpu, scenes, driver, traffic, true, None)?;
    let session = DeviceSession::new(device, scenes, cfg)?;
    let (dev, _, dev_counts, _) = session.run(
        &mut st_dev,
        scenes,
        configured.services(driver),
        traffic,
        true,
        None,
    )?;
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

/// The device of a kernel command (`gpu-check`, `bench-backends`), or why there is none: with
/// `cuda` and no usable GPU, `Ok(Err(reason))` unless `require_gpu` (then the error).
pub fn kernel_device(
    backend: KernelBackend,
    require_gpu: bool,
) -> Result<Result<Device, String>, CudaError> {
    match Backend::from(backend).choose() {
        Ok(Chosen::Kernels(d, _)) => Ok(Ok(d)),
        Ok(Chosen::Cpu(_)) => unreachable!("cuda and cuda-emulated never fall back"),
        Err(e) if !require_gpu && backend == KernelBackend::Cuda => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

/// `simulate gpu-check` (`make test-gpu`): every built-in driver × traffic model on the scenes of
/// `dir` (`rollouts` seeded rollouts each), kernels on `dev` against the CPU backend. One line per
/// combination goes to `out` as it finishes; `Err(Differs)` when any differs.
pub fn gpu_check(
    dev: &Device,
    dir: &Path,
    rollouts: u32,
    tolerance: f64,
    out: &mut dyn FnMut(&str),
) -> Result<(), CheckError> {
    out(&format!("kernels on {}", dev.description));
    let cfg = SimConfig::default();
    let io = |e| CheckError::Io {
        dir: dir.to_path_buf(),
        source: e,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == crate::scene::EXTENSION))
        .collect();
    paths.sort();
    let mut scenes = Vec::new();
    for p in &paths {
        let s = Scene::load(p)?;
        let id = s.scene_id.clone();
        match SceneCtx::new(s, &cfg, "check".into()) {
            Ok(c) => scenes.push(c),
            Err(e) => out(&format!("{id}: skipped: {}", StateError::to_string(&e))),
        }
    }
    if scenes.is_empty() {
        return Err(CheckError::NoScenes(dir.to_path_buf()));
    }
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32)
        .flat_map(|s| (0..rollouts).map(move |r| (s, r)))
        .collect();
    let mut failed = 0;
    for driver in [Driver::LogReplay, Driver::ConstantVelocity, Driver::Idm] {
        for traffic in [Traffic::LogReplay, Traffic::Idm] {
            let d = driver.builtin().expect("built in");
            let c = compare(dev, &scenes, &members, &cfg, d, traffic)?;
            let ok = c.agrees(tolerance);
            failed += usize::from(!ok);
            out(&format!(
                "{} {:<17} traffic {:<10} {} rollout-steps, max |Δ| {:.2e}{}, {} event mismatches, {} collision / {} offroad steps",
                if ok { "ok  " } else { "FAIL" },
                d.name(),
                traffic.service().name(),
                c.steps,
                c.max_abs_diff,
                c.worst
                    .as_ref()
                    .map(|(w, r, k)| format!(" ({w}, rollout {r}, step {k})"))
                    .unwrap_or_default(),
                c.event_mismatches.len(),
                c.collision_steps,
                c.offroad_steps
            ));
            for s in c.structure.iter().take(5) {
                out(&format!("     {s}"));
            }
            for (m, r, k, a, b) in c.event_mismatches.iter().take(5) {
                out(&format!(
                    "     {m} rollout {r} step {k}: cpu {a}, kernels {b}"
                ));
            }
        }
    }
    if failed > 0 {
        return Err(CheckError::Differs(failed));
    }
    out(&format!(
        "the kernels agree with the CPU backend (tolerance {tolerance:e} m, events exact)"
    ));
    Ok(())
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
