//! telemetry/metrics_plot.png: DESIGN §8's 3×3 figure — RPC duration, RPC blocking, RPC queue
//! depth; rollout duration, step duration, service configuration; CPU utilisation, GPU
//! utilisation, GPU memory (with the capacity line) — under a title with the run name, the
//! workers' idle share and the simulated seconds per rollout.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::advice::Summary;
use super::prom::{histograms_by, Family};

const W: u32 = 560;
const H: u32 = 340;

fn io(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// One row of a bar panel: label, value, optional whisker (e.g. p95).
pub type Bar = (String, f64, Option<f64>);

fn message(area: &Area<'_>, title: &str, text: &str) -> std::io::Result<()> {
    area.draw_text(
        title,
        &("sans-serif", 17).into_font().color(&BLACK),
        (10, 6),
    )
    .map_err(io)?;
    area.draw_text(
        text,
        &("sans-serif", 15)
            .into_font()
            .color(&RGBColor(120, 120, 120)),
        (40, H as i32 / 2),
    )
    .map_err(io)
}

/// Horizontal bars (value) with a black tick at the whisker; log10 x axis when `log`.
fn bars(
    area: &Area<'_>,
    title: &str,
    unit: &str,
    rows: &[Bar],
    log: bool,
    line: Option<(f64, &str)>,
) -> std::io::Result<()> {
    if rows.is_empty() {
        return message(area, title, "no data");
    }
    let tf = |v: f64| if log { v.max(1e-6).log10() } else { v };
    let finite = |v: f64| v.is_finite();
    let vals: Vec<f64> = rows
        .iter()
        .flat_map(|r| [Some(r.1), r.2].into_iter().flatten())
        .chain(line.map(|l| l.0))
        .filter(|v| finite(*v))
        .map(tf)
        .collect();
    let (mut lo, mut hi) = vals
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    if !lo.is_finite() {
        return message(area, title, "no finite values");
    }
    if log {
        lo = lo.floor();
        hi = hi.ceil().max(lo + 1.0);
    } else {
        lo = lo.min(0.0);
        hi = if hi > lo { hi * 1.1 } else { lo + 1.0 };
    }
    if rows
        .iter()
        .all(|r| r.1 == 0.0 && r.2.is_none_or(|w| w == 0.0))
    {
        return message(area, title, "all zero (nothing waited)");
    }
    let n = rows.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(8)
        .margin_right(20)
        .x_label_area_size(34)
        .y_label_area_size(8)
        .build_cartesian_2d(lo..hi, 0f64..n as f64)
        .map_err(io)?;
    chart
        .configure_mesh()
        .y_labels(0)
        .x_labels(if log { (hi - lo) as usize + 1 } else { 6 })
        .x_label_formatter(&|x| {
            if log {
                crate::report::format::num(Some(10f64.powf(x.round())))
            } else {
                crate::report::format::num(Some(*x))
            }
        })
        .x_desc(unit)
        .label_style(("sans-serif", 12))
        .disable_y_mesh()
        .draw()
        .map_err(io)?;
    // Category names above their bars (long service.method names do not fit an axis).
    chart
        .draw_series(rows.iter().enumerate().map(|(i, r)| {
            Text::new(
                r.0.clone(),
                (lo, i as f64 + 0.98),
                ("sans-serif", 12).into_font().color(&BLACK),
            )
        }))
        .map_err(io)?;
    let blue = RGBColor(70, 110, 200);
    for (i, r) in rows.iter().enumerate() {
        let y = i as f64;
        if finite(r.1) {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(lo, y + 0.1), (tf(r.1), y + 0.55)],
                    blue.filled(),
                )))
                .map_err(io)?;
        }
        if let Some(w) = r.2.filter(|w| finite(*w)) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(tf(w), y + 0.05), (tf(w), y + 0.6)],
                    BLACK.stroke_width(3),
                )))
                .map_err(io)?;
        }
    }
    if let Some((v, label)) = line {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(tf(v), 0.0), (tf(v), n as f64)],
                RED.stroke_width(2),
            )))
            .map_err(io)?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED.stroke_width(2)));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 12))
            .draw()
            .map_err(io)?;
    }
    Ok(())
}

/// Non-cumulative bucket counts of a label-less histogram summed over workers.
fn buckets(f: Option<&Family>) -> Vec<(f64, f64)> {
    f.and_then(|f| histograms_by(f, |_| String::new()).into_values().next())
        .map(|h| h.per_bucket())
        .unwrap_or_default()
}

/// Per (service/method) mean and p95 of a labelled histogram family, in `scale` units.
fn rpc_rows(f: Option<&Family>, by_method: bool, scale: f64) -> Vec<Bar> {
    let Some(f) = f else { return Vec::new() };
    histograms_by(f, |x| {
        let s = x.label("service").unwrap_or("?");
        if by_method {
            format!("{s}.{}", x.label("method").unwrap_or("?"))
        } else {
            s.to_string()
        }
    })
    .into_iter()
    .filter(|(_, h)| h.count > 0.0)
    .map(|(k, h)| (k, h.mean() * scale, Some(h.quantile(0.95) * scale)))
    .collect()
}

fn stat_rows(f: Option<&Family>, who: &str, scale: f64) -> Vec<Bar> {
    let Some(f) = f else { return Vec::new() };
    let order = [
        "min", "p05", "p25", "p50", "mean", "p75", "p95", "p99", "max",
    ];
    let mut rows = Vec::new();
    for stat in order {
        let v: Vec<f64> = f
            .samples
            .iter()
            .filter(|x| x.label("stat") == Some(stat))
            .map(|x| x.value * scale)
            .collect();
        if !v.is_empty() {
            let label = match v.len() {
                1 => format!("{who} {stat}"),
                n => format!("{stat} (mean of {n})"),
            };
            rows.push((label, v.iter().sum::<f64>() / v.len() as f64, None));
        }
    }
    rows
}

/// One box per process of a `{name, stat}` family: p25–p75 box, median, p05–p95 whiskers, min
/// and max as dots (AlpaSim's tuning guide reads CPU use as box plots).
fn box_panel(area: &Area<'_>, title: &str, unit: &str, f: Option<&Family>) -> std::io::Result<()> {
    let Some(f) = f else {
        return message(area, title, "no data");
    };
    let mut boxes: Vec<(String, [Option<f64>; 7])> = Vec::new();
    let order = ["min", "p05", "p25", "p50", "p75", "p95", "max"];
    for x in &f.samples {
        let who = x.label("name").unwrap_or("process").to_string();
        let Some(k) = x
            .label("stat")
            .and_then(|st| order.iter().position(|o| *o == st))
        else {
            continue;
        };
        let i = match boxes.iter().position(|b| b.0 == who) {
            Some(i) => i,
            None => {
                boxes.push((who, [None; 7]));
                boxes.len() - 1
            }
        };
        boxes[i].1[k] = Some(x.value);
    }
    boxes.retain(|b| b.1[2].is_some() && b.1[4].is_some() && b.1[3].is_some());
    if boxes.is_empty() {
        return message(area, title, "no quantiles recorded");
    }
    let hi = boxes
        .iter()
        .flat_map(|b| b.1.iter().flatten())
        .fold(0f64, |a, &v| a.max(v))
        .max(1.0)
        * 1.1;
    let n = boxes.len();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 17))
        .margin(8)
        .margin_right(20)
        .x_label_area_size(34)
        .y_label_area_size(8)
        .build_cartesian_2d(0f64..hi, 0f64..n as f64)
        .map_err(io)?;
    chart
        .configure_mesh()
        .y_labels(0)
        .x_labels(6)
        .x_label_formatter(&|x| crate::report::format::num(Some(*x)))
        .x_desc(unit)
        .label_style(("sans-serif", 12))
        .disable_y_mesh()
        .draw()
        .map_err(io)?;
    let blue = RGBColor(70, 110, 200);
    for (i, (who, q)) in boxes.iter().enumerate() {
        let y = i as f64;
        let label = format!(
            "{who}: median {} (p05 {} … p95 {})",
            crate::report::format::num(q[3]),
            crate::report::format::num(q[1]),
            crate::report::format::num(q[5])
        );
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (0.0, y + 0.98),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))
            .map_err(io)?;
        let (p25, p50, p75) = (
            q[2].unwrap_or(0.0),
            q[3].unwrap_or(0.0),
            q[4].unwrap_or(0.0),
        );
        if let (Some(a), Some(b)) = (q[1], q[5]) {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(a, y + 0.35), (b, y + 0.35)],
                    BLACK.stroke_width(1),
                )))
                .map_err(io)?;
            for v in [a, b] {
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(v, y + 0.2), (v, y + 0.5)],
                        BLACK,
                    )))
                    .map_err(io)?;
            }
        }
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(p25, y + 0.12), (p75, y + 0.58)],
                RGBColor(207, 224, 244).filled(),
            )))
            .map_err(io)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(p25, y + 0.12), (p75, y + 0.58)],
                blue,
            )))
            .map_err(io)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(p50, y + 0.08), (p50, y + 0.62)],
                BLACK.stroke_width(3),
            )))
            .map_err(io)?;
        for v in [q[0], q[6]].into_iter().flatten() {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (v, y + 0.35),
                    3,
                    BLACK.filled(),
                )))
                .map_err(io)?;
        }
    }
    Ok(())
}

fn histogram_panel(
    area: &Area<'_>,
    title: &str,
    unit: &str,
    b: &[(f64, f64)],
    scale: f64,
) -> std::io::Result<()> {
    let last = b.iter().rposition(|(_, c)| *c > 0.0);
    let Some(last) = last else {
        return message(area, title, "no data");
    };
    let first = b.iter().position(|(_, c)| *c > 0.0).unwrap_or(0);
    // Each bucket as the range it counts ("0.01–0.05 s"), from the bound below it.
    let f = |v: f64| crate::report::format::num(Some(v * scale));
    let rows: Vec<Bar> = (first..=last)
        .map(|i| {
            let (le, c) = b[i];
            let below = if i == 0 { None } else { Some(b[i - 1].0) };
            let l = match (below, le.is_finite()) {
                (Some(lo), true) => format!("{}–{} {unit}: {c}", f(lo), f(le)),
                (None, true) => format!("≤ {} {unit}: {c}", f(le)),
                (Some(lo), false) => format!("> {} {unit}: {c}", f(lo)),
                (None, false) => format!("all: {c}"),
            };
            (l, c, None)
        })
        .collect();
    bars(area, title, "count", &rows, false, None)
}

/// Renders the figure.
pub fn write(
    path: &Path,
    families: &[(String, Family)],
    summary: &Summary,
    services: &[(String, String)],
) -> std::io::Result<()> {
    crate::report::plot::register_font();
    let fam = |n: &str| families.iter().find(|(k, _)| k == n).map(|(_, f)| f);
    crate::report::plot::write_png(path, (3 * W, 3 * H + 50), |root| {
        root.fill(&WHITE).map_err(io)?;
        let (title, body) = root.split_vertically(50);
        title
            .draw_text(
                &format!(
                    "{} — workers idle {:.0} % · {} s per rollout · {} rollouts",
                    summary.run_name,
                    100.0 * summary.idle_fraction(),
                    crate::report::format::num(Some(summary.seconds_per_rollout())),
                    summary.rollouts
                ),
                &("sans-serif", 22).into_font().color(&BLACK),
                (12, 12),
            )
            .map_err(io)?;
        let p = body.split_evenly((3, 3));
        bars(
            &p[0],
            "RPC duration (mean, p95 tick)",
            "ms (log)",
            &rpc_rows(fam("rpc_duration_seconds"), true, 1e3),
            true,
            None,
        )?;
        bars(
            &p[1],
            "RPC blocking (mean, p95 tick)",
            "ms (log)",
            &rpc_rows(fam("rpc_blocking_seconds"), true, 1e3),
            true,
            None,
        )?;
        bars(
            &p[2],
            "RPC queue depth at start (mean, p95 tick)",
            "calls waiting",
            &rpc_rows(fam("rpc_queue_depth_at_start"), false, 1.0),
            false,
            None,
        )?;
        histogram_panel(
            &p[3],
            "Rollout duration",
            "s",
            &buckets(fam("rollout_duration_seconds")),
            1.0,
        )?;
        histogram_panel(
            &p[4],
            "Step duration",
            "ms",
            &buckets(fam("step_duration_seconds")),
            1e3,
        )?;
        // Service configuration table.
        let t = &p[5];
        t.draw_text(
            "Service configuration",
            &("sans-serif", 17).into_font().color(&BLACK),
            (10, 6),
        )
        .map_err(io)?;
        for (i, (svc, row)) in services.iter().enumerate() {
            let y = 40 + 24 * i as i32;
            t.draw_text(svc, &("sans-serif", 14).into_font().color(&BLACK), (14, y))
                .map_err(io)?;
            t.draw_text(row, &("sans-serif", 14).into_font().color(&BLACK), (130, y))
                .map_err(io)?;
        }
        box_panel(
            &p[6],
            "CPU utilisation (box p25–p75, median, whiskers p05–p95)",
            "% of one core",
            fam("process_cpu_utilization"),
        )?;
        if summary.gpu_util_mean.is_empty() {
            message(&p[7], "GPU utilisation", "no GPU")?;
            message(&p[8], "GPU memory", "no GPU")?;
        } else {
            bars(
                &p[7],
                "GPU utilisation",
                "%",
                &stat_rows(fam("gpu_utilization"), "gpu", 1.0),
                false,
                None,
            )?;
            let cap = fam("gpu_memory_total_bytes")
                .and_then(|f| f.samples.first())
                .map(|s| s.value / 1e9);
            bars(
                &p[8],
                "GPU memory",
                "GB",
                &stat_rows(fam("gpu_memory_used_bytes"), "gpu", 1e-9),
                false,
                cap.map(|c| (c, "capacity")),
            )?;
        }
        Ok(())
    })
}
