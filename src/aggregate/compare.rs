//! `aggregate runs/X --compare runs/BASE`: per metric, the mean difference X − BASE over the
//! scenes both runs have (each scene's mean over its rollouts, paired by scene), with a paired
//! bootstrap 95 % confidence interval (scenes resampled with replacement, 2000 resamples, a fixed
//! seed so reports are reproducible). A metric regresses when the whole interval lies on its worse
//! side beyond its tolerance (default 0: the difference is significant and in the bad direction).
//! Written as aggregate/comparison.md (table and verdict), comparison.png and comparison.json.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use super::summary::RunResults;
use crate::fsutil;
use crate::report::format::num;
use crate::rng::SplitMix64;

/// Bootstrap resamples.
pub const RESAMPLES: usize = 2000;

/// Why a comparison could not be made (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A `--tolerance` that is not `METRIC=VALUE` with a finite VALUE ≥ 0.
    #[error(
        "--tolerance {0}: expected METRIC=VALUE with a number ≥ 0 (e.g. collision_at_fault=0.02)"
    )]
    BadTolerance(String),
    /// A `--tolerance` for a metric neither run has.
    #[error("--tolerance {metric}=…: neither run has a metric of that name (they have: {known})")]
    UnknownMetric {
        /// the name given
        metric: String,
        /// the metrics of the two runs
        known: String,
    },
    /// The baseline could not be aggregated.
    #[error("aggregating the baseline {path}: {source}")]
    Baseline {
        /// the baseline run dir
        path: std::path::PathBuf,
        /// the cause
        source: Box<super::Error>,
    },
    /// The comparison files could not be written.
    #[error("writing the comparison into {path}: {source}")]
    Write {
        /// the directory
        path: std::path::PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// Parses `--tolerance METRIC=VALUE` flags.
pub fn parse_tolerances(specs: &[String]) -> Result<BTreeMap<String, f64>, CompareError> {
    specs
        .iter()
        .map(|t| {
            let bad = || CompareError::BadTolerance(t.clone());
            let (k, v) = t.split_once('=').ok_or_else(bad)?;
            let v: f64 = v.trim().parse().map_err(|_| bad())?;
            if k.trim().is_empty() || !v.is_finite() || v < 0.0 {
                return Err(bad());
            }
            Ok((k.trim().to_string(), v))
        })
        .collect()
}

/// What [`run`] found and wrote.
#[derive(Debug, Clone)]
pub struct Report {
    /// One row per metric both runs have.
    pub rows: Vec<MetricComparison>,
    /// The metrics that regressed.
    pub regressed: Vec<String>,
    /// comparison.md (beside comparison.png and comparison.json).
    pub markdown: std::path::PathBuf,
}

/// `aggregate CURRENT --compare BASE`: aggregates `base_dir` read-only (its aggregate/ stays as
/// it was), compares it with the `current` outcome and writes comparison.md / .png / .json into
/// the current run's aggregate/. Every tolerance must name a metric of one of the runs.
pub fn run(
    current: &super::Outcome,
    opts: &super::Options,
    base_dir: &Path,
    tolerances: &BTreeMap<String, f64>,
) -> Result<Report, CompareError> {
    let base = super::run(&super::Options {
        run_dir: base_dir.to_path_buf(),
        progress: false,
        read_only: true,
        ..opts.clone()
    })
    .map_err(|e| CompareError::Baseline {
        path: base_dir.to_path_buf(),
        source: Box::new(e),
    })?;
    let names: std::collections::BTreeSet<&str> = current
        .results
        .columns
        .iter()
        .chain(&base.results.columns)
        .map(|c| c.name.as_str())
        .collect();
    if let Some(metric) = tolerances.keys().find(|k| !names.contains(k.as_str())) {
        return Err(CompareError::UnknownMetric {
            metric: metric.clone(),
            known: names.into_iter().collect::<Vec<_>>().join(", "),
        });
    }
    let rows = compare(&current.results, &base.results, tolerances);
    let (cur_name, base_name) = (
        opts.run_dir.display().to_string(),
        base_dir.display().to_string(),
    );
    let dir = &current.output_dir;
    write_outputs(dir, &cur_name, &base_name, &rows).map_err(|e| CompareError::Write {
        path: dir.clone(),
        source: e,
    })?;
    // The run report's page again, now with its comparison section (its data in report/ does
    // not depend on the baseline).
    let videos = super::export::page::videos_of(dir);
    let baseline = super::export::page::Baseline {
        outcome: &base,
        run_dir: base_dir,
        rows: &rows,
    };
    super::export::page::write_html(current, &opts.run_dir, &videos, Some(&baseline)).map_err(
        |e| CompareError::Write {
            path: dir.join(super::export::page::REPORT),
            source: e,
        },
    )?;
    Ok(Report {
        regressed: rows
            .iter()
            .filter(|r| r.regressed)
            .map(|r| r.metric.clone())
            .collect(),
        rows,
        markdown: dir.join("comparison.md"),
    })
}

/// Which direction is better for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Lower values are better (collisions, offroad, deviations).
    Lower,
    /// Higher values are better (progress, comfort, TTC).
    Higher,
    /// No direction (descriptive: distances driven, durations).
    Neither,
}

/// The better direction of a metric of DESIGN §3 or of aggregate's derived columns.
pub fn better(metric: &str) -> Better {
    match metric {
        m if m.starts_with("collision") || m.starts_with("offroad") => Better::Lower,
        "dist_to_gt_trajectory" | "dist_to_gt_location" | "plan_deviation" | "img_is_black" => {
            Better::Lower
        }
        "progress"
        | "progress_rel_to_total"
        | "progress_clipped_rel"
        | "ego_is_comfortable"
        | "driving_direction_compliance"
        | "ego_is_making_progress"
        | "time_to_collision_s"
        | "min_distance_to_obstacle_m"
        | "avg_dist_between_incidents"
        | "avg_dist_between_incidents_at_fault" => Better::Higher,
        // Benchmark scores and their inputs (docs/scores.md).
        "carla_collisions_pedestrian"
        | "carla_collisions_vehicle"
        | "carla_collisions_layout"
        | "carla_red_light"
        | "carla_stop_sign"
        | "carla_outside_route_lanes"
        | "carla_min_speed_infractions"
        | "carla_agent_blocked"
        | "carla_route_deviation"
        | "waymax_log_divergence"
        | "waymax_overlap"
        | "waymax_offroad"
        | "waymax_kinematic_infeasibility"
        | "speed_limit_violation"
        | "ran_red_light"
        | "ran_stop_sign" => Better::Lower,
        m if m.starts_with("nuplan_")
            || m.starts_with("navsim_")
            || m.starts_with("carla_")
            || m == "alpasim_score"
            || m == "waymax_route_progress_ratio"
            || m == "ego_route_progress_m" =>
        {
            Better::Higher
        }
        _ => Better::Neither,
    }
}

/// One metric's comparison.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    /// Metric (column) name.
    pub metric: String,
    /// Scenes in both runs with a finite value for it.
    pub n_scenes: usize,
    /// Baseline mean over those scenes.
    pub base_mean: f64,
    /// Current mean over those scenes.
    pub current_mean: f64,
    /// Mean paired difference (current − baseline).
    pub diff: f64,
    /// 95 % bootstrap interval of `diff`.
    pub ci: (f64, f64),
    /// Which way is better.
    pub better: Better,
    /// Allowed change in the worse direction.
    pub tolerance: f64,
    /// The interval lies beyond the tolerance on the worse side.
    pub regressed: bool,
}

/// Paired bootstrap interval of the mean of `d` (2.5 and 97.5 percentiles).
pub fn bootstrap_ci(d: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = SplitMix64::new(seed);
    let n = d.len();
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            (0..n)
                .map(|_| d[(rng.next_u64() % n as u64) as usize])
                .sum::<f64>()
                / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| crate::metrics::stats::quantile_sorted(&means, p).unwrap_or(f64::NAN);
    (q(0.025), q(0.975))
}

/// Compares every metric the two runs share. `tolerances` maps metric names to the change
/// allowed in the worse direction (default 0).
pub fn compare(
    current: &RunResults,
    base: &RunResults,
    tolerances: &BTreeMap<String, f64>,
) -> Vec<MetricComparison> {
    let per_scene = |r: &RunResults, col: usize| -> BTreeMap<String, f64> {
        r.by_scene
            .iter()
            .filter_map(|(scene, stats)| {
                stats.columns[col]
                    .mean
                    .filter(|v| v.is_finite())
                    .map(|v| (scene.clone(), v))
            })
            .collect()
    };
    let mut out = Vec::new();
    for (ci, col) in current.columns.iter().enumerate() {
        let Some(bi) = base.columns.iter().position(|c| c.name == col.name) else {
            continue;
        };
        let (cur, bas) = (per_scene(current, ci), per_scene(base, bi));
        let pairs: Vec<(f64, f64)> = cur
            .iter()
            .filter_map(|(s, c)| bas.get(s).map(|b| (*c, *b)))
            .collect();
        if pairs.is_empty() {
            continue;
        }
        let n = pairs.len() as f64;
        let d: Vec<f64> = pairs.iter().map(|(c, b)| c - b).collect();
        let diff = d.iter().sum::<f64>() / n;
        let interval = bootstrap_ci(&d, RESAMPLES, 0);
        let b = better(&col.name);
        let tolerance = tolerances.get(&col.name).copied().unwrap_or(0.0);
        let regressed = match b {
            Better::Lower => interval.0 > tolerance,
            Better::Higher => interval.1 < -tolerance,
            Better::Neither => false,
        };
        out.push(MetricComparison {
            metric: col.name.clone(),
            n_scenes: pairs.len(),
            base_mean: pairs.iter().map(|p| p.1).sum::<f64>() / n,
            current_mean: pairs.iter().map(|p| p.0).sum::<f64>() / n,
            diff,
            ci: interval,
            better: b,
            tolerance,
            regressed,
        });
    }
    out
}

/// The markdown report.
pub fn markdown(current: &str, base: &str, rows: &[MetricComparison]) -> String {
    let regressed: Vec<&MetricComparison> = rows.iter().filter(|r| r.regressed).collect();
    let mut s = format!(
        "# {current} vs baseline {base}\n\n{}\n\nPer metric: mean over the scenes both runs have (each scene's mean over its rollouts); difference = current − baseline with a paired bootstrap 95 % interval over scenes ({RESAMPLES} resamples). A metric regresses when the interval lies beyond its tolerance on the worse side.\n\n| metric | scenes | baseline | current | difference | 95 % interval | better | tolerance | verdict |\n|---|---:|---:|---:|---:|---|---|---:|---|\n",
        if regressed.is_empty() {
            "**No regression.**".to_string()
        } else {
            format!(
                "**Regression in {} metric(s): {}.**",
                regressed.len(),
                regressed
                    .iter()
                    .map(|r| r.metric.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | [{}, {}] | {} | {} | {} |\n",
            r.metric,
            r.n_scenes,
            num(Some(r.base_mean)),
            num(Some(r.current_mean)),
            num(Some(r.diff)),
            num(Some(r.ci.0)),
            num(Some(r.ci.1)),
            match r.better {
                Better::Lower => "lower",
                Better::Higher => "higher",
                Better::Neither => "—",
            },
            num(Some(r.tolerance)),
            if r.regressed {
                "**regressed**"
            } else if r.better != Better::Neither && r.ci.0 * r.ci.1 > 0.0 {
                "changed (better)"
            } else {
                "ok"
            }
        ));
    }
    s
}

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// comparison.png: per metric the difference with its interval (red: regressed), each metric
/// on its own row, differences scaled by the baseline magnitude so all rows share one axis.
pub fn plot(path: &Path, title: &str, rows: &[MetricComparison]) -> std::io::Result<()> {
    crate::report::plot::register_font();
    let rows: Vec<&MetricComparison> = rows.iter().filter(|r| r.diff.is_finite()).collect();
    let n = rows.len().max(1);
    let scale = |r: &MetricComparison| r.base_mean.abs().max(1e-9);
    let rel = |r: &MetricComparison, v: f64| 100.0 * v / scale(r);
    let lim = rows
        .iter()
        .flat_map(|r| [rel(r, r.ci.0).abs(), rel(r, r.ci.1).abs()])
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.15;
    crate::report::plot::write_png(path, (1100, 80 + 34 * n as u32), |root| {
        root.fill(&WHITE).map_err(io)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(300)
            .build_cartesian_2d(-lim..lim, 0f64..n as f64)
            .map_err(io)?;
        let names: Vec<String> = rows.iter().map(|r| r.metric.clone()).collect();
        chart
            .configure_mesh()
            .y_labels(0)
            .x_desc("current − baseline, % of the baseline mean (95 % bootstrap interval)")
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(io)?;
        for (i, r) in rows.iter().enumerate() {
            let y = i as f64 + 0.5;
            let color = if r.regressed {
                RED
            } else {
                RGBColor(70, 110, 200)
            };
            let (lo, hi) = (rel(r, r.ci.0), rel(r, r.ci.1));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(lo.max(-lim), y), (hi.min(lim), y)],
                    color.stroke_width(3),
                )))
                .map_err(io)?;
            chart
                .draw_series(std::iter::once(Circle::new(
                    (rel(r, r.diff).clamp(-lim, lim), y),
                    5,
                    color.filled(),
                )))
                .map_err(io)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    names[i].clone(),
                    (-lim, y + 0.35),
                    ("sans-serif", 13).into_font().color(&BLACK),
                )))
                .map_err(io)?;
        }
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (0.0, n as f64)],
                BLACK.stroke_width(1),
            )))
            .map_err(io)?;
        Ok(())
    })
}

/// Writes comparison.md, comparison.png and comparison.json into `dir`.
pub fn write_outputs(
    dir: &Path,
    current: &str,
    base: &str,
    rows: &[MetricComparison],
) -> std::io::Result<()> {
    fsutil::write_atomic(
        &dir.join("comparison.md"),
        markdown(current, base, rows).as_bytes(),
    )?;
    plot(
        &dir.join("comparison.png"),
        &format!("{current} vs {base}"),
        rows,
    )?;
    let json = serde_json::json!({
        "current": current,
        "baseline": base,
        "regressed": rows.iter().filter(|r| r.regressed).map(|r| &r.metric).collect::<Vec<_>>(),
        "metrics": rows,
    });
    // serde_json writes non-finite numbers as null.
    fsutil::write_atomic(
        &dir.join("comparison.json"),
        serde_json::to_string_pretty(&json).map_err(io)?.as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_covers_the_mean_and_shrinks_with_agreement() {
        let d: Vec<f64> = (0..50).map(|i| 1.0 + (i % 5) as f64 * 0.1).collect();
        let (lo, hi) = bootstrap_ci(&d, RESAMPLES, 0);
        let mean = d.iter().sum::<f64>() / 50.0;
        assert!(lo < mean && mean < hi && hi - lo < 0.1, "{lo} {hi}");
        assert_eq!(bootstrap_ci(&[0.0; 10], 100, 0), (0.0, 0.0));
        assert_eq!(better("collision_at_fault"), Better::Lower);
        assert_eq!(better("progress_rel_to_total"), Better::Higher);
        assert_eq!(better("dist_traveled_m"), Better::Neither);
        assert_eq!(better("nuplan_cls"), Better::Higher);
        assert_eq!(better("carla_ds"), Better::Higher);
        assert_eq!(better("carla_collisions_vehicle"), Better::Lower);
        assert_eq!(better("waymax_overlap"), Better::Lower);
        assert_eq!(better("expert_route_progress_m"), Better::Neither);
    }
}
