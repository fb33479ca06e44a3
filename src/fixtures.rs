//! Writes run directories in AlpaSim's layout with chosen or synthetic metric values, for tests,
//! the demo and the aggregation benchmark (`drivekit-fixtures`). Synthetic values come from a
//! seeded generator, so the same spec always writes the same numbers.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::fsutil;
use crate::metrics_file::{self, MetricRow, MetricsBuilder};
use crate::run_dir::{self, RunMetadata};

/// What a synthetic run looks like.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// run_name in run_metadata.yaml and every row.
    pub run_name: String,
    /// run_uuid of the run (each job dir gets `{run_uuid}-{job}` when `jobs > 1`).
    pub run_uuid: String,
    /// Scenes (one batch each).
    pub scenes: usize,
    /// Rollouts per batch.
    pub rollouts: usize,
    /// Timesteps per rollout.
    pub steps: usize,
    /// Control step (µs).
    pub step_us: i64,
    /// Seed of the value generator.
    pub seed: u64,
    /// Job dirs (Slurm array tasks, `task{N}/`); 1 writes a single run dir.
    pub jobs: usize,
    /// Offset added to scene numbers (to add shards to an existing run).
    pub scene_offset: usize,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            run_name: "fixture".into(),
            run_uuid: "00000000-0000-4000-8000-000000000000".into(),
            scenes: 4,
            rollouts: 2,
            steps: 200,
            step_us: 100_000,
            seed: 1,
            jobs: 1,
            scene_offset: 0,
        }
    }
}

/// The 15 metrics the synthetic generator writes, in its row order (names and aggregations from
/// the metric table; the order is the generator's own, kept so generated runs stay the same).
pub const SYNTHETIC_METRICS: [&str; 15] = {
    use crate::metrics::table::{index::*, METRICS};
    [
        METRICS[COLLISION_ANY].name,
        METRICS[COLLISION_FRONT].name,
        METRICS[COLLISION_LATERAL].name,
        METRICS[COLLISION_REAR].name,
        METRICS[OFFROAD].name,
        METRICS[MIN_DISTANCE_TO_OBSTACLE_M].name,
        METRICS[DIST_TO_GT_TRAJECTORY].name,
        METRICS[DIST_TO_GT_LOCATION].name,
        METRICS[PROGRESS].name,
        METRICS[PROGRESS_REL_TO_TOTAL].name,
        METRICS[DIST_TRAVELED_M].name,
        METRICS[GT_DIST_TRAVELED_M].name,
        METRICS[PLAN_DEVIATION].name,
        METRICS[EVAL_RELEVANT].name,
        METRICS[TIME_TO_COLLISION_S].name,
    ]
};

/// The seeded generator of the synthetic data (SplitMix64, shared with the simulator).
pub type Rng = crate::rng::SplitMix64;

pub use crate::rng::uuid_from;

/// Writes `wizard-config.yaml` and `run_metadata.yaml` of a job dir.
pub fn write_job_files(
    job_dir: &Path,
    meta: &RunMetadata,
    scene_ids: &[String],
    n_rollouts: usize,
) -> std::io::Result<()> {
    // drivekit's defaults in AlpaSim's nesting, as `simulate run` writes them.
    let mut cfg = crate::config::SimConfig::default();
    cfg.simulation.n_rollouts = u32::try_from(n_rollouts).map_err(std::io::Error::other)?;
    cfg.scenes.scene_ids = scene_ids.to_vec();
    fsutil::write_atomic(
        &job_dir.join(run_dir::WIZARD_CONFIG),
        cfg.to_yaml().as_bytes(),
    )?;
    let meta_text = serde_norway::to_string(meta).map_err(std::io::Error::other)?;
    fsutil::write_atomic(&job_dir.join(run_dir::RUN_METADATA), meta_text.as_bytes())
}

/// Writes one batch dir: metrics.parquet, then `_complete` when `complete`.
pub fn write_batch(
    batch_dir: &Path,
    batch: &arrow_array::RecordBatch,
    complete: bool,
) -> std::io::Result<()> {
    fs::create_dir_all(batch_dir)?;
    metrics_file::write_metrics_file(
        &batch_dir.join(run_dir::METRICS),
        std::slice::from_ref(batch),
    )
    .map_err(std::io::Error::other)?;
    if complete {
        fsutil::write_atomic(&batch_dir.join(run_dir::COMPLETE), b"")?;
    }
    Ok(())
}

/// `rows` metric rows with every kind of string column a metrics file holds, for encoder tests:
/// 300 metric names (9-bit dictionary keys, bit-packed), runs shorter and longer than eight, a
/// constant column, nulls and false flags, values across several data pages; `salt` shifts the
/// names and scenes (and names the run "other run" when non-zero).
pub fn varied_metrics(rows: usize, salt: usize) -> arrow_array::RecordBatch {
    let mut b = MetricsBuilder::new();
    for i in 0..rows {
        let name = format!("metric_{}", (i * 7 + salt) % 300);
        let agg = ["mean", "max", "min", "last"][(i / 5) % 4];
        let clip = format!("clip-{}", (i / 1000 + salt) % 3);
        let rollout = format!("rollout-{}", i / 37);
        b.push(&MetricRow {
            name: &name,
            timestamps_us: i as i64,
            value: (i % 11 != 0).then_some(i as f64 * 0.5),
            valid: i % 3 != 0,
            time_aggregation: agg,
            clipgt_id: &clip,
            rollout_id: &rollout,
            run_uuid: "uuid",
            run_name: if salt == 0 { "run" } else { "other run" },
        });
    }
    b.finish()
}

/// Synthetic metric rows for one rollout (see the module docs for the model).
pub fn synthetic_rollout(
    b: &mut MetricsBuilder,
    spec: &RunSpec,
    ids: (&str, &str, &str),
    seed: u64,
) {
    let (clipgt_id, rollout_id, run_uuid) = ids;
    let mut rng = Rng::new(seed);
    let n = spec.steps;
    let gt_speed = 5.0 + 8.0 * rng.f64();
    let speed = gt_speed * (0.6 + 0.45 * rng.f64());
    let dt = spec.step_us as f64 / 1e6;
    let gt_total = gt_speed * dt * n as f64;
    let collide_at = (rng.f64() < 0.08).then(|| 5 + (rng.next_u64() as usize % n.max(6)));
    let collision_kind = rng.next_u64() % 3; // 0 front, 1 lateral, 2 rear
    let offroad_at = (rng.f64() < 0.05).then(|| 5 + (rng.next_u64() as usize % n.max(6)));
    let drift = 0.02 * rng.f64();
    let relevant_from = rng.next_u64() as usize % 3;
    let mut lateral = 0.0f64;
    let mut vals = [0.0f64; 15];
    for step in 0..n {
        let t = step as i64 * spec.step_us;
        let tf = (step + 1) as f64 * dt;
        lateral = (lateral + drift + 0.05 * (rng.f64() - 0.5)).max(0.0);
        let collided = collide_at.is_some_and(|c| step >= c);
        let off = offroad_at.is_some_and(|c| step >= c);
        let dist = speed * tf;
        let min_d = 2.0 + 30.0 * rng.f64();
        vals[0] = collided as u8 as f64;
        vals[1] = (collided && collision_kind == 0) as u8 as f64;
        vals[2] = (collided && collision_kind == 1) as u8 as f64;
        vals[3] = (collided && collision_kind == 2) as u8 as f64;
        vals[4] = off as u8 as f64;
        vals[5] = if collided { 0.0 } else { min_d };
        vals[6] = lateral;
        vals[7] = (dist - gt_speed * tf).abs() + lateral;
        vals[8] = dist;
        vals[9] = (dist / gt_total).min(1.0);
        vals[10] = dist;
        vals[11] = gt_speed * tf;
        vals[12] = 0.3 * rng.f64();
        vals[13] = (step >= relevant_from) as u8 as f64;
        vals[14] = if min_d < 6.0 {
            min_d / speed
        } else {
            f64::INFINITY
        };
        for (name, v) in SYNTHETIC_METRICS.iter().zip(vals) {
            b.push(&MetricRow {
                name,
                timestamps_us: t,
                value: Some(v),
                valid: true,
                time_aggregation: crate::metrics::table::aggregation_of(name),
                clipgt_id,
                rollout_id,
                run_uuid,
                run_name: &spec.run_name,
            });
        }
    }
}

/// Scene id of scene number `i`.
pub fn scene_id(i: usize) -> String {
    format!("scene-{i:06}")
}

/// Writes a synthetic run under `root` and returns the batch dirs written.
pub fn write_run(root: &Path, spec: &RunSpec) -> std::io::Result<Vec<PathBuf>> {
    fs::create_dir_all(root)?;
    let jobs = spec.jobs.max(1);
    let job_dir = |j: usize| {
        if jobs == 1 {
            root.to_path_buf()
        } else {
            root.join(format!("task{j}"))
        }
    };
    let job_uuid = |j: usize| {
        if jobs == 1 {
            spec.run_uuid.clone()
        } else {
            format!("{}-{j}", spec.run_uuid)
        }
    };
    let scenes: Vec<usize> = (spec.scene_offset..spec.scene_offset + spec.scenes).collect();
    for j in 0..jobs {
        // Every job lists all scenes, as a Slurm array's tasks share one config.
        let new: Vec<String> = scenes.iter().map(|&s| scene_id(s)).collect();
        let dir = job_dir(j);
        let cfg_path = dir.join(run_dir::WIZARD_CONFIG);
        // Adding scenes to an existing run (`--scene-offset`) appends them to its scene list.
        let mut all: Vec<String> = crate::config::SimConfig::load(&cfg_path)
            .map(|c| c.scenes.scene_ids)
            .unwrap_or_default();
        let mut listed: std::collections::HashSet<String> = all.iter().cloned().collect();
        let grows = new.iter().any(|id| !listed.contains(id));
        for id in new {
            if listed.insert(id.clone()) {
                all.push(id);
            }
        }
        if !cfg_path.exists() || grows {
            fs::create_dir_all(&dir)?;
            write_job_files(
                &dir,
                &RunMetadata {
                    run_name: spec.run_name.clone(),
                    run_uuid: job_uuid(j),
                },
                &all,
                spec.rollouts,
            )?;
        }
    }
    scenes
        .par_iter()
        .map(|&s| {
            let j = s % jobs;
            let clip = scene_id(s);
            let batch_uuid = uuid_from(spec.seed, &clip);
            let run_uuid = job_uuid(j);
            let mut b = MetricsBuilder::new();
            for r in 0..spec.rollouts {
                let rollout_id = format!("{batch_uuid}-{r}");
                let seed = spec
                    .seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add((s * 1000 + r) as u64);
                synthetic_rollout(&mut b, spec, (&clip, &rollout_id, &run_uuid), seed);
            }
            let dir = job_dir(j)
                .join(run_dir::ROLLOUTS)
                .join(&clip)
                .join(&batch_uuid);
            write_batch(&dir, &b.finish(), true)?;
            Ok(dir)
        })
        .collect()
}
