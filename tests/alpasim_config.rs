//! AlpaSim's own configuration tree (tests/data/alpasim_configs, NVlabs/alpasim @3032e0c,
//! Apache-2.0): every file composes as AlpaSim's wizard composes it, the topologies' capacities
//! equal what their comments state, the tuning guide's clock scenarios pass and their broken
//! variants name their key, a run dir whose wizard-config.yaml is AlpaSim's works with every
//! binary, and bad input gets a clear error with nothing written.

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drivekit::config::{ConfigError, SimConfig};

fn wizard() -> PathBuf {
    util::test_data().join("alpasim_configs/wizard")
}

fn base() -> PathBuf {
    wizard().join("base_config.yaml")
}

fn compose(overrides: &[&str]) -> Result<SimConfig, ConfigError> {
    let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
    SimConfig::compose(&base(), &o)
}

fn run(bin: &str, args: &[&str]) -> Output {
    let exe = match bin {
        "simulate" => env!("CARGO_BIN_EXE_simulate"),
        "evaluate" => env!("CARGO_BIN_EXE_evaluate"),
        "render" => env!("CARGO_BIN_EXE_render"),
        "telemetry" => env!("CARGO_BIN_EXE_telemetry"),
        "aggregate" => env!("CARGO_BIN_EXE_aggregate"),
        other => panic!("unknown binary {other}"),
    };
    Command::new(exe).args(args).output().expect("binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every `.yaml` under `dir`, relative, sorted.
fn yaml_files(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = rel.join(p.file_name().unwrap());
        if p.is_dir() {
            yaml_files(&p, &name, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(name);
        }
    }
    out.sort();
}

/// The groups of base_config.yaml's defaults list take `group=option`; the others are appended
/// with `+group=option` (as AlpaSim's docs write them: `+cameras=2cam`, `+chunking=8frame`).
const IN_DEFAULTS_LIST: [&str; 6] = [
    "deploy",
    "driver",
    "driver_source",
    "topology",
    "trafficsim",
    "controller",
];

/// The overrides that compose one group file the way AlpaSim's docs use it: over a complete
/// local deployment (`deploy=local topology=1gpu driver=vavam`); the video-model deploys and the
/// chunking presets with each other and the video-model VaVam (their own comments say so).
fn overrides_for(group: &str, option: &str) -> Vec<String> {
    let mut chosen: BTreeMap<&str, String> = [
        ("deploy", "local".to_string()),
        ("topology", "1gpu".to_string()),
        ("driver", "vavam".to_string()),
    ]
    .into();
    let mut extra = Vec::new();
    let video_deploy =
        group == "deploy" && (option.contains("video_model") || option == "managed_flashdreams");
    if video_deploy {
        chosen.insert("driver", "vavam_video_model".into());
        extra.push("+chunking=8frame".to_string());
    }
    if group == "chunking" {
        chosen.insert("deploy", "external_video_model".into());
        chosen.insert("driver", "vavam_video_model".into());
    }
    if IN_DEFAULTS_LIST.contains(&group) {
        chosen.insert(
            IN_DEFAULTS_LIST.iter().find(|g| **g == group).unwrap(),
            option.into(),
        );
    } else {
        extra.push(format!("+{group}={option}"));
    }
    let mut o: Vec<String> = chosen.iter().map(|(g, v)| format!("{g}={v}")).collect();
    o.extend(extra);
    o
}

/// Every file of AlpaSim's wizard tree composes with no error — except two that AlpaSim itself
/// cannot use as shipped, each failing with the error AlpaSim would raise, named here:
/// `cameras/2cam.yaml` (33 000 µs frames never complete at a 100 000 or 500 000 µs decision,
/// which AlpaSim's runtime rejects at the first decision with `assert_zero_decision_delay`, on
/// in base_config.yaml) and `exp/sim/force_gt.yaml` (`override /controller: perfect_control`, a
/// group option only AlpaSim's internal plugin provides).
#[test]
fn every_alpasim_wizard_file_composes() {
    let mut files = Vec::new();
    yaml_files(&wizard(), Path::new(""), &mut files);
    assert_eq!(files.len(), 39, "AlpaSim @3032e0c has 39 wizard files");
    let mut composed = 0;
    for f in &files {
        if f == Path::new("base_config.yaml") {
            let c = SimConfig::compose(&base(), &[]).unwrap();
            assert_eq!(c.simulation.control_timestep_us, 100_000);
            assert_eq!(c.simulation.cameras.len(), 2);
            composed += 1;
            continue;
        }
        let group = f.parent().unwrap().to_string_lossy().replace('\\', "/");
        let option = f.file_stem().unwrap().to_string_lossy().to_string();
        let o = overrides_for(&group, &option);
        let r = SimConfig::compose(&base(), &o);
        let file = wizard().join(f);
        match (group.as_str(), option.as_str()) {
            ("cameras", "2cam") => {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("runtime.simulation_config.cameras.0.frame_interval_us = 33_000")
                        && e.contains("2cam.yaml")
                        && e.contains("stale frame"),
                    "{e}"
                );
                // With the assertion off (AlpaSim then accepts stale frames) it composes.
                let mut o = o.clone();
                o.push("runtime.simulation_config.assert_zero_decision_delay=false".into());
                SimConfig::compose(&base(), &o).unwrap();
            }
            ("exp/sim", "force_gt") => {
                let e = r.unwrap_err().to_string();
                assert!(
                    e.contains("config group controller has no option perfect_control")
                        && e.contains("default, nonlinear, short_horizon"),
                    "{e}"
                );
            }
            _ => {
                let c = r.unwrap_or_else(|e| panic!("{}: {o:?}: {e}", file.display()));
                assert!(
                    c.sources.contains(&file),
                    "{} not among the composed files {:?}",
                    file.display(),
                    c.sources
                );
            }
        }
        composed += 1;
    }
    assert_eq!(composed, files.len());
}

/// What a group file contributes is where AlpaSim puts it: `# @package _global_` at the root,
/// others under their group, `_self_` ordering, `vavam@driver`, `/cameras: 1cam` from a group file.
#[test]
fn packages_self_and_group_references_land_where_alpasim_puts_them() {
    // driver/vavam.yaml has no package line: its keys land under driver.*; its defaults list
    // pulls vavam_configs (@package _global_) whose clocks land at the root.
    let c = compose(&["deploy=local", "topology=1gpu", "driver=vavam"]).unwrap();
    assert_eq!(c.subsample_factor, 1);
    assert_eq!(c.simulation.control_timestep_us, 500_000);
    assert_eq!(c.simulation.cameras.len(), 1);
    assert_eq!(c.simulation.cameras[0].width, 1920);
    assert!(c.tree.get("driver.model").is_some() || c.tree.get("driver.inference").is_some());
    // vavam_video_model: `vavam@driver` then _self_.
    let c = compose(&[
        "deploy=external_video_model",
        "topology=1gpu",
        "driver=vavam_video_model",
        "+chunking=12frame",
    ])
    .unwrap();
    let vm = c.video_model.unwrap();
    assert_eq!(
        (vm.fps, vm.first_chunk_frames, vm.chunk_frames),
        (30, 9, 12)
    );
    assert_eq!(c.simulation.control_timestep_us, 399_996);
    // alpamayo1_5_1cam: `/cameras: 1cam` from inside the driver group.
    let c = compose(&["deploy=local", "topology=1gpu", "driver=alpamayo1_5_1cam"]).unwrap();
    assert_eq!(c.simulation.cameras.len(), 1);
    assert_eq!(c.subsample_factor, 3);
    // The 4 Hz preset changes the clocks and the subsample factor.
    let c = compose(&[
        "deploy=local",
        "topology=1gpu",
        "driver=vavam",
        "+exp/presets=vavam_4hz",
    ])
    .unwrap();
    assert_eq!(c.simulation.control_timestep_us, 250_000);
    assert_eq!(c.simulation.cameras[0].frame_interval_us, 250_000);
    assert_eq!(c.subsample_factor, 2);
    // A key override beats every file; `++` forces, `~` deletes.
    let c = compose(&[
        "deploy=local",
        "topology=1gpu",
        "runtime.simulation_config.control_timestep_us=200000",
        "runtime.simulation_config.cameras=[{logical_id: c, frame_interval_us: 200000}]",
        "runtime.simulation_config.force_gt_duration_us=1_800_000",
        "++drivekit.perturbation.seed=9",
        "~eval",
    ])
    .unwrap();
    assert_eq!(c.simulation.control_timestep_us, 200_000);
    assert_eq!(c.simulation.time_start_offset_us, 600_000);
    assert_eq!(c.drivekit.perturbation.seed, 9);
    assert!(c.tree.get("eval").is_none());
    assert_eq!(
        c.tree
            .origin("runtime.simulation_config.control_timestep_us"),
        "command line"
    );
}

/// "Total capacity per service = nr_gpus x replicas_per_container x n_concurrent_rollouts": each
/// `# REND: 1 x 1 x 4 = 4` line of a topology file, as drivekit computes it — the library's
/// model and `check-config`'s table.
#[test]
fn topology_capacities_equal_their_comments() {
    let abbrev: BTreeMap<&str, &str> = [
        ("REND", "renderer"),
        ("DRIV", "driver"),
        ("PHYS", "physics"),
        ("CONT", "controller"),
        ("TRAF", "trafficsim"),
    ]
    .into();
    for (topology, lines) in [
        ("1gpu", 4),
        ("2gpu", 5),
        ("8gpu_64rollouts", 5),
        ("8gpu_no_replicas", 5),
    ] {
        let file = wizard().join(format!("topology/{topology}.yaml"));
        let mut stated = Vec::new();
        for line in fs::read_to_string(&file).unwrap().lines() {
            let l = line.trim().trim_start_matches('#').trim();
            let Some((svc, rest)) = l.split_once(':') else {
                continue;
            };
            let Some(service) = abbrev.get(svc) else {
                continue;
            };
            let (product, total) = rest.split_once('=').unwrap();
            let factors: Vec<u64> = product
                .replace("(CPU)", "")
                .split('x')
                .map(|f| f.trim().parse().unwrap())
                .collect();
            stated.push((*service, factors, total.trim().parse::<u64>().unwrap()));
        }
        assert_eq!(stated.len(), lines, "{topology}: {stated:?}");
        // trafficsim=catk deploys the traffic model (the default `disabled` skips it).
        let c = compose(&[
            "deploy=local",
            &format!("topology={topology}"),
            "driver=vavam",
            "trafficsim=catk",
        ])
        .unwrap();
        let caps = c.capacities();
        for (service, f, total) in &stated {
            let got = caps.iter().find(|c| c.service == *service).unwrap();
            assert_eq!(
                (got.gpus, got.replicas, got.concurrent, got.capacity),
                (f[0], f[1], f[2], *total),
                "{topology} {service}"
            );
            assert_eq!(f[0] * f[1] * f[2], *total, "the comment's own product");
        }
        let min = stated.iter().map(|s| s.2).min().unwrap();
        assert_eq!(c.bottleneck().unwrap().capacity, min, "{topology}");
        let out = run(
            "simulate",
            &[
                "check-config",
                base().to_str().unwrap(),
                "deploy=local",
                &format!("topology={topology}"),
                "driver=vavam",
                "trafficsim=catk",
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let t = text(&out);
        for (service, f, total) in &stated {
            let row = format!(
                "{service:<12} {:>5}  {:>8}  {:>10}  {total:>8}",
                f[0], f[1], f[2]
            );
            assert!(t.contains(&row), "{topology}: no row {row:?} in\n{t}");
        }
        assert!(
            t.contains(&format!("at most {min} rollouts at once")),
            "{t}"
        );
    }
    // A skipped service is left out of the bound: trafficsim=disabled skips it.
    let c = compose(&["deploy=local", "topology=2gpu", "driver=vavam"]).unwrap();
    let t = c.capacities();
    assert!(
        t.iter()
            .find(|c| c.service == "trafficsim")
            .unwrap()
            .skipped
    );
}

/// The tuning guide's four clock scenarios (2, 5, 10 Hz, and a 30 Hz camera with 10 Hz
/// inference) pass; each broken variant fails naming its key.
#[test]
fn the_tuning_guides_clock_scenarios_and_their_broken_variants() {
    let sc = "runtime.simulation_config";
    let scenario = |ctl: u64, frame: u64, sub: u32| -> Vec<String> {
        vec![
            "deploy=local".into(),
            "topology=1gpu".into(),
            format!("{sc}.control_timestep_us={ctl}"),
            format!("{sc}.cameras=[{{logical_id: camera_front_wide_120fov, frame_interval_us: {frame}, shutter_duration_us: 30000, width: 512, height: 320}}]"),
            format!("{sc}.force_gt_duration_us={}", 5 * ctl),
            format!("+driver.inference.subsample_factor={sub}"),
        ]
    };
    for (ctl, frame, sub) in [
        (500_000, 500_000, 1),
        (200_000, 200_000, 1),
        (100_000, 100_000, 1),
        (99_999, 33_333, 3),
    ] {
        let c = SimConfig::compose(&base(), &scenario(ctl, frame, sub))
            .unwrap_or_else(|e| panic!("{ctl}/{frame}: {e}"));
        assert_eq!(c.simulation.time_start_offset_us, 3 * ctl);
        assert_eq!(c.frame_intervals(), vec![frame]);
    }
    // Broken: frames that miss the decisions; a force-GT period that is not whole steps; a start
    // offset that is not whole steps; ego poses off the decisions.
    let mut o = scenario(100_000, 30_000, 3);
    let e = SimConfig::compose(&base(), &o).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "{sc}.cameras.0.frame_interval_us = 30000 (from command line)"
        )),
        "{e}"
    );
    o = scenario(200_000, 200_000, 1);
    o.push(format!("{sc}.force_gt_duration_us=1_700_000"));
    let e = SimConfig::compose(&base(), &o).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{sc}.force_gt_duration_us = 1_700_000"))
            && e.contains("use 1600000 or 1800000"),
        "{e}"
    );
    o = scenario(200_000, 200_000, 1);
    o.push(format!("+{sc}.time_start_offset_us=500000"));
    let e = SimConfig::compose(&base(), &o).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{sc}.time_start_offset_us = 500000")),
        "{e}"
    );
    o = scenario(200_000, 200_000, 1);
    o.push(format!("{sc}.pose_reporting_interval_us=100000"));
    let e = SimConfig::compose(&base(), &o).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{sc}.pose_reporting_interval_us = 100000")),
        "{e}"
    );
}

/// A run configured with AlpaSim's files writes its resolved configuration in AlpaSim's
/// nesting; that run dir — and the same run with AlpaSim's raw base_config.yaml copied in as its
/// wizard-config.yaml (the defaults list and all) — works with evaluate, render, telemetry and
/// aggregate.
#[test]
fn a_run_dir_with_alpasims_config_works_with_every_binary() {
    let d = tempfile::tempdir().unwrap();
    let scenes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let runs = d.path().join("runs");
    let run_dir = runs.join("alpasim");
    let out = run(
        "simulate",
        &[
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
            "--quiet",
            "--video",
            "all",
            "--config",
            base().to_str().unwrap(),
            "deploy=local",
            "topology=2gpu",
            "scenes.scene_ids=[USA_US101-3_3_T-1, DEU_A9-3_1_T-1]",
            "runtime.simulation_config.n_rollouts=2",
            "runtime.simulation_config.n_sim_steps=30",
            "wizard.run_name=alpasim-nesting",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = run_dir.join("wizard-config.yaml");
    let resolved: serde_norway::Value =
        serde_norway::from_str(&fs::read_to_string(&written).unwrap()).unwrap();
    let get = |p: &[&str]| p.iter().try_fold(&resolved, |v, k| v.get(*k)).cloned();
    // AlpaSim's nesting, the topology's values, the overrides, drivekit's section, and the keys
    // drivekit does not read kept.
    assert_eq!(
        get(&["runtime", "simulation_config", "n_rollouts"]),
        Some(2.into())
    );
    assert_eq!(
        get(&["runtime", "endpoints", "renderer", "n_concurrent_rollouts"]),
        Some(12.into())
    );
    assert_eq!(
        get(&["services", "driver", "replicas_per_container"]),
        Some(3.into())
    );
    assert_eq!(get(&["drivekit", "video", "mode"]), Some("all".into()));
    assert!(get(&["eval", "enabled"]).is_some());
    assert!(
        get(&["defaults"]).is_none(),
        "a resolved file has no defaults list"
    );
    let meta = fs::read_to_string(run_dir.join("run_metadata.yaml")).unwrap();
    assert!(meta.contains("alpasim-nesting"), "{meta}");
    // The written file loads back to the same model.
    let again = SimConfig::load(&written).unwrap();
    let first = compose(&[
        "deploy=local",
        "topology=2gpu",
        "runtime.simulation_config.n_rollouts=2",
        "runtime.simulation_config.n_sim_steps=30",
    ])
    .unwrap();
    assert_eq!(again.simulation, first.simulation);
    assert_eq!(again.capacities(), first.capacities());

    // The same run with AlpaSim's raw base_config.yaml as its wizard-config.yaml.
    let raw = runs.join("raw");
    copy_dir(&run_dir, &raw);
    fs::copy(base(), raw.join("wizard-config.yaml")).unwrap();
    for dir in [&run_dir, &raw] {
        let r = dir.to_str().unwrap();
        let s = scenes.to_str().unwrap();
        let out = run("evaluate", &[r, "--scenes", s, "--force", "--quiet"]);
        assert!(out.status.success(), "evaluate {r}: {}", text(&out));
        assert!(
            text(&out).contains("2 batches evaluated (4 rollouts)"),
            "{}",
            text(&out)
        );
        let out = run("render", &[r, "--scenes", s, "--quiet"]);
        assert!(out.status.success(), "render {r}: {}", text(&out));
        let out = run("telemetry", &[r]);
        assert!(out.status.success(), "telemetry {r}: {}", text(&out));
        let advice = fs::read_to_string(dir.join("telemetry/bottlenecks.txt")).unwrap();
        assert!(!advice.contains("deploy."), "{advice}");
        let out = run("aggregate", &[r]);
        let t = text(&out);
        assert!(
            dir.join("aggregate/metrics_results.parquet").is_file(),
            "{t}"
        );
        if dir == &raw {
            // base_config.yaml lists AlpaSim's own demo scene, which this run does not have.
            assert!(
                t.contains("clipgt-01d503d4-449b-46fc-8d78-9085e70d3554")
                    && t.contains("no batch of it was found"),
                "{t}"
            );
            assert_eq!(out.status.code(), Some(1), "a missing scene: {t}");
            assert!(text(&run("evaluate", &[r, "--quiet"]))
                .contains("defaults entry trafficsim: disabled left out"));
        } else {
            assert!(out.status.success(), "aggregate {r}: {t}");
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let q = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &q);
        } else {
            fs::copy(&p, &q).unwrap();
        }
    }
}

/// Bad input: a clear error naming the file and line, the groups or options that exist, the
/// cycle, the misaligned camera; a warning with the nearest key for an override of a key that
/// does not exist — and nothing written.
#[test]
fn bad_configurations_get_clear_errors_and_nothing_is_written() {
    let d = tempfile::tempdir().unwrap();
    let scenes = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenes");
    let try_run = |cfg: &Path, overrides: &[&str]| -> (Output, PathBuf) {
        let out_dir = d.path().join(format!(
            "run-{}",
            cfg.file_stem().unwrap().to_string_lossy()
        ));
        let mut args = vec![
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--quiet",
            "--config",
            cfg.to_str().unwrap(),
        ];
        args.extend(overrides);
        (run("simulate", &args), out_dir)
    };
    let write = |name: &str, body: &str| -> PathBuf {
        let p = d.path().join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&p, body).unwrap();
        p
    };
    // YAML syntax error: file and line.
    let bad = write(
        "syntax.yaml",
        "runtime:\n  simulation_config:\n    n_rollouts: [1, 2\n",
    );
    let (out, dir) = try_run(&bad, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("syntax.yaml:") && text(&out).contains("invalid YAML"),
        "{}",
        text(&out)
    );
    assert!(!dir.exists());
    // A group that does not exist: the groups that do.
    let (out, dir) = try_run(&base(), &["topolgy=1gpu"]);
    assert_eq!(out.status.code(), Some(2));
    let t = text(&out);
    assert!(
        t.contains("config group topolgy does not exist")
            && t.contains("did you mean topology?")
            && t.contains("driver_source"),
        "{t}"
    );
    assert!(!dir.exists());
    // An option that does not exist: the options that do.
    let (out, _) = try_run(&base(), &["deploy=local", "topology=3gpu"]);
    let t = text(&out);
    assert!(
        t.contains("config group topology has no option 3gpu") && t.contains("8gpu_64rollouts"),
        "{t}"
    );
    // A cycle in defaults lists.
    write("cyc/a/x.yaml", "defaults:\n  - /b: y\n");
    write("cyc/b/y.yaml", "defaults:\n  - /a: x\n");
    let top = write("cyc/top.yaml", "defaults:\n  - a: x\n");
    let (out, dir) = try_run(&top, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("cycle in defaults lists") && t.contains("a/x") && t.contains("b/y"),
        "{t}"
    );
    assert!(!dir.exists());
    // A camera whose frames do not land on decisions: key, value, file, fix.
    let cam = write(
        "cam.yaml",
        "runtime:\n  simulation_config:\n    cameras:\n      - {logical_id: front, frame_interval_us: 40000, shutter_duration_us: 1000, width: 64, height: 64}\n",
    );
    let (out, dir) = try_run(&cam, &[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.contains("runtime.simulation_config.cameras.0.frame_interval_us = 40000 (from ")
            && t.contains("cam.yaml")
            && t.contains("camera front's frames"),
        "{t}"
    );
    assert!(!dir.exists());
    // A wrong type: key, value, file.
    let ty = write(
        "type.yaml",
        "runtime:\n  simulation_config:\n    n_rollouts: many\n",
    );
    let t = text(&try_run(&ty, &[]).0);
    assert!(
        t.contains("runtime.simulation_config.n_rollouts = many") && t.contains("type.yaml"),
        "{t}"
    );
    // A drivekit choice with a typo: the nearest name.
    let t = text(&try_run(&base(), &["drivekit.driver=idn"]).0);
    assert!(
        t.contains("drivekit.driver = idn (from command line)") && t.contains("did you mean idm?"),
        "{t}"
    );
    // An override of a key that does not exist: a warning naming the nearest key; the run goes on.
    let out = run(
        "simulate",
        &[
            "check-config",
            base().to_str().unwrap(),
            "runtime.simulation_config.n_rolouts=3",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("override runtime.simulation_config.n_rolouts=3: no such key")
            && t.contains("did you mean runtime.simulation_config.n_rollouts?"),
        "{t}"
    );
    // Overrides that do not parse.
    let t = text(&run(
        "simulate",
        &["check-config", base().to_str().unwrap(), "justakey"],
    ));
    assert!(t.contains("override justakey"), "{t}");
}

/// `check-config` as a subcommand and as the older flag; `--print` writes the resolved YAML;
/// `--verbose` lists the keys drivekit does not read.
#[test]
fn check_config_prints_clocks_capacities_and_the_resolved_file() {
    let b = base();
    let b = b.to_str().unwrap();
    let out = run(
        "simulate",
        &[
            "check-config",
            b,
            "deploy=local",
            "topology=2gpu",
            "driver=vavam",
        ],
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for want in [
        "composed from:",
        "topology/2gpu.yaml",
        "driver decision                         500000",
        "camera camera_front_wide_120fov",
        "at most 12 rollouts at once",
        "the clocks line up",
    ] {
        assert!(t.contains(want), "no {want:?} in\n{t}");
    }
    let out = run("simulate", &["--check-config", b]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("camera camera_front_tele_30fov"));
    let out = run(
        "simulate",
        &[
            "check-config",
            b,
            "--print",
            "deploy=local",
            "topology=1gpu",
        ],
    );
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    let c = SimConfig::parse(&printed, Path::new("printed.yaml")).unwrap();
    assert_eq!(c.bottleneck().unwrap().capacity, 4);
    let out = run("simulate", &["check-config", b, "-v"]);
    let t = text(&out);
    assert!(
        t.contains("keys drivekit does not read") && t.contains("eval.enabled  (from "),
        "{t}"
    );
}

/// An older drivekit configuration still loads (with a warning saying how to convert it), and
/// `simulate config migrate` converts it to a file that loads to the same model.
#[test]
fn older_drivekit_configs_load_with_a_warning_and_migrate() {
    let d = tempfile::tempdir().unwrap();
    let old = d.path().join("old.yaml");
    fs::write(
        &old,
        "control_timestep_us: 200000\nframe_interval_us: 200000\negopose_interval_us: 200000\ntime_start_offset_us: 600000\nn_rollouts: 3\nn_sim_steps: 40\ndriver:\n  camera_px: 0\ndeploy:\n  driver: {n_concurrent_rollouts: 8}\nperturbation: {seed: 5}\nscenes:\n  scene_ids: [DEU_A9-3_1_T-1]\n",
    )
    .unwrap();
    let loaded = SimConfig::compose(&old, &[]).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .any(|w| w.contains("simulate config migrate")),
        "{:?}",
        loaded.warnings
    );
    assert_eq!(loaded.simulation.control_timestep_us, 200_000);
    assert_eq!(loaded.drivekit.perturbation.seed, 5);
    let new = d.path().join("new.yaml");
    let out = run(
        "simulate",
        &[
            "config",
            "migrate",
            old.to_str().unwrap(),
            "-o",
            new.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let migrated = SimConfig::compose(&new, &[]).unwrap();
    assert!(migrated
        .warnings
        .iter()
        .all(|w| !w.contains("older drivekit")));
    assert_eq!(migrated.simulation, loaded.simulation);
    assert_eq!(migrated.drivekit, loaded.drivekit);
    assert_eq!(migrated.capacities(), loaded.capacities());
    // Migrating a file already in AlpaSim's nesting changes nothing.
    let out = run("simulate", &["config", "migrate", new.to_str().unwrap()]);
    assert!(text(&out).contains("nothing to convert"), "{}", text(&out));
}

/// The `drivekit` section's choices are exactly the command line's values.
#[test]
fn drivekit_choices_match_the_flags() {
    use clap::ValueEnum;
    fn names<T: ValueEnum>() -> Vec<String> {
        T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value().map(|p| p.get_name().to_string()))
            .collect()
    }
    let want: BTreeMap<&str, Vec<String>> = [
        ("drivekit.driver", names::<drivekit::sim::driver::Driver>()),
        (
            "drivekit.traffic",
            names::<drivekit::sim::traffic::Traffic>(),
        ),
        ("drivekit.backend", names::<drivekit::cuda::Backend>()),
        ("drivekit.video.mode", names::<drivekit::video::VideoMode>()),
        (
            "drivekit.log_compression",
            names::<drivekit::rollout::sink::LogCompression>(),
        ),
    ]
    .into();
    for (key, choices) in drivekit::config::rules::CHOICES {
        let mut a: Vec<String> = choices.iter().map(|s| s.to_string()).collect();
        let mut b = want[key].clone();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{key}");
    }
}
