//! Mutation fuzzing of every reader that takes user files, in-process and bounded (a fixed seed,
//! a few hundred mutants per reader, so it runs in `make test` on every change): bit flips,
//! truncations, random overwrites, duplicated and deleted chunks of real inputs. Every mutant must
//! give `Ok` or an error — never a panic, never a hang (each reader runs under a 60 s watchdog).
//! `cargo fuzz` cannot run in CI here (it needs a nightly toolchain); this is the stand-in.
//! Memory is bounded too: a counting allocator records each read's peak of live heap bytes, and
//! no mutant may need more than a few times what the unmutated input needs (SQLite's own
//! allocations, made with the C allocator, are not counted).

mod nuplan_fixture;
mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use drivekit::rng::SplitMix64;

/// Mutants per reader.
const MUTANTS: usize = 400;

/// Live heap bytes and their peak since the last reset.
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            let now = LIVE.fetch_add(l.size(), Ordering::Relaxed) + l.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            if new >= l.size() {
                let now = LIVE.fetch_add(new - l.size(), Ordering::Relaxed) + new - l.size();
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(l.size() - new, Ordering::Relaxed);
            }
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// One reader fuzzed at a time, so the peak is that reader's.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Heap bytes `f` needed at its peak above what was live before.
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    (r, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

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

/// Turns a mutant into the bytes written.
type Wrap = fn(&[u8]) -> Vec<u8>;

/// How one reader is fuzzed.
#[derive(Clone, Copy)]
struct Plan {
    mutants: usize,
    /// Wraps each mutant before it is written (e.g. TFRecord framing with valid CRCs, so the
    /// payload parser is reached).
    wrap: Option<Wrap>,
}

const PLAN: Plan = Plan {
    mutants: MUTANTS,
    wrap: None,
};

/// Runs `read` on `MUTANTS` mutants of `orig` written to `path`; panics (naming the mutant's
/// seed) on a panic, a hang, or a read that needs more than 4× the heap the unmutated input
/// needs plus 16 MiB.
fn fuzz(name: &str, orig: &[u8], path: PathBuf, read: fn(&Path) -> bool) {
    fuzz_with(name, orig, path, read, PLAN)
}

fn fuzz_n(name: &str, orig: &[u8], path: PathBuf, read: fn(&Path) -> bool, mutants: usize) {
    fuzz_with(name, orig, path, read, Plan { mutants, ..PLAN })
}

fn fuzz_with(name: &str, orig: &[u8], path: PathBuf, read: fn(&Path) -> bool, plan: Plan) {
    let mutants = plan.mutants;
    let wrap = move |b: &[u8]| plan.wrap.map_or_else(|| b.to_vec(), |w| w(b));
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let orig = orig.to_vec();
    let len = orig.len();
    let (tx, rx) = mpsc::channel();
    let name_owned = name.to_string();
    std::thread::spawn(move || {
        fs::write(&path, wrap(&orig)).unwrap();
        let (_, base_peak) = peak_of(|| read(&path));
        let bound = 4 * base_peak + (16 << 20);
        let mut rng = SplitMix64::new(0x5eed ^ name_owned.len() as u64);
        let mut ok = 0;
        let mut worst = 0;
        for i in 0..mutants {
            let m = mutate(&orig, &mut rng);
            fs::write(&path, wrap(&m)).unwrap();
            let (r, peak) = peak_of(|| std::panic::catch_unwind(|| read(&path)));
            let keep = |what: &str| {
                let keep = path.with_extension(format!("{what}-{i}"));
                let _ = fs::copy(&path, &keep);
                keep
            };
            if peak > bound {
                let keep = keep("memory");
                let _ = tx.send(Err(format!(
                    "{name_owned}: mutant {i} needed {peak} heap bytes, the input itself {base_peak} (kept as {})",
                    keep.display()
                )));
                return;
            }
            worst = worst.max(peak);
            match r {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => {
                    let keep = keep("panic");
                    let _ = tx.send(Err(format!(
                        "{name_owned}: mutant {i} panicked (kept as {})",
                        keep.display()
                    )));
                    return;
                }
            }
        }
        let _ = tx.send(Ok((ok, base_peak, worst)));
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(Ok((ok, base, worst))) => eprintln!(
            "{name}: {mutants} mutants of {} bytes, {ok} read, the rest rejected with an error; heap peak {:.1} MiB for the input, at most {:.1} MiB for a mutant",
            len,
            base as f64 / 1048576.0,
            worst as f64 / 1048576.0
        ),
        Ok(Err(e)) => panic!("{e}"),
        Err(_) => panic!("{name}: a mutant hung (over 120 s)"),
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

/// The AV2 sensor log of tests/data with `annotations` or `poses` replaced.
fn sensor_log(annotations: Option<&Path>, poses: Option<&Path>) -> bool {
    let s = util::test_data().join("av2/sensor_log");
    drivekit::scene::av2_sensor::import_sensor_log(
        annotations.unwrap_or(&s.join("annotations.feather")),
        poses.unwrap_or(&s.join("city_SE3_egovehicle.feather")),
        &s.join("log_map_archive_adcf7d18-0510-35b0-a2fa-b4cea13a6d76____PIT_city_57819.json"),
    )
    .is_ok()
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
    fuzz_with(
        "metrics.parquet",
        &pq,
        d.path().join("m.parquet"),
        |p| drivekit::aggregate::load::reduce_batch(p, &Default::default(), true, true).is_ok(),
        PLAN,
    );

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
    fuzz_with(
        "av2 scenario",
        &scenario,
        d.path().join("scenario.parquet"),
        |p| {
            let map = util::test_data().join(
            "av2/forecasting/0a1e6f0a-1817-4a98-b02e-db8c9327d151/log_map_archive_0a1e6f0a-1817-4a98-b02e-db8c9327d151.json",
        );
            drivekit::scene::av2::import_forecasting(p, &map).is_ok()
        },
        PLAN,
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

    // A converted scene of the older format (v1).
    let v1 = fs::read(util::test_data().join("scene_v1/DEU_A9-3_1_T-1.dkscene")).unwrap();
    fuzz("scene v1", &v1, d.path().join("v1.dkscene"), |p| {
        drivekit::scene::Scene::load(p).is_ok()
    });

    // The Argoverse 2 sensor-log importer: its two Arrow IPC (feather) files, each mutated
    // with the other and the map as they are.
    let sensor = util::test_data().join("av2/sensor_log");
    for (name, file, read) in [
        (
            "av2 sensor annotations",
            "annotations.feather",
            (|p| sensor_log(Some(p), None)) as fn(&Path) -> bool,
        ),
        ("av2 sensor poses", "city_SE3_egovehicle.feather", |p| {
            sensor_log(None, Some(p))
        }),
    ] {
        let orig = fs::read(sensor.join(file)).unwrap();
        fuzz_n(name, &orig, d.path().join(file), read, 100);
    }

    // A nuPlan metric test case (JSON), through its importer.
    let case =
        fs::read(util::test_data().join("nuplan_metric_cases/ego_jerk/ego_jerk.json")).unwrap();
    fuzz("nuplan case", &case, d.path().join("case.json"), |p| {
        drivekit::scene::nuplan_case::import_case(p).is_ok()
    });

    // The nuPlan DB importer: a log DB and a GeoPackage map built from the devkit's DDL.
    let f = nuplan_fixture::fixture("us-nv-las-vegas-strip");
    let db = fs::read(&f.db).unwrap();
    let maps = f.maps.clone();
    fs::write(
        d.path().join("maps_root"),
        maps.to_string_lossy().as_bytes(),
    )
    .unwrap();
    fuzz_n(
        "nuplan db",
        &db,
        d.path().join("log.db"),
        |p| {
            let root = fs::read_to_string(p.with_file_name("maps_root")).unwrap();
            let opts = drivekit::scene::nuplan_db::NuplanDbOptions {
                map_root: Some(PathBuf::from(root)),
                ..Default::default()
            };
            let mut ok = false;
            drivekit::scene::nuplan_db::read_db(p, &opts, &mut |r| ok |= r.is_ok());
            ok
        },
        150,
    );
    let gpkg = fs::read(maps.join("us-nv-las-vegas-strip/9.15.1915/map.gpkg")).unwrap();
    fuzz_n(
        "nuplan map",
        &gpkg,
        d.path().join("map.gpkg"),
        |p| drivekit::scene::nuplan_db::read_map(p).is_ok(),
        150,
    );
}

/// The importers of datasets that may not be redistributed (Waymo Open Motion, GPUDrive), on
/// mutants of the real files in `../shared/data` or `DRIVEKIT_DATASETS`.
#[test]
fn dataset_importers_survive_mutated_input() {
    let d = tempfile::tempdir().unwrap();
    if let Some(womd) = util::dataset("womd", "fuzz_readers::womd") {
        let rec = fs::read(womd.join("womd_scenario_input.tfrecord")).unwrap();
        let read: fn(&Path) -> bool = |p| {
            let mut ok = false;
            drivekit::scene::womd::read_file(p, &mut |r| ok |= r.is_ok());
            ok
        };
        // The framing (its CRCs reject almost every mutant), then the Scenario protobuf inside
        // it, re-framed with valid CRCs so the decoder and the conversion see each mutant.
        fuzz_n(
            "womd tfrecord",
            &rec,
            d.path().join("s.tfrecord"),
            read,
            100,
        );
        let payload = &rec[12..rec.len() - 4];
        fuzz_with(
            "womd scenario proto",
            payload,
            d.path().join("p.tfrecord"),
            read,
            Plan {
                mutants: 200,
                wrap: Some(drivekit::scene::tfrecord::frame),
            },
        );
    }
    if let Some(gd) = util::dataset("gpudrive", "fuzz_readers::gpudrive") {
        let json = fs::read(gd.join("tfrecord-00000-of-01000_4.json")).unwrap();
        fuzz_n(
            "gpudrive json",
            &json,
            d.path().join("g.json"),
            |p| drivekit::scene::gpudrive::import(p).is_ok(),
            200,
        );
    }
}
