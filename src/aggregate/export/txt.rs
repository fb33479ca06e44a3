//! metrics_results.txt: a fixed-width table (≤ 160 columns) with the run header, the modifiers
//! applied and their counts, warnings, and failed/incomplete/missing rollouts.

use std::fmt::Write as _;
use std::path::Path;

use comfy_table::{presets::UTF8_FULL_CONDENSED, CellAlignment, ContentArrangement, Table};

use crate::aggregate::trajectory::MODIFIERS;
use crate::aggregate::{Options, Outcome, ProblemKind};
use crate::fsutil;
use crate::report::format::num;

/// Maximum width of the file.
pub const WIDTH: u16 = 160;

/// A table of the report's style with `header`, at most [`WIDTH`] wide.
pub fn table(header: Vec<String>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(WIDTH)
        .set_header(header);
    t
}

/// A section rule with `title` centred, [`WIDTH`] wide.
pub fn rule(out: &mut String, title: &str) {
    let pad = (WIDTH as usize).saturating_sub(title.len() + 2) / 2;
    let _ = writeln!(out, "{} {title} {}", "─".repeat(pad), "─".repeat(pad));
}

/// Renders the report as `aggregate` prints it: [`render_file`] plus how many batches were read
/// now and how many came from the cache or the partials.
pub fn render(o: &Outcome, opts: &Options) -> String {
    render_as(o, opts, true)
}

/// Renders metrics_results.txt: the results only, so a cold aggregate, an incremental one and a
/// merge of partials write the same bytes.
pub fn render_file(o: &Outcome, opts: &Options) -> String {
    render_as(o, opts, false)
}

fn render_as(o: &Outcome, opts: &Options, provenance: bool) -> String {
    let r = &o.results;
    let mut out = String::new();
    rule(&mut out, "drivekit aggregate");
    let _ = writeln!(out, "Run: {}   run_uuid: {}", r.run_name, r.run_uuid);
    let kept = r.trajectories.iter().filter(|t| t.kept).count();
    let _ = writeln!(
        out,
        "n_scenes: {}   n_rollouts: {} (rollout uids; std and quantiles are over these)   trajectories: {}   mean n_clips: {}",
        r.by_scene.len(),
        r.run.n_rollouts,
        kept,
        num(r.run.n_clips.mean)
    );
    let read = if provenance {
        format!(
            " ({} read, {} from the cache or partials)",
            o.n_batches_read,
            o.n_batches_used.saturating_sub(o.n_batches_read)
        )
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "batches: {} found, {} aggregated{read}, {} incomplete, {} failed rollouts, {} skipped files, {} missing scenes",
        o.n_batches,
        o.n_batches_used,
        o.count(ProblemKind::IncompleteBatch),
        o.failed_rollouts.len(),
        o.count(ProblemKind::SkippedFile),
        o.count(ProblemKind::MissingScene),
    );
    out.push('\n');
    rule(&mut out, "Modifiers applied");
    for (m, c) in MODIFIERS.iter().zip(&o.modifier_counts) {
        let m = m.replace("{max_dist}", &num(Some(opts.chain.max_dist_to_gt_m)));
        let _ = writeln!(
            out,
            "  {m}  −{} rows, {} trajectories",
            c.rows, c.trajectories
        );
    }
    out.push('\n');
    rule(&mut out, "Results");
    let mut table = table(
        [
            "Metric",
            "mean ± std",
            "p05",
            "p25",
            "p50",
            "p75",
            "p95",
            "time agg.",
        ]
        .map(String::from)
        .to_vec(),
    );
    for (c, s) in r.columns.iter().zip(&r.run.columns) {
        let ms = match s.std {
            Some(sd) => format!("{} ± {}", num(s.mean), num(Some(sd))),
            None => num(s.mean),
        };
        let mut row = vec![c.name.clone(), ms];
        row.extend(s.quantiles.iter().map(|q| num(*q)));
        row.push(
            c.time_aggregation
                .map(|a| a.to_string())
                .unwrap_or_else(|| "over clips".into()),
        );
        table.add_row(row);
    }
    for i in 1..=7 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(out, "{table}");
    let _ = writeln!(out, "Std deviation and quantiles are over rollouts (each the mean over its clips). km-per-incident columns: inf = no incident.");
    benchmark_scores(&mut out, o);
    let warnings: Vec<_> = o
        .problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Warning)
        .collect();
    if !warnings.is_empty() {
        out.push('\n');
        rule(&mut out, "Warnings");
        for p in warnings {
            let _ = writeln!(
                out,
                "  WARNING: {}{}",
                if p.path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.path)
                },
                p.message
            );
        }
    }
    let errors: Vec<_> = o
        .problems
        .iter()
        .filter(|p| p.kind != ProblemKind::Warning)
        .collect();
    if !errors.is_empty() || !o.failed_rollouts.is_empty() {
        out.push('\n');
        rule(
            &mut out,
            "Failed, incomplete, missing and skipped (left out of the numbers above)",
        );
        for f in &o.failed_rollouts {
            let _ = writeln!(
                out,
                "  FAILED rollout {} (scene {}) in {}: {}",
                f.rollout_id, f.clipgt_id, f.batch, f.error
            );
        }
        for p in errors {
            let tag = match p.kind {
                ProblemKind::IncompleteBatch => "INCOMPLETE",
                ProblemKind::SkippedFile => "SKIPPED",
                ProblemKind::MissingScene => "MISSING scene",
                _ => "FAILED",
            };
            let _ = writeln!(out, "  {tag} {}: {}", p.path, p.message);
        }
    }
    out
}

/// The "Benchmark scores" section: each profile's scores over rollouts, its peer's own failure
/// convention beside drivekit's counts, and the profiles left out with the reason.
fn benchmark_scores(out: &mut String, o: &Outcome) {
    let r = &o.results;
    if r.profiles.is_empty() {
        return;
    }
    out.push('\n');
    rule(out, "Benchmark scores");
    let mut table = table(
        [
            "Score",
            "mean ± std",
            "p05",
            "p50",
            "p95",
            "peer's convention",
            "scored / unscored / failed",
        ]
        .map(String::from)
        .to_vec(),
    );
    let failed = o.failed_rollouts.len();
    let mut notes = Vec::new();
    for p in &r.profiles {
        let Some(profile) = crate::metrics::profiles::Profile::parse(p.profile) else {
            continue;
        };
        if let Some(why) = &p.left_out {
            notes.push(format!("  {}: left out — {why}", p.profile));
            continue;
        }
        for n in &p.notes {
            notes.push(format!("  {}: without {n}", p.profile));
        }
        for sc in &p.scores {
            let s = &r.run.columns[sc.column];
            let ms = match s.std {
                Some(sd) => format!("{} ± {}", num(s.mean), num(Some(sd))),
                None => num(s.mean),
            };
            let unscored = sc.unscored.len();
            let denom = if profile.counts_failures_as_zero() {
                sc.n_scored + unscored + failed
            } else {
                sc.n_scored
            };
            let peer = (denom > 0).then(|| sc.sum / denom as f64);
            table.add_row(vec![
                sc.name.to_string(),
                ms,
                num(s.quantiles[0]),
                num(s.quantiles[2]),
                num(s.quantiles[4]),
                format!("{} ({})", num(peer), profile.convention()),
                format!("{} / {unscored} / {failed}", sc.n_scored),
            ]);
            for u in sc.unscored.iter().take(5) {
                notes.push(format!("  {}: unscored {u}", sc.name));
            }
            if unscored > 5 {
                notes.push(format!(
                    "  {}: … and {} more unscored",
                    sc.name,
                    unscored - 5
                ));
            }
        }
    }
    for i in 1..=4 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(out, "{table}");
    let _ = writeln!(out, "Each score per trajectory (docs/scores.md); mean ± std and quantiles over rollouts as above. The peer's convention averages the");
    let _ = writeln!(out, "trajectories its own way: nuPlan drops failed scenarios, NAVSIM and Waymax average the valid ones, CARLA and AlpaSim count failed as 0.");
    for n in notes {
        wrapped(out, &n);
    }
    by_tag(out, o);
}

/// The headline scores per scene tag (scenario type, split…): mean ± std over the tagged
/// trajectories (all statistics in metrics_results_by_tag.parquet).
fn by_tag(out: &mut String, o: &Outcome) {
    let r = &o.results;
    if r.by_tag.is_empty() {
        return;
    }
    let headline: Vec<&crate::aggregate::summary::ScoreResult> = r
        .profiles
        .iter()
        .filter(|p| p.profile != "waymax")
        .flat_map(|p| &p.scores)
        .filter(|s| s.name != crate::metrics::profiles::CARLA_INFRACTION_PENALTY)
        .collect();
    if headline.is_empty() {
        return;
    }
    out.push('\n');
    rule(out, "Benchmark scores by scene tag");
    let mut header = vec!["tag".to_string(), "trajectories".to_string()];
    header.extend(headline.iter().map(|s| s.name.to_string()));
    let mut table = table(header);
    for (tag, st) in &r.by_tag {
        let mut row = vec![tag.clone(), st.n_rollouts.to_string()];
        for sc in &headline {
            let s = &st.columns[sc.column];
            row.push(match s.std {
                Some(sd) => format!("{} ± {}", num(s.mean), num(Some(sd))),
                None => num(s.mean),
            });
        }
        table.add_row(row);
    }
    for i in 1..=headline.len() + 1 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let _ = writeln!(out, "{table}");
}

/// Writes `line` wrapped at word boundaries to [`WIDTH`] columns, continuation lines indented
/// under the first.
fn wrapped(out: &mut String, line: &str) {
    let body = line.trim_start();
    let indent = &line[..line.len() - body.len()];
    let mut current = indent.to_string();
    let mut empty = true;
    for word in body.split_whitespace() {
        if !empty && current.chars().count() + 1 + word.chars().count() > WIDTH as usize {
            let _ = writeln!(out, "{current}");
            current = format!("{indent}    ");
            empty = true;
        }
        if !empty {
            current.push(' ');
        }
        current.push_str(word);
        empty = false;
    }
    let _ = writeln!(out, "{current}");
}

/// Writes the report atomically.
pub fn write(path: &Path, o: &Outcome, opts: &Options) -> std::io::Result<()> {
    fsutil::write_atomic_as(
        path,
        fsutil::Durability::Renamed,
        render_file(o, opts).as_bytes(),
    )
}
