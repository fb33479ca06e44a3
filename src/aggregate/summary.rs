//! From per-batch reductions to the run's results (DESIGN §4.2, 4.6, 4.7, 4.9): merge batches
//! (duplicates and aggregation conflicts rejected), combined run_uuid, rollout uids, mean over
//! clips, km per incident, then mean, std and quantiles over rollouts, per run and per scene.

use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::load::{BatchReduction, TrajectoryResult};
use super::trajectory::names;
use crate::metrics::profiles::Profile;
use crate::metrics::stats::Summary;
use crate::metrics::TimeAggregation;

/// `avg_dist_between_incidents`: km driven per offroad-or-collision incident.
pub const AVG_DIST: &str = "avg_dist_between_incidents";
/// `avg_dist_between_incidents_at_fault`: km driven per at-fault incident.
pub const AVG_DIST_AT_FAULT: &str = "avg_dist_between_incidents_at_fault";

/// sha256 hex of the sorted unique run_uuids joined by U+001F (AlpaSim's
/// `_combine_run_uuids_deterministically`).
pub fn combine_run_uuids<'a>(uuids: impl IntoIterator<Item = &'a str>) -> String {
    let mut v: Vec<&str> = uuids.into_iter().collect();
    v.sort_unstable();
    v.dedup();
    let digest = Sha256::digest(v.join("\u{1f}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A column of the results: a metric with its time aggregation, or a km-per-incident ratio
/// (computed over clips, no time aggregation).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Time aggregation, `None` for the km-per-incident columns.
    pub time_aggregation: Option<TimeAggregation>,
}

/// One trajectory after merging: identity, batch and its values on the run's columns.
#[derive(Debug, Clone, Serialize)]
pub struct Trajectory {
    /// Scene id.
    pub clipgt_id: String,
    /// Rollout id.
    pub rollout_id: String,
    /// run_name as written.
    pub run_name: String,
    /// Index of the batch in the merged batch list.
    pub batch: usize,
    /// Dense rank of the rollout within its scene, from 1 (AlpaSim's rollout_uid).
    pub rollout_uid: u32,
    /// False when the chain dropped it (img_is_black).
    pub kept: bool,
    /// Values on [`RunResults::metric_columns`] (null where absent).
    pub values: Vec<Option<f64>>,
}

/// One row per rollout uid: mean over clips.
#[derive(Debug, Clone, Serialize)]
pub struct RolloutRow {
    /// AlpaSim's rollout_uid.
    pub rollout_uid: u32,
    /// Scenes averaged.
    pub n_clips: usize,
    /// Values on [`RunResults::columns`].
    pub values: Vec<Option<f64>>,
}

/// Statistics over rollouts of a set of rows (the run, or one scene).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Rows summarised (rollouts).
    pub n_rollouts: usize,
    /// n_clips summarised over the rows.
    pub n_clips: Summary,
    /// One per entry of [`RunResults::columns`].
    pub columns: Vec<Summary>,
}

/// A batch rejected while merging.
#[derive(Debug, Clone, Serialize)]
pub struct MergeProblem {
    /// Batch (relative path) rejected.
    pub batch: String,
    /// What is wrong, naming the other file where there is one.
    pub message: String,
}

/// Everything the exporters need.
#[derive(Debug, Clone, Serialize)]
pub struct RunResults {
    /// Combined run_uuid.
    pub run_uuid: String,
    /// Run name(s), sorted unique, joined by ", ".
    pub run_name: String,
    /// Metric columns (sorted by name) including the derived ones, then the score columns of
    /// the profiles (`crate::metrics::profiles`).
    pub metric_columns: Vec<Column>,
    /// `metric_columns` followed by the km-per-incident columns when `dist_traveled_m` exists.
    pub columns: Vec<Column>,
    /// All trajectories, sorted by (clipgt_id, rollout_id).
    pub trajectories: Vec<Trajectory>,
    /// Rows over clips, sorted by rollout_uid.
    pub rollouts: Vec<RolloutRow>,
    /// Over rollouts.
    pub run: Stats,
    /// Per scene, over its rollouts (sorted by clipgt_id).
    pub by_scene: Vec<(String, Stats)>,
    /// Per scene tag (scenario type, split…), over the trajectories of the scenes with that tag,
    /// each a row with n_clips = 1 (sorted by tag; empty when no scene has tags).
    pub by_tag: Vec<(String, Stats)>,
    /// The tags of each scene that has any (from its batches' metrics.parquet footers).
    pub scene_tags: BTreeMap<String, Vec<String>>,
    /// No batch had an `offroad` metric (AlpaSim then assumes 0.0 and warns).
    pub offroad_defaulted: bool,
    /// Batches rejected while merging.
    pub problems: Vec<MergeProblem>,
    /// The benchmark score profiles asked for: scored, or left out with the reason.
    pub profiles: Vec<ProfileResult>,
}

/// One benchmark profile of the run (`crate::metrics::profiles`).
#[derive(Debug, Clone, Serialize)]
pub struct ProfileResult {
    /// Its name (`nuplan`, `navsim`, …).
    pub profile: &'static str,
    /// Why it was left out (a metric it needs is not in the run), `None` when scored.
    pub left_out: Option<String>,
    /// What it did without (optional metrics the run lacks).
    pub notes: Vec<String>,
    /// One per score column.
    pub scores: Vec<ScoreResult>,
}

/// One score column of a profile over the kept trajectories.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreResult {
    /// Column name.
    pub name: &'static str,
    /// Its index in [`RunResults::metric_columns`].
    pub column: usize,
    /// Trajectories with a score.
    pub n_scored: usize,
    /// Sum of their scores (the peers' conventions are means over different counts).
    pub sum: f64,
    /// Trajectories without one, as `scene/rollout: missing metric`.
    pub unscored: Vec<String>,
}

/// Merges batch reductions (in sorted batch order) into run results.
///
/// `batches` pairs each batch's relative path with its reduction. A batch whose rollout already
/// appeared in an earlier batch, or whose metric has another time aggregation than in an
/// earlier batch, is rejected whole and reported.
pub fn merge(batches: &[(String, &BatchReduction)], profiles: &[Profile]) -> RunResults {
    let mut timer = crate::report::timing::PhaseTimer::from_env("  ");
    let mut problems = Vec::new();
    let mut agg: BTreeMap<String, (TimeAggregation, usize)> = BTreeMap::new();
    let n_trajectories: usize = batches.iter().map(|(_, r)| r.trajectories.len()).sum();
    let mut seen: HashMap<(&str, &str), usize, ahash::RandomState> =
        HashMap::with_capacity_and_hasher(n_trajectories, ahash::RandomState::new());
    let mut accepted: Vec<usize> = Vec::new();
    'batch: for (bi, (rel, red)) in batches.iter().enumerate() {
        for (name, a) in &red.columns {
            if let Some((prev, pb)) = agg.get(name) {
                if prev != a {
                    problems.push(MergeProblem {
                        batch: rel.clone(),
                        message: format!(
                            "metric `{name}` has time_aggregation {a} here but {prev} in {}/metrics.parquet; batch left out",
                            batches[*pb].0
                        ),
                    });
                    continue 'batch;
                }
            }
        }
        for t in &red.trajectories {
            if let Some(&pb) = seen.get(&(t.clipgt_id.as_str(), t.rollout_id.as_str())) {
                problems.push(MergeProblem {
                    batch: rel.clone(),
                    message: format!(
                        "duplicate rollout (scene {}, rollout {}): in {}/metrics.parquet and {}/metrics.parquet; the second is left out",
                        t.clipgt_id, t.rollout_id, batches[pb].0, rel
                    ),
                });
                continue 'batch;
            }
        }
        for t in &red.trajectories {
            seen.insert((t.clipgt_id.as_str(), t.rollout_id.as_str()), bi);
        }
        for (name, a) in &red.columns {
            agg.entry(name.clone()).or_insert((*a, bi));
        }
        accepted.push(bi);
    }

    timer.lap("batches checked");
    let offroad_defaulted = !accepted.iter().any(|&b| batches[b].1.has_offroad());
    let mut metric_columns: Vec<Column> = agg
        .iter()
        .map(|(n, (a, _))| Column {
            name: n.clone(),
            time_aggregation: Some(*a),
        })
        .collect();
    let index: HashMap<&str, usize> = metric_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let oc = [
        names::OFFROAD_OR_COLLISION,
        names::OFFROAD_OR_COLLISION_AT_FAULT,
    ]
    .map(|n| index.get(n).copied());

    let mut run_uuids = Vec::new();
    let mut run_names = Vec::new();
    for &bi in &accepted {
        for t in &batches[bi].1.trajectories {
            run_uuids.push(t.run_uuid.as_str());
            run_names.push(t.run_name.as_str());
        }
    }
    let width = metric_columns.len();
    let mut trajectories: Vec<Trajectory> = accepted
        .par_iter()
        .flat_map_iter(|&bi| {
            let red = batches[bi].1;
            let map: Vec<usize> = red.columns.iter().map(|(n, _)| index[n.as_str()]).collect();
            red.trajectories
                .iter()
                .map(move |t| place(t, bi, &map, width, offroad_defaulted, oc))
        })
        .collect();
    let run_uuid = combine_run_uuids(run_uuids.iter().copied());
    run_names.sort_unstable();
    run_names.dedup();
    let run_name = run_names.join(", ");
    // Stable, as the sequential sort was.
    trajectories
        .par_sort_by(|a, b| (&a.clipgt_id, &a.rollout_id).cmp(&(&b.clipgt_id, &b.rollout_id)));
    assign_rollout_uids(&mut trajectories);
    timer.lap("trajectories placed, sorted");

    let dist = index.get(names::DIST_TRAVELED_M).copied();
    let profiles = score_profiles(&mut trajectories, &mut metric_columns, profiles);
    let mut columns = metric_columns.clone();
    if dist.is_some() {
        for n in [AVG_DIST, AVG_DIST_AT_FAULT] {
            columns.push(Column {
                name: n.to_string(),
                time_aggregation: None,
            });
        }
    }
    timer.lap("profiles scored");
    let kept: Vec<&Trajectory> = trajectories.iter().filter(|t| t.kept).collect();
    let rollouts = over_clips(&kept, metric_columns.len(), dist, oc);
    let run = stats(&rollouts, columns.len());
    timer.lap("run stats");
    // The same computation restricted to a group of trajectories (a scene, a tag): each
    // rollout is a row with n_clips = 1.
    let grouped = |groups: BTreeMap<&str, Vec<&Trajectory>>| -> Vec<(String, Stats)> {
        groups
            .into_par_iter()
            .map(|(key, ts)| {
                let rows: Vec<RolloutRow> = ts
                    .iter()
                    .flat_map(|t| over_clips(&[*t], metric_columns.len(), dist, oc))
                    .collect();
                (key.to_string(), stats(&rows, columns.len()))
            })
            .collect()
    };
    let mut scenes: BTreeMap<&str, Vec<&Trajectory>> = BTreeMap::new();
    let mut tagged: BTreeMap<&str, Vec<&Trajectory>> = BTreeMap::new();
    let mut scene_tags: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &kept {
        scenes.entry(t.clipgt_id.as_str()).or_default().push(t);
        for tag in &batches[t.batch].1.tags {
            tagged.entry(tag.as_str()).or_default().push(t);
        }
        if !batches[t.batch].1.tags.is_empty() && !scene_tags.contains_key(&t.clipgt_id) {
            scene_tags.insert(t.clipgt_id.clone(), batches[t.batch].1.tags.clone());
        }
    }
    let by_scene = grouped(scenes);
    let by_tag = grouped(tagged);
    timer.lap("scene + tag stats");
    RunResults {
        run_uuid,
        run_name,
        metric_columns,
        columns,
        trajectories,
        rollouts,
        run,
        by_scene,
        by_tag,
        scene_tags,
        offroad_defaulted,
        problems,
        profiles,
    }
}

/// Adds each profile's score columns (those that are not already metric columns) and every kept
/// trajectory's scores; a profile whose required metrics are not all in the run is left out.
fn score_profiles(
    trajectories: &mut [Trajectory],
    metric_columns: &mut Vec<Column>,
    profiles: &[Profile],
) -> Vec<ProfileResult> {
    let index: HashMap<String, usize, ahash::RandomState> = metric_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut out = Vec::new();
    for &p in profiles {
        let missing: Vec<&str> = p
            .required()
            .into_iter()
            .filter(|m| !index.contains_key(*m))
            .collect();
        if !missing.is_empty() {
            out.push(ProfileResult {
                profile: p.name(),
                left_out: Some(format!(
                    "needs {} (not in this run's metrics; `evaluate` re-scores a run written by an older drivekit)",
                    missing.join(", ")
                )),
                notes: Vec::new(),
                scores: Vec::new(),
            });
            continue;
        }
        let notes = p
            .optional()
            .iter()
            .filter(|(m, _)| !index.contains_key(*m))
            .map(|(_, what)| what.to_string())
            .collect();
        let columns: Vec<(usize, bool)> = p
            .scores()
            .iter()
            .map(|&name| match index.get(name) {
                Some(&i) => (i, false),
                None => {
                    metric_columns.push(Column {
                        name: name.to_string(),
                        time_aggregation: None,
                    });
                    (metric_columns.len() - 1, true)
                }
            })
            .collect();
        let mut scores: Vec<ScoreResult> = p
            .scores()
            .iter()
            .zip(&columns)
            .map(|(&name, &(column, _))| ScoreResult {
                name,
                column,
                n_scored: 0,
                sum: 0.0,
                unscored: Vec::new(),
            })
            .collect();
        // Scored in parallel (each trajectory's new columns appended), then added up in
        // trajectory order (the sums' bits do not depend on the thread count).
        trajectories.par_iter_mut().for_each(|t| {
            let values = {
                let get = |n: &str| index.get(n).and_then(|&i| t.values[i]);
                if t.kept {
                    p.score(&get)
                } else {
                    vec![None; columns.len()]
                }
            };
            for (v, &(column, new)) in values.iter().zip(&columns) {
                if new {
                    t.values.push(*v);
                } else {
                    debug_assert_eq!(t.values[column], *v);
                }
            }
        });
        for t in trajectories.iter().filter(|t| t.kept) {
            for (&(column, _), sr) in columns.iter().zip(&mut scores) {
                match t.values[column] {
                    Some(v) => {
                        sr.n_scored += 1;
                        sr.sum += v;
                    }
                    None => {
                        let get = |n: &str| index.get(n).and_then(|&i| t.values[i]);
                        let why = p
                            .required()
                            .into_iter()
                            .chain(p.optional().iter().map(|(m, _)| *m))
                            .find(|m| get(m).is_none_or(f64::is_nan))
                            .unwrap_or("an input");
                        sr.unscored
                            .push(format!("{}/{}: missing {why}", t.clipgt_id, t.rollout_id));
                    }
                }
            }
        }
        out.push(ProfileResult {
            profile: p.name(),
            left_out: None,
            notes,
            scores,
        });
    }
    out
}

fn place(
    t: &TrajectoryResult,
    batch: usize,
    map: &[usize],
    width: usize,
    offroad_defaulted: bool,
    oc: [Option<usize>; 2],
) -> Trajectory {
    let mut values = vec![None; width];
    if t.reduced.kept {
        for (v, &g) in t.reduced.values.iter().zip(map) {
            values[g] = *v;
        }
        if offroad_defaulted {
            if let Some(alt) = t.reduced.values_if_offroad_zero {
                for (slot, v) in oc.iter().zip(alt) {
                    if let Some(g) = slot {
                        values[*g] = v;
                    }
                }
            }
        }
    }
    Trajectory {
        clipgt_id: t.clipgt_id.clone(),
        rollout_id: t.rollout_id.clone(),
        run_name: t.run_name.clone(),
        batch,
        rollout_uid: 0,
        kept: t.reduced.kept,
        values,
    }
}

/// Dense rank of rollout_id within each scene (all trajectories, as AlpaSim ranks before the
/// modifiers run). Expects trajectories sorted by (clipgt_id, rollout_id).
fn assign_rollout_uids(ts: &mut [Trajectory]) {
    let mut i = 0;
    while i < ts.len() {
        let mut j = i;
        let mut rank = 0;
        while j < ts.len() && ts[j].clipgt_id == ts[i].clipgt_id {
            if j == i || ts[j].rollout_id != ts[j - 1].rollout_id {
                rank += 1;
            }
            ts[j].rollout_uid = rank;
            j += 1;
        }
        i = j;
    }
}

/// Step 6: per rollout uid, mean of every metric over clips and km per incident.
fn over_clips(
    kept: &[&Trajectory],
    width: usize,
    dist: Option<usize>,
    oc: [Option<usize>; 2],
) -> Vec<RolloutRow> {
    let mut groups: BTreeMap<u32, Vec<&Trajectory>> = BTreeMap::new();
    for t in kept {
        groups.entry(t.rollout_uid).or_default().push(t);
    }
    groups
        .into_iter()
        .map(|(uid, ts)| {
            let mut values: Vec<Option<f64>> = (0..width)
                .map(|c| crate::metrics::stats::mean(ts.iter().map(|t| t.values[c])))
                .collect();
            if let Some(d) = dist {
                // polars' sum skips nulls and is 0 for none; x/0 = inf, 0/0 = NaN.
                let sum = |c: Option<usize>| -> f64 {
                    c.map(|c| ts.iter().filter_map(|t| t.values[c]).sum())
                        .unwrap_or(0.0)
                };
                let km = sum(Some(d));
                values.push(Some(km / sum(oc[0]) / 1000.0));
                values.push(Some(km / sum(oc[1]) / 1000.0));
            }
            RolloutRow {
                rollout_uid: uid,
                n_clips: ts.len(),
                values,
            }
        })
        .collect()
}

/// Step 7: mean, std and quantiles of every column over the rows.
fn stats(rows: &[RolloutRow], width: usize) -> Stats {
    let n_clips: Vec<Option<f64>> = rows.iter().map(|r| Some(r.n_clips as f64)).collect();
    let columns = (0..width)
        .map(|c| {
            let v: Vec<Option<f64>> = rows.iter().map(|r| r.values[c]).collect();
            Summary::of(&v)
        })
        .collect();
    Stats {
        n_rollouts: rows.len(),
        n_clips: Summary::of(&n_clips),
        columns,
    }
}

pub use crate::metrics::profiles::{scene_score, SceneScore, ScoreError};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_uuid_is_sha256_of_sorted_unique_ids() {
        // python3 -c "import hashlib; print(hashlib.sha256('a\\x1fb'.encode()).hexdigest())"
        assert_eq!(
            combine_run_uuids(["b", "a", "b"]),
            "f04cdced9736a69da6103f08a4daaf8c485dd481217d218a1b4993c8c3968e13"
        );
        let one = combine_run_uuids(["x"]);
        assert_eq!(one.len(), 64);
    }

    #[test]
    fn scene_score_cases_from_design() {
        let row = |gt: f64, prog: f64, caf: f64, off: f64| {
            move |n: &str| match n {
                "gt_dist_traveled_m" => Some(gt),
                "progress_clipped_rel" => Some(prog),
                "collision_at_fault" => Some(caf),
                "offroad" => Some(off),
                _ => None,
            }
        };
        assert_eq!(scene_score(row(50.0, 0.5, 0.0, 0.0)).unwrap().score, 0.625);
        assert_eq!(scene_score(row(3.0, 0.1, 0.0, 0.0)).unwrap().score, 1.0);
        assert_eq!(scene_score(row(50.0, 1.5, 0.0, 0.0)).unwrap().score, 1.0);
        let s = scene_score(row(50.0, 0.9, 1.0, 1.0)).unwrap();
        assert_eq!(
            (s.score, s.failure_reason),
            (0.0, Some("collision_at_fault"))
        );
        let s = scene_score(row(50.0, 0.9, 0.0, 1.0)).unwrap();
        assert_eq!(s.failure_reason, Some("offroad"));
        assert!(scene_score(|_| None).is_err());
    }

    #[test]
    fn profiles_count_and_name_unscored_trajectories_and_leave_out_what_cannot_be_fed() {
        use crate::aggregate::load::TrajectoryResult;
        use crate::aggregate::trajectory::{ModifierCounts, Reduced};
        // Two rollouts of one scene with the CARLA inputs; the second lacks carla_red_light.
        let names = [
            "carla_route_completion",
            "carla_collisions_pedestrian",
            "carla_collisions_vehicle",
            "carla_collisions_layout",
            "carla_red_light",
            "carla_stop_sign",
        ];
        let traj = |id: &str, values: Vec<Option<f64>>| TrajectoryResult {
            clipgt_id: "S".into(),
            rollout_id: id.into(),
            run_uuid: "u".into(),
            run_name: "n".into(),
            rows: 6,
            reduced: Reduced {
                kept: true,
                values,
                values_if_offroad_zero: None,
                counts: ModifierCounts::default(),
            },
        };
        let red = BatchReduction {
            columns: names
                .iter()
                .map(|n| (n.to_string(), TimeAggregation::Max))
                .collect(),
            n_file_metrics: names.len(),
            rows: 12,
            trajectories: vec![
                traj(
                    "a",
                    vec![
                        Some(80.0),
                        Some(0.0),
                        Some(1.0),
                        Some(0.0),
                        Some(1.0),
                        Some(0.0),
                    ],
                ),
                traj(
                    "b",
                    vec![Some(50.0), Some(0.0), Some(0.0), Some(0.0), None, Some(0.0)],
                ),
            ],
            counts: ModifierCounts::default(),
            tags: vec!["t".into()],
        };
        let r = merge(&[("S/b".into(), &red)], &[Profile::Carla, Profile::Nuplan]);
        let carla = &r.profiles[0];
        assert!(carla.left_out.is_none());
        let ds = &carla.scores[0];
        assert_eq!((ds.name, ds.n_scored), ("carla_ds", 1));
        assert_eq!(ds.sum, 80.0 * (0.6 * 0.7));
        assert_eq!(
            ds.unscored,
            vec!["S/b: missing carla_red_light".to_string()]
        );
        assert_eq!(carla.notes.len(), 1, "outside_route_lanes absent: said");
        let nuplan = &r.profiles[1];
        assert!(nuplan
            .left_out
            .as_deref()
            .is_some_and(|w| w.starts_with("needs nuplan_no_ego_at_fault_collisions")));
        // The score is a column of the results, with its statistics, and by tag.
        let col = r.columns.iter().position(|c| c.name == "carla_ds").unwrap();
        assert_eq!(r.run.columns[col].mean, Some(80.0 * (0.6 * 0.7)));
        assert_eq!(r.by_tag.len(), 1);
        assert_eq!(r.by_tag[0].0, "t");
    }
}
