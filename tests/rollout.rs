//! The rollout trace is the spine of the simulate side: a trace recorded by the stepper, written
//! as rollout.asl (plain and xz) and replayed from that log, comes back the same — times, ego
//! state, every agent's pose, the driver's plans — and the evaluation service scores the replayed
//! trace to the very metric values the stepper recorded (compared at 0).

use std::path::Path;

use drivekit::config::SimConfig;
use drivekit::rollout::encode::{encode_rollout_log, rollout_metadata, scene_metadata};
use drivekit::rollout::replay::replay_log;
use drivekit::rollout::sink::{LogCompression, LogSink};
use drivekit::rollout::trace::RolloutTrace;
use drivekit::scene::procedural::{generate, ProceduralSpec};
use drivekit::sim::driver::Driver;
use drivekit::sim::evaluation::score_trace;
use drivekit::sim::stepper::ConfiguredServices;
use drivekit::sim::traffic::Traffic;
use drivekit::state::{BatchState, SceneCtx};

/// Bitwise equality of two f64 slices (NaN equals NaN).
fn same(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

fn assert_same_states(recorded: &RolloutTrace, replayed: &RolloutTrace) {
    assert_eq!(recorded.times_us, replayed.times_us);
    assert_eq!(recorded.ego.len(), replayed.ego.len());
    for (a, b) in recorded.ego.iter().zip(&replayed.ego) {
        assert!(same(a, b), "ego {a:?} != {b:?}");
    }
    assert_eq!(recorded.agents.len(), replayed.agents.len());
    for (a, b) in recorded.agents.iter().zip(&replayed.agents) {
        assert!(same(a, b), "agent {a:?} != {b:?}");
    }
    assert_eq!(recorded.plans.len(), replayed.plans.len());
    for (a, b) in recorded.plans.iter().zip(&replayed.plans) {
        assert_eq!(a.0, b.0);
        assert!(same(&a.1.concat(), &b.1.concat()), "plan at step {}", a.0);
    }
}

#[test]
fn a_trace_written_as_a_log_and_replayed_is_the_same_trace() {
    let d = tempfile::tempdir().unwrap();
    let scenes_dir = d.path().join("scenes");
    std::fs::create_dir_all(&scenes_dir).unwrap();
    let scene = generate(&ProceduralSpec {
        seed: 3,
        agents: 12,
        lanes: 2,
        duration_s: 6.0,
    });
    let scene_id = scene.scene_id.clone();
    scene
        .save(&scenes_dir.join(format!("{scene_id}.dkscene")))
        .unwrap();
    let mut cfg = SimConfig::default();
    cfg.simulation.n_rollouts = 3;
    cfg.drivekit.perturbation.seed = 11;
    let batch_uuid = "00000000-0000-4000-8000-000000000042".to_string();
    let ctxs = vec![SceneCtx::new(scene, &cfg, batch_uuid.clone()).unwrap()];
    let configured = ConfiguredServices::new(&cfg);
    let members: Vec<(u32, u32)> = (0..3).map(|r| (0, r)).collect();
    let mut st = BatchState::new(&ctxs, &members, &cfg, true);
    let (traces, _, _) = configured
        .run_cpu(
            &mut st,
            &ctxs,
            Driver::Idm.builtin().unwrap(),
            Traffic::Idm.service(),
            true,
            None,
        )
        .unwrap();
    assert!(traces
        .iter()
        .all(|t| t.times_us.len() > 40 && !t.plans.is_empty()));

    for compression in [LogCompression::None, LogCompression::Xz] {
        let dir = d
            .path()
            .join(format!("{compression:?}"))
            .join("rollouts")
            .join(&scene_id)
            .join(&batch_uuid);
        std::fs::create_dir_all(&dir).unwrap();
        write_log(&dir, compression, &ctxs[0], &cfg, &st, &traces);
        let replayed = replay_log(&dir, Some(&scenes_dir), &cfg).unwrap();
        assert!(replayed.exact && replayed.stopped.is_none());
        assert_eq!(replayed.rollouts.len(), traces.len());
        for ((index, mut back), recorded) in replayed.rollouts.into_iter().zip(&traces) {
            assert_same_states(recorded, &back);
            // Scored again, the replayed states give the recorded metric values.
            score_trace(&replayed.ctx, &cfg, index, &mut back);
            assert!(same(&recorded.metrics, &back.metrics), "rollout {index}");
        }
    }
}

fn write_log(
    dir: &Path,
    compression: LogCompression,
    ctx: &SceneCtx,
    cfg: &SimConfig,
    st: &BatchState,
    traces: &[RolloutTrace],
) {
    let path = dir.join(LogSink::file_name(compression));
    let mut sink = LogSink::create(&path, compression).unwrap();
    let shared = scene_metadata(ctx);
    let mut buf = Vec::new();
    for (r, trace) in traces.iter().enumerate() {
        buf.clear();
        let md = rollout_metadata(ctx, cfg, st.rollout[r], st.seed[r], "{}", "{}");
        encode_rollout_log(&mut buf, ctx, &shared, &md, trace);
        sink.write_all(&buf).unwrap();
    }
    sink.finish().unwrap();
}
