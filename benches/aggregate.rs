//! `make bench`: `aggregate` on synthetic runs of 1K, 10K and 100K rollouts (AlpaSim-sized: 15
//! metrics × 200 timesteps, 10 rollouts per scene) — cold, incremental after 1 % new batches,
//! and a rerun with nothing new — and cold on the same kind of run with every metrics.parquet
//! rewritten by polars (as AlpaSim writes them; `benches/polars_rewrite.py`) at 2K and 10K, the
//! sizes of AlpaSim's own figures in DESIGN §9. Reports wall time, rollouts/s and peak RSS of the
//! aggregate process, measured with wait4(2).
//!
//! At each size also the map-reduce of a Slurm array: `aggregate --partial` for each of
//! `BENCH_SHARDS` (default 8; 0 skips it) shards, then the final aggregate merging them, against
//! cold.
//!
//! The polars-written and drivekit-written cold runs are repeated, interleaved
//! (`BENCH_POLARS_ROUNDS`, default 5), and their medians reported: a single cold run right
//! after the 100K one may read its inputs from disk.
//!
//! `BENCH_SIZES=1000,10000` and `BENCH_POLARS_SIZES=2000,10000` pick sizes; runs are generated
//! once under target/bench-runs/. The polars runs need python3 with polars (the test
//! environment of `make test` has it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use drivekit::fixtures::{self, RunSpec};

const ROLLOUTS_PER_SCENE: usize = 10;

struct Measure {
    wall_s: f64,
    peak_rss_mb: f64,
}

fn run_aggregate(dir: &Path, extra: &[&str]) -> Measure {
    let start = Instant::now();
    // Reaped by wait4 below (which also gives the peak RSS), not by Child::wait.
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggregate"))
        .arg(dir)
        .arg("--quiet")
        .args(extra)
        .spawn()
        .expect("aggregate starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 failed");
    let wall_s = start.elapsed().as_secs_f64();
    drop(child.stdin.take());
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "aggregate failed on {}",
        dir.display()
    );
    Measure {
        wall_s,
        peak_rss_mb: usage.ru_maxrss as f64 / 1024.0,
    }
}

/// AlpaSim's aggregation on this kind of 2-core machine, on polars-written runs (DESIGN §9,
/// measured by the project, not re-run here): (rollouts, seconds, peak GB).
const ALPASIM: [(usize, f64, f64); 2] = [(2_000, 8.2, 4.8), (10_000, 67.0, 20.6)];

fn ensure_run(root: &Path, rollouts: usize) -> PathBuf {
    ensure_run_as(root, rollouts, false).expect("drivekit-written runs need nothing else")
}

/// The run of `rollouts` rollouts, generated once; with `polars`, its metrics.parquet files are
/// then rewritten by polars (`None` when python3 with polars is not available).
fn ensure_run_as(root: &Path, rollouts: usize, polars: bool) -> Option<PathBuf> {
    let dir = root.join(format!(
        "run-{rollouts}{}",
        if polars { "-polars" } else { "" }
    ));
    let scenes = rollouts / ROLLOUTS_PER_SCENE;
    let marker = dir.join(".generated");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        let t = Instant::now();
        let spec = RunSpec {
            run_name: format!("bench-{rollouts}"),
            scenes,
            rollouts: ROLLOUTS_PER_SCENE,
            steps: 200,
            ..RunSpec::default()
        };
        fixtures::write_run(&dir, &spec).expect("generate run");
        if polars {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/polars_rewrite.py");
            let ok = Command::new("python3")
                .arg(script)
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = std::fs::remove_dir_all(&dir);
                return None;
            }
        }
        std::fs::write(&marker, "").unwrap();
        eprintln!(
            "generated {rollouts} rollouts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    Some(dir)
}

/// One table row: wall time, rollouts/s over `rollouts`, peak RSS.
fn row(n: usize, label: &str, m: &Measure, rollouts: usize) {
    println!(
        "| {n} | {label} | {:.2} | {:.0} | {:.0} |",
        m.wall_s,
        rollouts as f64 / m.wall_s,
        m.peak_rss_mb
    );
}

fn main() {
    // `cargo bench` passes --bench; anything else (like a filter) is ignored.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES: comma-separated rollout counts")
        })
        .collect();
    let shards: usize = std::env::var("BENCH_SHARDS")
        .ok()
        .map(|s| s.trim().parse().expect("BENCH_SHARDS: a number of shards"))
        .unwrap_or(8);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-runs");
    println!("| rollouts | run | wall (s) | rollouts/s | peak RSS (MB) |");
    println!("|---:|---|---:|---:|---:|");
    for n in sizes {
        let dir = ensure_run(&root, n);
        let _ = std::fs::remove_dir_all(dir.join("aggregate"));
        // Remove the 1 % added by a previous bench run so "cold" starts from the base run.
        let scenes = n / ROLLOUTS_PER_SCENE;
        let extra = (scenes / 100).max(1);
        let cold = run_aggregate(&dir, &[]);
        row(n, "cold", &cold, n);
        // Incremental: 1 % new batches land, then aggregate again. Adding scenes lists them in
        // the run's config files too: those are restored afterwards, with the scenes removed.
        let configs: Vec<(PathBuf, Vec<u8>)> = ["wizard-config.yaml", "run_metadata.yaml"]
            .iter()
            .filter_map(|f| Some((dir.join(f), std::fs::read(dir.join(f)).ok()?)))
            .collect();
        let add = RunSpec {
            run_name: format!("bench-{n}"),
            scenes: extra,
            rollouts: ROLLOUTS_PER_SCENE,
            steps: 200,
            scene_offset: scenes,
            ..RunSpec::default()
        };
        let added = fixtures::write_run(&dir, &add).expect("add batches");
        let inc = run_aggregate(&dir, &[]);
        let new = extra * ROLLOUTS_PER_SCENE;
        row(n, &format!("incremental (+{new} rollouts)"), &inc, n + new);
        println!(
            "|  | incremental / cold | {:.1} % | | |",
            100.0 * inc.wall_s / cold.wall_s
        );
        let again = run_aggregate(&dir, &[]);
        println!(
            "| {n} | rerun, nothing new | {:.2} | — | {:.0} |",
            again.wall_s, again.peak_rss_mb
        );
        for b in added {
            let scene = b.parent().expect("scene dir").to_path_buf();
            let _ = std::fs::remove_dir_all(scene);
        }
        for (path, bytes) in configs {
            std::fs::write(path, bytes).expect("restore the run's config");
        }
        // Map-reduce: each of SHARDS array tasks reduces its shard (`--partial`; here one after
        // another, each on one thread as an array task with one CPU would), then the final
        // aggregate merges the partials.
        if shards == 0 {
            continue;
        }
        let _ = std::fs::remove_dir_all(dir.join("aggregate"));
        let mut partial_s = Vec::new();
        let mut partial_rss: f64 = 0.0;
        for i in 0..shards {
            let m = run_aggregate(
                &dir,
                &["--partial", "--shard", &format!("{i}/{shards}"), "-j", "1"],
            );
            partial_s.push(m.wall_s);
            partial_rss = partial_rss.max(m.peak_rss_mb);
        }
        let sum: f64 = partial_s.iter().sum();
        let slowest = partial_s.iter().copied().fold(0.0, f64::max);
        println!(
            "| {n} | {shards} partials (one thread each; sum / slowest) | {sum:.2} / {slowest:.2} | {:.0} per thread | {partial_rss:.0} |",
            n as f64 / sum
        );
        let merge = run_aggregate(&dir, &[]);
        row(n, "merge of the partials", &merge, n);
        println!(
            "|  | merge / cold | {:.1} % | | |",
            100.0 * merge.wall_s / cold.wall_s
        );
    }
    let polars_sizes: Vec<usize> = std::env::var("BENCH_POLARS_SIZES")
        .unwrap_or_else(|_| "2000,10000".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_POLARS_SIZES: rollout counts")
        })
        .collect();
    if polars_sizes.is_empty() {
        return;
    }
    let rounds: usize = std::env::var("BENCH_POLARS_ROUNDS")
        .map(|v| v.parse().expect("BENCH_POLARS_ROUNDS: a count"))
        .unwrap_or(5)
        .max(1);
    println!();
    println!("AlpaSim-written input (every metrics.parquet rewritten by polars), cold, median of {rounds} rounds (range), against the same run as drivekit writes it (measured here, same run of the bench) and AlpaSim's own aggregation of such runs (DESIGN §9: measured on this kind of 2-core machine, not re-run here: AlpaSim is not installable here):");
    println!();
    println!("| rollouts | polars-written wall (s) | peak RSS (MB, largest) | drivekit-written wall (s) | polars / drivekit-written | AlpaSim (DESIGN §9) | speed-up | less memory |");
    println!("|---:|---:|---:|---:|---:|---|---:|---:|");
    for n in polars_sizes {
        let Some(dir) = ensure_run_as(&root, n, true) else {
            println!("| {n} | skipped: python3 with polars not found (make test installs it in target/test-venv) | | | | | | |");
            continue;
        };
        let own_dir = ensure_run(&root, n);
        // Cold runs of both, interleaved (`BENCH_POLARS_ROUNDS`, default 5): the first may read
        // its inputs from disk after the larger runs above, so the median is reported, with the
        // range of the polars-written runs.
        let (mut own, mut polars) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let _ = std::fs::remove_dir_all(own_dir.join("aggregate"));
            own.push(run_aggregate(&own_dir, &[]));
            let _ = std::fs::remove_dir_all(dir.join("aggregate"));
            polars.push(run_aggregate(&dir, &[]));
        }
        let median = |m: &[Measure]| -> f64 {
            let mut w: Vec<f64> = m.iter().map(|m| m.wall_s).collect();
            w.sort_by(f64::total_cmp);
            let k = w.len();
            if k % 2 == 1 {
                w[k / 2]
            } else {
                (w[k / 2 - 1] + w[k / 2]) / 2.0
            }
        };
        let range = |m: &[Measure]| -> (f64, f64) {
            m.iter().fold((f64::MAX, 0.0), |(lo, hi), m| {
                (lo.min(m.wall_s), hi.max(m.wall_s))
            })
        };
        let peak = polars.iter().map(|m| m.peak_rss_mb).fold(0.0, f64::max);
        let cold = Measure {
            wall_s: median(&polars),
            peak_rss_mb: peak,
        };
        let own = Measure {
            wall_s: median(&own),
            peak_rss_mb: 0.0,
        };
        let (lo, hi) = range(&polars);
        let alpasim = ALPASIM.iter().find(|a| a.0 == n);
        println!(
            "| {n} | {:.2} ({lo:.2}–{hi:.2}) | {:.0} | {:.2} | {:.2} | {} | {} | {} |",
            cold.wall_s,
            cold.peak_rss_mb,
            own.wall_s,
            cold.wall_s / own.wall_s,
            alpasim.map_or("not measured at this size".into(), |a| format!(
                "{} s, {} GB",
                a.1, a.2
            )),
            alpasim.map_or("—".into(), |a| format!(
                "{:.1}× ({:.1}–{:.1}×)",
                a.1 / cold.wall_s,
                a.1 / hi,
                a.1 / lo
            )),
            alpasim.map_or("—".into(), |a| format!(
                "{:.0}×",
                a.2 * 1024.0 / cold.peak_rss_mb
            )),
        );
    }
}
