//! `make bench`: cold and incremental `aggregate` on synthetic runs of 1K, 10K and 100K rollouts
//! (AlpaSim-sized: 15 metrics × 200 timesteps, 10 rollouts per scene). Reports wall time,
//! rollouts/s and peak RSS of the aggregate process, measured with wait4(2).
//!
//! `BENCH_SIZES=1000,10000` picks sizes; runs are generated once under target/bench-runs/.

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

fn ensure_run(root: &Path, rollouts: usize) -> PathBuf {
    let dir = root.join(format!("run-{rollouts}"));
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
        std::fs::write(&marker, "").unwrap();
        eprintln!(
            "generated {rollouts} rollouts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    dir
}

fn main() {
    // `cargo bench` passes --bench; anything else (like a filter) is ignored.
    let sizes: Vec<usize> = std::env::var("BENCH_SIZES")
        .unwrap_or_else(|_| "1000,10000,100000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_SIZES: comma-separated rollout counts")
        })
        .collect();
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
        println!(
            "| {n} | cold | {:.2} | {:.0} | {:.0} |",
            cold.wall_s,
            n as f64 / cold.wall_s,
            cold.peak_rss_mb
        );
        // Incremental: 1 % new batches land, then aggregate again.
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
        println!(
            "| {n} | incremental (+{} rollouts) | {:.2} | {:.0} | {:.0} |",
            extra * ROLLOUTS_PER_SCENE,
            inc.wall_s,
            (n + extra * ROLLOUTS_PER_SCENE) as f64 / inc.wall_s,
            inc.peak_rss_mb
        );
        println!(
            "|  | incremental / cold | {:.1} % | | |",
            100.0 * inc.wall_s / cold.wall_s
        );
        for b in added {
            let scene = b.parent().expect("scene dir").to_path_buf();
            let _ = std::fs::remove_dir_all(scene);
        }
    }
}
