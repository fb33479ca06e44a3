//! The backend benchmark behind `simulate bench-backends` (`make bench-gpu`): agent-steps per
//! second of the CPU backend (every core) and of the kernels (GPU or emulator) on the same
//! procedural workload — 32 actors per rollout (the ego and 31 vehicles on a 3-lane road), every
//! per-step metric — at several numbers of concurrent rollouts, measured in the same run. The
//! kernels' figure is pure stepping with the state on the device: per step only the decisions
//! and the metric values cross to the host.

use std::time::Instant;

use rayon::prelude::*;

use super::device::Device;
use super::stepper::DeviceSession;
use crate::config::SimConfig;
use crate::scene::procedural::{bench_scenes, BENCH_SCENES as SCENES};
use crate::sim::driver::Driver;
use crate::sim::stepper::ConfiguredServices;
use crate::sim::traffic::Traffic;
use crate::state::{BatchState, SceneCtx};

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchRow {
    /// Concurrent rollouts.
    pub rollouts: usize,
    /// Agent-steps simulated (per backend).
    pub agent_steps: u64,
    /// CPU backend, agent-steps per second (None: not measured).
    pub cpu_per_s: Option<f64>,
    /// Kernels, agent-steps per second.
    pub kernels_per_s: f64,
    /// Device bytes per rollout (chunk state plus its share of the scene tables).
    pub device_bytes_per_rollout: f64,
}

/// The benchmark's scenes, ready to simulate under `cfg`.
pub fn scenes(cfg: &SimConfig, steps: usize) -> Vec<SceneCtx> {
    bench_scenes(steps)
        .into_iter()
        .enumerate()
        .map(|(seed, s)| {
            SceneCtx::new(s, cfg, format!("bench-{seed}")).expect("procedural scenes fit")
        })
        .collect()
}

fn members(rollouts: usize) -> Vec<(u32, u32)> {
    (0..rollouts)
        .map(|i| ((i % SCENES) as u32, (i / SCENES) as u32))
        .collect()
}

/// Measures `driver` + `traffic` at each rollout count: the CPU backend on every core of the
/// current rayon pool (unless `skip_cpu`), then the kernels on `device`.
pub fn run(
    device: &Device,
    rollouts: &[usize],
    steps: usize,
    driver: Driver,
    traffic: Traffic,
    skip_cpu: bool,
) -> Result<Vec<BenchRow>, super::check::CheckError> {
    let cfg = SimConfig::default();
    let ctxs = scenes(&cfg, steps);
    let configured = ConfiguredServices::new(&cfg);
    let driver = driver
        .builtin()
        .ok_or(super::check::CheckError::NotBuiltIn)?;
    let traffic = traffic.service();
    let reactive = traffic.reactive();
    let session = DeviceSession::new(device, &ctxs, &cfg)?;
    let mut rows = Vec::new();
    for &n in rollouts {
        let m = members(n);
        let cpu_per_s = if skip_cpu {
            None
        } else {
            let chunk = cfg.chunk_size(m.len(), rayon::current_num_threads());
            let t = Instant::now();
            let steps: u64 = m
                .par_chunks(chunk)
                .map(|part| {
                    let mut st = BatchState::new(&ctxs, part, &cfg, reactive);
                    configured
                        .run_cpu(&mut st, &ctxs, driver, traffic, false, None)
                        .map(|(_, _, c)| c.agent_steps)
                        .unwrap_or(0)
                })
                .sum();
            Some(steps as f64 / t.elapsed().as_secs_f64())
        };
        let mut st = BatchState::new(&ctxs, &m, &cfg, reactive);
        // Warm-up (module load, first allocations) on a small chunk.
        let mut warm = BatchState::new(&ctxs, &m[..m.len().min(64)], &cfg, reactive);
        let services = configured.services(driver);
        session.run(&mut warm, &ctxs, services, traffic, false, None)?;
        let t = Instant::now();
        let (_, _, counts, bytes) = session.run(&mut st, &ctxs, services, traffic, false, None)?;
        let secs = t.elapsed().as_secs_f64();
        rows.push(BenchRow {
            rollouts: n,
            agent_steps: counts.agent_steps,
            cpu_per_s,
            kernels_per_s: counts.agent_steps as f64 / secs,
            device_bytes_per_rollout: (bytes + session.table_bytes()) as f64 / n as f64,
        });
    }
    Ok(rows)
}

/// `simulate bench-backends` (`make bench-gpu`): both workloads (log replay; IDM driver + IDM
/// traffic) at each rollout count, one table line each to `out`.
pub fn report(
    dev: &Device,
    rollouts: &[usize],
    steps: usize,
    skip_cpu: bool,
    out: &mut dyn FnMut(&str),
) -> Result<(), super::check::CheckError> {
    out(&format!(
        "kernels on {}; CPU backend on {} threads; {steps} steps, 32 actors per rollout",
        dev.description,
        rayon::current_num_threads()
    ));
    out(&format!(
        "{:<26} {:>9} {:>16} {:>16} {:>8} {:>14}",
        "workload", "rollouts", "CPU agent-st/s", "kernels ag-st/s", "ratio", "device B/rollout"
    ));
    for (name, driver, traffic) in [
        ("log-replay + replay", Driver::LogReplay, Traffic::LogReplay),
        ("idm driver + idm traffic", Driver::Idm, Traffic::Idm),
    ] {
        for r in run(dev, rollouts, steps, driver, traffic, skip_cpu)? {
            let fmt = |v: f64| format!("{:.1} M", v / 1e6);
            out(&format!(
                "{:<26} {:>9} {:>16} {:>16} {:>8} {:>14.0}",
                name,
                r.rollouts,
                r.cpu_per_s.map(fmt).unwrap_or_else(|| "-".into()),
                fmt(r.kernels_per_s),
                r.cpu_per_s
                    .map(|c| format!("{:.1}×", r.kernels_per_s / c))
                    .unwrap_or_else(|| "-".into()),
                r.device_bytes_per_rollout
            ));
        }
    }
    Ok(())
}
