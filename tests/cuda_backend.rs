//! The CUDA backend without a GPU: every kernel compiles with NVRTC (pip's
//! nvidia-cuda-nvrtc-cu12 in CI), and the same kernel source, compiled as C++ by the kernel
//! emulator, steps the bundled scenes exactly as the Rust CPU backend does, for every built-in
//! driver and traffic model. With a GPU, `make test-gpu` runs the same comparisons on it.

use std::path::{Path, PathBuf};

mod util;

use drivekit::config::SimConfig;
use drivekit::cuda::check::compare;
use drivekit::cuda::device::Device;
use drivekit::cuda::nvrtc::Nvrtc;
use drivekit::cuda::source::{kernel_source, KERNEL_NAMES};
use drivekit::scene::Scene;
use drivekit::sim::driver::Driver;
use drivekit::sim::traffic::Traffic;
use drivekit::state::SceneCtx;

fn fixture_scenes(cfg: &SimConfig) -> Vec<SceneCtx> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "dkscene"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let s = Scene::load(p).unwrap();
            SceneCtx::new(s, cfg, "cmp".into()).unwrap()
        })
        .collect()
}

/// nuPlan's metric test cases (motional/nuplan-devkit, bundled in tests/data): rear-ended,
/// front and lateral collisions with both classes of fault, and TTC within 5 s.
fn nuplan_case_scenes(cfg: &SimConfig) -> Vec<SceneCtx> {
    let root = util::test_data().join("nuplan_metric_cases");
    let mut out = Vec::new();
    for dir in [
        "time_to_collision_within_bound",
        "no_ego_at_fault_collision",
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        paths.sort();
        for p in paths {
            let s = drivekit::scene::nuplan_case::import_case(&p).unwrap();
            out.push(SceneCtx::new(s, cfg, "cmp".into()).unwrap());
        }
    }
    out
}

/// The kernel emulator (threads in order, or reversed), or `None` after recording why `test`
/// cannot run (no C++ compiler; under CI that fails).
fn emulator(test: &str, reversed: bool) -> Option<Device> {
    if !util::have_tool("c++", "apt-get install g++", test) {
        return None;
    }
    let dev = if reversed {
        Device::emulated_reversed()
    } else {
        Device::emulated()
    };
    Some(dev.unwrap_or_else(|e| panic!("the kernel emulator: {e}")))
}

/// True when the simulate binary can run the emulated backend (a C++ compiler is here).
fn can_emulate(test: &str) -> bool {
    util::have_tool("c++", "apt-get install g++", test)
}

#[test]
fn emulated_kernels_match_the_cpu_backend_on_nuplans_metric_cases() {
    let Some(dev) = emulator("cuda_backend: emulator on nuPlan's cases", false) else {
        return;
    };
    let mut cfg = SimConfig::default();
    cfg.simulation.time_start_offset_us = 0;
    cfg.drivekit.evaluation.ttc_horizon_s = 5.0;
    let scenes = nuplan_case_scenes(&cfg);
    assert_eq!(scenes.len(), 5);
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32).map(|s| (s, 0)).collect();
    let d = Driver::LogReplay.builtin().unwrap();
    for traffic in [Traffic::LogReplay, Traffic::Idm] {
        let c = compare(&dev, &scenes, &members, &cfg, d, traffic).unwrap();
        eprintln!("nuPlan cases / {}: {c:?}", traffic.service().name());
        // Bit for bit: the emulator runs the kernels' exact operations on the same f64s.
        assert!(c.agrees(0.0), "{c:#?}");
        assert!(c.collision_steps > 0);
    }
}

/// `--backend auto`'s start-up self-check passes on the emulated kernels (on a GPU it compares
/// the GPU the same way before auto takes it).
#[test]
fn the_start_up_self_check_passes_on_the_emulated_kernels() {
    let Some(dev) = emulator("cuda_backend: the start-up self-check", false) else {
        return;
    };
    let passed = drivekit::cuda::check::self_check(&dev).unwrap();
    assert!(
        passed.contains("self-check passed: 1 rollout × 51 steps"),
        "{passed}"
    );
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    let nv = match Nvrtc::load() {
        Ok(nv) => nv,
        Err(e) => {
            util::skip(
                "cuda_backend: every kernel compiles with NVRTC",
                &format!("{e} (pip install nvidia-cuda-nvrtc-cu12; scripts/test-deps.sh does)"),
            );
            return;
        }
    };
    let src = kernel_source();
    for arch in ["compute_75", "compute_90"] {
        let ptx = nv
            .compile(&src, arch)
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        for k in KERNEL_NAMES {
            assert!(
                ptx.contains(&format!(".entry {k}(")),
                "{arch}: {k} missing from the PTX"
            );
        }
    }
    // A type error is reported with NVRTC's log, not a panic.
    let err = nv
        .compile(
            &format!("{src}\nDK_KERNEL void broken() {{ undefined_fn(); }}\n"),
            "compute_75",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("undefined_fn"), "{err}");
}

/// Every pose, plan and metric of every bundled scene × 3 seeded rollouts × built-in driver ×
/// traffic model, equal to the bit (compared at 0) — with the emulated threads in order and
/// again in reverse order (a kernel reading what another thread of its launch writes would
/// differ).
#[test]
fn emulated_kernels_match_the_cpu_backend_on_every_bundled_scene() {
    for reversed in [false, true] {
        let test = "cuda_backend: emulator on the bundled scenes";
        let Some(dev) = emulator(test, reversed) else {
            return;
        };
        bundled_scenes_agree(&dev);
    }
}

fn bundled_scenes_agree(dev: &Device) {
    let mut cfg = SimConfig::default();
    cfg.drivekit.perturbation.seed = 7;
    let scenes = fixture_scenes(&cfg);
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32)
        .flat_map(|s| (0..3).map(move |r| (s, r)))
        .collect();
    let mut collisions = 0;
    for driver in [Driver::LogReplay, Driver::ConstantVelocity, Driver::Idm] {
        for traffic in [Traffic::LogReplay, Traffic::Idm] {
            let d = driver.builtin().unwrap();
            let c = compare(dev, &scenes, &members, &cfg, d, traffic).unwrap();
            eprintln!(
                "{}: {} / {}: {} rollout-steps, max |Δ| {:e} at {:?}, {} collision and {} offroad steps",
                dev.description,
                d.name(),
                traffic.service().name(),
                c.steps,
                c.max_abs_diff,
                c.worst,
                c.collision_steps,
                c.offroad_steps
            );
            assert!(c.steps > 1000);
            assert!(c.agrees(0.0), "{}: {c:#?}", dev.description);
            collisions += c.collision_steps;
        }
    }
    assert!(collisions > 0, "the comparison must include collisions");
}

fn run_dir_batches(run: &Path) -> Vec<PathBuf> {
    let mut v = util::files_named(&run.join("rollouts"), "metrics.parquet");
    v.sort();
    v
}

#[test]
fn simulate_with_the_emulated_kernels_writes_the_cpu_backends_metrics_parquet() {
    if !can_emulate("cuda_backend: simulate --backend cuda-emulated") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (cpu, emu) = (d.path().join("cpu"), d.path().join("emu"));
    let args = |out: &Path, backend: &str| {
        util::bin(
            "simulate",
            &[
                "run",
                "--out",
                out.to_str().unwrap(),
                "--driver",
                "idm",
                "--traffic",
                "idm",
                "--rollouts",
                "2",
                "--video",
                "none",
                "--quiet",
                "--backend",
                backend,
            ],
        )
    };
    let o = args(&cpu, "cpu");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::read_to_string(cpu.join("run_metadata.yaml")).unwrap();
    assert!(meta.contains("backend: cpu\n"), "{meta}");
    // Same run identity, so the files must be the same bytes.
    std::fs::create_dir_all(&emu).unwrap();
    std::fs::write(emu.join("run_metadata.yaml"), &meta).unwrap();
    let o = args(&emu, "cuda-emulated");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(emu.join("txt-logs/shard-0-of-1.log")).unwrap();
    assert!(
        log.contains("backend cuda-emulated: kernel emulator"),
        "{log}"
    );
    let (a, b) = (run_dir_batches(&cpu), run_dir_batches(&emu));
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            std::fs::read(x).unwrap(),
            std::fs::read(y).unwrap(),
            "{} differs",
            y.display()
        );
    }
}

fn gpu_present() -> bool {
    Device::cuda().is_ok()
}

#[test]
fn without_a_gpu_auto_falls_back_and_cuda_fails_clearly() {
    if gpu_present() {
        eprintln!("this machine has a GPU: `make test-gpu` checks it; the no-GPU fallback is not tested here");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let run = |backend: &str, out: &str| {
        util::bin(
            "simulate",
            &[
                "run",
                "--out",
                d.path().join(out).to_str().unwrap(),
                "--rollouts",
                "1",
                "--video",
                "none",
                "--backend",
                backend,
            ],
        )
    };
    let o = run("cuda", "cuda");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("CUDA unavailable"), "{err}");
    assert!(
        !d.path().join("cuda/rollouts").exists(),
        "nothing is written when the backend cannot run"
    );
    let o = run("auto", "auto");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let meta = std::fs::read_to_string(d.path().join("auto/run_metadata.yaml")).unwrap();
    assert!(meta.contains("backend: cpu\n"), "{meta}");
    let log = std::fs::read_to_string(d.path().join("auto/txt-logs/shard-0-of-1.log")).unwrap();
    assert!(log.contains("CUDA not used: CUDA unavailable"), "{log}");
    // gpu-check skips with a message, or fails when a GPU is required.
    let o = util::bin("simulate", &["gpu-check"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("SKIPPED: no usable GPU"));
    let o = util::bin("simulate", &["gpu-check", "--require-gpu"]);
    assert!(!o.status.success());
}

#[test]
fn gpu_check_and_bench_run_on_the_emulator() {
    if !can_emulate("cuda_backend: gpu-check and bench-backends on the emulator") {
        return;
    }
    let o = util::bin(
        "simulate",
        &["gpu-check", "--backend", "cuda-emulated", "--rollouts", "1"],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(out.matches("\nok  ").count(), 6, "{out}");
    let o = util::bin(
        "simulate",
        &[
            "bench-backends",
            "--backend",
            "cuda-emulated",
            "--rollouts",
            "16",
            "--steps",
            "5",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        out.lines().filter(|l| l.contains(" M ")).count(),
        2,
        "{out}"
    );
}

#[test]
fn the_raster_kernel_fills_the_cpu_rasterisers_pixels_ties_included() {
    use drivekit::rng::SplitMix64;
    use drivekit::video::raster::{Canvas, PolygonList, Raster};
    let Some(dev) = emulator("cuda_backend: the raster kernel", false) else {
        return;
    };
    let (w, h) = (48usize, 40usize);
    let mut rng = SplitMix64::new(11);
    let mut cpu_frames = Vec::new();
    let mut list = PolygonList::new(w, h);
    let mut frame_poly = vec![0i32];
    for f in 0..12 {
        let mut r = Raster::new(w, h, [1, 2, 3]);
        for p in 0..25 {
            let n = 3 + (p % 5);
            // Half the frames on the half-pixel grid (crossings exactly at pixel centres and
            // rows exactly through vertices), half anywhere, some reaching outside the image.
            let pts: Vec<[f64; 2]> = (0..n)
                .map(|_| {
                    let (x, y) = (rng.uniform() * 70.0 - 10.0, rng.uniform() * 60.0 - 10.0);
                    if f % 2 == 0 {
                        [(x * 2.0).round() / 2.0, (y * 2.0).round() / 2.0]
                    } else {
                        [x, y]
                    }
                })
                .collect();
            let c = [(p * 9) as u8, (f * 20) as u8, 200];
            r.fill_polygon(&pts, c);
            list.fill_polygon(&pts, c);
            if p % 7 == 0 {
                let (a, b) = (pts[0], pts[1]);
                r.line(a, b, 1.5, [255, 255, 255]);
                list.line(a, b, 1.5, [255, 255, 255]);
            }
        }
        frame_poly.push(list.len() as i32);
        cpu_frames.extend_from_slice(&r.pixels);
    }
    let gpu = drivekit::cuda::raster::rasterise(&dev, &list, &frame_poly, [1, 2, 3]).unwrap();
    let differing = cpu_frames
        .chunks(3)
        .zip(gpu.chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(differing, 0, "pixels differ");
}

#[test]
fn videos_drawn_by_the_raster_kernel_are_the_cpu_videos_byte_for_byte() {
    if !can_emulate("cuda_backend: videos drawn by the raster kernel") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (cpu, emu) = (d.path().join("cpu"), d.path().join("emu"));
    let run = |out: &Path, backend: &str| {
        let o = util::bin(
            "simulate",
            &[
                "run",
                "--out",
                out.to_str().unwrap(),
                "--rollouts",
                "1",
                "--video",
                "all",
                "--video-size",
                "128",
                "--quiet",
                "--backend",
                backend,
            ],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&cpu, "cpu");
    std::fs::create_dir_all(&emu).unwrap();
    std::fs::copy(cpu.join("run_metadata.yaml"), emu.join("run_metadata.yaml")).unwrap();
    run(&emu, "cuda-emulated");
    let mut a = util::files_named_with(&cpu.join("rollouts"), ".mp4");
    let mut b = util::files_named_with(&emu.join("rollouts"), ".mp4");
    a.sort();
    b.sort();
    assert_eq!(a.len(), 6);
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert!(
            std::fs::read(x).unwrap() == std::fs::read(y).unwrap(),
            "{} differs",
            y.display()
        );
    }
}

/// The rules — signals, stop signs, speed limits, lane-graph routes — step and score on the
/// emulated kernels exactly as on the CPU: the procedural traffic-rules scene (the IDM driver
/// stops at the red light and the stop sign, constant velocity runs both) and the real WOMD and
/// GPUDrive scenes (one with signals), every built-in driver × traffic model, compared at 0, with
/// the emulated threads in order and reversed.
#[test]
fn emulated_kernels_match_the_cpu_backend_with_traffic_rules() {
    let mut cfg = SimConfig::default();
    cfg.simulation.n_sim_steps = 370;
    cfg.drivekit.perturbation.seed = 3;
    let mut scenes = vec![SceneCtx::new(
        drivekit::scene::procedural::traffic_rules_scene(),
        &cfg,
        "cmp".into(),
    )
    .unwrap()];
    let opts = drivekit::scene::import::ImportOptions::default();
    for (kind, rel) in [
        (drivekit::scene::import::ImportKind::Womd, "womd"),
        (drivekit::scene::import::ImportKind::Gpudrive, "gpudrive"),
    ] {
        let Some(dir) = util::dataset(rel, "cuda_backend: emulator with traffic rules") else {
            continue;
        };
        let (found, _) = drivekit::scene::import::import(kind, &dir, &opts).unwrap();
        for s in found {
            scenes.push(SceneCtx::new(s, &cfg, "cmp".into()).unwrap());
        }
    }
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32)
        .flat_map(|s| (0..2).map(move |r| (s, r)))
        .collect();
    for reversed in [false, true] {
        let Some(dev) = emulator("cuda_backend: emulator with traffic rules", reversed) else {
            return;
        };
        for driver in [Driver::LogReplay, Driver::ConstantVelocity, Driver::Idm] {
            for traffic in [Traffic::LogReplay, Traffic::Idm] {
                let d = driver.builtin().unwrap();
                let c = compare(&dev, &scenes, &members, &cfg, d, traffic).unwrap();
                eprintln!(
                    "traffic rules: {} / {}: {} rollout-steps, max |Δ| {:e}",
                    d.name(),
                    traffic.service().name(),
                    c.steps,
                    c.max_abs_diff
                );
                assert!(c.agrees(0.0), "{}: {c:#?}", dev.description);
            }
        }
    }
}
