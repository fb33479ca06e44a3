//! aggregate/videos/: `all/` holds a relative symlink to every rollout video of the aggregated
//! batches; `violations/<type>/` links into `../../all/` for each rollout whose time-aggregated
//! metrics show that violation (AlpaSim's conditions), named `NNN_<video>` so the worst sort first
//! (the earliest event for collisions and offroad — trajectories end at their first event, so
//! `duration_frac_20s` is its time —, the largest deviation for dist_to_gt_trajectory);
//! `index.html` lists every violation with its metrics and a player. Links never leave the run
//! dir.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::aggregate::trajectory::names;
use crate::aggregate::{Outcome, Problem, ProblemKind};

/// Violation folders and the metric/threshold that fills each.
pub const VIOLATIONS: [&str; 4] = [
    "collision_at_fault",
    "collision_rear",
    "offroad",
    "dist_to_gt_trajectory",
];

/// Links made and problems met.
pub struct VideoReport {
    /// (clipgt_id, rollout_id) → link path relative to aggregate/.
    pub links: HashMap<(String, String), String>,
    /// Dangling or unmatched videos.
    pub problems: Vec<Problem>,
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    fs::copy(link.parent().unwrap_or(Path::new(".")).join(target), link).map(|_| ())
}

/// The rollout index i of a video named `{clipgt_id}_{batch_id}_{i}.mp4`.
fn video_index(name: &str, clipgt_id: &str) -> Option<String> {
    let stem = name
        .strip_suffix(".mp4")?
        .strip_prefix(clipgt_id)?
        .strip_prefix('_')?;
    let (batch_id, i) = stem.rsplit_once('_')?;
    (!batch_id.is_empty() && !i.is_empty()).then(|| i.to_string())
}

/// Builds aggregate/videos/ afresh (in a temporary dir renamed into place).
pub fn link(
    run_root: &Path,
    out_dir: &Path,
    o: &Outcome,
    batch_dirs: &[PathBuf],
    max_dist_m: f64,
) -> std::io::Result<VideoReport> {
    let tmp = out_dir.join(format!(".videos.tmp-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let all = tmp.join("all");
    fs::create_dir_all(&all)?;
    for v in VIOLATIONS {
        fs::create_dir_all(tmp.join("violations").join(v))?;
    }
    let r = &o.results;
    let col = |n: &str| r.metric_columns.iter().position(|c| c.name == n);
    type Condition = (Option<usize>, Box<dyn Fn(f64) -> bool>);
    let conds: [Condition; 4] = [
        (col(names::COLLISION_AT_FAULT), Box::new(|v| v > 0.0)),
        (col(names::COLLISION_REAR), Box::new(|v| v > 0.0)),
        (col(names::OFFROAD), Box::new(|v| v > 0.0)),
        (
            col(names::DIST_TO_GT_TRAJECTORY),
            Box::new(move |v| v >= max_dist_m),
        ),
    ];
    // (violation, severity key, video name, trajectory) collected, ranked and linked below.
    let mut found: Vec<(usize, f64, String, usize)> = Vec::new();
    let frac = col("duration_frac_20s");
    let dev = col(names::DIST_TO_GT_TRAJECTORY);
    let mut by_batch: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, t) in r.trajectories.iter().enumerate() {
        by_batch.entry(t.batch).or_default().push(i);
    }
    let mut report = VideoReport {
        links: HashMap::new(),
        problems: Vec::new(),
    };
    // The batch dirs listed in parallel (a directory read each), then linked in batch order.
    use rayon::prelude::*;
    let listed: Vec<Option<Vec<PathBuf>>> = batch_dirs
        .par_iter()
        .enumerate()
        .map(|(b, dir)| {
            if !by_batch.contains_key(&b) {
                return None;
            }
            let mut files: Vec<PathBuf> = fs::read_dir(dir)
                .ok()?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
                .collect();
            files.sort();
            Some(files)
        })
        .collect();
    for (b, (dir, files)) in batch_dirs.iter().zip(listed).enumerate() {
        let (Some(trajs), Some(files)) = (by_batch.get(&b), files) else {
            continue;
        };
        let rel_dir = dir.strip_prefix(run_root).unwrap_or(dir);
        for f in files {
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let shown = rel_dir.join(&name).display().to_string();
            if !f.exists() {
                report.problems.push(Problem {
                    kind: ProblemKind::Warning,
                    path: shown,
                    message: "dangling video (broken link); not linked".into(),
                });
                continue;
            }
            let clip = &r.trajectories[trajs[0]].clipgt_id;
            let traj = video_index(&name, clip).and_then(|i| {
                trajs.iter().copied().find(|&t| {
                    r.trajectories[t].rollout_id.rsplit_once('-').map(|x| x.1) == Some(i.as_str())
                })
            });
            let link_path = all.join(&name);
            if link_path.symlink_metadata().is_ok() {
                report.problems.push(Problem {
                    kind: ProblemKind::Warning,
                    path: shown,
                    message: "another batch has a video of the same name; not linked".into(),
                });
                continue;
            }
            symlink(&Path::new("../../..").join(rel_dir).join(&name), &link_path)?;
            let Some(ti) = traj else { continue };
            let t = &r.trajectories[ti];
            report.links.insert(
                (t.clipgt_id.clone(), t.rollout_id.clone()),
                format!("videos/all/{name}"),
            );
            if !t.kept {
                continue;
            }
            for (vi, (c, cond)) in conds.iter().enumerate() {
                if c.and_then(|c| t.values[c]).is_some_and(cond) {
                    // Smaller key = worse: earlier event, or larger deviation.
                    let key = if VIOLATIONS[vi] == "dist_to_gt_trajectory" {
                        -dev.and_then(|c| t.values[c]).unwrap_or(0.0)
                    } else {
                        frac.and_then(|c| t.values[c]).unwrap_or(f64::INFINITY)
                    };
                    found.push((vi, key, name.clone(), ti));
                }
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut ranked: Vec<(usize, String, usize, String)> = Vec::new();
    let mut rank = 0;
    for (i, (vi, _, name, ti)) in found.iter().enumerate() {
        rank = if i > 0 && found[i - 1].0 == *vi {
            rank + 1
        } else {
            1
        };
        let link_name = format!("{rank:03}_{name}");
        symlink(
            &Path::new("../../all").join(name),
            &tmp.join("violations")
                .join(VIOLATIONS[*vi])
                .join(&link_name),
        )?;
        ranked.push((*vi, link_name, *ti, name.clone()));
    }
    fs::write(tmp.join("index.html"), index_html(o, &ranked))?;
    let dest = out_dir.join("videos");
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&tmp, &dest)?;
    Ok(report)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The review page: per violation type, worst first, each rollout's key metrics and a player.
fn index_html(o: &Outcome, ranked: &[(usize, String, usize, String)]) -> String {
    let r = &o.results;
    let shown = [
        "collision_at_fault",
        "collision_rear",
        "offroad",
        "dist_to_gt_trajectory",
        "progress_rel_to_total",
        "duration_frac_20s",
    ];
    let cols: Vec<(&str, Option<usize>)> = shown
        .iter()
        .map(|n| (*n, r.metric_columns.iter().position(|c| c.name == *n)))
        .collect();
    let mut h = String::new();
    h.push_str(&format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — violations</title>\n<style>body{{font-family:sans-serif;margin:1.5em;background:#fafafa}}h2{{margin-top:1.5em}}.v{{display:inline-block;vertical-align:top;margin:0 1em 1em 0;padding:.6em;background:#fff;border:1px solid #ccc;border-radius:6px}}.v video{{width:256px;height:256px;background:#222}}table{{font-size:12px;border-collapse:collapse}}td{{padding:1px 6px}}</style></head><body>\n<h1>{} — {} violating rollout video(s)</h1>\n<p>Worst first: earliest event for collisions and offroad, largest deviation for dist_to_gt_trajectory. Videos: <code>all/</code>.</p>\n",
        esc(&r.run_name),
        esc(&r.run_name),
        ranked.len()
    ));
    for (vi, v) in VIOLATIONS.iter().enumerate() {
        let items: Vec<&(usize, String, usize, String)> =
            ranked.iter().filter(|x| x.0 == vi).collect();
        h.push_str(&format!("<h2 id=\"{v}\">{v} ({})</h2>\n", items.len()));
        if items.is_empty() {
            h.push_str("<p>none</p>\n");
        }
        for (_, link, ti, _) in items {
            let t = &r.trajectories[*ti];
            h.push_str(&format!(
                "<div class=\"v\"><div><b>{}</b> · rollout {}</div><video controls preload=\"metadata\" src=\"violations/{v}/{}\"></video><table>",
                esc(&t.clipgt_id),
                esc(&t.rollout_id),
                esc(link)
            ));
            for (name, c) in &cols {
                let val = c.and_then(|c| t.values[c]);
                h.push_str(&format!(
                    "<tr><td>{name}</td><td>{}</td></tr>",
                    crate::report::format::num(val)
                ));
            }
            h.push_str("</table></div>\n");
        }
    }
    // Each player marks itself once its first frame decodes (handy for checking a browser can
    // play the files; tests/video.rs does so in headless Chromium).
    h.push_str("<script>for (const v of document.querySelectorAll('video')) { v.addEventListener('loadeddata', () => { v.dataset.loaded = '1'; }); }</script>\n");
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::video_index;

    #[test]
    fn parses_video_names() {
        assert_eq!(video_index("scene_a_0_3.mp4", "scene_a"), Some("3".into()));
        assert_eq!(video_index("scene_a_0_3.mp4", "scene_b"), None);
        assert_eq!(video_index("scene_a_3.mp4", "scene_a"), None);
    }
}
