//! The CUDA backend without a GPU: every kernel compiles with NVRTC (pip's
//! nvidia-cuda-nvrtc-cu12 in CI), and the same kernel source, compiled as C++ by the kernel
//! emulator, steps the bundled scenes exactly as the Rust CPU backend does, for every built-in
//! driver and traffic model. With a GPU, `make test-gpu` runs the same comparisons on it.

use std::path::PathBuf;

use drivekit::cuda::check::compare;
use drivekit::cuda::device::Device;
use drivekit::cuda::nvrtc::Nvrtc;
use drivekit::cuda::source::{kernel_source, KERNEL_NAMES};
use drivekit::runner::Traffic;
use drivekit::scene::Scene;
use drivekit::sim::driver::Driver;
use drivekit::sim_config::SimConfig;
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

/// nuPlan's metric test cases (motional/nuplan-devkit, copied to shared/data): rear-ended,
/// front and lateral collisions with both classes of fault, and TTC within 5 s.
fn nuplan_case_scenes(cfg: &SimConfig) -> Vec<SceneCtx> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/nuplan_metric_cases");
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

#[test]
fn emulated_kernels_match_the_cpu_backend_on_nuplans_metric_cases() {
    let dev = Device::emulated().expect("the kernel emulator needs a C++ compiler (g++)");
    let mut cfg = SimConfig {
        time_start_offset_us: 0,
        ..SimConfig::default()
    };
    cfg.evaluation.ttc_horizon_s = 5.0;
    let scenes = nuplan_case_scenes(&cfg);
    assert_eq!(scenes.len(), 5);
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32).map(|s| (s, 0)).collect();
    let d = Driver::LogReplay.builtin().unwrap();
    for traffic in [Traffic::LogReplay, Traffic::Idm] {
        let c = compare(&dev, &scenes, &members, &cfg, d, traffic).unwrap();
        eprintln!("nuPlan cases / {}: {c:?}", traffic.service().name());
        assert!(c.agrees(1e-4), "{c:#?}");
        assert!(c.collision_steps > 0);
    }
}

#[test]
fn every_kernel_compiles_with_nvrtc() {
    let nv = match Nvrtc::load() {
        Ok(nv) => nv,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {e} (CI installs nvidia-cuda-nvrtc-cu12 and runs this test)");
            return;
        }
        Err(e) => panic!("CI must compile the kernels with NVRTC: {e}"),
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

#[test]
fn emulated_kernels_match_the_cpu_backend_on_every_bundled_scene() {
    let dev = Device::emulated().expect("the kernel emulator needs a C++ compiler (g++)");
    let mut cfg = SimConfig::default();
    cfg.perturbation.seed = 7;
    let scenes = fixture_scenes(&cfg);
    let members: Vec<(u32, u32)> = (0..scenes.len() as u32)
        .flat_map(|s| (0..3).map(move |r| (s, r)))
        .collect();
    let mut collisions = 0;
    for driver in [Driver::LogReplay, Driver::ConstantVelocity, Driver::Idm] {
        for traffic in [Traffic::LogReplay, Traffic::Idm] {
            let d = driver.builtin().unwrap();
            let c = compare(&dev, &scenes, &members, &cfg, d, traffic).unwrap();
            eprintln!(
                "{} / {}: {} rollout-steps, max |Δ| {:e} at {:?}, {} collision and {} offroad steps",
                d.name(),
                traffic.service().name(),
                c.steps,
                c.max_abs_diff,
                c.worst,
                c.collision_steps,
                c.offroad_steps
            );
            assert!(c.steps > 1000);
            assert!(c.agrees(1e-4), "{c:#?}");
            collisions += c.collision_steps;
        }
    }
    assert!(collisions > 0, "the comparison must include collisions");
}
