//! What the `asl` tool does with a rollout log: a readable text dump, and a conversion of every
//! actor pose to Parquet (one row per actor per step) for pandas / polars users. Both keep what
//! precedes a truncated or corrupt record and report the problem.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{
    Float32Builder, Float64Builder, Int32Builder, Int64Builder, StringDictionaryBuilder,
};
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};

use super::asl::{AslError, AslReader, Record};
use super::proto::{Entry, Pose};

/// What a pass over a log saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSummary {
    /// Rollouts (rollout_metadata records).
    pub rollouts: usize,
    /// ActorPoses records.
    pub steps: usize,
    /// Actor poses.
    pub poses: usize,
    /// Records of other kinds (skipped).
    pub other: usize,
    /// Why reading stopped early, if it did (truncation or corruption, with the byte offset).
    pub problem: Option<String>,
}

/// Why a conversion failed outright.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The log cannot be opened.
    #[error(transparent)]
    Asl(#[from] AslError),
    /// Output I/O or Parquet encoding.
    #[error("{path}: {message}")]
    Output {
        /// the output file
        path: String,
        /// what went wrong
        message: String,
    },
}

/// Heading (rad) of a pose's rotation about z.
pub fn yaw_of(p: &Pose) -> f64 {
    p.quat
        .map_or(0.0, |q| 2.0 * f64::from(q.z).atan2(f64::from(q.w)))
}

fn xyz(p: &Pose) -> [f32; 3] {
    p.vec.map_or([0.0; 3], |v| [v.x, v.y, v.z])
}

fn problem(r: &Result<Record, AslError>) -> Option<String> {
    match r {
        Ok(Record::Truncated(at)) => Some(format!(
            "truncated: the last record (at byte {at}) is incomplete; everything before it was read"
        )),
        Err(e) => Some(e.to_string()),
        Ok(Record::Entry(..)) => None,
    }
}

/// Writes a text dump of `path`; with `max_steps`, at most that many steps per rollout.
pub fn dump(
    path: &Path,
    out: &mut impl Write,
    max_steps: Option<usize>,
) -> Result<LogSummary, ConvertError> {
    let io = |e: std::io::Error| ConvertError::Output {
        path: "stdout".into(),
        message: e.to_string(),
    };
    let mut s = LogSummary::default();
    let mut in_rollout = 0usize;
    for r in AslReader::open(path)? {
        if let Some(p) = problem(&r) {
            s.problem = Some(p);
            break;
        }
        let Ok(Record::Entry(offset, e)) = r else {
            break;
        };
        match e.entry {
            Some(Entry::RolloutMetadata(m)) => {
                s.rollouts += 1;
                in_rollout = 0;
                let sm = m.session_metadata.unwrap_or_default();
                writeln!(
                    out,
                    "rollout {} (byte {offset}): session {}  scene {}  batch_size {}  n_sim_steps {}  start {} µs  step {} µs  force_gt {} µs",
                    m.rollout_index,
                    sm.session_uuid,
                    sm.scene_id,
                    sm.batch_size,
                    sm.n_sim_steps,
                    sm.start_timestamp_us,
                    sm.control_timestep_us,
                    m.force_gt_duration
                )
                .map_err(io)?;
                if m.drivekit_seed != 0 || !m.drivekit_models.is_empty() {
                    writeln!(
                        out,
                        "  seed {}  models {}  perturbation {}",
                        m.drivekit_seed, m.drivekit_models, m.drivekit_perturbation
                    )
                    .map_err(io)?;
                }
                let actors = m
                    .actor_definitions
                    .map(|d| d.actor_aabb)
                    .unwrap_or_default();
                let names: Vec<String> = actors
                    .iter()
                    .map(|a| {
                        let b = a.aabb.unwrap_or_default();
                        format!(
                            "{} ({} {:.1}×{:.1} m)",
                            a.actor_id, a.actor_label, b.size_x, b.size_y
                        )
                    })
                    .collect();
                writeln!(out, "  {} actors: {}", names.len(), names.join(", ")).map_err(io)?;
                let recorded = m
                    .ego_rig_recorded_ground_truth_trajectory
                    .map_or(0, |t| t.poses.len());
                writeln!(out, "  recorded ego trajectory: {recorded} poses").map_err(io)?;
            }
            Some(Entry::ActorPoses(p)) => {
                s.steps += 1;
                s.poses += p.actor_poses.len();
                in_rollout += 1;
                if max_steps.is_some_and(|m| in_rollout > m) {
                    continue;
                }
                write!(out, "  t={} µs:", p.timestamp_us).map_err(io)?;
                for a in &p.actor_poses {
                    let pose = a.actor_pose.unwrap_or_default();
                    let [x, y, _] = xyz(&pose);
                    write!(
                        out,
                        "  {} ({x:.2}, {y:.2}, {:.3})",
                        a.actor_id,
                        yaw_of(&pose)
                    )
                    .map_err(io)?;
                }
                writeln!(out).map_err(io)?;
            }
            _ => s.other += 1,
        }
    }
    writeln!(
        out,
        "{} rollouts, {} steps, {} actor poses{}",
        s.rollouts,
        s.steps,
        s.poses,
        s.problem
            .as_ref()
            .map(|p| format!("; {p}"))
            .unwrap_or_default()
    )
    .map_err(io)?;
    Ok(s)
}

/// The schema of [`to_parquet`]'s output.
pub fn poses_schema() -> Arc<Schema> {
    let dict = || DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    Arc::new(Schema::new(vec![
        Field::new("rollout_id", dict(), false),
        Field::new("rollout_index", DataType::Int32, false),
        Field::new("scene_id", dict(), false),
        Field::new("timestamp_us", DataType::Int64, false),
        Field::new("actor_id", dict(), false),
        Field::new("x", DataType::Float32, false),
        Field::new("y", DataType::Float32, false),
        Field::new("z", DataType::Float32, false),
        Field::new("yaw", DataType::Float64, false),
    ]))
}

/// Converts every actor pose of `path` into a Parquet table at `out` (written atomically).
pub fn to_parquet(path: &Path, out: &Path) -> Result<LogSummary, ConvertError> {
    let err = |m: String| ConvertError::Output {
        path: out.display().to_string(),
        message: m,
    };
    let mut s = LogSummary::default();
    let mut rollout = StringDictionaryBuilder::<Int32Type>::new();
    let mut index = Int32Builder::new();
    let mut scene = StringDictionaryBuilder::<Int32Type>::new();
    let mut ts = Int64Builder::new();
    let mut actor = StringDictionaryBuilder::<Int32Type>::new();
    let (mut x, mut y, mut z) = (
        Float32Builder::new(),
        Float32Builder::new(),
        Float32Builder::new(),
    );
    let mut yaw = Float64Builder::new();
    let (mut cur_rollout, mut cur_index, mut cur_scene) = (String::new(), 0, String::new());
    for r in AslReader::open(path)? {
        if let Some(p) = problem(&r) {
            s.problem = Some(p);
            break;
        }
        let Ok(Record::Entry(_, e)) = r else { break };
        match e.entry {
            Some(Entry::RolloutMetadata(m)) => {
                s.rollouts += 1;
                let sm = m.session_metadata.unwrap_or_default();
                cur_rollout = sm.session_uuid;
                cur_scene = sm.scene_id;
                cur_index = m.rollout_index;
            }
            Some(Entry::ActorPoses(p)) => {
                s.steps += 1;
                for a in &p.actor_poses {
                    s.poses += 1;
                    let pose = a.actor_pose.unwrap_or_default();
                    let v = xyz(&pose);
                    rollout.append_value(&cur_rollout);
                    index.append_value(cur_index);
                    scene.append_value(&cur_scene);
                    ts.append_value(p.timestamp_us as i64);
                    actor.append_value(&a.actor_id);
                    x.append_value(v[0]);
                    y.append_value(v[1]);
                    z.append_value(v[2]);
                    yaw.append_value(yaw_of(&pose));
                }
            }
            _ => s.other += 1,
        }
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(rollout.finish()),
        Arc::new(index.finish()),
        Arc::new(scene.finish()),
        Arc::new(ts.finish()),
        Arc::new(actor.finish()),
        Arc::new(x.finish()),
        Arc::new(y.finish()),
        Arc::new(z.finish()),
        Arc::new(yaw.finish()),
    ];
    let batch = RecordBatch::try_new(poses_schema(), cols).map_err(|e| err(e.to_string()))?;
    let tmp = crate::fsutil::TempFile::for_target(out);
    let file = std::fs::File::create(tmp.path()).map_err(|e| err(e.to_string()))?;
    let mut w = parquet::arrow::ArrowWriter::try_new(
        file,
        poses_schema(),
        Some(crate::metrics_file::writer_properties()),
    )
    .map_err(|e| err(e.to_string()))?;
    w.write(&batch).map_err(|e| err(e.to_string()))?;
    let file = w.into_inner().map_err(|e| err(e.to_string()))?;
    file.sync_all().map_err(|e| err(e.to_string()))?;
    tmp.persist(out).map_err(|e| err(e.to_string()))?;
    Ok(s)
}
