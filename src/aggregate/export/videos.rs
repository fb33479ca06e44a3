//! aggregate/videos/: `all/` holds a relative symlink to every rollout video of the aggregated
//! batches; `violations/<type>/` links into `../../all/` for each rollout whose time-aggregated
//! metrics show that violation (AlpaSim's conditions). Links never leave the run dir.

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
    let mut by_batch: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, t) in r.trajectories.iter().enumerate() {
        by_batch.entry(t.batch).or_default().push(i);
    }
    let mut report = VideoReport {
        links: HashMap::new(),
        problems: Vec::new(),
    };
    for (b, dir) in batch_dirs.iter().enumerate() {
        let Some(trajs) = by_batch.get(&b) else {
            continue;
        };
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
            .collect();
        files.sort();
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
            let Some(t) = traj else { continue };
            let t = &r.trajectories[t];
            report.links.insert(
                (t.clipgt_id.clone(), t.rollout_id.clone()),
                format!("videos/all/{name}"),
            );
            if !t.kept {
                continue;
            }
            for (v, (c, cond)) in VIOLATIONS.iter().zip(&conds) {
                if c.and_then(|c| t.values[c]).is_some_and(cond) {
                    symlink(
                        &Path::new("../../all").join(&name),
                        &tmp.join("violations").join(v).join(&name),
                    )?;
                }
            }
        }
    }
    let dest = out_dir.join("videos");
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(&tmp, &dest)?;
    Ok(report)
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
