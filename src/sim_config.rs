//! The simulator's configuration (`wizard-config.yaml`, DESIGN §6): timing clocks, rollouts,
//! deploy settings and scenes, with every default filled in and every clock rule checked. Each
//! error names the key, its value and the fix.
//!
//! Keys keep AlpaSim's names. Defaults are AlpaSim's 10 Hz base config: control, camera frame and
//! egopose every 100 000 µs, start offset 300 000 µs (3 control steps), one camera frame per
//! decision, zero decision delay asserted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration that cannot be used; the message names key, value and fix.
#[derive(Debug, thiserror::Error)]
pub enum SimConfigError {
    /// File not readable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// YAML does not parse or has unknown keys / wrong types.
    #[error("{file}: {message}")]
    Parse {
        /// the file
        file: PathBuf,
        /// parser message (names the key)
        message: String,
    },
    /// A clock or deploy rule is broken.
    #[error("{file}: {key} = {value}: {problem}; {fix}")]
    Rule {
        /// the file
        file: PathBuf,
        /// the key
        key: &'static str,
        /// its value
        value: String,
        /// what is wrong
        problem: String,
        /// how to fix it
        fix: String,
    },
}

fn default_control() -> u64 {
    100_000
}
fn default_offset() -> u64 {
    300_000
}
fn default_true() -> bool {
    true
}
fn default_steps() -> u32 {
    200
}
fn default_one() -> u32 {
    1
}
fn default_concurrent() -> u32 {
    64
}

/// `driver.inference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inference {
    /// The driver sees every n-th camera frame.
    #[serde(rename = "Cframes_subsample", default = "default_one")]
    pub cframes_subsample: u32,
}

impl Default for Inference {
    fn default() -> Self {
        Inference {
            cframes_subsample: 1,
        }
    }
}

fn default_timeout_s() -> f64 {
    10.0
}
fn default_retries() -> u32 {
    2
}

/// `driver`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriverConfig {
    /// Inference settings.
    #[serde(default)]
    pub inference: Inference,
    /// External driver servers (AlpaSim's EgodriverService): `host:port` or `unix:/path`
    /// (drivekit's key; used with `simulate run --driver external`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Per-call timeout (s).
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Retries of a failed call (with exponential backoff from 50 ms).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Also send the recorded ground-truth trajectory at the session start.
    #[serde(default)]
    pub send_ground_truth: bool,
    /// Side (px) of the bird's-eye camera image sent to an external driver at each decision
    /// (heading-up, PNG); 0 sends no camera.
    #[serde(default = "default_camera_px")]
    pub camera_px: u32,
}

fn default_camera_px() -> u32 {
    256
}

impl Default for DriverConfig {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("every field has a default")
    }
}

/// One service's deploy entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    /// GPUs given to the service (0: CPU only).
    #[serde(default)]
    pub gpus: u32,
    /// Replicas per container (≥ 1).
    #[serde(default = "default_one")]
    pub replicas_per_container: u32,
    /// Rollouts each replica serves at once.
    #[serde(default = "default_concurrent")]
    pub n_concurrent_rollouts: u32,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            gpus: 0,
            replicas_per_container: 1,
            n_concurrent_rollouts: default_concurrent(),
        }
    }
}

impl Deploy {
    /// Rollouts the service can hold at once: max(gpus, 1) × replicas × concurrent rollouts
    /// (a CPU-only service counts as one device).
    pub fn capacity(&self) -> u64 {
        u64::from(self.gpus.max(1))
            * u64::from(self.replicas_per_container)
            * u64::from(self.n_concurrent_rollouts)
    }
}

/// Services of the simulation step, in step order.
pub const SERVICES: [&str; 5] = ["sensor", "driver", "controller", "traffic", "evaluation"];

/// `scenes`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenes {
    /// Scene ids of the run (empty: every scene in the scene directory).
    #[serde(default)]
    pub scene_ids: Vec<String>,
}

/// `perturbation`: how the rollouts of one scene differ (drivekit's key; AlpaSim has none). Each
/// rollout draws its values from its own seed (derived from `seed`, the scene id and the rollout
/// index) and records them in rollout.asl. All zero: every rollout is the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Perturbation {
    /// Run-wide seed mixed into every rollout's seed.
    #[serde(default)]
    pub seed: u64,
    /// σ of the ego's position offset at the takeover, per axis (m).
    #[serde(default = "default_position_sigma")]
    pub ego_position_sigma_m: f64,
    /// σ of the ego's heading offset at the takeover (rad).
    #[serde(default = "default_heading_sigma")]
    pub ego_heading_sigma_rad: f64,
    /// σ of the ego's relative speed change at the takeover.
    #[serde(default = "default_speed_sigma")]
    pub ego_speed_sigma_frac: f64,
    /// σ of each IDM agent's relative desired-speed change.
    #[serde(default = "default_agent_sigma")]
    pub agent_speed_sigma_frac: f64,
    /// σ of each IDM agent's relative time-headway change.
    #[serde(default = "default_agent_sigma")]
    pub agent_headway_sigma_frac: f64,
}

fn default_position_sigma() -> f64 {
    0.2
}
fn default_heading_sigma() -> f64 {
    0.02
}
fn default_speed_sigma() -> f64 {
    0.05
}
fn default_agent_sigma() -> f64 {
    0.1
}

impl Default for Perturbation {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("every field has a default")
    }
}

/// `evaluation`: settings of the per-step metrics (drivekit's key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// TTC projection horizon (s; nuPlan scores with 3 s).
    #[serde(default = "default_ttc_horizon")]
    pub ttc_horizon_s: f64,
    /// TTC projection step (s).
    #[serde(default = "default_ttc_step")]
    pub ttc_step_s: f64,
    /// A rollout this far (m) or farther from the recorded path counts as a violation for
    /// `--video violations` (AlpaSim's aggregation cut-off, `aggregate --max-dist-to-gt`).
    #[serde(default = "default_max_dist_to_gt")]
    pub max_dist_to_gt_m: f64,
}

fn default_max_dist_to_gt() -> f64 {
    DEFAULT_MAX_DIST_TO_GT_M
}

/// AlpaSim's cut-off (m) after which a trajectory's rows are dropped in aggregation
/// (`processing.py`), and drivekit's default violation threshold for videos.
pub const DEFAULT_MAX_DIST_TO_GT_M: f64 = 4.0;

fn default_ttc_horizon() -> f64 {
    3.0
}
fn default_ttc_step() -> f64 {
    0.1
}

impl Default for Evaluation {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("every field has a default")
    }
}

/// The resolved simulation configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Driver decisions every this many µs.
    #[serde(default = "default_control")]
    pub control_timestep_us: u64,
    /// Camera frames every this many µs.
    #[serde(default = "default_control")]
    pub frame_interval_us: u64,
    /// Ego pose updates every this many µs (must equal control_timestep_us).
    #[serde(default = "default_control")]
    pub egopose_interval_us: u64,
    /// Simulation starts this long after the recording's start.
    #[serde(default = "default_offset")]
    pub time_start_offset_us: u64,
    /// Check at every decision that the last frame and pose complete exactly then.
    #[serde(default = "default_true")]
    pub assert_zero_decision_delay: bool,
    /// Control steps to simulate (clipped to what the recording covers).
    #[serde(default = "default_steps")]
    pub n_sim_steps: u32,
    /// Rollouts per scene.
    #[serde(default = "default_one")]
    pub n_rollouts: u32,
    /// The ego follows its recording this long before the policy takes over.
    #[serde(default)]
    pub force_gt_duration_us: i64,
    /// Driver settings.
    #[serde(default)]
    pub driver: DriverConfig,
    /// Deploy entry per service (missing services get the defaults).
    #[serde(default)]
    pub deploy: BTreeMap<String, Deploy>,
    /// Scenes of the run.
    #[serde(default)]
    pub scenes: Scenes,
    /// How rollouts of a scene differ.
    #[serde(default)]
    pub perturbation: Perturbation,
    /// Metric settings.
    #[serde(default)]
    pub evaluation: Evaluation,
}

impl Default for SimConfig {
    fn default() -> Self {
        serde_norway::from_str("{}").expect("every field has a default")
    }
}

impl SimConfig {
    /// Parses YAML, fills defaults (every service gets a deploy entry) and checks the rules.
    pub fn parse(text: &str, file: &Path) -> Result<SimConfig, SimConfigError> {
        let mut c: SimConfig =
            serde_norway::from_str(if text.trim().is_empty() { "{}" } else { text }).map_err(
                |e| SimConfigError::Parse {
                    file: file.to_path_buf(),
                    message: e.to_string(),
                },
            )?;
        for s in SERVICES {
            c.deploy.entry(s.to_string()).or_default();
        }
        if let Some(unknown) = c.deploy.keys().find(|k| !SERVICES.contains(&k.as_str())) {
            return Err(SimConfigError::Parse {
                file: file.to_path_buf(),
                message: format!(
                    "deploy.{unknown}: unknown service (expected one of {})",
                    SERVICES.join(", ")
                ),
            });
        }
        c.check(file)?;
        Ok(c)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<SimConfig, SimConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimConfigError::Io {
            file: path.to_path_buf(),
            source: e,
        })?;
        Self::parse(&text, path)
    }

    /// The clock and deploy rules of DESIGN §6.
    pub fn check(&self, file: &Path) -> Result<(), SimConfigError> {
        let rule = |key: &'static str, value: String, problem: String, fix: String| {
            Err(SimConfigError::Rule {
                file: file.to_path_buf(),
                key,
                value,
                problem,
                fix,
            })
        };
        let ctl = self.control_timestep_us;
        if ctl == 0 {
            return rule(
                "control_timestep_us",
                "0".into(),
                "must be positive".into(),
                "use e.g. 100000 (10 Hz)".into(),
            );
        }
        if self.frame_interval_us == 0 {
            return rule(
                "frame_interval_us",
                "0".into(),
                "must be positive".into(),
                format!("use {ctl} (one frame per decision)"),
            );
        }
        if self.egopose_interval_us != ctl {
            return rule(
                "egopose_interval_us",
                self.egopose_interval_us.to_string(),
                format!("must equal control_timestep_us ({ctl})"),
                format!("set egopose_interval_us: {ctl}"),
            );
        }
        if !self.time_start_offset_us.is_multiple_of(ctl) {
            let lower = self.time_start_offset_us / ctl * ctl;
            return rule(
                "time_start_offset_us",
                self.time_start_offset_us.to_string(),
                format!("is not a multiple of control_timestep_us ({ctl})"),
                format!("use {lower} or {}", lower + ctl),
            );
        }
        let sub = self.driver.inference.cframes_subsample;
        if sub == 0 {
            return rule(
                "driver.inference.Cframes_subsample",
                "0".into(),
                "must be ≥ 1".into(),
                "use 1".into(),
            );
        }
        if self.assert_zero_decision_delay && u64::from(sub) * self.frame_interval_us != ctl {
            let fix = if ctl.is_multiple_of(self.frame_interval_us) {
                format!(
                    "set driver.inference.Cframes_subsample: {}",
                    ctl / self.frame_interval_us
                )
            } else {
                format!(
                    "set control_timestep_us: {} (= {sub} × frame_interval_us), or set assert_zero_decision_delay: false",
                    u64::from(sub) * self.frame_interval_us
                )
            };
            return rule(
                "control_timestep_us",
                ctl.to_string(),
                format!(
                    "camera frames ({} µs × Cframes_subsample {sub} = {} µs) do not complete at decision time",
                    self.frame_interval_us,
                    u64::from(sub) * self.frame_interval_us
                ),
                fix,
            );
        }
        let gt = self.force_gt_duration_us;
        if gt < 0 || !(gt as u64).is_multiple_of(ctl) {
            let lower = (gt.max(0) as u64) / ctl * ctl;
            return rule(
                "force_gt_duration_us",
                gt.to_string(),
                format!("must be ≥ 0 and a multiple of control_timestep_us ({ctl})"),
                format!("use {lower} or {}", lower + ctl),
            );
        }
        if self.n_rollouts == 0 {
            return rule(
                "n_rollouts",
                "0".into(),
                "must be ≥ 1".into(),
                "use 1".into(),
            );
        }
        for (service, d) in &self.deploy {
            if d.replicas_per_container == 0 {
                return rule(
                    "deploy.<service>.replicas_per_container",
                    format!("0 (service {service})"),
                    "must be ≥ 1".into(),
                    format!("set deploy.{service}.replicas_per_container: 1"),
                );
            }
        }
        let p = &self.perturbation;
        for (key, v) in [
            ("perturbation.ego_position_sigma_m", p.ego_position_sigma_m),
            (
                "perturbation.ego_heading_sigma_rad",
                p.ego_heading_sigma_rad,
            ),
            ("perturbation.ego_speed_sigma_frac", p.ego_speed_sigma_frac),
            (
                "perturbation.agent_speed_sigma_frac",
                p.agent_speed_sigma_frac,
            ),
            (
                "perturbation.agent_headway_sigma_frac",
                p.agent_headway_sigma_frac,
            ),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return rule(
                    key,
                    v.to_string(),
                    "a standard deviation must be finite and ≥ 0".into(),
                    "use 0 to turn this perturbation off".into(),
                );
            }
        }
        let d = &self.driver;
        if !(d.timeout_s.is_finite() && d.timeout_s > 0.0) {
            return rule(
                "driver.timeout_s",
                d.timeout_s.to_string(),
                "a call timeout must be positive".into(),
                "use e.g. 10".into(),
            );
        }
        let e = &self.evaluation;
        if !(e.max_dist_to_gt_m.is_finite() && e.max_dist_to_gt_m > 0.0) {
            return rule(
                "evaluation.max_dist_to_gt_m",
                e.max_dist_to_gt_m.to_string(),
                "must be a positive number of metres".into(),
                "use AlpaSim's 4.0".into(),
            );
        }
        if !(e.ttc_step_s > 0.0 && e.ttc_horizon_s >= e.ttc_step_s && e.ttc_horizon_s <= 60.0) {
            return rule(
                "evaluation.ttc_horizon_s",
                format!("{} (step {})", e.ttc_horizon_s, e.ttc_step_s),
                "the TTC step must be positive and the horizon between one step and 60 s".into(),
                "use nuPlan's ttc_step_s: 0.1 and ttc_horizon_s: 3.0".into(),
            );
        }
        Ok(())
    }

    /// Control steps a recording of `duration_us` supports after the start offset, and the
    /// configured n_sim_steps clipped to it; an error when not even one step fits.
    pub fn clip_steps(&self, duration_us: u64, scene: &str) -> Result<u32, SimConfigError> {
        // Poses at offset, offset + step, … up to the recording's end, both ends included.
        let available = if duration_us >= self.time_start_offset_us {
            (duration_us - self.time_start_offset_us) / self.control_timestep_us + 1
        } else {
            0
        };
        if available == 0 {
            return Err(SimConfigError::Rule {
                file: PathBuf::from(scene),
                key: "time_start_offset_us",
                value: self.time_start_offset_us.to_string(),
                problem: format!(
                    "the recording lasts {duration_us} µs, shorter than the start offset"
                ),
                fix: "lower time_start_offset_us, or leave this scene out".into(),
            });
        }
        Ok(self
            .n_sim_steps
            .min(available.min(u64::from(u32::MAX)) as u32))
    }

    /// How many rollouts step together in one chunk on the CPU: the smallest service capacity
    /// (deploy: replicas × n_concurrent_rollouts), but small enough to give each of `threads`
    /// threads work among `total` rollouts.
    pub fn chunk_size(&self, total: usize, threads: usize) -> usize {
        let capacity = SERVICES
            .iter()
            .filter_map(|s| self.deploy.get(*s))
            .map(|d| d.capacity())
            .min()
            .unwrap_or(64)
            .max(1) as usize;
        capacity.min(total.div_ceil(threads.max(1))).max(1)
    }

    /// The resolved configuration as YAML (what a run dir's wizard-config.yaml holds).
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(self).expect("plain data serialises")
    }

    /// A human-readable table of the clocks and deploy capacities (`simulate --check-config`).
    pub fn clock_table(&self) -> String {
        let hz = |us: u64| 1e6 / us as f64;
        let ctl = self.control_timestep_us;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "clock                      period (µs)   rate (Hz)   note"
        );
        let _ = writeln!(s, "driver decision            {ctl:>11}   {:>9.3}", hz(ctl));
        let _ = writeln!(
            s,
            "camera frame               {:>11}   {:>9.3}   driver sees every {} frame(s)",
            self.frame_interval_us,
            hz(self.frame_interval_us),
            self.driver.inference.cframes_subsample
        );
        let _ = writeln!(
            s,
            "egopose update             {:>11}   {:>9.3}",
            self.egopose_interval_us,
            hz(self.egopose_interval_us)
        );
        let _ = writeln!(
            s,
            "start offset               {:>11}               = {} control steps",
            self.time_start_offset_us,
            self.time_start_offset_us / ctl
        );
        let _ = writeln!(
            s,
            "ground truth forced for    {:>11}               = {} control steps",
            self.force_gt_duration_us,
            self.force_gt_duration_us.max(0) as u64 / ctl
        );
        let _ =
            writeln!(
            s,
            "n_sim_steps {} (≤ {:.1} s simulated), n_rollouts {} per scene, zero decision delay {}",
            self.n_sim_steps,
            self.n_sim_steps as f64 * ctl as f64 / 1e6,
            self.n_rollouts,
            if self.assert_zero_decision_delay { "asserted" } else { "not asserted" }
        );
        let _ = writeln!(s, "\nservice      gpus  replicas  concurrent  capacity");
        for (name, d) in &self.deploy {
            let _ = writeln!(
                s,
                "{name:<12} {:>4}  {:>8}  {:>10}  {:>8}",
                d.gpus,
                d.replicas_per_container,
                d.n_concurrent_rollouts,
                d.capacity()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<SimConfig, SimConfigError> {
        SimConfig::parse(y, Path::new("wizard-config.yaml"))
    }

    fn err(y: &str) -> String {
        parse(y).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_10hz_base_config() {
        let c = parse("").unwrap();
        assert_eq!(
            (
                c.control_timestep_us,
                c.frame_interval_us,
                c.egopose_interval_us,
                c.time_start_offset_us
            ),
            (100_000, 100_000, 100_000, 300_000)
        );
        assert!(c.assert_zero_decision_delay);
        assert_eq!(c.deploy.len(), SERVICES.len());
        assert_eq!(c.deploy["driver"].capacity(), 64);
        // The resolved YAML parses back to the same config.
        assert_eq!(parse(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn common_table_configs_pass() {
        // DESIGN §6: 2 Hz, 5 Hz, 10 Hz, and 30 Hz camera + 10 Hz driver.
        for y in [
            "control_timestep_us: 500000\nframe_interval_us: 500000\negopose_interval_us: 500000\ntime_start_offset_us: 1500000\n",
            "control_timestep_us: 200000\nframe_interval_us: 200000\negopose_interval_us: 200000\ntime_start_offset_us: 600000\n",
            "control_timestep_us: 100000\nframe_interval_us: 100000\negopose_interval_us: 100000\ntime_start_offset_us: 300000\n",
            "control_timestep_us: 100002\nframe_interval_us: 33334\negopose_interval_us: 100002\ntime_start_offset_us: 300006\ndriver: {inference: {Cframes_subsample: 3}}\n",
        ] {
            parse(y).unwrap_or_else(|e| panic!("{y}: {e}"));
        }
    }

    #[test]
    fn each_rule_names_key_value_and_fix() {
        let e = err("egopose_interval_us: 50000\n");
        assert!(
            e.contains("egopose_interval_us = 50000")
                && e.contains("set egopose_interval_us: 100000"),
            "{e}"
        );
        let e = err("time_start_offset_us: 250000\n");
        assert!(
            e.contains("time_start_offset_us = 250000") && e.contains("use 200000 or 300000"),
            "{e}"
        );
        let e = err("frame_interval_us: 33334\n");
        assert!(
            e.contains("do not complete at decision time")
                && e.contains("control_timestep_us: 33334"),
            "{e}"
        );
        let e = err("frame_interval_us: 50000\n");
        assert!(
            e.contains("set driver.inference.Cframes_subsample: 2"),
            "{e}"
        );
        parse("frame_interval_us: 33334\nassert_zero_decision_delay: false\n").unwrap();
        let e = err("force_gt_duration_us: -5\n");
        assert!(
            e.contains("force_gt_duration_us = -5") && e.contains("≥ 0"),
            "{e}"
        );
        let e = err("force_gt_duration_us: 150000\n");
        assert!(e.contains("use 100000 or 200000"), "{e}");
        let e = err("deploy: {driver: {replicas_per_container: 0}}\n");
        assert!(e.contains("deploy.driver.replicas_per_container: 1"), "{e}");
        let e = err("deploy: {planner: {}}\n");
        assert!(e.contains("deploy.planner: unknown service"), "{e}");
        let e = err("control_timestep: 100000\n");
        assert!(e.contains("unknown field `control_timestep`"), "{e}");
    }

    #[test]
    fn steps_are_clipped_to_the_recording() {
        let c = parse("n_sim_steps: 200\n").unwrap();
        // 11 s recording, 0.3 s offset, 0.1 s steps → poses at 0.3 … 11.0 s: 108 steps.
        assert_eq!(c.clip_steps(10_900_000 + 100_000, "s").unwrap(), 108);
        // A single frame at the offset is one step (nuPlan's one-instant metric cases).
        assert_eq!(
            parse("time_start_offset_us: 0\n")
                .unwrap()
                .clip_steps(0, "s")
                .unwrap(),
            1
        );
        assert_eq!(
            parse("n_sim_steps: 20\n")
                .unwrap()
                .clip_steps(11_000_000, "s")
                .unwrap(),
            20
        );
        let e = c.clip_steps(250_000, "scene-x").unwrap_err().to_string();
        assert!(
            e.contains("scene-x") && e.contains("shorter than the start offset"),
            "{e}"
        );
    }

    #[test]
    fn clock_table_lists_every_clock_and_service() {
        let t = parse("control_timestep_us: 100002\nframe_interval_us: 33334\negopose_interval_us: 100002\ntime_start_offset_us: 300006\ndriver: {inference: {Cframes_subsample: 3}}\n")
            .unwrap()
            .clock_table();
        assert!(
            t.contains("driver sees every 3 frame(s)") && t.contains("= 3 control steps"),
            "{t}"
        );
        for s in SERVICES {
            assert!(t.contains(s), "{t}");
        }
    }
}
