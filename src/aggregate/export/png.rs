//! metrics_results.png: one panel per benchmark score, then per metric, with the distribution of its per-trajectory values
//! (histogram), and the run's statistics over rollouts marked on top — mean (red line), p25–p75
//! (blue band), p05–p95 (whiskers) and median (tick) — so the spread reads at a glance.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::aggregate::Outcome;
use crate::report::format::num;

const PANEL_W: u32 = 420;
const PANEL_H: u32 = 250;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub use crate::report::plot::register_font;

/// Renders the figure to a PNG file.
pub fn write(path: &Path, o: &Outcome) -> std::io::Result<()> {
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
