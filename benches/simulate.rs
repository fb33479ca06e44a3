//! `make bench` (simulation part): agent-steps per second of the CPU stepper on procedural
//! scenes (32 actors: the ego and 31 vehicles on a 3-lane road), for 1K and 16K concurrent
//! rollouts on 1 and 2 threads, with every per-step metric computed (collisions with nuPlan's
//! classes, offroad, TTC, comfort, driving direction, path distances) and every step recorded
//! into the rollouts' traces, as `simulate run` does; the step time per service (the trace copy
//! included, as "record"); and the cost of writing the logs (rollout.asl encoding + metrics rows)
//! as a share of the step time.
//!
//! Last, `simulate run` as a user types it beside the step loop on the same work (#23): 16
//! procedural scenes × 64 rollouts × 32 actors, IDM ego and IDM traffic, logs and
//! metrics.parquet written, videos off; the release binary as a child process (its wall time,
//! start to exit), then the step loop with traces on all cores over the same scenes, laid out
//! scene by scene as the runner does, with the configuration the run wrote
//! (`wizard-config.yaml`). `BENCH_CLI_ROLLOUTS=64` per scene.
//!
//! One agent-step = one actor advanced one control step with its metrics. Environment:
//! `BENCH_ROLLOUTS=1000,16000`, `BENCH_STEPS=100`, `BENCH_THREADS=1,2`.

use std::time::{Duration, Instant};

use rayon::prelude::*;

use drivekit::config::SimConfig;
use drivekit::metrics_file::MetricsBuilder;
use drivekit::rollout::encode::{encode_rollout_log, rollout_metadata, scene_metadata};
use drivekit::rollout::rows::push_trace_rows;
use drivekit::run_dir::RunMetadata;
use drivekit::sim::driver::Driver;
use drivekit::sim::stepper::{ConfiguredServices, Probe, ServiceTimes, StepCounts};
use drivekit::sim::traffic::Traffic;
use drivekit::state::{BatchState, SceneCtx};
use drivekit::telemetry::Telemetry;

use drivekit::scene::procedural::BENCH_SCENES as SCENES;

fn env_list(key: &str, default: &str) -> Vec<usize> {
    std::env::var(key)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().expect("a number"))
        .collect()
}

fn scenes(cfg: &SimConfig, steps: usize) -> Vec<SceneCtx> {
    drivekit::scene::procedural::bench_scenes(steps)
        .into_iter()
        .enumerate()
        .map(|(seed, s)| SceneCtx::new(s, cfg, format!("bench-{seed}")).expect("scenes fit"))
        .collect()
}

struct Outcome {
    wall: Duration,
    times: ServiceTimes,
    counts: StepCounts,
}

#[allow(clippy::too_many_arguments)]
fn step_all(
    ctxs: &[SceneCtx],
    cfg: &SimConfig,
    rollouts: usize,
    threads: usize,
    driver: Driver,
    traffic: Traffic,
    telemetry: bool,
    record: bool,
) -> Outcome {
    let members: Vec<(u32, u32)> = (0..rollouts)
        .map(|i| ((i % SCENES) as u32, (i / SCENES) as u32))
        .collect();
    let chunk = cfg.chunk_size(members.len(), threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
    let configured = ConfiguredServices::new(cfg);
    let (driver, traffic_service) = (
        driver.builtin().expect("a built-in driver"),
        traffic.service(),
    );
    let start = Instant::now();
    let parts: Vec<(ServiceTimes, StepCounts)> = pool.install(|| {
        members
            .par_chunks(chunk)
            .map(|part| {
                let mut st = BatchState::new(ctxs, part, cfg, traffic == Traffic::Idm);
                let mut tel = Telemetry::default();
                let probe = telemetry.then_some(Probe {
                    telemetry: &mut tel,
                    queue_depth: 0,
                });
                let (traces, t, c) = configured
                    .run_cpu(&mut st, ctxs, driver, traffic_service, record, probe)
                    .expect("clocks line up");
                // The runner hands the traces to its writer thread; dropping them here is part
                // of the chunk's cost either way.
                drop(std::hint::black_box(traces));
                (t, c)
            })
            .collect()
    });
    let wall = start.elapsed();
    let mut times = ServiceTimes::default();
    let mut counts = StepCounts::default();
    for (t, c) in &parts {
        times.add(t);
        counts.agent_steps += c.agent_steps;
        counts.rollout_steps += c.rollout_steps;
    }
    Outcome {
        wall,
        times,
        counts,
    }
}

/// Steps `rollouts` with traces on one thread, then encodes what the run dir would hold.
/// Seconds spent stepping, encoding rollout.asl, building the metrics rows, encoding
/// metrics.parquet (drivekit's writer, then the arrow-rs ArrowWriter it used before #23 on the
/// same rows), and the MB of rollout.asl.
struct LoggingShare {
    step: f64,
    asl: f64,
    rows: f64,
    parquet: f64,
    parquet_arrow: f64,
    asl_mb: f64,
    /// Share of the logged poses whose yaw has the same bits as the same actor's at the previous
    /// step (their trigonometry is memoised, `rollout::poses::PoseMemo`).
    yaw_unchanged: f64,
}

fn logging_share(ctxs: &[SceneCtx], cfg: &SimConfig, rollouts: usize) -> LoggingShare {
    let members: Vec<(u32, u32)> = (0..rollouts)
        .map(|i| ((i % SCENES) as u32, (i / SCENES) as u32))
        .collect();
    let configured = ConfiguredServices::new(cfg);
    let (driver, traffic) = (
        Driver::Idm.builtin().expect("built in"),
        Traffic::Idm.service(),
    );
    let mut step = Duration::ZERO;
    let mut encode = Duration::ZERO;
    let mut rows_time = Duration::ZERO;
    let (mut parquet, mut parquet_arrow) = (Duration::ZERO, Duration::ZERO);
    let mut bytes = 0usize;
    let (mut poses, mut unchanged) = (0u64, 0u64);
    for part in members.chunks(64) {
        let t = Instant::now();
        let mut st = BatchState::new(ctxs, part, cfg, true);
        let (traces, _, _) = configured
            .run_cpu(&mut st, ctxs, driver, traffic, true, None)
            .expect("clocks line up");
        step += t.elapsed();
        let t = Instant::now();
        let mut buf = Vec::with_capacity(1 << 20);
        let shared: Vec<_> = ctxs.iter().map(scene_metadata).collect();
        for (r, tr) in traces.iter().enumerate() {
            let ctx = &ctxs[st.scene[r] as usize];
            let md = rollout_metadata(ctx, cfg, st.rollout[r], st.seed[r], "{}", "{}");
            buf.clear();
            encode_rollout_log(&mut buf, ctx, &shared[st.scene[r] as usize], &md, tr);
            bytes += buf.len();
        }
        encode += t.elapsed();
        // Yaws per actor (the ego first) that repeat the previous step's bits (not timed).
        for (r, tr) in traces.iter().enumerate() {
            let ctx = &ctxs[st.scene[r] as usize];
            let n = ctx.scene.agents.len();
            let yaw = |k: usize, a: usize| -> f64 {
                if a == 0 {
                    tr.ego[k][2]
                } else {
                    tr.agents[k * n + a - 1][2]
                }
            };
            for k in 0..tr.times_us.len() {
                for a in 0..=n {
                    if a > 0 && tr.agents[k * n + a - 1][0].is_nan() {
                        continue;
                    }
                    poses += 1;
                    unchanged += u64::from(k > 0 && yaw(k, a).to_bits() == yaw(k - 1, a).to_bits());
                }
            }
        }
        let t = Instant::now();
        let mut rows = MetricsBuilder::new();
        let meta = RunMetadata {
            run_name: "bench".into(),
            run_uuid: "bench".into(),
        };
        for (r, tr) in traces.iter().enumerate() {
            let ctx = &ctxs[st.scene[r] as usize];
            let rid = format!("{}-{}", ctx.batch_uuid, st.rollout[r]);
            push_trace_rows(&mut rows, ctx, &rid, &meta, tr);
        }
        let batch = rows.finish();
        rows_time += t.elapsed();
        let t = Instant::now();
        let file = drivekit::metrics_file::encode_metrics_file(std::slice::from_ref(&batch))
            .expect("the rows encode");
        parquet += t.elapsed();
        let t = Instant::now();
        let reference =
            drivekit::metrics_file::encode_with_arrow_writer(std::slice::from_ref(&batch))
                .expect("the rows encode");
        parquet_arrow += t.elapsed();
        std::hint::black_box((file, reference));
    }
    LoggingShare {
        step: step.as_secs_f64(),
        asl: encode.as_secs_f64(),
        rows: rows_time.as_secs_f64(),
        parquet: parquet.as_secs_f64(),
        parquet_arrow: parquet_arrow.as_secs_f64(),
        asl_mb: bytes as f64 / 1e6,
        yaw_unchanged: unchanged as f64 / poses.max(1) as f64,
    }
}

fn main() {
    let steps = env_list("BENCH_STEPS", "100")[0];
    let sizes = env_list("BENCH_ROLLOUTS", "1000,16000");
    let threads = env_list("BENCH_THREADS", "1,2");
    let mut cfg = SimConfig::default();
    cfg.simulation.n_sim_steps = steps as u32;
    let ctxs = scenes(&cfg, steps);
    println!(
        "simulate step benchmark: {SCENES} procedural scenes × 32 actors, {steps} control steps (10 Hz), {} cores available",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!();
    println!("Every step recorded into the rollouts' traces (as simulate run does); Waymax's figures are DESIGN §9's, measured on this kind of machine, not re-run here.");
    println!();
    println!("| mode | rollouts | threads | agent-steps | wall s | agent-steps/s | per thread | vs Waymax CPU (DESIGN §9) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---|");
    let mut breakdowns = Vec::new();
    for (label, driver, traffic, waymax) in [
        (
            "log replay, all metrics",
            Driver::LogReplay,
            Traffic::LogReplay,
            35_000.0,
        ),
        (
            "IDM ego + IDM traffic, all metrics",
            Driver::Idm,
            Traffic::Idm,
            12_000.0,
        ),
    ] {
        for &n in &sizes {
            for &t in &threads {
                let o = step_all(&ctxs, &cfg, n, t, driver, traffic, false, true);
                let rate = o.counts.agent_steps as f64 / o.wall.as_secs_f64();
                println!(
                    "| {label} | {n} | {t} | {} | {:.2} | {:.0} | {:.0} | {:.0}× (Waymax ≈ {:.0}K/s) |",
                    o.counts.agent_steps,
                    o.wall.as_secs_f64(),
                    rate,
                    rate / t as f64,
                    rate / waymax,
                    waymax / 1000.0
                );
                if t == 1 {
                    breakdowns.push((label, n, o.times));
                }
            }
        }
    }
    // The same workloads without traces (pure stepping, what `simulate bench-backends` and the
    // kernels' figures measure), one thread, the largest size: what recording costs, same run.
    let n_pure = *sizes.iter().max().expect("a size");
    println!();
    println!("Without traces (pure stepping), {n_pure} rollouts, 1 thread:");
    println!();
    println!("| mode | agent-steps/s without traces | with traces (above) | traces cost |");
    println!("|---|---:|---:|---:|");
    for (label, driver, traffic) in [
        (
            "log replay, all metrics",
            Driver::LogReplay,
            Traffic::LogReplay,
        ),
        (
            "IDM ego + IDM traffic, all metrics",
            Driver::Idm,
            Traffic::Idm,
        ),
    ] {
        let pure = step_all(&ctxs, &cfg, n_pure, 1, driver, traffic, false, false);
        let rec = step_all(&ctxs, &cfg, n_pure, 1, driver, traffic, false, true);
        let rate = |o: &Outcome| o.counts.agent_steps as f64 / o.wall.as_secs_f64();
        println!(
            "| {label} | {:.0} | {:.0} | {:.1} % of the step time |",
            rate(&pure),
            rate(&rec),
            100.0 * (rec.wall.as_secs_f64() - pure.wall.as_secs_f64()) / rec.wall.as_secs_f64()
        );
    }
    println!();
    println!("Step time per service (1 thread, traces recorded; record = copying each step into the traces):");
    println!();
    println!("| mode | rollouts | sensor | driver | controller | traffic | evaluation | record |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, n, times) in &breakdowns {
        let total = times.total().as_secs_f64();
        let cells: Vec<String> = times
            .parts()
            .iter()
            .map(|(_, d)| format!("{:.1} %", 100.0 * d.as_secs_f64() / total))
            .collect();
        println!("| {label} | {n} | {} |", cells.join(" | "));
    }
    // Telemetry: the same IDM workload with every call, step and rollout recorded.
    let n_tel = sizes[0].min(1000);
    let mut best = [f64::INFINITY; 2];
    for _ in 0..3 {
        for (i, on) in [false, true].into_iter().enumerate() {
            let o = step_all(&ctxs, &cfg, n_tel, 1, Driver::Idm, Traffic::Idm, on, true);
            best[i] = best[i].min(o.wall.as_secs_f64());
        }
    }
    println!();
    println!(
        "Telemetry ({n_tel} rollouts, IDM, 1 thread, best of 3): {:.3} s without, {:.3} s with recording = {:+.2} % of step time.",
        best[0],
        best[1],
        100.0 * (best[1] - best[0]) / best[0]
    );
    let n_log = sizes[0].min(1000);
    let l = logging_share(&ctxs, &cfg, n_log);
    println!();
    println!(
        "Logging ({n_log} rollouts, IDM, 1 thread): stepping with traces {:.2} s; rollout.asl encoding {:.3} s ({:.0} MB) = {:.2} % of step time; metrics rows {:.3} s = {:.2} %; metrics.parquet encoding {:.3} s = {:.2} % (the arrow-rs ArrowWriter on the same rows: {:.3} s = {:.2} %, {:.2}× drivekit's). Yaws unchanged from the actor's previous step (their trigonometry memoised): {:.1} %.",
        l.step,
        l.asl,
        l.asl_mb,
        100.0 * l.asl / l.step,
        l.rows,
        100.0 * l.rows / l.step,
        l.parquet,
        100.0 * l.parquet / l.step,
        l.parquet_arrow,
        100.0 * l.parquet_arrow / l.step,
        l.parquet_arrow / l.parquet,
        100.0 * l.yaw_unchanged
    );
    println!("(Both run on the writer thread, off the step loop; nuPlan spends 158 of 570 ms per step on LZMA logging.)");
    cli_vs_loop(steps);
}

/// `simulate run` against the step loop on the same work (see the module doc).
fn cli_vs_loop(steps: usize) {
    let per_scene = env_list("BENCH_CLI_ROLLOUTS", "64")[0];
    let n_scenes = 16u64;
    let root = tempfile::tempdir().expect("a temporary directory");
    let scenes = root.path().join("scenes");
    std::fs::create_dir_all(&scenes).expect("the scenes directory");
    for seed in 0..n_scenes {
        drivekit::scene::procedural::generate(&drivekit::scene::procedural::ProceduralSpec {
            seed,
            agents: 32,
            lanes: 3,
            duration_s: (steps as f64 + 3.0) / 10.0,
        })
        .save(&scenes.join(format!("procedural-{seed}-32.dkscene")))
        .expect("the scene saved");
    }
    let run = root.path().join("run");
    let start = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args(["run", "--scenes"])
        .arg(&scenes)
        .arg("--out")
        .arg(&run)
        .args(["--rollouts", &per_scene.to_string()])
        .args([
            "--driver",
            "idm",
            "--traffic",
            "idm",
            "--video",
            "none",
            "--quiet",
        ])
        .arg(format!("runtime.simulation_config.n_sim_steps={steps}"))
        .output()
        .expect("simulate runs");
    let cli_wall = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = std::fs::read_to_string(run.join("wizard-config.yaml")).expect("the run's config");
    let cfg = SimConfig::parse(&yaml, &run.join("wizard-config.yaml")).expect("its config parses");
    // The writer thread's busy time, from the run's telemetry.
    let prom = std::fs::read_to_string(run.join("telemetry/metrics_worker_0.prom"))
        .expect("the run's telemetry");
    let writer_s: f64 = prom
        .lines()
        .filter(|l| l.starts_with("rpc_duration_seconds_sum{") && l.contains("service=\"writer\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let ctxs: Vec<SceneCtx> = (0..n_scenes)
        .map(|seed| {
            let scene =
                drivekit::scene::Scene::load(&scenes.join(format!("procedural-{seed}-32.dkscene")))
                    .expect("the scene loads");
            SceneCtx::new(scene, &cfg, format!("bench-{seed}")).expect("scenes fit")
        })
        .collect();
    let members: Vec<(u32, u32)> = (0..n_scenes as u32)
        .flat_map(|s| (0..per_scene as u32).map(move |r| (s, r)))
        .collect();
    let threads = rayon::current_num_threads();
    let chunk = cfg.chunk_size(members.len(), threads);
    let configured = ConfiguredServices::new(&cfg);
    let (driver, traffic) = (
        Driver::Idm.builtin().expect("built in"),
        Traffic::Idm.service(),
    );
    let start = Instant::now();
    let agent_steps: u64 = members
        .par_chunks(chunk)
        .map(|part| {
            let mut st = BatchState::new(&ctxs, part, &cfg, true);
            let (traces, _, c) = configured
                .run_cpu(&mut st, &ctxs, driver, traffic, true, None)
                .expect("clocks line up");
            drop(std::hint::black_box(traces));
            c.agent_steps
        })
        .sum();
    let loop_wall = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let cli_steps: u64 = stdout
        .split_whitespace()
        .zip(stdout.split_whitespace().skip(1))
        .find(|(_, w)| *w == "agent-steps")
        .and_then(|(n, _)| n.parse().ok())
        .expect("simulate's summary names its agent-steps");
    assert_eq!(cli_steps, agent_steps, "the same work");
    println!();
    println!("simulate run as typed vs the step loop: {n_scenes} procedural scenes × {per_scene} rollouts × 32 actors, {steps} steps, IDM ego + IDM traffic, logs and metrics.parquet written, videos off, {threads} threads:");
    println!();
    println!("| | wall s | agent-steps/s | vs step loop |");
    println!("|---|---:|---:|---:|");
    println!(
        "| step loop (traces recorded, nothing written) | {loop_wall:.2} | {:.0} | 1.00 |",
        agent_steps as f64 / loop_wall
    );
    println!(
        "| `simulate run` (child process, start to exit) | {cli_wall:.2} | {:.0} | {:.2}× slower |",
        agent_steps as f64 / cli_wall,
        cli_wall / loop_wall
    );
    println!();
    println!(
        "The run's writer thread (encoding rollout.asl and metrics.parquet, writing and syncing them, _complete) was busy {writer_s:.2} s = {:.0} % of the run's wall time, on the same {threads} cores as the stepping.",
        100.0 * writer_s / cli_wall
    );
}
