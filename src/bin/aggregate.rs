//! `aggregate runs/X`: results table, plots, Parquet tables and violation videos of a run.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use drivekit::aggregate::{self, trajectory::ChainParams};

/// Aggregate the rollouts of a drivekit or AlpaSim run directory, or other benchmarks' result
/// files.
///
/// Reads every complete batch under RUN_DIR/rollouts (or under each job dir of a Slurm array
/// dir), reduces each rollout's metrics with AlpaSim's semantics, and writes RUN_DIR/aggregate/:
/// report.html (the run report: open it in a browser), metrics_results.txt,
/// metrics_results.png (summary), metrics_histograms.png, metrics_results.parquet,
/// metrics_results_by_scene.parquet, metrics_results_by_tag.parquet,
/// metrics_unprocessed.parquet (a dataset directory of part files that pandas, pyarrow and
/// polars read as one table), results-summary.json and videos/. Failed, incomplete and missing
/// rollouts are listed, never dropped silently.
///
/// With --compare BASE, also compares every metric with the baseline run (paired by scene,
/// bootstrap 95 % interval) into comparison.md / .png / .json and the report's comparison view.
///
/// Also reads other benchmarks' results (detected by content, or --format): CARLA leaderboard
/// checkpoint JSONs (LB 1.0 and 2.x; several files are shards, merged), Bench2Drive (a folder of
/// per-route JSONs or a merged JSON) and NAVSIM score CSVs. It recomputes the benchmark's own
/// global numbers by that benchmark's code, checks every number the file stores, adds quantiles,
/// a 95 % interval and counts, and writes the same three reports into --out.
///
/// Exit status: 0 all aggregated; 1 results written but some batches failed, were incomplete,
/// missing or skipped; 2 nothing usable (not a run dir, no rollouts, mixed configs); 3 a metric
/// regressed against --compare's baseline beyond its tolerance.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run directory (runs/X) or Slurm array directory holding one run dir per task; or
    /// benchmark result file(s) / folder.
    #[arg(required = true, value_name = "RUN_DIR | RESULT…")]
    paths: Vec<PathBuf>,
    /// Force the reader of benchmark result files: carla, bench2drive, navsim.
    #[arg(long, value_name = "FORMAT")]
    format: Option<String>,
    /// Output folder for benchmark result files (default: FILE-aggregate/ beside the file, or
    /// FOLDER/aggregate/).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Benchmark result files: exit 1 when a stored global number differs from its recomputation.
    #[arg(long)]
    validate: bool,
    /// Accept job dirs whose wizard-config.yaml differ (otherwise an error).
    #[arg(long)]
    allow_mixed_config: bool,
    /// Drop timesteps after the first with dist_to_gt_trajectory ≥ this many metres.
    #[arg(long, value_name = "METRES", default_value_t = 4.0)]
    max_dist_to_gt: f64,
    /// Read every batch again instead of reusing reductions from the previous run.
    #[arg(long)]
    no_cache: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    quiet: bool,
    /// Print a JSON summary on stdout (for scripts) instead of the table.
    #[arg(long)]
    json: bool,
    /// Worker threads (default: all cores).
    #[arg(short = 'j', long, value_name = "N")]
    jobs: Option<usize>,
    /// Compare with this baseline run (aggregated too): per metric difference with a paired
    /// bootstrap 95 % interval over scenes; exit 3 on a regression.
    #[arg(long, value_name = "BASE_RUN")]
    compare: Option<PathBuf>,
    /// Change allowed in a metric's worse direction before it counts as a regression
    /// (METRIC=VALUE, repeatable; default 0).
    #[arg(long, value_name = "METRIC=VALUE")]
    tolerance: Vec<String>,
    /// Map step of a Slurm array: reduce only this shard's batches into
    /// RUN_DIR/aggregate/partials/shard-I-of-N/ (run it in each array task after `simulate run`);
    /// the final `aggregate RUN_DIR` then takes every unchanged batch from the partials instead
    /// of reading its metrics.parquet, with the same outputs as a cold aggregate.
    #[arg(long)]
    partial: bool,
    /// The shard of --partial (I/N, as `simulate run --shard`; default: Slurm's array
    /// variables, read as `simulate run` reads them).
    #[arg(long, value_name = "I/N", requires = "partial")]
    shard: Option<String>,
    /// Benchmark score profiles to report, comma-separated: nuplan (CLS), navsim (PDMS, EPDMS),
    /// carla (driving score), waymax (its metrics), alpasim (scene score); `all` or `none`.
    /// A profile whose metrics the run lacks is left out with the reason (docs/scores.md).
    #[arg(long, value_name = "LIST", default_value = "all")]
    profiles: String,
    /// Batches per part file of metrics_unprocessed.parquet/, on average: a rerun rewrites only
    /// the parts holding new, changed or removed batches (parts end at batches picked by a hash
    /// of their dir, so any aggregate of the same batches writes the same parts).
    #[arg(long, value_name = "N", default_value_t = aggregate::parts::DEFAULT_PART_BATCHES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    part_batches: u64,
}

fn main() -> ExitCode {
    drivekit::report::quiet_on_closed_stdout();
    let args = Args::parse();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("aggregate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<u8> {
    let format = match &args.format {
        Some(f) => Some(
            drivekit::peer_results::Format::parse(f)
                .with_context(|| format!("--format {f}: expected carla, bench2drive or navsim"))?,
        ),
        None => None,
    };
    if format.is_some() || drivekit::peer_results::detect(&args.paths[0]).is_some() {
        return run_peer(args, format);
    }
    anyhow::ensure!(
        args.paths.len() == 1,
        "one run dir at a time ({} given); several paths are read as benchmark result shards",
        args.paths.len()
    );
    anyhow::ensure!(
        args.out.is_none() && !args.validate,
        "--out and --validate apply to benchmark result files; a run dir writes RUN_DIR/aggregate/"
    );
    anyhow::ensure!(
        args.max_dist_to_gt.is_finite() && args.max_dist_to_gt > 0.0,
        "--max-dist-to-gt must be a positive number of metres, got {}",
        args.max_dist_to_gt
    );
    anyhow::ensure!(
        args.tolerance.is_empty() || args.compare.is_some(),
        "--tolerance applies to --compare BASE_RUN, which is not given"
    );
    let tolerances = aggregate::compare::parse_tolerances(&args.tolerance)?;
    if let Some(n) = args.jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("setting --jobs")?;
    }
    let opts = aggregate::Options {
        run_dir: args.paths[0].clone(),
        allow_mixed_config: args.allow_mixed_config,
        chain: ChainParams {
            max_dist_to_gt_m: args.max_dist_to_gt,
        },
        use_cache: !args.no_cache,
        progress: !args.quiet && !args.json,
        read_only: false,
        part_batches: args.part_batches as usize,
        profiles: drivekit::metrics::profiles::Profile::parse_list(&args.profiles)
            .context("--profiles")?,
    };
    if args.partial {
        anyhow::ensure!(
            args.compare.is_none(),
            "--compare applies to the final aggregate, not to --partial"
        );
        return run_partial(args, &opts);
    }
    let outcome = aggregate::run(&opts)?;
    let mut stdout = std::io::stdout().lock();
    let printed = if args.json {
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&aggregate::cli_summary(&outcome))?
        )
    } else if !args.quiet {
        writeln!(
            stdout,
            "{}",
            aggregate::export::txt::render(&outcome, &opts)
        )
        .and_then(|_| writeln!(stdout, "Outputs in {}", outcome.output_dir.display()))
    } else {
        Ok(())
    };
    // A closed pipe (`aggregate … | head`) is not an error.
    if let Err(e) = printed {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    if !args.quiet {
        for p in outcome
            .problems
            .iter()
            .filter(|p| p.kind != aggregate::ProblemKind::Warning)
        {
            eprintln!("aggregate: {}: {}", p.path, p.message);
        }
    }
    let mut code = outcome.exit_code() as u8;
    if let Some(base_dir) = &args.compare {
        let report = aggregate::compare::run(&outcome, &opts, base_dir, &tolerances)?;
        if !args.quiet {
            println!(
                "Compared with {}: {} metric(s), {} regressed{}. Report: {}",
                base_dir.display(),
                report.rows.len(),
                report.regressed.len(),
                if report.regressed.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", report.regressed.join(", "))
                },
                report.markdown.display()
            );
        }
        if !report.regressed.is_empty() {
            eprintln!(
                "aggregate: regression against {}: {}",
                base_dir.display(),
                report.regressed.join(", ")
            );
            code = code.max(3);
        }
    }
    Ok(code)
}

/// `--partial`: one shard's reductions.
fn run_partial(args: &Args, opts: &aggregate::Options) -> anyhow::Result<u8> {
    let shard = match &args.shard {
        Some(s) => drivekit::run_dir::Shard::parse(s)?,
        None => drivekit::run_dir::Shard::from_slurm(|k| std::env::var(k).ok())?.context(
            "--partial needs --shard I/N outside a Slurm array task (no SLURM_ARRAY_TASK_ID)",
        )?,
    };
    let outcome = aggregate::partial::run(opts, shard)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else if !args.quiet {
        println!(
            "shard {}: {} scenes, {} batches ({} read now), {} rollouts → {}",
            outcome.shard,
            outcome.n_scenes,
            outcome.n_batches,
            outcome.n_batches_read,
            outcome.n_rollouts,
            outcome.dir.display()
        );
        for p in outcome
            .problems
            .iter()
            .filter(|p| p.kind != aggregate::ProblemKind::Warning)
        {
            eprintln!("aggregate: {}: {}", p.path, p.message);
        }
    }
    // The final aggregate reports (and reads) whatever the partial left out.
    Ok(0)
}

/// Benchmark result files: read, recompute, report.
fn run_peer(args: &Args, format: Option<drivekit::peer_results::Format>) -> anyhow::Result<u8> {
    let outcome = drivekit::peer_results::run(&drivekit::peer_results::PeerOptions {
        paths: args.paths.clone(),
        format,
        allow_mixed: args.allow_mixed_config,
        out: args.out.clone(),
        compare: args.compare.clone(),
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "format": outcome.results.format.name(),
                "rule": outcome.results.rule,
                "globals": outcome.results.globals,
                "n_units": outcome.results.units.len(),
                "n_mismatches": outcome.results.mismatches(),
                "problems": outcome.results.problems,
                "outputs": outcome.outputs,
            }))?
        );
    } else if !args.quiet {
        println!("{}", outcome.report);
        if let Some(c) = &outcome.comparison {
            println!("{c}");
        }
        if let Some(dir) = outcome.outputs.first().and_then(|p| p.parent()) {
            println!("Outputs in {}", dir.display());
        }
    }
    if args.validate && outcome.results.mismatches() > 0 {
        eprintln!(
            "aggregate: --validate: {} stored number(s) differ from their recomputation",
            outcome.results.mismatches()
        );
    }
    Ok(outcome.exit_code(args.validate) as u8)
}
