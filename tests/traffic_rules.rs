//! Signals, stop signs and speed limits in the simulation and the metrics, on the procedural
//! traffic-rules scene (`simulate generate --traffic-rules`): a lane graph with a signal red from
//! 6 to 12 s at x = 100 m, a stop sign at x = 179 m, limits of 12 and 8 m/s. The recording obeys
//! none of them; the IDM driver obeys all of them; the constant-velocity driver none.

mod util;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use drivekit::config::SimConfig;
use drivekit::scene::procedural::{traffic_rules_scene, RULES_RED_US};
use drivekit::state::{PathRule, SceneCtx};

fn run(
    scenes: &Path,
    out: &Path,
    driver: &str,
    traffic: &str,
) -> BTreeMap<String, Vec<(i64, f64)>> {
    let o = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "run",
            "--scenes",
            scenes.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--quiet",
            "--video",
            "none",
            "--driver",
            driver,
            "--traffic",
            traffic,
            "runtime.simulation_config.n_sim_steps=370",
            "runtime.simulation_config.n_rollouts=2",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // name → (step index, value) of rollout 0.
    let mut out_map: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for ((_, rollout, name), v) in util::metric_values(out) {
        if rollout.ends_with("-0") {
            out_map
                .entry(name)
                .or_default()
                .extend(v.into_iter().enumerate().map(|(i, x)| (i as i64, x)));
        }
    }
    out_map
}

fn max(m: &BTreeMap<String, Vec<(i64, f64)>>, name: &str) -> f64 {
    m[name]
        .iter()
        .map(|x| x.1)
        .fold(f64::NEG_INFINITY, f64::max)
}

#[test]
fn routes_follow_the_lane_graph_and_carry_the_rules() {
    let cfg = SimConfig::default();
    let ctx = SceneCtx::new(traffic_rules_scene(), &cfg, "b".into()).unwrap();
    let route = ctx.route.as_ref().unwrap();
    assert!(route.on_lanes);
    let stops: Vec<f64> = route
        .rules
        .iter()
        .filter_map(|r| match r {
            PathRule::Stop { s, .. } => Some(*s),
            _ => None,
        })
        .collect();
    // The ego starts (3 steps in, at 9 m/s) at x = 22.7 m: the lines 77.3 and 156.3 m on.
    assert_eq!(stops.len(), 2, "{:?}", route.rules);
    assert!(
        (stops[0] - 77.3).abs() < 1e-6 && (stops[1] - 156.3).abs() < 1e-6,
        "{stops:?}"
    );
    let limits: Vec<(f64, f64)> = route
        .rules
        .iter()
        .filter_map(|r| match r {
            PathRule::Limit { s, mps } => Some((*s, *mps)),
            _ => None,
        })
        .collect();
    assert_eq!(
        limits.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![12.0, 8.0, 12.0]
    );
    assert_eq!(
        ctx.rules.lines.len(),
        4,
        "two signals, one sign on two lanes"
    );
    assert!(ctx.rules.has_signals() && ctx.rules.has_stop_signs());
    // The lead vehicle drives the lane graph too.
    assert!(ctx.agent_paths[0].as_ref().unwrap().on_lanes);
}

#[test]
fn idm_obeys_signals_stop_signs_and_limits_and_the_others_do_not() {
    let d = tempfile::tempdir().unwrap();
    let scenes = d.path().join("scenes");
    let o = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "generate",
            "--traffic-rules",
            "-o",
            scenes.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("signals: 2 lanes with a signal"));

    let idm = run(&scenes, &d.path().join("idm"), "idm", "idm");
    assert_eq!(max(&idm, "ran_red_light"), 0.0);
    assert_eq!(max(&idm, "ran_stop_sign"), 0.0);
    assert_eq!(max(&idm, "collision_any"), 0.0);
    assert!(
        max(&idm, "speed_limit_violation") < 0.2,
        "{}",
        max(&idm, "speed_limit_violation")
    );
    // While the light is red its front stays behind the line (x = 100 m; the ego starts at
    // 22.7 m with its front 2.3 m ahead): progress below 75 m.
    let t0 = 300_000;
    for (i, p) in &idm["progress"] {
        let t = t0 + i * 100_000;
        if (RULES_RED_US.0 + 1_000_000..RULES_RED_US.1).contains(&t) {
            assert!(*p < 75.0, "at {t} µs progress {p}");
        }
    }
    // And it gets past the stop sign (x = 179 m) after stopping there.
    assert!(max(&idm, "progress") > 165.0, "{}", max(&idm, "progress"));

    let cv = run(
        &scenes,
        &d.path().join("cv"),
        "constant-velocity",
        "log-replay",
    );
    assert_eq!(max(&cv, "ran_red_light"), 1.0);
    assert_eq!(max(&cv, "ran_stop_sign"), 1.0);
    // Each infraction is counted once.
    assert_eq!(cv["ran_red_light"].iter().filter(|x| x.1 == 1.0).count(), 1);
    assert_eq!(cv["ran_stop_sign"].iter().filter(|x| x.1 == 1.0).count(), 1);

    let replay = run(
        &scenes,
        &d.path().join("replay"),
        "log-replay",
        "log-replay",
    );
    assert_eq!(max(&replay, "ran_red_light"), 1.0);
    assert_eq!(max(&replay, "ran_stop_sign"), 1.0);
    // The recording drives 9 m/s where the limit is 8.
    assert!((max(&replay, "speed_limit_violation") - 1.0).abs() < 1e-9);
    // Where a scene has no signal, stop sign or limit these metrics are absent, not 0.
    let plain = d.path().join("plain");
    let o = Command::new(env!("CARGO_BIN_EXE_simulate"))
        .args([
            "generate",
            "--count",
            "1",
            "--agents",
            "4",
            "--duration",
            "3",
            "-o",
            plain.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success());
    let p = run(&plain, &d.path().join("p"), "idm", "idm");
    for name in ["ran_red_light", "ran_stop_sign", "speed_limit_violation"] {
        assert!(
            !p.contains_key(name),
            "{name} present in a scene without rules"
        );
    }
}
