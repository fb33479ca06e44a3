//! metrics_results.png, the summary read at a glance: each safety rate as a bar with its 95 %
//! interval ([`crate::aggregate::scorecard`]), each continuous metric as a box plot on its own
//! scale (p25–p75 box, median, p05–p95 whiskers, the numbers beside it), and each benchmark
//! score as a bar on its scale.
//!
//! metrics_histograms.png: one panel per benchmark score, then per metric, with the distribution
//! of its per-trajectory values (histogram), and the run's statistics over rollouts marked on top
//! — mean (red line), p25–p75 (blue band), p05–p95 (whiskers) and median (tick).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::aggregate::{scorecard, Outcome};
use crate::report::format::num;

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 250;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub use crate::report::plot::register_font;

/// Renders the histograms figure to a PNG file.
pub fn write_histograms(path: &Path, o: &Outcome) -> std::io::Result<()> {
    register_font();
    let r = &o.results;
    // The benchmark scores first, then the per-step metrics and km per incident; the rollout
    // metrics (the scores' inputs) stay in the table and Parquet files.
    let scores: Vec<usize> = r
        .profiles
        .iter()
        .flat_map(|p| p.scores.iter().map(|s| s.column))
        .collect();
    let panels_of: Vec<usize> = scores
        .iter()
        .copied()
        .chain((0..r.columns.len()).filter(|c| {
            !scores.contains(c)
                && crate::metrics::rollout_table::lookup(&r.columns[*c].name).is_none()
        }))
        .collect();
    let n = panels_of.len().max(1);
    let cols = 4usize.min(n);
    let rows = n.div_ceil(cols);
    let (w, h) = (PANEL_W * cols as u32, PANEL_H * rows as u32 + 60);
    crate::report::plot::write_png(path, (w, h), |root| {
        root.fill(&WHITE).map_err(io)?;
        let (title, body) = root.split_vertically(60);
        title
            .draw_text(
                &format!(
                    "{} — {} scenes, {} rollouts, {} trajectories",
                    r.run_name,
                    r.by_scene.len(),
                    r.run.n_rollouts,
                    r.trajectories.iter().filter(|t| t.kept).count()
                ),
                &("sans-serif", 22).into_font().color(&BLACK),
                (12, 8),
            )
            .map_err(io)?;
        title
            .draw_text(
                "bars: per-trajectory values · red: mean over rollouts · blue band: p25–p75 · whiskers: p05–p95 · black tick: median",
                &("sans-serif", 14).into_font().color(&RGBColor(90, 90, 90)),
                (12, 36),
            )
            .map_err(io)?;
        let panels = body.split_evenly((rows, cols));
        for (panel, &c) in panels.iter().zip(&panels_of) {
            draw_panel(panel, o, c).map_err(io)?;
        }
        Ok(())
    })
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    o: &Outcome,
    c: usize,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let r = &o.results;
    let col = &r.columns[c];
    let s = &r.run.columns[c];
    // Per-trajectory values: metric columns come from trajectories; km-per-incident from rollouts.
    let values: Vec<f64> = if c < r.metric_columns.len() {
        r.trajectories
            .iter()
            .filter(|t| t.kept)
            .filter_map(|t| t.values[c])
            .filter(|v| v.is_finite())
            .collect()
    } else {
        r.rollouts
            .iter()
            .filter_map(|row| row.values[c])
            .filter(|v| v.is_finite())
            .collect()
    };
    let marks: Vec<f64> = s
        .quantiles
        .iter()
        .chain([&s.mean])
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = values
        .iter()
        .chain(&marks)
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if lo > hi {
        (lo, hi) = (0.0, 1.0);
    }
    if (hi - lo).abs() < 1e-12 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let bins = 20usize;
    let mut counts = vec![0u32; bins];
    for v in &values {
        let b = (((v - lo) / (hi - lo)) * bins as f64).floor() as usize;
        counts[b.min(bins - 1)] += 1;
    }
    let ymax = (*counts.iter().max().unwrap_or(&1)).max(1) as f64 * 1.25;
    let caption = format!(
        "{} ({})  {}{}",
        col.name,
        col.time_aggregation
            .map(|a| a.to_string())
            .unwrap_or_else(|| "over clips".into()),
        num(s.mean),
        s.std
            .map(|sd| format!(" ± {}", num(Some(sd))))
            .unwrap_or_default()
    );
    let mut chart = ChartBuilder::on(area)
        .margin(8)
        .caption(caption, ("sans-serif", 14))
        .x_label_area_size(22)
        .y_label_area_size(34)
        .build_cartesian_2d(lo..hi, 0.0..ymax)?;
    chart
        .configure_mesh()
        .light_line_style(WHITE.mix(0.0))
        .x_labels(5)
        .y_labels((ymax as usize).clamp(1, 4) + 1)
        .x_label_formatter(&|v| num(Some(if v.abs() < (hi - lo) * 1e-9 { 0.0 } else { *v })))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 11))
        .draw()?;
    let width = (hi - lo) / bins as f64;
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, &k)| k > 0)
            .map(|(b, &k)| {
                let x0 = lo + b as f64 * width;
                Rectangle::new(
                    [(x0, 0.0), (x0 + width * 0.92, k as f64)],
                    RGBColor(170, 170, 170).filled(),
                )
            }),
    )?;
    let y = ymax * 0.9;
    let band = ymax * 0.04;
    if let [Some(p05), Some(p25), Some(p50), Some(p75), Some(p95)] = s.quantiles {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(p05, y), (p95, y)],
            BLACK.stroke_width(1),
        )))?;
        for x in [p05, p95] {
            chart.draw_series(std::iter::once(PathElement::new(
                vec![(x, y - band), (x, y + band)],
                BLACK,
            )))?;
        }
        chart.draw_series(std::iter::once(Rectangle::new(
            [(p25, y - band), (p75, y + band)],
            RGBColor(70, 110, 200).filled(),
        )))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(p50, y - band * 1.5), (p50, y + band * 1.5)],
            BLACK.stroke_width(3),
        )))?;
    }
    if let Some(m) = s.mean.filter(|m| m.is_finite()) {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(m, 0.0), (m, ymax)],
            RED.stroke_width(2),
        )))?;
    }
    if values.is_empty() {
        let style = TextStyle::from(("sans-serif", 13).into_font())
            .pos(Pos::new(HPos::Center, VPos::Center));
        let (w, h) = area.dim_in_pixel();
        area.draw_text("no finite values", &style, (w as i32 / 2, h as i32 / 2))?;
    }
    Ok(())
}

const ROW: i32 = 30;
const LABEL_W: i32 = 300;
const PLOT_W: i32 = 520;
const NUM_W: i32 = 320;

/// Renders the summary figure to a PNG file.
pub fn write(path: &Path, o: &Outcome) -> std::io::Result<()> {
    register_font();
    let r = &o.results;
    let rates = scorecard::rates(o);
    let scores: Vec<(String, f64, usize)> = r
        .profiles
        .iter()
        .flat_map(|p| &p.scores)
        .filter(|s| s.n_scored > 0)
        .map(|s| (s.name.to_string(), s.sum / s.n_scored as f64, s.column))
        .collect();
    let score_cols: Vec<usize> = scores.iter().map(|s| s.2).collect();
    let continuous: Vec<usize> = scorecard::continuous_columns(o)
        .into_iter()
        .filter(|c| !score_cols.contains(c))
        .collect();
    let sections = [rates.len(), continuous.len(), scores.len()];
    let body: i32 = sections.iter().map(|&n| 40 + ROW * n.max(1) as i32).sum();
    let (w, h) = ((LABEL_W + PLOT_W + NUM_W) as u32, (70 + body + 10) as u32);
    crate::report::plot::write_png(path, (w, h), |root| {
        root.fill(&WHITE).map_err(io)?;
        let big = ("sans-serif", 22).into_font().color(&BLACK);
        let head = ("sans-serif", 17).into_font().color(&BLACK);
        let text = ("sans-serif", 14).into_font().color(&BLACK);
        let grey = ("sans-serif", 13).into_font().color(&RGBColor(80, 80, 80));
        let right = TextStyle::from(("sans-serif", 14).into_font())
            .pos(Pos::new(HPos::Right, VPos::Center));
        let mid = ("sans-serif", 13)
            .into_font()
            .color(&RGBColor(60, 60, 60))
            .pos(Pos::new(HPos::Left, VPos::Center));
        let t =
            |s: &str, style: &TextStyle, at: (i32, i32)| root.draw_text(s, style, at).map_err(io);
        t(
            &format!(
                "{} — {} scenes, {} kept rollouts",
                r.run_name,
                r.by_scene.len(),
                r.trajectories.iter().filter(|t| t.kept).count()
            ),
            &big,
            (12, 10),
        )?;
        t(
            "rates: bar with 95 % interval · box: p25–p75, median, whiskers p05–p95 (each row on its own scale) · histograms: metrics_histograms.png",
            &grey,
            (12, 42),
        )?;
        let x0 = LABEL_W;
        let mut y = 70;
        // Rates.
        t("Safety rates (share of rollouts)", &head, (12, y))?;
        y += 30;
        let top = rates
            .iter()
            .map(|r| r.hi.max(r.rate))
            .fold(0.05f64, f64::max)
            * 1.1;
        let px = |v: f64| x0 + ((PLOT_W - 20) as f64 * (v / top).clamp(0.0, 1.0)) as i32;
        if rates.is_empty() {
            t("the run has none of the rate metrics", &text, (x0, y))?;
            y += ROW;
        }
        for rt in &rates {
            let cy = y + ROW / 2;
            t(rt.label, &right, (x0 - 10, cy))?;
            root.draw(&Rectangle::new(
                [(x0, cy - 8), (px(rt.rate).max(x0 + 1), cy + 8)],
                RGBColor(111, 159, 216).filled(),
            ))
            .map_err(io)?;
            root.draw(&PathElement::new(
                vec![(px(rt.lo), cy), (px(rt.hi), cy)],
                BLACK.stroke_width(2),
            ))
            .map_err(io)?;
            for v in [rt.lo, rt.hi] {
                root.draw(&PathElement::new(
                    vec![(px(v), cy - 6), (px(v), cy + 6)],
                    BLACK.stroke_width(2),
                ))
                .map_err(io)?;
            }
            t(
                &format!(
                    "{:.1} % [{:.1}–{:.1} %]  {}/{}",
                    100.0 * rt.rate,
                    100.0 * rt.lo,
                    100.0 * rt.hi,
                    rt.k,
                    rt.n
                ),
                &mid,
                (x0 + PLOT_W + 4, cy),
            )?;
            y += ROW;
        }
        y += 10;
        // Continuous metrics.
        t("Continuous metrics over kept rollouts", &head, (12, y))?;
        y += 30;
        for &c in &continuous {
            let s = &r.run.columns[c];
            let [Some(p05), Some(p25), Some(p50), Some(p75), Some(p95)] = s.quantiles else {
                continue;
            };
            let cy = y + ROW / 2;
            t(&r.metric_columns[c].name, &right, (x0 - 10, cy))?;
            let span = (p95 - p05).abs().max(1e-12);
            let px = |v: f64| {
                x0 + 10 + ((PLOT_W - 40) as f64 * ((v - p05) / span).clamp(0.0, 1.0)) as i32
            };
            root.draw(&PathElement::new(
                vec![(px(p05), cy), (px(p95), cy)],
                BLACK.stroke_width(1),
            ))
            .map_err(io)?;
            for v in [p05, p95] {
                root.draw(&PathElement::new(
                    vec![(px(v), cy - 5), (px(v), cy + 5)],
                    BLACK,
                ))
                .map_err(io)?;
            }
            root.draw(&Rectangle::new(
                [(px(p25), cy - 9), (px(p75).max(px(p25) + 1), cy + 9)],
                RGBColor(207, 224, 244).filled(),
            ))
            .map_err(io)?;
            root.draw(&Rectangle::new(
                [(px(p25), cy - 9), (px(p75).max(px(p25) + 1), cy + 9)],
                RGBColor(31, 95, 168),
            ))
            .map_err(io)?;
            root.draw(&PathElement::new(
                vec![(px(p50), cy - 11), (px(p50), cy + 11)],
                RGBColor(11, 46, 89).stroke_width(3),
            ))
            .map_err(io)?;
            t(
                &format!(
                    "median {}  ({} … {})",
                    num(Some(p50)),
                    num(Some(p05)),
                    num(Some(p95))
                ),
                &mid,
                (x0 + PLOT_W + 4, cy),
            )?;
            y += ROW;
        }
        if continuous.is_empty() {
            y += ROW;
        }
        y += 10;
        // Scores.
        t(
            "Benchmark scores (mean over scored rollouts)",
            &head,
            (12, y),
        )?;
        y += 30;
        for (name, mean, _) in &scores {
            let cy = y + ROW / 2;
            // CARLA's percent scores on 0–100, scores in [0, 1] on 0–1, anything else (a
            // divergence in metres) on its own scale.
            let (full, fixed) = if name.starts_with("carla_") && *mean > 1.0 {
                (100.0, true)
            } else if (0.0..=1.0).contains(mean) {
                (1.0, true)
            } else {
                (mean.abs() * 1.25, false)
            };
            let px = |v: f64| x0 + ((PLOT_W - 20) as f64 * (v / full).clamp(0.0, 1.0)) as i32;
            t(name, &right, (x0 - 10, cy))?;
            root.draw(&Rectangle::new(
                [(x0, cy - 8), (px(full), cy + 8)],
                RGBColor(235, 235, 235).filled(),
            ))
            .map_err(io)?;
            root.draw(&Rectangle::new(
                [(x0, cy - 8), (px(*mean).max(x0 + 1), cy + 8)],
                RGBColor(92, 160, 110).filled(),
            ))
            .map_err(io)?;
            let label = if fixed {
                format!("{} of {full}", num(Some(*mean)))
            } else {
                format!("{} (no fixed scale)", num(Some(*mean)))
            };
            t(&label, &mid, (x0 + PLOT_W + 4, cy))?;
            y += ROW;
        }
        if scores.is_empty() {
            t("no score profile", &text, (x0, y))?;
        }
        Ok(())
    })
}
