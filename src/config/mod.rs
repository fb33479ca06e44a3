//! The configuration, in AlpaSim's nesting (DESIGN §6): what every binary reads from a
//! `wizard-config.yaml` (a run's resolved one, or a config to compose from AlpaSim's config groups
//! with Hydra-style overrides), as one typed model — [`SimConfig`] — with every default filled in
//! (`defaults.yaml`) and every clock and capacity rule checked ([`rules`]).
//!
//! - `runtime.simulation_config.*`: the clocks, steps, rollouts and cameras;
//!   `driver.inference.subsample_factor` (also the older `Cframes_subsample`);
//! - `services.<svc>.{gpus, replicas_per_container}`, `runtime.endpoints.<svc>.{
//!   n_concurrent_rollouts, skip}`, `runtime.nr_workers`: the deploy capacities;
//! - `scenes.scene_ids`, `wizard.run_name`;
//! - `drivekit.*`: drivekit's own settings (its camera, the external driver's addresses,
//!   perturbations, evaluation thresholds).
//!
//! Keys drivekit does not read are kept (a run's wizard-config.yaml is written back with them)
//! and summarised in one warning; unknown keys in the `drivekit` section are warned about with
//! the nearest known name. Wrong types and broken rules are errors naming the key, its value, the
//! file it came from and the fix. Older drivekit configs (flat keys) load with a warning and can be
//! converted ([`migrate`]).

pub mod compose;
pub mod interpolate;
pub mod migrate;
pub mod rules;
pub mod tree;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_norway::Value;

use compose::Mode;
use tree::Tree;

/// drivekit's defaults in AlpaSim's nesting.
pub const DEFAULTS_YAML: &str = include_str!("defaults.yaml");

/// AlpaSim's cut-off (m) after which a trajectory's rows are dropped in aggregation
/// (`processing.py`), and drivekit's default violation threshold for videos.
pub const DEFAULT_MAX_DIST_TO_GT_M: f64 = 4.0;

/// AlpaSim's services whose deploy capacity bounds the concurrent rollouts (its runtime's
/// address pools), in its order. drivekit's own services map onto them: its sensor onto the
/// renderer, its vehicle model onto physics, its traffic onto trafficsim.
pub const SERVICES: [&str; 5] = ["renderer", "driver", "physics", "trafficsim", "controller"];

/// A configuration that cannot be used; each names the file, key and fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// File not readable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// YAML that does not parse (or is not a mapping).
    #[error("{file}{}: invalid YAML: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
    Yaml {
        /// the file
        file: PathBuf,
        /// the line, when the parser knows it
        line: Option<usize>,
        /// the parser's message
        message: String,
    },
    /// A defaults list or override names a group that does not exist.
    #[error("config group {group} does not exist in {dir}{} (groups: {}; to add a key instead write +{group}=…)", did_you_mean(.group, .groups), .groups.join(", "))]
    NoGroup {
        /// the group
        group: String,
        /// the config directory
        dir: PathBuf,
        /// the groups there
        groups: Vec<String>,
    },
    /// A group has no such option.
    #[error("config group {group} has no option {option}{} (options: {})", did_you_mean(.option, .options), .options.join(", "))]
    NoOption {
        /// the group
        group: String,
        /// the option asked for
        option: String,
        /// the options there
        options: Vec<String>,
    },
    /// Defaults lists that include each other.
    #[error("cycle in defaults lists: {}", .0.join(" → "))]
    DefaultsCycle(Vec<String>),
    /// A command-line override that does not parse.
    #[error("override {text}: {message}")]
    Override {
        /// the argument
        text: String,
        /// what is wrong
        message: String,
    },
    /// An interpolation that cannot be resolved.
    #[error(transparent)]
    Interpolation(#[from] interpolate::InterpolationError),
    /// A value of the wrong type (`problem` says what was expected).
    #[error("{} = {} (from {}): expected {}; {}", .0.key, .0.value, .0.file, .0.problem, .0.fix)]
    Type(Box<KeyError>),
    /// A clock, capacity or range rule is broken.
    #[error("{} = {} (from {}): {}; {}", .0.key, .0.value, .0.file, .0.problem, .0.fix)]
    Rule(Box<KeyError>),
}

/// One camera of `runtime.simulation_config.cameras`: its clock (frames every
/// `frame_interval_us`, each exposed for `shutter_duration_us`) and size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Camera {
    /// Its id.
    pub logical_id: String,
    /// Frame period (µs).
    pub frame_interval_us: u64,
    /// Exposure (µs).
    pub shutter_duration_us: u64,
    /// Width (px).
    pub width: u32,
    /// Height (px).
    pub height: u32,
}

/// `runtime.simulation_config`.
#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    /// Driver decisions every this many µs.
    pub control_timestep_us: u64,
    /// Ego pose updates every this many µs (`egopose_interval_us`, or AlpaSim's newer
    /// `pose_reporting_interval_us`; 0 or absent = the control step).
    pub egopose_interval_us: u64,
    /// The simulation starts this long after the recording's start (default: 3 control steps).
    pub time_start_offset_us: u64,
    /// Check at every decision that every camera's last frame and the last pose complete then.
    pub assert_zero_decision_delay: bool,
    /// Control steps to simulate (clipped to what the recording covers).
    pub n_sim_steps: u32,
    /// Rollouts per scene.
    pub n_rollouts: u32,
    /// The ego follows its recording this long before the policy takes over.
    pub force_gt_duration_us: i64,
    /// The cameras and their clocks.
    pub cameras: Vec<Camera>,
}

/// `services.<svc>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// GPUs (`None`: a CPU service, one container).
    pub gpus: Option<Vec<i64>>,
    /// Replicas per container (≥ 1).
    pub replicas_per_container: u32,
}

/// `runtime.endpoints.<svc>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// Rollouts each replica serves at once.
    pub n_concurrent_rollouts: u32,
    /// Not deployed: left out of the capacities.
    pub skip: bool,
}

/// `runtime.renderer.video_model_config` with `runtime.renderer.kind: video_model`: frames come
/// in chunks at `fps` (AlpaSim's video-model timing rules).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoModel {
    /// Frames per second.
    pub fps: u32,
    /// Frames of the first chunk.
    pub first_chunk_frames: u32,
    /// Frames of every later chunk.
    pub chunk_frames: u32,
}

/// `drivekit.camera`: the bird's-eye image an external driver gets at each decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BevCamera {
    /// Its id in `start_session` and the image messages.
    pub logical_id: String,
    /// Side (px); 0 sends none.
    pub size_px: u32,
}

/// `drivekit.external_driver`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExternalDriverConfig {
    /// Servers (`host:port` or `unix:/path`).
    pub addresses: Vec<String>,
    /// Per-call timeout (s).
    pub timeout_s: f64,
    /// Retries of a failed call (with exponential backoff from 50 ms).
    pub retries: u32,
    /// Also send the recorded ground-truth trajectory at the session start.
    pub send_ground_truth: bool,
    /// Step the rollouts of a chunk together, each step waiting for every rollout's answer
    /// (as drivekit did before it pipelined them); the results are the same either way.
    pub lockstep: bool,
}

/// `drivekit.perturbation`: how the rollouts of one scene differ. Each rollout draws its values
/// from its own seed (derived from `seed`, the scene id and the rollout index) and records them
/// in rollout.asl. All zero: every rollout is the same.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perturbation {
    /// Run-wide seed mixed into every rollout's seed.
    pub seed: u64,
    /// σ of the ego's position offset at the takeover, per axis (m).
    pub ego_position_sigma_m: f64,
    /// σ of the ego's heading offset at the takeover (rad).
    pub ego_heading_sigma_rad: f64,
    /// σ of the ego's relative speed change at the takeover.
    pub ego_speed_sigma_frac: f64,
    /// σ of each IDM agent's relative desired-speed change.
    pub agent_speed_sigma_frac: f64,
    /// σ of each IDM agent's relative time-headway change.
    pub agent_headway_sigma_frac: f64,
}

/// `drivekit.evaluation`: settings of the per-step metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evaluation {
    /// TTC projection horizon (s; nuPlan scores with 3 s).
    pub ttc_horizon_s: f64,
    /// TTC projection step (s).
    pub ttc_step_s: f64,
    /// A rollout this far (m) or farther from the recorded path counts as a violation for
    /// `--video violations` (AlpaSim's aggregation cut-off, `aggregate --max-dist-to-gt`).
    pub max_dist_to_gt_m: f64,
}

/// `drivekit.video`: the evaluation videos.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VideoSettings {
    /// Which rollouts get a video: `all`, `violations` or `none`.
    pub mode: String,
    /// Frame side (px, even).
    pub size_px: u32,
    /// Scale (m per px).
    pub scale_m_per_px: f64,
}

/// `drivekit`: drivekit's own section. The choices are names (checked against
/// [`rules::CHOICES`]); the command line's flags override them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drivekit {
    /// The policy under test (`log-replay`, `constant-velocity`, `idm`, `external`).
    pub driver: String,
    /// The traffic model (`log-replay`, `idm`).
    pub traffic: String,
    /// What steps the rollouts (`auto`, `cpu`, `cuda`, `cuda-emulated`).
    pub backend: String,
    /// Evaluation videos.
    pub video: VideoSettings,
    /// How rollout logs are stored (`none`, `xz`).
    pub log_compression: String,
    /// The external driver's bird's-eye camera.
    pub camera: BevCamera,
    /// External driver servers and call settings.
    pub external_driver: ExternalDriverConfig,
    /// Per-rollout perturbations.
    pub perturbation: Perturbation,
    /// Metric settings.
    pub evaluation: Evaluation,
}

/// `scenes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scenes {
    /// Scene ids of the run (empty: every scene in the scene directory).
    pub scene_ids: Vec<String>,
}

/// The resolved configuration: the composed tree and the typed values drivekit reads from it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// `runtime.simulation_config`.
    pub simulation: Simulation,
    /// `driver.inference.subsample_factor`: the driver uses every n-th camera frame.
    pub subsample_factor: u32,
    /// `services`.
    pub services: BTreeMap<String, Service>,
    /// `runtime.endpoints`.
    pub endpoints: BTreeMap<String, Endpoint>,
    /// `runtime.nr_workers`.
    pub nr_workers: u32,
    /// A video-model renderer's timing, when `runtime.renderer.kind` is `video_model`.
    pub video_model: Option<VideoModel>,
    /// `scenes`.
    pub scenes: Scenes,
    /// `wizard.run_name`.
    pub run_name: Option<String>,
    /// `drivekit`.
    pub drivekit: Drivekit,
    /// The resolved tree (every key, drivekit's and the rest).
    pub tree: Tree,
    /// What loading found worth saying (unused keys, migrations, overrides of absent keys).
    pub warnings: Vec<String>,
    /// The files composed, in order.
    pub sources: Vec<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig::from_tree(Tree::new(), Vec::new(), Vec::new())
            .expect("drivekit's defaults are a valid configuration")
    }
}

/// "; did you mean X?" when one of `candidates` is near `name`.
fn did_you_mean(name: &str, candidates: &[String]) -> String {
    suggest(name, candidates)
        .map(|s| format!("; did you mean {s}?"))
        .unwrap_or_default()
}

/// `warning` prefixed with `file` unless it names it already.
pub fn in_file(warning: &str, file: &Path) -> String {
    let f = file.display().to_string();
    if warning.starts_with(&f) {
        warning.to_string()
    } else {
        format!("{f}: {warning}")
    }
}

/// What is wrong with one key: its value, where it came from, the problem and the fix.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyError {
    /// the key
    pub key: String,
    /// its value
    pub value: String,
    /// where it came from (a file, "command line", a flag)
    pub file: String,
    /// what is wrong (for a type error: what was expected)
    pub problem: String,
    /// how to fix it
    pub fix: String,
}

/// The nearest of `candidates` to `key` by Levenshtein distance (`strsim`, the crate clap uses
/// for its suggestions), if it is close enough to be a likely misspelling.
pub fn suggest(key: &str, candidates: &[String]) -> Option<String> {
    let best = candidates
        .iter()
        .map(|c| (strsim::levenshtein(key, c), c))
        .min_by_key(|(d, _)| *d)?;
    (best.0 > 0 && best.0 <= key.len().max(4) / 3 + 1).then(|| best.1.clone())
}

/// The leaves of drivekit's defaults: every key drivekit reads, as dotted paths (camera lists as
/// `cameras.N.field`).
pub(crate) fn known_keys() -> BTreeSet<String> {
    let mut t = Tree::new();
    t.merge_at("", &defaults_value(), "defaults");
    let mut keys: BTreeSet<String> = t.leaves().into_iter().collect();
    for extra in [
        "runtime.simulation_config.time_start_offset_us",
        "runtime.simulation_config.egopose_interval_us",
        "runtime.simulation_config.pose_reporting_interval_us",
        "driver.inference.Cframes_subsample",
        "runtime.renderer.video_model_config.fps",
        "runtime.renderer.video_model_config.first_chunk_frames",
        "runtime.renderer.video_model_config.chunk_frames",
    ] {
        keys.insert(extra.to_string());
    }
    keys
}

fn defaults_value() -> Value {
    serde_norway::from_str(DEFAULTS_YAML).expect("defaults.yaml parses")
}

impl SimConfig {
    /// Composes `path` with its config groups (its directory) and `overrides` (Hydra syntax),
    /// over drivekit's defaults, and checks the rules. An older drivekit config (flat keys) is
    /// converted first, with a warning.
    pub fn compose(path: &Path, overrides: &[String]) -> Result<SimConfig, ConfigError> {
        Self::load_as(path, overrides, Mode::Compose)
    }

    /// As [`SimConfig::compose`] for a file, else drivekit's defaults with `overrides` applied
    /// (group overrides then look for groups in the working directory).
    pub fn compose_or_default(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<SimConfig, ConfigError> {
        match path {
            Some(p) => Self::compose(p, overrides),
            None => Self::from_text(
                "{}\n",
                Path::new("wizard-config.yaml"),
                overrides,
                Mode::Compose,
            ),
        }
    }

    /// Sets `(key, value, origin)` triples — the command line's flags, named as the origin —
    /// and reads and checks the model again; an error names the flag.
    pub fn apply(&mut self, sets: &[(&str, Value, &str)]) -> Result<(), ConfigError> {
        if sets.is_empty() {
            return Ok(());
        }
        let mut tree = self.tree.clone();
        for (k, v, origin) in sets {
            tree.set(k, v.clone(), origin);
        }
        let cfg = rules::Reader { tree: &tree }.model()?;
        let cfg = SimConfig {
            tree,
            warnings: std::mem::take(&mut self.warnings),
            sources: std::mem::take(&mut self.sources),
            ..cfg
        };
        cfg.check()?;
        *self = cfg;
        Ok(())
    }

    /// An error about `key` in the style of the rules: its value, where it came from, what is
    /// wrong and the fix.
    pub fn invalid(&self, key: &str, problem: &str, fix: &str) -> ConfigError {
        rules::Reader { tree: &self.tree }.rule(key, problem, fix)
    }

    /// Loads a run's (resolved) `wizard-config.yaml`: as [`SimConfig::compose`], but a defaults
    /// list without its config groups beside the file is left out with a warning.
    pub fn load(path: &Path) -> Result<SimConfig, ConfigError> {
        Self::load_as(path, &[], Mode::Resolved)
    }

    fn load_as(path: &Path, overrides: &[String], mode: Mode) -> Result<SimConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        Self::from_text(&text, path, overrides, mode)
    }

    /// Parses one YAML text as if it were the file `file` (a defaults list in it is followed
    /// where the groups are beside `file`, else left out with a warning).
    pub fn parse(text: &str, file: &Path) -> Result<SimConfig, ConfigError> {
        Self::from_text(text, file, &[], Mode::Resolved)
    }

    fn from_text(
        text: &str,
        path: &Path,
        overrides: &[String],
        mode: Mode,
    ) -> Result<SimConfig, ConfigError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let parsed = compose::parse_overrides(overrides, Some(dir))?;
        let mut warnings = Vec::new();
        let converted = migrate::convert_text(text, path)?;
        let (text, mode) = match &converted {
            // An older drivekit config: its AlpaSim-nested equivalent.
            Some(c) => {
                warnings.push(c.warning.clone());
                (c.yaml.as_str(), Mode::Resolved)
            }
            None => (text, mode),
        };
        let composed = compose::compose_text(text, path, &parsed, mode)?;
        warnings.extend(composed.warnings);
        SimConfig::from_tree(composed.tree, warnings, composed.files)
    }

    /// The typed model of `user` (composed, overrides applied) over drivekit's defaults.
    fn from_tree(
        user: Tree,
        mut warnings: Vec<String>,
        sources: Vec<PathBuf>,
    ) -> Result<SimConfig, ConfigError> {
        let mut tree = Tree::new();
        tree.merge_at("", &defaults_value(), "drivekit's defaults");
        let user_leaves = user.leaves();
        tree.merge_at("", &user.root, "");
        // Origins: the user's where they set a key, the defaults' elsewhere.
        for (k, o) in &user.origins {
            tree.origins.insert(k.clone(), o.clone());
        }
        tree.origins.retain(|_, o| !o.is_empty());
        let (resolved, w) = interpolate::resolve(&tree.root, &|k| std::env::var(k).ok())?;
        tree.root = resolved;
        warnings.extend(w);
        let r = rules::Reader { tree: &tree };
        let cfg = r.model()?;
        let known = known_keys();
        let unused: Vec<String> = user_leaves
            .iter()
            .filter(|k| !known.contains(*k) && !k.starts_with("runtime.simulation_config.cameras."))
            .cloned()
            .collect();
        let (own, theirs): (Vec<String>, Vec<String>) =
            unused.into_iter().partition(|k| k.starts_with("drivekit."));
        if !own.is_empty() {
            let known: Vec<String> = known.iter().cloned().collect();
            warnings.push(format!(
                "unknown drivekit keys (ignored): {}",
                own.iter()
                    .map(|k| match suggest(k, &known) {
                        Some(s) => format!("{k} (did you mean {s}?)"),
                        None => k.clone(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        // Keys drivekit does not read whose name is one or two letters off a key it reads
        // beside them (same parent): typos, not AlpaSim keys drivekit leaves alone.
        let typos: Vec<String> = theirs
            .iter()
            .filter_map(|k| {
                let (parent, leaf) = k.rsplit_once('.')?;
                let near = known.iter().find(|c| {
                    c.rsplit_once('.').is_some_and(|(p, l)| {
                        let d = strsim::levenshtein(leaf, l);
                        p == parent && d > 0 && d <= 2 && leaf.len() >= 5
                    })
                })?;
                Some(format!("{k} (did you mean {near}?)"))
            })
            .collect();
        if !typos.is_empty() {
            warnings.push(format!(
                "keys drivekit does not read, likely misspelt: {}",
                typos.join(", ")
            ));
        }
        if !theirs.is_empty() {
            let mut by_section: BTreeMap<String, usize> = BTreeMap::new();
            for k in &theirs {
                let section = k.split('.').next().unwrap_or_default().to_string();
                *by_section.entry(section).or_default() += 1;
            }
            warnings.push(format!(
                "{} keys drivekit does not use (kept in the resolved wizard-config.yaml): {}",
                theirs.len(),
                by_section
                    .iter()
                    .map(|(s, n)| format!("{s} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let cfg = SimConfig {
            tree,
            warnings,
            sources,
            ..cfg
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// The AlpaSim keys of the configuration drivekit does not read (for `check-config
    /// --verbose`).
    pub fn unused_keys(&self) -> Vec<String> {
        let known = known_keys();
        self.tree
            .leaves()
            .into_iter()
            .filter(|k| !known.contains(k) && !k.starts_with("runtime.simulation_config.cameras."))
            .collect()
    }

    /// The resolved configuration as YAML in AlpaSim's nesting (what a run dir's
    /// wizard-config.yaml holds): the composed tree with every value drivekit reads filled in.
    pub fn to_yaml(&self) -> String {
        let mut t = self.tree.clone();
        let s = &self.simulation;
        let sc = "runtime.simulation_config";
        let set = |t: &mut Tree, k: &str, v: Value| t.set(k, v, "resolved");
        let num = |n: u64| Value::Number(n.into());
        set(
            &mut t,
            &format!("{sc}.control_timestep_us"),
            num(s.control_timestep_us),
        );
        set(
            &mut t,
            &format!("{sc}.time_start_offset_us"),
            num(s.time_start_offset_us),
        );
        set(
            &mut t,
            &format!("{sc}.pose_reporting_interval_us"),
            num(s.egopose_interval_us),
        );
        set(
            &mut t,
            &format!("{sc}.n_sim_steps"),
            num(u64::from(s.n_sim_steps)),
        );
        set(
            &mut t,
            &format!("{sc}.n_rollouts"),
            num(u64::from(s.n_rollouts)),
        );
        set(
            &mut t,
            &format!("{sc}.force_gt_duration_us"),
            Value::Number(s.force_gt_duration_us.into()),
        );
        set(
            &mut t,
            &format!("{sc}.assert_zero_decision_delay"),
            Value::Bool(s.assert_zero_decision_delay),
        );
        set(
            &mut t,
            &format!("{sc}.cameras"),
            serde_norway::to_value(&s.cameras).expect("plain data"),
        );
        if t.get("driver.inference.Cframes_subsample").is_some() {
            t.remove("driver.inference.Cframes_subsample");
        }
        set(
            &mut t,
            "driver.inference.subsample_factor",
            num(u64::from(self.subsample_factor)),
        );
        set(
            &mut t,
            "scenes.scene_ids",
            serde_norway::to_value(&self.scenes.scene_ids).expect("plain data"),
        );
        set(
            &mut t,
            "drivekit",
            serde_norway::to_value(&self.drivekit).expect("plain data"),
        );
        serde_norway::to_string(&t.root).expect("plain data serialises")
    }
}

/// What `aggregate` reads from a run's wizard-config.yaml: the scenes expected and a canonical
/// form of the whole file, to compare the configurations of several shards.
#[derive(Debug, Clone, PartialEq)]
pub struct WizardConfig {
    /// The whole document, canonical (maps sorted).
    pub canonical: serde_json::Value,
    /// `scenes.scene_ids`, when listed.
    pub scene_ids: Option<Vec<String>>,
    /// Rollouts per scene, when given (`runtime.simulation_config.n_rollouts`, or an older
    /// drivekit file's `n_rollouts`).
    pub n_rollouts: Option<u64>,
}

impl WizardConfig {
    /// Parses YAML text.
    pub fn parse(text: &str, file: &Path) -> Result<WizardConfig, ConfigError> {
        let yaml: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Yaml {
            file: file.to_path_buf(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?;
        // serde_json's Map is ordered by key: equal configs compare equal whatever the key order.
        let canonical = serde_json::to_value(&yaml).map_err(|e| ConfigError::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: e.to_string(),
        })?;
        let scene_ids = canonical
            .pointer("/scenes/scene_ids")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            });
        let n_rollouts = canonical
            .pointer("/runtime/simulation_config/n_rollouts")
            .or_else(|| canonical.get("n_rollouts"))
            .and_then(|v| v.as_u64());
        Ok(WizardConfig {
            canonical,
            scene_ids,
            n_rollouts,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<WizardConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }
}
