//! `make bench`: the run report on a large run — a fixture run of 100K rollouts (15 metrics ×
//! 200 steps, 10 rollouts per scene; `REPORT_BENCH_ROLLOUTS` picks another size) aggregated
//! once: the share of aggregate's time spent writing report.html and report/ (its
//! `DRIVEKIT_TIMINGS` phases), the page's size, and how long headless Chromium takes to load each
//! view until its script is done (the wall time of `chromium --dump-dom`, median of 3), against
//! the same Chromium loading an empty page, measured in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use drivekit::fixtures::{self, RunSpec};

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new("sh")
                .args(["-c", &format!("command -v {b}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Median wall time (s) of `chromium --dump-dom url` over 3 runs, and the last DOM.
fn load(browser: &str, url: &str) -> (f64, String) {
    let mut times = Vec::new();
    let mut dom = String::new();
    for _ in 0..3 {
        let t = Instant::now();
        let o = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                // Timers and loads run ahead in virtual time; script execution and parsing take
                // their real time, which is what this measures.
                "--virtual-time-budget=60000",
                "--dump-dom",
                url,
            ])
            .output()
            .expect("chromium runs");
        times.push(t.elapsed().as_secs_f64());
        dom = String::from_utf8_lossy(&o.stdout).into_owned();
    }
    times.sort_by(f64::total_cmp);
    (times[1], dom)
}

fn main() {
    let rollouts: usize = std::env::var("REPORT_BENCH_ROLLOUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-runs");
    let run = root.join(format!("report-{rollouts}"));
    if !run.join(".generated").exists() {
        let _ = std::fs::remove_dir_all(&run);
        let t = Instant::now();
        fixtures::write_run(
            &run,
            &RunSpec {
                run_name: format!("report-bench-{rollouts}"),
                scenes: rollouts / 10,
                rollouts: 10,
                steps: 200,
                ..RunSpec::default()
            },
        )
        .expect("generate run");
        std::fs::write(run.join(".generated"), "").unwrap();
        eprintln!(
            "generated {rollouts} rollouts in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_aggregate"))
        .arg(&run)
        .args(["--quiet", "--no-cache"])
        .env("DRIVEKIT_TIMINGS", "1")
        .output()
        .expect("aggregate runs");
    let wall = t.elapsed().as_secs_f64();
    let timings = String::from_utf8_lossy(&o.stderr);
    let report_s: f64 = timings
        .lines()
        .filter(|l| l.contains("report data") || l.contains("report.html"))
        .filter_map(|l| l.split_whitespace().rev().nth(1)?.parse::<f64>().ok())
        .sum();
    let agg = run.join("aggregate");
    let page = agg.join("report.html");
    println!(
        "report bench: {rollouts} rollouts, {} scenes",
        rollouts / 10
    );
    println!(
        "  aggregate (cold, --no-cache): {wall:.2} s, of which writing the report {report_s:.2} s ({:.1} %)",
        100.0 * report_s / wall
    );
    println!(
        "  report.html {:.2} MB, report/ {:.1} MB in {} files",
        std::fs::metadata(&page).map(|m| m.len()).unwrap_or(0) as f64 / 1e6,
        dir_bytes(&agg.join("report")) as f64 / 1e6,
        std::fs::read_dir(agg.join("report"))
            .map(|d| d.count())
            .unwrap_or(0)
    );
    let Some(browser) = chromium() else {
        println!("  chromium not found: load times not measured (apt-get install chromium)");
        return;
    };
    let (blank, _) = load(browser, "about:blank");
    println!("  chromium on an empty page: {blank:.2} s (start-up, the baseline)");
    for view in ["overview", "scenes", "rollouts", "rollout&i=0"] {
        let url = format!("file://{}#view={view}", page.display());
        let (s, dom) = load(browser, &url);
        let done = dom.contains("data-ready=\"1\"")
            && dom.contains("data-errors=\"0\"")
            && (!view.starts_with("rollout") || dom.contains("data-loaded=\"1\""));
        println!(
            "  view {view:<12} {s:.2} s ({:+.2} s over the empty page){}",
            s - blank,
            if done { "" } else { "  [did not finish]" }
        );
    }
}
