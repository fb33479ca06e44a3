//! The shard loop of `simulate run`: scheduling and the writer thread. It takes this shard's
//! scenes (`run_dir::Shard`), keeps complete batches (resume), prepares the others, lays all their
//! rollouts out scene by scene and cuts them into chunks (at most the smallest service capacity,
//! `SimConfig::chunk_size`, and small enough that every core gets work), steps the chunks in
//! parallel through the one step loop (`sim::stepper::run_chunk` on the CPU or a device), and
//! hands each finished rollout's trace to a writer thread, which writes a scene's batch —
//! rollout.asl ([`crate::rollout`]), metrics.parquet, its videos, then `_complete`, synced — once
//! all its rollouts are in.
//!
//! A scene that cannot be loaded or simulated gets `_failed.json` (DESIGN §2) and the others still
//! run. Batch uuids derive from the scene id (`run_dir::batch_of`), so a rerun finds the same
//! directories. A rollout's result depends only on its scene, its seed and the configuration —
//! never on the chunk it ran in — so output is byte-identical for any thread count or shard split.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rayon::prelude::*;

use crate::config::{ConfigError, SimConfig};
use crate::cuda::stepper::DeviceSession;
use crate::fsutil::{self, Durability};
use crate::metrics_file::{self, MetricsBuilder};
use crate::rollout::encode::{
    encode_rollout_log, perturbation_json, rollout_metadata, scene_metadata,
};
use crate::rollout::rows::push_trace_rows;
use crate::rollout::sink::{LogCompression, LogSink};
use crate::rollout::trace::RolloutTrace;
use crate::run_dir::{self, FailedBatch, RunMetadata, Shard};
use crate::scene::Scene;
use crate::sim::driver::Driver;
use crate::sim::external::ExternalDriver;
use crate::sim::services::{DriverService, StepError};
use crate::sim::stepper::{self, ConfiguredServices, ServiceTimes, StepCounts};
use crate::sim::traffic::Traffic;
use crate::state::{BatchState, SceneCtx};
use crate::telemetry::sampler::Sampler;
use crate::telemetry::Telemetry;

/// Why a shard could not run at all (per-scene problems become `_failed.json` instead).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A `--shard` or Slurm setting that does not describe a shard.
    #[error(transparent)]
    Shard(#[from] run_dir::ShardError),
    /// run_metadata.yaml cannot be written or read.
    #[error(transparent)]
    Metadata(#[from] run_dir::MetadataError),
    /// No scenes to run.
    #[error("{0}: no .dkscene files (import scenes with `simulate import`)")]
    NoScenes(PathBuf),
    /// The external driver cannot be reached or configured.
    #[error(transparent)]
    Driver(#[from] crate::sim::external::ExternalError),
    /// `--backend cuda` (or `cuda-emulated`) cannot run here.
    #[error(transparent)]
    Backend(#[from] crate::cuda::device::CudaError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A video size or scale out of range.
    #[error(transparent)]
    View(#[from] crate::video::render::ViewError),
    /// A `--split` file that cannot be used.
    #[error(transparent)]
    Split(#[from] crate::scene::catalogue::SplitError),
    /// Rerunning a run dir that holds batches of another configuration would mix the two.
    #[error("{file}: this run dir holds batches of another configuration (first difference: `{old}` now `{new}`); finish it with the settings it was started with, or write to a new --out")]
    ConfigChanged {
        /// the run's wizard-config.yaml
        file: PathBuf,
        /// the line as the run has it
        old: String,
        /// the line as asked now
        new: String,
    },
    /// A scene id that cannot name a directory of the run.
    #[error(
        "scene id {id:?} {why}: it cannot name a directory of the run (check scenes.scene_ids)"
    )]
    SceneId {
        /// the id
        id: String,
        /// what is wrong
        why: &'static str,
    },
    /// Another process is writing the same shard of this run dir.
    #[error(transparent)]
    Claimed(#[from] fsutil::ClaimError),
    /// I/O on the run dir.
    #[error("{path}: {source}")]
    Io {
        /// the path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
}

/// What `simulate run` was asked for, before anything is resolved: the command line's values
/// (the binary fills this from its flags). [`RunRequest::resolve`] turns it into [`RunOptions`].
/// Every `Option` left `None` takes the configuration's value (`drivekit.*`, AlpaSim's keys).
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// Directory of `.dkscene` files.
    pub scenes_dir: PathBuf,
    /// Run directory to write.
    pub run_dir: PathBuf,
    /// wizard-config.yaml to compose (`None`: drivekit's defaults, AlpaSim's 10 Hz clocks).
    pub config: Option<PathBuf>,
    /// Hydra-style overrides (`key=value`, `group=option`, `+key=value`, `~key`).
    pub overrides: Vec<String>,
    /// A split file: the scene ids to run (`scenes.scene_ids`).
    pub split: Option<PathBuf>,
    /// `i/n` (`None`: Slurm's array variables, else 0/1).
    pub shard: Option<String>,
    /// Rollouts per scene (`runtime.simulation_config.n_rollouts`).
    pub rollouts: Option<u32>,
    /// run_name for a new run dir (`wizard.run_name`, else "drivekit").
    pub run_name: Option<String>,
    /// The policy under test (`drivekit.driver`).
    pub driver: Option<Driver>,
    /// External driver addresses (`drivekit.external_driver.addresses`).
    pub driver_addresses: Vec<String>,
    /// The traffic model (`drivekit.traffic`).
    pub traffic: Option<Traffic>,
    /// Run-wide seed (`drivekit.perturbation.seed`).
    pub seed: Option<u64>,
    /// Show a progress bar (on a terminal only).
    pub progress: bool,
    /// How rollout logs are stored (`drivekit.log_compression`).
    pub log_compression: Option<LogCompression>,
    /// Which rollouts get a video (`drivekit.video.mode`).
    pub video: Option<crate::video::VideoMode>,
    /// Video frame side (px; `drivekit.video.size_px`).
    pub video_size: Option<usize>,
    /// Video scale (m per px; `drivekit.video.scale_m_per_px`).
    pub video_scale: Option<f64>,
    /// Which backend steps the rollouts (`drivekit.backend`).
    pub backend: Option<crate::cuda::Backend>,
}

/// The name clap gives a value of a `ValueEnum` (what the config's `drivekit.*` choices hold).
fn choice_name<T: clap::ValueEnum>(v: &T) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

/// The value named by the configuration's `key`.
fn choice<T: clap::ValueEnum>(cfg: &SimConfig, key: &str, name: &str) -> Result<T, ConfigError> {
    T::from_str(name, true).map_err(|_| {
        let names: Vec<String> = T::value_variants().iter().map(choice_name).collect();
        cfg.invalid(
            key,
            &format!("is not one of {}", names.join(", ")),
            "use one of those",
        )
    })
}

impl RunRequest {
    /// Resolves the request: composes the configuration with the request's overrides, sets the
    /// flags given over it (each named as its origin in errors and in the run's
    /// wizard-config.yaml), picks the shard (the request's, else Slurm's array variables read
    /// through `env`, else 0/1) and checks the video settings.
    pub fn resolve(self, env: impl Fn(&str) -> Option<String>) -> Result<RunOptions, RunnerError> {
        use serde_norway::Value;
        let mut config = SimConfig::compose_or_default(self.config.as_deref(), &self.overrides)?;
        let str_value = |s: String| Value::String(s);
        let mut sets: Vec<(&str, Value, &str)> = Vec::new();
        if let Some(n) = self.rollouts {
            sets.push((
                "runtime.simulation_config.n_rollouts",
                Value::Number(n.into()),
                "--rollouts",
            ));
        }
        if let Some(seed) = self.seed {
            sets.push((
                "drivekit.perturbation.seed",
                Value::Number(seed.into()),
                "--seed",
            ));
        }
        if !self.driver_addresses.is_empty() {
            let list = self
                .driver_addresses
                .iter()
                .cloned()
                .map(str_value)
                .collect();
            sets.push((
                "drivekit.external_driver.addresses",
                Value::Sequence(list),
                "--driver-address",
            ));
        }
        if let Some(d) = &self.driver {
            sets.push(("drivekit.driver", str_value(choice_name(d)), "--driver"));
        }
        if let Some(t) = &self.traffic {
            sets.push(("drivekit.traffic", str_value(choice_name(t)), "--traffic"));
        }
        if let Some(b) = &self.backend {
            sets.push(("drivekit.backend", str_value(choice_name(b)), "--backend"));
        }
        if let Some(v) = &self.video {
            sets.push(("drivekit.video.mode", str_value(choice_name(v)), "--video"));
        }
        if let Some(c) = &self.log_compression {
            sets.push((
                "drivekit.log_compression",
                str_value(choice_name(c)),
                "--log-compression",
            ));
        }
        if let Some(px) = self.video_size {
            sets.push((
                "drivekit.video.size_px",
                Value::Number((px as u64).into()),
                "--video-size",
            ));
        }
        if let Some(scale) = self.video_scale {
            sets.push((
                "drivekit.video.scale_m_per_px",
                Value::Number(scale.into()),
                "--video-scale",
            ));
        }
        let split_origin;
        if let Some(split) = &self.split {
            let ids = crate::scene::catalogue::read_split(split)?;
            split_origin = format!("--split {}", split.display());
            sets.push((
                "scenes.scene_ids",
                Value::Sequence(ids.into_iter().map(str_value).collect()),
                split_origin.as_str(),
            ));
        }
        if let Some(name) = &self.run_name {
            sets.push(("wizard.run_name", str_value(name.clone()), "--run-name"));
        }
        config.apply(&sets)?;
        let dk = &config.drivekit;
        let view =
            crate::video::render::View::video(dk.video.size_px as usize, dk.video.scale_m_per_px)?;
        let driver = choice(&config, "drivekit.driver", &dk.driver)?;
        let traffic = choice(&config, "drivekit.traffic", &dk.traffic)?;
        let backend = choice(&config, "drivekit.backend", &dk.backend)?;
        let video = choice(&config, "drivekit.video.mode", &dk.video.mode)?;
        let log_compression = choice(&config, "drivekit.log_compression", &dk.log_compression)?;
        let shard = match &self.shard {
            Some(s) => Shard::parse(s)?,
            None => Shard::from_slurm(env)?.unwrap_or(Shard { index: 0, count: 1 }),
        };
        Ok(RunOptions {
            scenes_dir: self.scenes_dir,
            run_dir: self.run_dir,
            run_name: config.run_name.clone().unwrap_or_else(|| "drivekit".into()),
            config,
            shard,
            driver,
            traffic,
            progress: self.progress,
            log_compression,
            video,
            view,
            backend,
        })
    }
}

/// Settings of one shard run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Directory of `.dkscene` files.
    pub scenes_dir: PathBuf,
    /// Run directory to write.
    pub run_dir: PathBuf,
    /// Resolved configuration.
    pub config: SimConfig,
    /// This process's shard.
    pub shard: Shard,
    /// run_name for run_metadata.yaml (when the run dir has none yet).
    pub run_name: String,
    /// The policy under test.
    pub driver: Driver,
    /// The traffic model.
    pub traffic: Traffic,
    /// Show a progress bar (on a terminal only).
    pub progress: bool,
    /// How rollout logs are stored.
    pub log_compression: LogCompression,
    /// Which rollouts get an evaluation video.
    pub video: crate::video::VideoMode,
    /// Frame size and scale of the videos.
    pub view: crate::video::render::View,
    /// Which backend steps the rollouts.
    pub backend: crate::cuda::Backend,
}

/// What a shard run did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunOutcome {
    /// Batches simulated now.
    pub simulated: usize,
    /// Batches already complete (resume).
    pub skipped_complete: usize,
    /// Batches that failed (with `_failed.json`).
    pub failed: Vec<(String, String)>,
    /// Step time per service, summed over chunks (CPU time across threads).
    pub times: ServiceTimes,
    /// Steps simulated.
    pub counts: StepCounts,
    /// RPC statistics of an external driver (empty for built-in drivers).
    pub rpc: crate::sim::external::RpcStats,
    /// What the shard measured about itself (also written to telemetry/).
    pub telemetry: Telemetry,
}

impl RunOutcome {
    /// 0: every batch written; 1: some scenes failed (their batches have `_failed.json`).
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.failed.is_empty())
    }

    /// What `simulate run` prints when the shard is done (`wall_s`: its wall time).
    pub fn summary(&self, opts: &RunOptions, wall_s: f64) -> String {
        let mut s = format!(
            "shard {}/{}: {} batches simulated, {} already complete, {} failed → {}\n",
            opts.shard.index,
            opts.shard.count,
            self.simulated,
            self.skipped_complete,
            self.failed.len(),
            opts.run_dir.display()
        );
        if self.counts.agent_steps > 0 {
            s.push_str(&format!(
                "{} rollout-steps, {} agent-steps in {wall_s:.2} s ({:.0} agent-steps/s, writing included)\n",
                self.counts.rollout_steps,
                self.counts.agent_steps,
                self.counts.agent_steps as f64 / wall_s.max(1e-9)
            ));
        }
        s
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RunnerError + '_ {
    move |e| RunnerError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// What happened to one scene of the shard.
enum SceneResult {
    Kept,
    Simulated,
    Failed(String),
}

/// A scene ready to simulate, or why it is not.
enum Prepared {
    Kept,
    Ready(Box<SceneCtx>),
    Failed(String),
}

/// One rollout's results on their way to the writer.
struct Finished {
    scene: usize,
    rollout: u32,
    seed: u64,
    perturbation: String,
    trace: RolloutTrace,
}

impl Finished {
    fn failure(&self) -> Option<&str> {
        self.trace.failure.as_deref()
    }
}

enum ToWriter {
    Done(Box<Finished>),
    Failed(Vec<usize>, String),
}

/// Runs one shard.
pub fn run(opts: &RunOptions) -> Result<RunOutcome, RunnerError> {
    let mut ids: Vec<String> = fs::read_dir(&opts.scenes_dir)
        .map_err(io_err(&opts.scenes_dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == crate::scene::EXTENSION))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    ids.sort();
    if !opts.config.scenes.scene_ids.is_empty() {
        // Listed scenes run even when their file is missing: they fail visibly.
        ids = opts.config.scenes.scene_ids.clone();
        ids.sort();
        ids.dedup();
    }
    if ids.is_empty() {
        return Err(RunnerError::NoScenes(opts.scenes_dir.clone()));
    }
    if let Some((id, why)) = ids
        .iter()
        .find_map(|id| run_dir::unsafe_name(id).map(|w| (id.clone(), w)))
    {
        return Err(RunnerError::SceneId { id, why });
    }
    // An external driver is checked before anything is written.
    let external = match opts.driver {
        Driver::External => Some(ExternalDriver::connect(&opts.config)?),
        _ => None,
    };
    let driver: &dyn DriverService = match (&external, opts.driver.builtin()) {
        (Some(e), _) => e,
        (None, Some(d)) => d,
        (None, None) => unreachable!("every driver but External is built in"),
    };
    let backend = opts.backend.choose()?;
    let started = std::time::Instant::now();
    let sampler = Sampler::start();
    let run = &opts.run_dir;
    fs::create_dir_all(run.join(run_dir::ROLLOUTS)).map_err(io_err(run))?;
    // One writer per shard: a second process on the same shard stops here, before it touches
    // anything; a claim left by a killed run is taken over.
    let _claim = fsutil::Claim::take(&run.join(run_dir::ROLLOUTS).join(format!(
        ".shard-{}-of-{}.claim",
        opts.shard.index, opts.shard.count
    )))?;
    // Temporary files of killed runs (their writers are gone).
    for d in [run.clone(), run.join("telemetry"), run.join("txt-logs")] {
        fsutil::remove_stale_temps(&d);
    }
    let mut resolved = opts.config.clone();
    resolved.scenes.scene_ids = ids.clone();
    let yaml = resolved.to_yaml();
    let cfg_path = run.join(run_dir::WIZARD_CONFIG);
    if let Ok(old) = fs::read_to_string(&cfg_path) {
        if old != yaml && has_complete_batch(run) {
            let (o, n) = old
                .lines()
                .chain(std::iter::repeat(""))
                .zip(yaml.lines().chain(std::iter::repeat("")))
                .take(old.lines().count().max(yaml.lines().count()))
                .find(|(a, b)| a != b)
                .unwrap_or(("", ""));
            return Err(RunnerError::ConfigChanged {
                file: cfg_path,
                old: o.trim().to_string(),
                new: n.trim().to_string(),
            });
        }
    }
    fsutil::write_atomic(&cfg_path, yaml.as_bytes()).map_err(io_err(run))?;
    let meta = RunMetadata::create_or_load(
        run,
        &run_dir::NewRun {
            run_name: &opts.run_name,
            backend: backend.name(),
            backend_device: match backend.device() {
                Some(d) => d.description.clone(),
                None => format!("{} CPU threads", rayon::current_num_threads()),
            },
        },
    )?;
    let logs = run.join("txt-logs");
    fs::create_dir_all(&logs).map_err(io_err(&logs))?;
    let log_path = logs.join(format!(
        "shard-{}-of-{}.log",
        opts.shard.index, opts.shard.count
    ));
    // Appended: a rerun's lines follow the earlier attempts'.
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let _ = writeln!(
        log,
        "=== attempt started (unix time {} s, pid {}) ===",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        std::process::id()
    );

    let picked = opts.shard.pick(&ids);
    // Load every scene of the shard (in parallel); complete batches are kept (resume).
    let prepared: Vec<Prepared> = picked
        .par_iter()
        .map(|id| prepare(opts, id))
        .collect::<Result<_, _>>()?;
    let mut results: Vec<Option<SceneResult>> = Vec::with_capacity(picked.len());
    let mut ctxs: Vec<SceneCtx> = Vec::new();
    let mut ctx_of_pick: Vec<usize> = Vec::new();
    for (i, p) in prepared.into_iter().enumerate() {
        match p {
            Prepared::Kept => results.push(Some(SceneResult::Kept)),
            Prepared::Failed(e) => {
                write_failed(opts, picked[i], &e)?;
                results.push(Some(SceneResult::Failed(e)));
            }
            Prepared::Ready(ctx) => {
                if ctx.drivable.is_empty() {
                    let _ = writeln!(
                        log,
                        "{}: warning: the map has no drivable area; offroad is not computed",
                        picked[i]
                    );
                }
                if ctx.lanes.is_none() {
                    let _ = writeln!(
                        log,
                        "{}: warning: the map has no lanes; driving_direction_compliance is not computed",
                        picked[i]
                    );
                }
                results.push(None);
                ctx_of_pick.push(i);
                ctxs.push(*ctx);
            }
        }
    }
    if let Some(e) = &external {
        let _ = writeln!(log, "external driver: {}", e.versions());
    }
    for w in &opts.config.warnings {
        let _ = writeln!(log, "config warning: {w}");
    }
    let _ = writeln!(log, "{}", backend.describe());
    if opts.progress {
        eprintln!("{}", backend.describe());
    }
    let (times, counts, written, mut telemetry) =
        simulate_scenes(opts, driver, &meta, &ctxs, &backend)?;
    for (ci, r) in written.into_iter().enumerate() {
        results[ctx_of_pick[ci]] = Some(r);
    }

    let rpc = external.as_ref().map(|e| e.stats()).unwrap_or_default();
    for (method, m) in &rpc {
        for d in &m.durations_s {
            telemetry.rpc_duration_only("driver", method, "grpc", *d);
        }
        for (w, depth) in &m.waits {
            telemetry.rpc_wait_only("driver", method, "grpc", *w, *depth);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let rollouts = counts_rollouts(&ctxs, opts.config.simulation.n_rollouts);
    let threads = rayon::current_num_threads() as f64;
    // Workers compute except while they wait on an external driver's answers.
    let waiting = if external.is_some() {
        times.driver.as_secs_f64()
    } else {
        0.0
    };
    let writer_s = telemetry
        .rpc_duration
        .iter()
        .filter(|((svc, _, _), _)| svc == "writer")
        .map(|(_, h)| h.sum)
        .sum::<f64>();
    let work = (times.total().as_secs_f64() - waiting).max(0.0) + writer_s;
    // The stepping workers and the writer thread.
    let threads = threads + 1.0;
    for (k, v) in [
        ("simulation_total_seconds", wall),
        ("simulation_rollout_count", rollouts as f64),
        (
            "simulation_seconds_per_rollout",
            wall / (rollouts.max(1) as f64),
        ),
        ("event_loop_work_seconds_total", work),
        (
            "event_loop_idle_seconds_total",
            (threads * wall - work).max(0.0),
        ),
    ] {
        telemetry.gauges.insert(k.into(), v);
    }
    sampler.finish(&mut telemetry);
    crate::telemetry::write_worker_files(run, opts.shard.index, &telemetry, rollouts > 0)
        .map_err(io_err(&run.join("telemetry")))?;
    let mut outcome = RunOutcome {
        times,
        counts,
        rpc,
        telemetry,
        ..RunOutcome::default()
    };
    for (method, m) in &outcome.rpc {
        let mut d = m.durations_s.clone();
        d.sort_by(f64::total_cmp);
        let q = |p: f64| {
            d.get(((d.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
                * 1e3
        };
        let _ = writeln!(
            log,
            "driver rpc {method}: {} calls, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, {} retries, {} failed",
            d.len(),
            q(0.5),
            q(0.95),
            q(0.99),
            m.retries,
            m.failures
        );
    }
    for (scene_id, r) in picked.iter().zip(results) {
        match r.expect("every scene has a result") {
            SceneResult::Kept => {
                outcome.skipped_complete += 1;
                let _ = writeln!(log, "{scene_id}: complete, kept");
            }
            SceneResult::Simulated => {
                outcome.simulated += 1;
                let _ = writeln!(
                    log,
                    "{scene_id}: {} rollouts simulated",
                    opts.config.simulation.n_rollouts
                );
            }
            SceneResult::Failed(error) => {
                let _ = writeln!(log, "{scene_id}: FAILED: {error}");
                outcome.failed.push(((*scene_id).clone(), error));
            }
        }
    }
    let _ = writeln!(
        log,
        "{} rollout-steps, {} agent-steps; step time per service (CPU s): {}",
        outcome.counts.rollout_steps,
        outcome.counts.agent_steps,
        outcome
            .times
            .parts()
            .iter()
            .map(|(n, d)| format!("{n} {:.3}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(outcome)
}

/// Whether any batch of the run dir is complete (a run dir with only unfinished batches may be
/// started over with other settings).
fn has_complete_batch(run: &Path) -> bool {
    let Ok(scenes) = fs::read_dir(run.join(run_dir::ROLLOUTS)) else {
        return false;
    };
    scenes.flatten().any(|s| {
        fs::read_dir(s.path()).is_ok_and(|rd| {
            rd.flatten().any(|b| {
                matches!(
                    run_dir::batch_state(&b.path()),
                    run_dir::BatchState::Complete
                )
            })
        })
    })
}

fn counts_rollouts(ctxs: &[SceneCtx], n_rollouts: u32) -> usize {
    ctxs.len() * n_rollouts as usize
}

fn batch_dir(opts: &RunOptions, scene_id: &str) -> (String, PathBuf) {
    run_dir::batch_of(&opts.run_dir, scene_id)
}

/// Keeps a complete batch; otherwise clears the batch dir and loads the scene.
fn prepare(opts: &RunOptions, scene_id: &str) -> Result<Prepared, RunnerError> {
    let (batch_uuid, dir) = batch_dir(opts, scene_id);
    match run_dir::batch_state(&dir) {
        run_dir::BatchState::Complete => return Ok(Prepared::Kept),
        _ if dir.exists() => fs::remove_dir_all(&dir).map_err(io_err(&dir))?,
        _ => {}
    }
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let path = opts
        .scenes_dir
        .join(format!("{scene_id}.{}", crate::scene::EXTENSION));
    Ok(
        match Scene::load(&path)
            .map_err(|e| e.to_string())
            .and_then(|scene| {
                // The run dir is laid out by file name; a scene whose id differs would be
                // written under another scene's directory.
                if scene.scene_id != scene_id {
                    return Err(format!(
                        "{}: the scene inside is `{}`, not `{scene_id}`: rename the file {}.{}",
                        path.display(),
                        scene.scene_id,
                        scene.scene_id,
                        crate::scene::EXTENSION
                    ));
                }
                SceneCtx::new(scene, &opts.config, batch_uuid).map_err(|e| e.to_string())
            }) {
            Ok(ctx) => Prepared::Ready(Box::new(ctx)),
            Err(e) => Prepared::Failed(e),
        },
    )
}

/// Writes `_failed.json` for a scene's batch (DESIGN §2): every rollout of it failed.
fn write_failed(opts: &RunOptions, scene_id: &str, error: &str) -> Result<(), RunnerError> {
    let (batch_uuid, dir) = batch_dir(opts, scene_id);
    FailedBatch {
        error: error.to_string(),
        scene_id: scene_id.to_string(),
        rollout_ids: (0..opts.config.simulation.n_rollouts)
            .map(|i| format!("{batch_uuid}-{i}"))
            .collect(),
        batch_uuid,
    }
    .write(&dir)
    .map_err(io_err(&dir))
}

/// Most rollouts stepped together on a device (64K rollouts × 32 agents take ≈ 1 GiB).
pub const DEVICE_CHUNK: usize = 65_536;

/// Hands a chunk's traces to the writer (or its failure); returns its times and counts.
fn deliver(
    tx: &mpsc::Sender<ToWriter>,
    st: &BatchState,
    ctxs: &[SceneCtx],
    part: &[(u32, u32)],
    result: Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError>,
) -> (ServiceTimes, StepCounts) {
    match result {
        Ok((traces, times, counts)) => {
            for (r, mut trace) in traces.into_iter().enumerate() {
                let scene = st.scene[r] as usize;
                // The whole-rollout metrics, on this worker (the writer only encodes).
                trace.rollout_metrics =
                    crate::sim::rollout_metrics::rollout_metrics(&ctxs[scene], &trace);
                let _ = tx.send(ToWriter::Done(Box::new(Finished {
                    scene,
                    rollout: st.rollout[r],
                    seed: st.seed[r],
                    perturbation: perturbation_json(st, r, &ctxs[scene].scene),
                    trace,
                })));
            }
            (times, counts)
        }
        Err(e) => {
            let mut scenes: Vec<usize> = part.iter().map(|(s, _)| *s as usize).collect();
            scenes.dedup();
            let _ = tx.send(ToWriter::Failed(scenes, e.to_string()));
            (ServiceTimes::default(), StepCounts::default())
        }
    }
}

/// Steps every rollout of `ctxs` and writes their batches; returns per-scene results.
#[allow(clippy::type_complexity)]
fn simulate_scenes(
    opts: &RunOptions,
    driver: &dyn DriverService,
    meta: &RunMetadata,
    ctxs: &[SceneCtx],
    backend: &crate::cuda::Chosen,
) -> Result<(ServiceTimes, StepCounts, Vec<SceneResult>, Telemetry), RunnerError> {
    let n_rollouts = opts.config.simulation.n_rollouts;
    let members: Vec<(u32, u32)> = (0..ctxs.len() as u32)
        .flat_map(|s| (0..n_rollouts).map(move |r| (s, r)))
        .collect();
    let session = match backend.device() {
        Some(d) => Some(DeviceSession::new(d, ctxs, &opts.config)?),
        None => None,
    };
    // I/O-bound drivers want their rollouts in flight at once; a GPU wants all of them.
    let chunk = match (driver.chunk_hint(), &session) {
        (Some(n), _) => n.min(members.len()).max(1),
        (None, Some(_)) => members.len().clamp(1, DEVICE_CHUNK),
        (None, None) => opts
            .config
            .chunk_size(members.len(), rayon::current_num_threads()),
    };
    let configured = ConfiguredServices::new(&opts.config);
    let traffic = opts.traffic.service();
    let models = format!(
        "{{\"driver\":\"{}\",\"traffic\":\"{}\"}}",
        driver.name(),
        traffic.name()
    );
    let bar = crate::report::progress::bar(members.len() as u64, "rollouts", opts.progress);
    let (tx, rx) = mpsc::channel::<ToWriter>();
    let pending = std::sync::atomic::AtomicUsize::new(members.len().div_ceil(chunk));
    let device = backend.device();
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| writer_loop(opts, meta, ctxs, &models, rx, device));
        type Stepped = Result<(Vec<RolloutTrace>, ServiceTimes, StepCounts), StepError>;
        // Builds a chunk's state, steps it with `step`, hands the traces to the writer.
        let run_part =
            |tx: &mpsc::Sender<ToWriter>,
             part: &[(u32, u32)],
             step: &dyn Fn(&mut BatchState, stepper::Probe<'_>) -> Stepped| {
                let depth = pending
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed)
                    .saturating_sub(1);
                let mut tel = Telemetry::default();
                let probe = stepper::Probe {
                    telemetry: &mut tel,
                    queue_depth: depth,
                };
                let mut st = BatchState::new(ctxs, part, &opts.config, traffic.reactive());
                let r = step(&mut st, probe);
                let (times, counts) = deliver(tx, &st, ctxs, part, r);
                bar.inc(part.len() as u64);
                (times, counts, tel)
            };
        let per_chunk: Vec<(ServiceTimes, StepCounts, Telemetry)> = match &session {
            // One device: its chunks run one after another (each fills the GPU).
            Some(session) => members
                .chunks(chunk)
                .map(|part| {
                    run_part(&tx, part, &|st, probe| {
                        session
                            .run(
                                st,
                                ctxs,
                                configured.services(driver),
                                traffic,
                                true,
                                Some(probe),
                            )
                            .map(|(traces, times, counts, _)| (traces, times, counts))
                    })
                })
                .collect(),
            None => members
                .par_chunks(chunk)
                .map_with(tx.clone(), |tx, part| {
                    run_part(tx, part, &|st, probe| {
                        configured.run_cpu(st, ctxs, driver, traffic, true, Some(probe))
                    })
                })
                .collect(),
        };
        drop(tx);
        bar.finish_and_clear();
        let (written, writer_telemetry) =
            writer.join().expect("the writer thread does not panic")?;
        let mut times = ServiceTimes::default();
        let mut counts = StepCounts::default();
        let mut telemetry = writer_telemetry;
        for (t, c, tel) in &per_chunk {
            times.add(t);
            counts.rollout_steps += c.rollout_steps;
            counts.agent_steps += c.agent_steps;
            counts.iterations = counts.iterations.max(c.iterations);
            telemetry.merge(tel);
        }
        Ok((times, counts, written, telemetry))
    })
}

/// Collects finished rollouts per scene and writes each batch once all its rollouts are in.
fn writer_loop(
    opts: &RunOptions,
    meta: &RunMetadata,
    ctxs: &[SceneCtx],
    models: &str,
    rx: mpsc::Receiver<ToWriter>,
    device: Option<&crate::cuda::device::Device>,
) -> Result<(Vec<SceneResult>, Telemetry), RunnerError> {
    let n = opts.config.simulation.n_rollouts as usize;
    let mut telemetry = Telemetry::default();
    let mut pending: BTreeMap<usize, Vec<Option<Finished>>> = BTreeMap::new();
    let mut results: Vec<Option<SceneResult>> = (0..ctxs.len()).map(|_| None).collect();
    for msg in rx {
        match msg {
            ToWriter::Done(f) => {
                let scene = f.scene;
                if results[scene].is_some() {
                    continue; // already failed
                }
                let slot = pending
                    .entry(scene)
                    .or_insert_with(|| (0..n).map(|_| None).collect());
                let idx = f.rollout as usize;
                slot[idx] = Some(*f);
                if slot.iter().all(Option::is_some) {
                    let done: Vec<Finished> = pending
                        .remove(&scene)
                        .expect("just filled")
                        .into_iter()
                        .flatten()
                        .collect();
                    let ctx = &ctxs[scene];
                    let (_, dir) = batch_dir(opts, &ctx.scene.scene_id);
                    let failures: Vec<String> = done
                        .iter()
                        .filter_map(|f| {
                            f.failure()
                                .map(|e| format!("rollout {}-{}: {e}", ctx.batch_uuid, f.rollout))
                        })
                        .collect();
                    if !failures.is_empty() {
                        let e = failures.join("; ");
                        write_failed(opts, &ctx.scene.scene_id, &e)?;
                        results[scene] = Some(SceneResult::Failed(e));
                        continue;
                    }
                    let started = std::time::Instant::now();
                    let written = write_batch(ctx, &done, opts, meta, models, &dir, device);
                    // The writer is a service too: logs, Parquet and videos of one batch.
                    telemetry.rpc(
                        "writer",
                        "write_batch",
                        "io",
                        started.elapsed().as_secs_f64(),
                        0.0,
                        rx_depth(&pending),
                    );
                    results[scene] = Some(match written {
                        Ok(()) => SceneResult::Simulated,
                        Err(e) => {
                            let e = format!("writing {}: {e}", dir.display());
                            write_failed(opts, &ctx.scene.scene_id, &e)?;
                            SceneResult::Failed(e)
                        }
                    });
                }
            }
            ToWriter::Failed(scenes, error) => {
                for s in scenes {
                    if results[s].is_none() {
                        pending.remove(&s);
                        write_failed(opts, &ctxs[s].scene.scene_id, &error)?;
                        results[s] = Some(SceneResult::Failed(error.clone()));
                    }
                }
            }
        }
    }
    Ok((
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| SceneResult::Failed("rollouts missing".into())))
            .collect(),
        telemetry,
    ))
}

/// Batches waiting for their remaining rollouts (the writer's backlog).
fn rx_depth(pending: &BTreeMap<usize, Vec<Option<Finished>>>) -> usize {
    pending.len()
}

/// Writes one scene's batch dir: rollout.asl, metrics.parquet, then `_complete` (synced).
fn write_batch(
    ctx: &SceneCtx,
    done: &[Finished],
    opts: &RunOptions,
    meta: &RunMetadata,
    models: &str,
    dir: &Path,
    device: Option<&crate::cuda::device::Device>,
) -> std::io::Result<()> {
    let (cfg, compression) = (&opts.config, opts.log_compression);
    let asl_path = dir.join(LogSink::file_name(compression));
    let asl_tmp = fsutil::TempFile::for_target(&asl_path);
    let mut file = LogSink::create(asl_tmp.path(), compression)?;
    let mut buf = Vec::with_capacity(1 << 16);
    let mut rows = MetricsBuilder::new();
    let shared = scene_metadata(ctx);
    for f in done {
        buf.clear();
        let md = rollout_metadata(ctx, cfg, f.rollout, f.seed, &f.perturbation, models);
        encode_rollout_log(&mut buf, ctx, &shared, &md, &f.trace);
        file.write_all(&buf)?;
        let rollout_id = format!("{}-{}", ctx.batch_uuid, f.rollout);
        push_trace_rows(&mut rows, ctx, &rollout_id, meta, &f.trace);
    }
    file.finish()?;
    asl_tmp.persist(&asl_path)?;
    let fps = (1e6 / cfg.simulation.control_timestep_us as f64)
        .round()
        .max(1.0) as u32;
    for f in done {
        let wanted = match opts.video {
            crate::video::VideoMode::None => false,
            crate::video::VideoMode::All => true,
            crate::video::VideoMode::Violations => {
                crate::video::is_violation(&f.trace, cfg.drivekit.evaluation.max_dist_to_gt_m)
            }
        };
        if wanted && !f.trace.times_us.is_empty() {
            let path = crate::video::video_path(dir, &ctx.scene.scene_id, f.rollout);
            let raster = device.map(|d| d as &dyn crate::video::PolygonRasteriser);
            crate::video::write_rollout_video(&path, ctx, &f.trace, &opts.view, fps, raster)
                .map_err(|e| std::io::Error::other(format!("{}: {e}", path.display())))?;
        }
    }
    metrics_file::write_metrics_file_tagged(
        &dir.join(run_dir::METRICS),
        &[rows.finish()],
        &ctx.scene.tags,
    )
    .map_err(std::io::Error::other)?;
    fsutil::write_atomic_as(&dir.join(run_dir::COMPLETE), Durability::Synced, b"")
}
