//! `make bench` (import part): Waymo Open Motion import throughput — scenarios per second on 1
//! and 2 threads, against reading the same bytes with both CRC-32Cs checked (the floor any
//! importer has to read at) — and the time `simulate run` spends loading a scene (`Scene::load`)
//! and preparing it (`SceneCtx::new`: routes on the lane graph, rules, look-ups), per 100 agents.
//!
//! The WOMD input is the real scenario of `../shared/data/womd/` (or `$DRIVEKIT_DATASETS/womd`)
//! repeated into shards in a temporary directory (`BENCH_WOMD_SHARDS` × `BENCH_WOMD_RECORDS`,
//! default 4 × 16); without it the WOMD rows are skipped with a note.

use std::path::PathBuf;
use std::time::Instant;

use drivekit::config::SimConfig;
use drivekit::scene::import::{import_to, ImportKind, ImportOptions};
use drivekit::scene::tfrecord::{self, Records};
use drivekit::scene::Scene;
use drivekit::state::SceneCtx;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn womd_file() -> Option<PathBuf> {
    let roots = std::env::var_os("DRIVEKIT_DATASETS")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")]);
    roots
        .map(|r| r.join("womd/womd_scenario_input.tfrecord"))
        .find(|p| p.is_file())
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("import benchmark ({cores} cores available)\n");
    let root = tempfile::tempdir().unwrap();
    let mut womd_scene: Option<Scene> = None;
    match womd_file() {
        None => println!("WOMD: SKIPPED (no womd/womd_scenario_input.tfrecord under ../shared/data or $DRIVEKIT_DATASETS)\n"),
        Some(file) => {
            let (_, data) = Records::open(&file).unwrap().next().unwrap().unwrap();
            let (shards, per) = (env("BENCH_WOMD_SHARDS", 4), env("BENCH_WOMD_RECORDS", 16));
            let input = root.path().join("womd");
            std::fs::create_dir_all(&input).unwrap();
            let record = tfrecord::frame(&data);
            for s in 0..shards {
                let bytes: Vec<u8> = std::iter::repeat_n(record.as_slice(), per).flatten().copied().collect();
                std::fs::write(input.join(format!("training.tfrecord-{s:05}-of-{shards:05}")), bytes).unwrap();
            }
            let n = shards * per;
            let mb = (record.len() * n) as f64 / 1e6;
            println!(
                "WOMD: {n} scenarios ({shards} shards × {per}, the real scenario ee519cf571686d19: 257 tracks, 215 map features, {:.2} MB each), files in the page cache",
                record.len() as f64 / 1e6
            );
            println!();
            println!("| threads | read + both CRCs | import (decode, convert, write) | scenarios/s | import ÷ read |");
            println!("|---:|---:|---:|---:|---:|");
            for threads in [1, 2] {
                let p = pool(threads);
                // Warm the page cache once.
                let files: Vec<PathBuf> = (0..shards)
                    .map(|s| input.join(format!("training.tfrecord-{s:05}-of-{shards:05}")))
                    .collect();
                let read = |p: &rayon::ThreadPool| {
                    use rayon::prelude::*;
                    p.install(|| {
                        files
                            .par_iter()
                            .map(|f| Records::open(f).unwrap().map(|r| r.unwrap().1.len()).sum::<usize>())
                            .sum::<usize>()
                    })
                };
                read(&p);
                let t = Instant::now();
                let bytes = read(&p);
                let read_s = t.elapsed().as_secs_f64();
                assert!(bytes > 0);
                let out = root.path().join(format!("out-{threads}"));
                let t = Instant::now();
                let report = p.install(|| {
                    import_to(ImportKind::Womd, std::slice::from_ref(&input), &out, &ImportOptions::default()).unwrap()
                });
                let import_s = t.elapsed().as_secs_f64();
                assert!(report.skipped.is_empty(), "{:?}", report.skipped);
                println!(
                    "| {threads} | {:.3} s ({:.0} MB/s) | {import_s:.3} s ({:.0} MB/s) | {:.0} | {:.1}× |",
                    read_s,
                    mb / read_s,
                    mb / import_s,
                    n as f64 / import_s,
                    import_s / read_s
                );
                if womd_scene.is_none() {
                    womd_scene = Some(Scene::load(&report.written[0].path).unwrap());
                }
            }
            println!();
            println!("(scenarios/s counts every scenario converted and written as a .dkscene; the same scenario repeated, so every shard costs the same)");
            // Where one scenario's time goes (1 thread).
            use prost::Message;
            let reps = 10;
            let t = Instant::now();
            let mut sc = None;
            for _ in 0..reps {
                sc = Some(drivekit::scene::womd::proto::Scenario::decode(data.as_slice()).unwrap());
            }
            let decode = t.elapsed().as_secs_f64() / reps as f64;
            let sc = sc.unwrap();
            let t = Instant::now();
            let mut scene = None;
            for _ in 0..reps {
                scene = Some(drivekit::scene::womd::scenario_to_scene(&sc, &file, 0).unwrap());
            }
            let convert = t.elapsed().as_secs_f64() / reps as f64;
            let scene = scene.unwrap();
            let p = root.path().join("one.dkscene");
            let t = Instant::now();
            for _ in 0..reps {
                scene.save_as(&p, drivekit::fsutil::Durability::Renamed).unwrap();
            }
            let write = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "per scenario: protobuf decode {:.1} ms, conversion (map, lane boundaries, tracks) {:.1} ms, .dkscene write {:.1} ms",
                decode * 1e3,
                convert * 1e3,
                write * 1e3
            );
            println!();
        }
    }
    // Scene load and preparation.
    let cfg = SimConfig::default();
    let mut scenes: Vec<(&str, Scene)> = vec![
        (
            "procedural traffic rules",
            drivekit::scene::procedural::traffic_rules_scene(),
        ),
        (
            "procedural 32 actors",
            drivekit::scene::procedural::generate(
                &drivekit::scene::procedural::ProceduralSpec::default(),
            ),
        ),
    ];
    for f in ["0a1e6f0a-1817-4a98-b02e-db8c9327d151", "USA_US101-3_3_T-1"] {
        let p =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/scenes/{f}.dkscene"));
        scenes.push((f, Scene::load(&p).unwrap()));
    }
    if let Some(s) = womd_scene {
        scenes.push(("WOMD ee519cf571686d19", s));
    }
    println!("| scene | agents | lanes | Scene::load | per 100 agents | SceneCtx::new (routes, rules) | per 100 agents |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, scene) in scenes {
        let path = root.path().join("s.dkscene");
        scene.save(&path).unwrap();
        let reps = 20;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(Scene::load(&path).unwrap());
        }
        let load = t.elapsed().as_secs_f64() / reps as f64;
        let t = Instant::now();
        for _ in 0..reps {
            std::hint::black_box(SceneCtx::new(scene.clone(), &cfg, "b".into()).unwrap());
        }
        let prep = t.elapsed().as_secs_f64() / reps as f64;
        let per = |x: f64| x * 1e3 * 100.0 / (scene.agents.len() + 1) as f64;
        println!(
            "| {name} | {} | {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            scene.agents.len() + 1,
            scene.map.lanes.len(),
            load * 1e3,
            per(load),
            prep * 1e3,
            per(prep)
        );
    }
}
