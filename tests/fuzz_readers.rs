//! Mutation fuzzing of every reader that takes user files, in-process and bounded (a fixed seed,
//! a few hundred mutants per reader, so it runs in `make test` on every change): bit flips,
//! truncations, random overwrites, duplicated and deleted chunks of real inputs. Every mutant must
//! give `Ok` or an error — never a panic, never a hang (each reader runs under a 60 s watchdog).
//! `cargo fuzz` cannot run in CI here (it needs a nightly toolchain); this is the stand-in.

mod util;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use drivekit::rng::SplitMix64;

/// Mutants per reader.
const MUTANTS: usize = 400;

fn mutate(orig: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = orig.to_vec();
    if b.is_empty() {
        return b;
    }
    let at = |rng: &mut SplitMix64, n: usize| (rng.next_u64() % n.max(1) as u64) as usize;
    for _ in 0..1 + at(rng, 4) {
        match at(rng, 5) {
            0 => {
                // Flip one bit.
                let i = at(rng, b.len());
                b[i] ^= 1 << at(rng, 8);
            }
            1 => {
                let n = at(rng, b.len());
                b.truncate(n);
            }
            2 => {
                // Overwrite a short range with random bytes.
                let i = at(rng, b.len());
                for k in i..(i + 1 + at(rng, 16)).min(b.len()) {
                    b[k] = rng.next_u64() as u8;
                }
            }
            3 => {
                // Duplicate a chunk.
                let i = at(rng, b.len());
                let j = (i + at(rng, 256)).min(b.len());
                let chunk = b[i..j].to_vec();
                let k = at(rng, b.len());
                b.splice(k..k, chunk);
            }
            _ => {
                // Delete a chunk.
                let i = at(rng, b.len());
                let j = (i + at(rng, 256)).min(b.len());
                b.drain(i..j);
            }
        }
        if b.is_empty() {
            break;
        }
    }
    b
}

/// Runs `read` on `MUTANTS` mutants of `orig` written to `path`; panics (naming the mutant's
/// seed) on a panic or a hang.
fn fuzz(name: &str, orig: &[u8], path: PathBuf, read: fn(&Path) -> bool) {
    let orig = orig.to_vec();
    let (tx, rx) = mpsc::channel();
    let name_owned = name.to_string();
    std::thread::spawn(move || {
        let mut rng = SplitMix64::new(0x5eed ^ name_owned.len() as u64);
        let mut ok = 0;
        for i in 0..MUTANTS {
            let m = mutate(&orig, &mut rng);
            fs::write(&path, &m).unwrap();
            let r = std::panic::catch_unwind(|| read(&path));
            match r {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => {
                    let keep = path.with_extension(format!("panic-{i}"));
                    let _ = fs::copy(&path, &keep);
                    let _ = tx.send(Err(format!(
                        "{name_owned}: mutant {i} panicked (kept as {})",
                        keep.display()
                    )));
                    return;
                }
            }
        }
        let _ = tx.send(Ok(ok));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(ok)) => {
            eprintln!("{name}: {MUTANTS} mutants, {ok} read, the rest rejected with an error")
        }
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("{name}: a mutant hung (over 60 s)"),
    }
}

fn run_once(out: &Path) -> PathBuf {
    let o = util::bin(
        "simulate",
        &[
            "run",
            "--scenes",
            concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/scenes"),
            "--out",
            out.to_str().unwrap(),
            "--rollouts",
            "1",
            "--video",
            "none",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    util::files_named(&out.join("rollouts"), "metrics.parquet")[0]
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn readers_survive_mutated_input() {
    let d = tempfile::tempdir().unwrap();
    let batch = run_once(&d.path().join("run"));

    // rollout.asl, through the log replay evaluate and render use.
    let asl = fs::read(batch.join("rollout.asl")).unwrap();
    let fz = d.path().join("fz/scene/batch");
    fs::create_dir_all(&fz).unwrap();
    fuzz("rollout.asl", &asl, fz.join("rollout.asl"), |p| {
        let cfg = drivekit::config::SimConfig::default();
        drivekit::rollout::replay::replay_log(p.parent().unwrap(), None, &cfg).is_ok()
    });

    // metrics.parquet, through aggregate's loader.
    let pq = fs::read(batch.join("metrics.parquet")).unwrap();
    fuzz("metrics.parquet", &pq, d.path().join("m.parquet"), |p| {
        drivekit::aggregate::load::reduce_batch(p, &Default::default(), true).is_ok()
    });

    // A scene file.
    let scene = fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/scenes/DEU_A9-3_1_T-1.dkscene"
    ))
    .unwrap();
    fuzz("scene", &scene, d.path().join("s.dkscene"), |p| {
        drivekit::scene::Scene::load(p).is_ok()
    });

    // A configuration (AlpaSim's base config).
    let cfg = fs::read(util::test_data().join("alpasim_configs/wizard/base_config.yaml")).unwrap();
    fuzz("wizard-config.yaml", &cfg, d.path().join("c.yaml"), |p| {
        drivekit::config::SimConfig::load(p).is_ok()
    });

    // The CommonRoad importer.
    let xml = fs::read(util::test_data().join("commonroad/DEU_A9-3_1_T-1.xml")).unwrap();
    fuzz("commonroad", &xml, d.path().join("x.xml"), |p| {
        drivekit::scene::commonroad::import(p).is_ok()
    });

    // The Argoverse 2 importer: its map JSON and its scenario parquet.
    let av2 = util::test_data().join("av2/forecasting/0a1e6f0a-1817-4a98-b02e-db8c9327d151");
    let map =
        fs::read(av2.join("log_map_archive_0a1e6f0a-1817-4a98-b02e-db8c9327d151.json")).unwrap();
    fuzz("av2 map", &map, d.path().join("map.json"), |p| {
        drivekit::scene::av2::read_map(p).is_ok()
    });
    let scenario =
        fs::read(av2.join("scenario_0a1e6f0a-1817-4a98-b02e-db8c9327d151.parquet")).unwrap();
    fuzz(
        "av2 scenario",
        &scenario,
        d.path().join("scenario.parquet"),
        |p| {
            let map = util::test_data().join(
            "av2/forecasting/0a1e6f0a-1817-4a98-b02e-db8c9327d151/log_map_archive_0a1e6f0a-1817-4a98-b02e-db8c9327d151.json",
        );
            drivekit::scene::av2::import_forecasting(p, &map).is_ok()
        },
    );

    // Other benchmarks' result files (a CARLA checkpoint and a NAVSIM CSV written here).
    let carla = serde_json::json!({
        "_checkpoint": {"progress": [2, 2], "records": [
            {"index": 0, "route_id": "r0", "status": "Completed", "infractions": {"collisions_vehicle": ["x"], "outside_route_lanes": ["Agent went outside its route lanes for about 1.0 meters (1% of the completed route)"]},
             "scores": {"score_route": 100.0, "score_penalty": 0.6, "score_composed": 60.0}, "meta": {"route_length": 500.0}},
            {"index": 1, "route_id": "r1", "status": "Failed - Agent timed out", "infractions": {"collisions_vehicle": []},
             "scores": {"score_route": 30.0, "score_penalty": 1.0, "score_composed": 30.0}, "meta": {"route_length": 800.0}}],
         "global_record": {"scores_mean": {"score_composed": 45.0, "score_route": 65.0, "score_penalty": 0.8}, "status": "Failed"}},
        "entry_status": "Finished", "sensors": ["cam"],
    })
    .to_string();
    fuzz(
        "carla checkpoint",
        carla.as_bytes(),
        d.path().join("r.json"),
        |p| {
            drivekit::peer_results::read(
                &[p.to_path_buf()],
                Some(drivekit::peer_results::Format::Carla),
                false,
            )
            .is_ok()
        },
    );
    let csv = ",token,valid,no_at_fault_collisions,drivable_area_compliance,ego_progress,time_to_collision_within_bound,comfort,driving_direction_compliance,score\n0,a,True,1.0,1.0,0.5,1.0,1.0,1.0,0.7916666666666666\n1,b,True,0.5,1.0,1.0,0.0,1.0,0.5,0.2916666666666667\n2,average,True,0.75,1.0,0.75,0.5,1.0,0.75,0.5416666666666666\n";
    fuzz("navsim csv", csv.as_bytes(), d.path().join("n.csv"), |p| {
        drivekit::peer_results::read(
            &[p.to_path_buf()],
            Some(drivekit::peer_results::Format::Navsim),
            false,
        )
        .is_ok()
    });
}
