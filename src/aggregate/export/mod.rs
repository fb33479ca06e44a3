//! The outputs of `aggregate`, one module per format, each written atomically into aggregate/.

pub mod json;
pub mod page;
pub mod png;
pub mod tables;
pub mod txt;
pub mod videos;

use std::path::PathBuf;

use super::{Options, Outcome};

/// Readable results table.
pub const TXT: &str = "metrics_results.txt";
/// Results plot: the summary.
pub const PNG: &str = "metrics_results.png";
/// Per-metric histograms.
pub const HISTOGRAMS: &str = "metrics_histograms.png";
/// Written last: the outputs beside it are one consistent set (removed when a rerun starts, so a
/// killed aggregate leaves none).
pub const COMPLETE: &str = "_complete";
/// One row per run.
pub const RESULTS: &str = "metrics_results.parquet";
/// One row per scene.
pub const RESULTS_BY_SCENE: &str = "metrics_results_by_scene.parquet";
/// One row per scene tag (scenario type, split…).
pub const RESULTS_BY_TAG: &str = "metrics_results_by_tag.parquet";
/// Every input row.
pub const UNPROCESSED: &str = "metrics_unprocessed.parquet";
/// Per-rollout pass/fail and scores.
pub const SUMMARY_JSON: &str = "results-summary.json";

/// Writes every output except metrics_unprocessed.parquet; returns the paths written or the
/// path that failed with its error.
pub fn write_all(outcome: &mut Outcome, opts: &Options) -> Result<Vec<PathBuf>, (PathBuf, String)> {
    let dir = outcome.output_dir.clone();
    let p = |n: &str| dir.join(n);
    let e = |path: PathBuf| move |err: std::io::Error| (path, err.to_string());
    // Videos first: dangling ones become problems that the reports list. The scorecard (a
    // bootstrap per rate, on every thread; two outputs show it) is computed meanwhile: linking
    // is mostly waiting on the file system.
    let mut timer = crate::report::timing::PhaseTimer::from_env("  ");
    let o: &Outcome = outcome;
    let (video_report, _) = rayon::join(
        || {
            videos::link(
                &opts.run_dir,
                &dir,
                o,
                &o.batch_dirs,
                opts.chain.max_dist_to_gt_m,
            )
        },
        || super::scorecard::rates(o),
    );
    let video_report = video_report.map_err(e(p("videos")))?;
    outcome.problems.extend(video_report.problems);
    timer.lap("videos, scorecard");
    // The run report's data (rollout chunks, series) next: a batch whose series cannot be read
    // again is a warning every report lists.
    let unreadable = page::write_data(outcome, &opts.run_dir, &video_report.links, &opts.chain)
        .map_err(e(p(page::REPORT_DATA)))?;
    outcome.problems.extend(unreadable);
    outcome.problems.sort();
    timer.lap("report data");
    // The rest only read the outcome: written side by side (most are one thread each), each
    // into the file it is named by.
    let o: &Outcome = outcome;
    let links = &video_report.links;
    type Job<'a> = Box<dyn Fn(&std::path::Path) -> std::io::Result<()> + Send + Sync + 'a>;
    let jobs: Vec<(&str, Job<'_>)> = vec![
        (RESULTS, Box::new(|f| tables::write_results(f, o))),
        (RESULTS_BY_SCENE, Box::new(|f| tables::write_by_scene(f, o))),
        (RESULTS_BY_TAG, Box::new(|f| tables::write_by_tag(f, o))),
        (SUMMARY_JSON, Box::new(|f| json::write(f, o, links))),
        (TXT, Box::new(|f| txt::write(f, o, opts))),
        (PNG, Box::new(|f| png::write(f, o))),
        (HISTOGRAMS, Box::new(|f| png::write_histograms(f, o))),
        // report.html goes where `REPORT` names it in the output dir.
        (
            page::REPORT,
            Box::new(|_| page::write_html(o, &opts.run_dir, links, None).map(drop)),
        ),
    ];
    use rayon::prelude::*;
    let written: Vec<Result<(), _>> = jobs
        .par_iter()
        .map(|(name, job)| {
            let mut t = crate::report::timing::PhaseTimer::from_env("    ");
            let r = job(&p(name)).map_err(e(p(name)));
            t.lap(name);
            r
        })
        .collect();
    // The first failure in the list's order.
    written.into_iter().collect::<Result<Vec<()>, _>>()?;
    timer.lap("tables…html");
    Ok(vec![
        p(page::REPORT),
        p(page::REPORT_DATA),
        p(RESULTS),
        p(RESULTS_BY_SCENE),
        p(RESULTS_BY_TAG),
        p(SUMMARY_JSON),
        p(TXT),
        p(PNG),
        p(HISTOGRAMS),
        p("videos"),
    ])
}
