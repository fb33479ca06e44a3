//! Reading the typed model out of a resolved tree (types checked, with YAML 1.1's readings that
//! AlpaSim's OmegaConf accepts: `100_000` is a number, `yes`/`no` are booleans), the rules of
//! DESIGN §6 as AlpaSim's code applies them, the capacity model, and the tables `check-config`
//! prints. Every error names the key, its value, the file it came from and the fix.
//!
//! Clock rules follow AlpaSim's runtime where it differs from its tuning guide (design notes):
//! with `assert_zero_decision_delay`, every camera's *last rendered* frame must complete at each
//! decision, i.e. `control_timestep_us` is a multiple of each camera's `frame_interval_us`
//! (`driver.inference.subsample_factor` only says which frames the driver uses, as in AlpaSim);
//! with a video-model renderer the frames come at `1e6 / fps` and `control_timestep_us` must be
//! one chunk of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_norway::Value;

use super::tree::Tree;
use super::*;

/// Most rollouts per scene a configuration may ask for (each is simulated and logged).
pub const MAX_ROLLOUTS: u32 = 100_000;
/// Most control steps a rollout may have.
pub const MAX_SIM_STEPS: u32 = 1_000_000;
/// Smallest TTC projection step (s): smaller steps cost horizon/step projections per track.
pub const MIN_TTC_STEP_S: f64 = 0.01;

/// The names each choice of the `drivekit` section accepts (the command line's `--driver`,
/// `--traffic`, `--backend`, `--video` and `--log-compression` values; a test checks they agree).
pub const CHOICES: [(&str, &[&str]); 5] = [
    (
        "drivekit.driver",
        &["log-replay", "constant-velocity", "idm", "external"],
    ),
    ("drivekit.traffic", &["log-replay", "idm"]),
    (
        "drivekit.backend",
        &["auto", "cpu", "cuda", "cuda-emulated"],
    ),
    ("drivekit.video.mode", &["none", "violations", "all"]),
    ("drivekit.log_compression", &["none", "xz"]),
];

/// Reads the typed model from a resolved tree.
pub struct Reader<'a> {
    /// The resolved tree (drivekit's defaults under the user's values).
    pub tree: &'a Tree,
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// A number as YAML 1.1 reads it (`100_000`, `1_700_000.5`), from a number or such a string.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim().replace('_', "");
            if t.is_empty()
                || !t
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit() || "+-.".contains(c))
            {
                return None;
            }
            t.parse::<f64>().ok()
        }
        _ => None,
    }
}

impl Reader<'_> {
    fn type_err(&self, key: &str, expected: &str, fix: &str) -> ConfigError {
        ConfigError::Type(Box::new(KeyError {
            key: key.to_string(),
            value: self
                .tree
                .get(key)
                .map(text)
                .unwrap_or_else(|| "(missing)".into()),
            file: self.tree.origin(key),
            problem: expected.to_string(),
            fix: fix.to_string(),
        }))
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.tree.get(key).filter(|v| !v.is_null())
    }

    /// An integer in `range` (YAML 1.1 readings accepted).
    fn int(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<i64, ConfigError> {
        let v = self.value(key).ok_or_else(|| {
            self.type_err(
                key,
                "an integer",
                "set it (drivekit's defaults.yaml has one)",
            )
        })?;
        let n = number(v)
            .filter(|n| n.fract() == 0.0 && n.is_finite())
            .ok_or_else(|| {
                self.type_err(
                    key,
                    "an integer",
                    "write a whole number, e.g. 100000 or 100_000",
                )
            })? as i64;
        if !range.contains(&n) {
            return Err(self.rule(
                key,
                &format!("must be between {} and {}", range.start(), range.end()),
                "use a value in that range",
            ));
        }
        Ok(n)
    }

    fn u64(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<u64, ConfigError> {
        Ok(self.int(key, range)? as u64)
    }

    fn u32(&self, key: &str, range: std::ops::RangeInclusive<i64>) -> Result<u32, ConfigError> {
        Ok(self.int(key, range)? as u32)
    }

    fn f64(&self, key: &str) -> Result<f64, ConfigError> {
        self.value(key)
            .and_then(number)
            .ok_or_else(|| self.type_err(key, "a number", "write a number, e.g. 0.1"))
    }

    fn bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.value(key) {
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" => Ok(true),
                "false" | "no" | "off" => Ok(false),
                _ => Err(self.type_err(key, "true or false", "write true or false")),
            },
            _ => Err(self.type_err(key, "true or false", "write true or false")),
        }
    }

    fn string(&self, key: &str) -> Result<String, ConfigError> {
        match self.value(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => Ok(text(v)),
            _ => Err(self.type_err(key, "a string", "write a name")),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.value(key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(s)) => s
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(_) | Value::Bool(_) => Ok(text(v)),
                    _ => Err(self.type_err(key, "a list of strings", "write [a, b]")),
                })
                .collect(),
            Some(_) => Err(self.type_err(key, "a list of strings", "write [a, b]")),
        }
    }

    /// An error about `key`: its value, where it came from, what is wrong and the fix.
    pub fn rule(&self, key: &str, problem: &str, fix: &str) -> ConfigError {
        ConfigError::Rule(Box::new(KeyError {
            key: key.to_string(),
            value: self
                .tree
                .get(key)
                .map(text)
                .unwrap_or_else(|| "(missing)".into()),
            file: self.tree.origin(key),
            problem: problem.to_string(),
            fix: fix.to_string(),
        }))
    }

    /// The keys of the mapping at `key`.
    fn keys(&self, key: &str) -> Vec<String> {
        match self.value(key) {
            Some(Value::Mapping(m)) => m.keys().map(super::tree::key_text).collect(),
            _ => Vec::new(),
        }
    }

    /// The typed model (rules not yet checked).
    pub fn model(&self) -> Result<SimConfig, ConfigError> {
        let sc = "runtime.simulation_config";
        let k = |f: &str| format!("{sc}.{f}");
        let control = self.u64(&k("control_timestep_us"), 1..=3_600_000_000)?;
        let egopose = match self.value(&k("egopose_interval_us")) {
            Some(_) => self.u64(&k("egopose_interval_us"), 0..=3_600_000_000)?,
            None => match self.value(&k("pose_reporting_interval_us")) {
                Some(_) => self.u64(&k("pose_reporting_interval_us"), 0..=3_600_000_000)?,
                None => 0,
            },
        };
        let offset = match self.value(&k("time_start_offset_us")) {
            Some(_) => self.u64(&k("time_start_offset_us"), 0..=3_600_000_000)?,
            None => 3 * control,
        };
        let n_cameras = match self.value(&k("cameras")) {
            Some(Value::Sequence(s)) => s.len(),
            Some(_) => return Err(self.type_err(&k("cameras"), "a list of cameras", "write a YAML list of {logical_id, frame_interval_us, shutter_duration_us, width, height}")),
            None => 0,
        };
        let mut cameras = Vec::new();
        for i in 0..n_cameras {
            let c = |f: &str| format!("{sc}.cameras.{i}.{f}");
            cameras.push(Camera {
                logical_id: self.string(&c("logical_id"))?,
                frame_interval_us: self.u64(&c("frame_interval_us"), 1..=3_600_000_000)?,
                shutter_duration_us: match self.value(&c("shutter_duration_us")) {
                    Some(_) => self.u64(&c("shutter_duration_us"), 0..=3_600_000_000)?,
                    None => 0,
                },
                width: match self.value(&c("width")) {
                    Some(_) => self.u32(&c("width"), 1..=65_536)?,
                    None => 0,
                },
                height: match self.value(&c("height")) {
                    Some(_) => self.u32(&c("height"), 1..=65_536)?,
                    None => 0,
                },
            });
        }
        let simulation = Simulation {
            control_timestep_us: control,
            egopose_interval_us: if egopose == 0 { control } else { egopose },
            time_start_offset_us: offset,
            assert_zero_decision_delay: self.bool(&k("assert_zero_decision_delay"))?,
            n_sim_steps: self.u32(&k("n_sim_steps"), 1..=i64::from(MAX_SIM_STEPS))?,
            n_rollouts: self.u32(&k("n_rollouts"), 1..=i64::from(MAX_ROLLOUTS))?,
            force_gt_duration_us: self.int(&k("force_gt_duration_us"), i64::MIN..=i64::MAX)?,
            cameras,
        };
        let subsample_factor = if self.value("driver.inference.Cframes_subsample").is_some() {
            self.u32("driver.inference.Cframes_subsample", 1..=1_000_000)?
        } else {
            self.u32("driver.inference.subsample_factor", 1..=1_000_000)?
        };
        let mut services = BTreeMap::new();
        for name in self.keys("services") {
            let key = format!("services.{name}");
            if !matches!(self.value(&key), Some(Value::Mapping(_))) {
                continue;
            }
            let gk = format!("{key}.gpus");
            let gpus = match self.value(&gk) {
                None => None,
                Some(Value::Sequence(s)) => Some(
                    s.iter()
                        .map(|g| {
                            number(g)
                                .filter(|n| n.fract() == 0.0 && *n >= 0.0)
                                .map(|n| n as i64)
                                .ok_or_else(|| {
                                    self.type_err(
                                        &gk,
                                        "a list of GPU indices or null",
                                        "write e.g. [0, 1], or null for a CPU service",
                                    )
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                Some(_) => {
                    return Err(self.type_err(
                        &gk,
                        "a list of GPU indices or null",
                        "write e.g. [0, 1], or null for a CPU service",
                    ))
                }
            };
            let rk = format!("{key}.replicas_per_container");
            let replicas = match self.value(&rk) {
                Some(_) => self.u32(&rk, 0..=1_000_000)?,
                None => 1,
            };
            services.insert(
                name,
                Service {
                    gpus,
                    replicas_per_container: replicas,
                },
            );
        }
        let mut endpoints = BTreeMap::new();
        for name in self.keys("runtime.endpoints") {
            let key = format!("runtime.endpoints.{name}");
            if !matches!(self.value(&key), Some(Value::Mapping(_))) {
                continue;
            }
            let nk = format!("{key}.n_concurrent_rollouts");
            let sk = format!("{key}.skip");
            endpoints.insert(
                name,
                Endpoint {
                    n_concurrent_rollouts: match self.value(&nk) {
                        Some(_) => self.u32(&nk, 0..=10_000_000)?,
                        None => 0,
                    },
                    skip: match self.value(&sk) {
                        Some(_) => self.bool(&sk)?,
                        None => false,
                    },
                },
            );
        }
        let video_model = match self.value("runtime.renderer.kind").map(text).as_deref() {
            Some("video_model") => {
                let v = "runtime.renderer.video_model_config";
                Some(VideoModel {
                    fps: self.u32(&format!("{v}.fps"), 1..=100_000)?,
                    first_chunk_frames: match self.value(&format!("{v}.first_chunk_frames")) {
                        Some(_) => self.u32(&format!("{v}.first_chunk_frames"), 0..=1_000_000)?,
                        None => 0,
                    },
                    chunk_frames: match self.value(&format!("{v}.chunk_frames")) {
                        Some(_) => self.u32(&format!("{v}.chunk_frames"), 1..=1_000_000)?,
                        None => 1,
                    },
                })
            }
            _ => None,
        };
        let d = "drivekit";
        let dk = |f: &str| format!("{d}.{f}");
        let drivekit = Drivekit {
            driver: self.string(&dk("driver"))?,
            traffic: self.string(&dk("traffic"))?,
            backend: self.string(&dk("backend"))?,
            video: VideoSettings {
                mode: self.string(&dk("video.mode"))?,
                size_px: self.u32(&dk("video.size_px"), 0..=8192)?,
                scale_m_per_px: self.f64(&dk("video.scale_m_per_px"))?,
            },
            log_compression: self.string(&dk("log_compression"))?,
            camera: BevCamera {
                logical_id: self.string(&dk("camera.logical_id"))?,
                size_px: self.u32(&dk("camera.size_px"), 0..=4096)?,
            },
            external_driver: ExternalDriverConfig {
                addresses: self.strings(&dk("external_driver.addresses"))?,
                timeout_s: self.f64(&dk("external_driver.timeout_s"))?,
                retries: self.u32(&dk("external_driver.retries"), 0..=100)?,
                send_ground_truth: self.bool(&dk("external_driver.send_ground_truth"))?,
                lockstep: self.bool(&dk("external_driver.lockstep"))?,
            },
            perturbation: Perturbation {
                seed: self.u64(&dk("perturbation.seed"), 0..=i64::MAX)?,
                ego_position_sigma_m: self.f64(&dk("perturbation.ego_position_sigma_m"))?,
                ego_heading_sigma_rad: self.f64(&dk("perturbation.ego_heading_sigma_rad"))?,
                ego_speed_sigma_frac: self.f64(&dk("perturbation.ego_speed_sigma_frac"))?,
                agent_speed_sigma_frac: self.f64(&dk("perturbation.agent_speed_sigma_frac"))?,
                agent_headway_sigma_frac: self.f64(&dk("perturbation.agent_headway_sigma_frac"))?,
            },
            evaluation: Evaluation {
                ttc_horizon_s: self.f64(&dk("evaluation.ttc_horizon_s"))?,
                ttc_step_s: self.f64(&dk("evaluation.ttc_step_s"))?,
                max_dist_to_gt_m: self.f64(&dk("evaluation.max_dist_to_gt_m"))?,
            },
        };
        Ok(SimConfig {
            simulation,
            subsample_factor,
            services,
            endpoints,
            nr_workers: self.u32("runtime.nr_workers", 1..=100_000)?,
            video_model,
            scenes: Scenes {
                scene_ids: self.strings("scenes.scene_ids")?,
            },
            run_name: match self.value("wizard.run_name") {
                Some(Value::String(s)) => Some(s.clone()),
                _ => None,
            },
            drivekit,
            tree: Tree::new(),
            warnings: Vec::new(),
            sources: Vec::<PathBuf>::new(),
        })
    }
}

/// One service's deploy capacity (the tuning guide's model).
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// The service.
    pub service: String,
    /// GPUs it runs on (a CPU service counts as 1).
    pub gpus: u64,
    /// Replicas per container.
    pub replicas: u64,
    /// Rollouts per replica at once.
    pub concurrent: u64,
    /// gpus × replicas × concurrent.
    pub capacity: u64,
    /// Not deployed (`skip: true`): left out.
    pub skipped: bool,
}

impl SimConfig {
    fn reader(&self) -> Reader<'_> {
        Reader { tree: &self.tree }
    }

    /// The rules of DESIGN §6 (as AlpaSim's runtime applies them) and drivekit's ranges.
    pub fn check(&self) -> Result<(), ConfigError> {
        let r = self.reader();
        let sc = "runtime.simulation_config";
        let s = &self.simulation;
        let ctl = s.control_timestep_us;
        let ck = format!("{sc}.control_timestep_us");
        if s.egopose_interval_us != ctl {
            let key = if self
                .tree
                .get(&format!("{sc}.egopose_interval_us"))
                .is_some()
            {
                format!("{sc}.egopose_interval_us")
            } else {
                format!("{sc}.pose_reporting_interval_us")
            };
            return Err(r.rule(
                &key,
                &format!("ego poses must update every control step ({ctl} µs)"),
                &format!("set {key}: {ctl} (or 0: the control step)"),
            ));
        }
        if !s.time_start_offset_us.is_multiple_of(ctl) {
            let lower = s.time_start_offset_us / ctl * ctl;
            return Err(r.rule(
                &format!("{sc}.time_start_offset_us"),
                &format!("is not a multiple of control_timestep_us ({ctl})"),
                &format!("use {lower} or {}", lower + ctl),
            ));
        }
        let gt = s.force_gt_duration_us;
        let gk = format!("{sc}.force_gt_duration_us");
        if gt < 0 {
            return Err(r.rule(
                &gk,
                "must be ≥ 0",
                "use 0 (the policy drives from the start)",
            ));
        }
        match self.video_model {
            None => {
                if !(gt as u64).is_multiple_of(ctl) {
                    let lower = gt as u64 / ctl * ctl;
                    return Err(r.rule(
                        &gk,
                        &format!("must be a multiple of control_timestep_us ({ctl}): the policy starts at a decision"),
                        &format!("use {lower} or {}", lower + ctl),
                    ));
                }
                if s.assert_zero_decision_delay {
                    for (i, c) in s.cameras.iter().enumerate() {
                        if !ctl.is_multiple_of(c.frame_interval_us) {
                            let fk = format!("{sc}.cameras.{i}.frame_interval_us");
                            let n = ((ctl + c.frame_interval_us / 2) / c.frame_interval_us).max(1);
                            return Err(r.rule(
                                &fk,
                                &format!(
                                    "camera {}'s frames ({} µs apart) do not complete at every decision ({ctl} µs apart), so with assert_zero_decision_delay the driver would see a stale frame",
                                    c.logical_id, c.frame_interval_us
                                ),
                                &format!(
                                    "set {ck}: {} (= {n} × {} µs) with driver.inference.subsample_factor: {n}, or frame_interval_us: {ctl}, or assert_zero_decision_delay: false",
                                    n * c.frame_interval_us,
                                    c.frame_interval_us
                                ),
                            ));
                        }
                    }
                }
            }
            Some(vm) => {
                // AlpaSim's VideoModelService.validate_timing_alignment.
                let f = 1_000_000 / u64::from(vm.fps);
                let chunk = u64::from(vm.chunk_frames) * f;
                if ctl != chunk {
                    return Err(r.rule(
                        &ck,
                        &format!(
                            "with the video-model renderer a decision comes every chunk of {} frames at {} fps ({chunk} µs)",
                            vm.chunk_frames, vm.fps
                        ),
                        &format!("set {ck}: {chunk}"),
                    ));
                }
                let first = u64::from(vm.first_chunk_frames) * f;
                let gt = gt as u64;
                if gt < first + ctl || !(gt - first).is_multiple_of(ctl) {
                    let n = (gt.saturating_sub(first) / ctl).max(1);
                    return Err(r.rule(
                        &gk,
                        &format!("with the video-model renderer it must be the first chunk ({first} µs) plus a whole number (≥ 1) of control steps"),
                        &format!("use {}", first + n * ctl),
                    ));
                }
            }
        }
        for (name, svc) in &self.services {
            if svc.replicas_per_container == 0 {
                let key = format!("services.{name}.replicas_per_container");
                return Err(r.rule(&key, "must be ≥ 1", &format!("set {key}: 1")));
            }
        }
        for (name, e) in &self.endpoints {
            if !e.skip && e.n_concurrent_rollouts == 0 && SERVICES.contains(&name.as_str()) {
                let key = format!("runtime.endpoints.{name}.n_concurrent_rollouts");
                return Err(r.rule(
                    &key,
                    "a deployed service must take at least one rollout at a time",
                    &format!("set {key}: 1, or runtime.endpoints.{name}.skip: true"),
                ));
            }
        }
        let p = &self.drivekit.perturbation;
        for (key, v) in [
            ("ego_position_sigma_m", p.ego_position_sigma_m),
            ("ego_heading_sigma_rad", p.ego_heading_sigma_rad),
            ("ego_speed_sigma_frac", p.ego_speed_sigma_frac),
            ("agent_speed_sigma_frac", p.agent_speed_sigma_frac),
            ("agent_headway_sigma_frac", p.agent_headway_sigma_frac),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(r.rule(
                    &format!("drivekit.perturbation.{key}"),
                    "a standard deviation must be finite and ≥ 0",
                    "use 0 to turn this perturbation off",
                ));
            }
        }
        let d = &self.drivekit.external_driver;
        if !(d.timeout_s.is_finite() && d.timeout_s > 0.0) {
            return Err(r.rule(
                "drivekit.external_driver.timeout_s",
                "a call timeout must be positive",
                "use e.g. 10",
            ));
        }
        let e = &self.drivekit.evaluation;
        if !(e.ttc_step_s >= MIN_TTC_STEP_S
            && e.ttc_horizon_s >= e.ttc_step_s
            && e.ttc_horizon_s <= 60.0)
        {
            return Err(r.rule(
                "drivekit.evaluation.ttc_step_s",
                &format!(
                    "the TTC step must be at least {MIN_TTC_STEP_S} s and the horizon ({} s) between one step and 60 s",
                    e.ttc_horizon_s
                ),
                "use nuPlan's ttc_step_s: 0.1 and ttc_horizon_s: 3.0",
            ));
        }
        if !(e.max_dist_to_gt_m.is_finite() && e.max_dist_to_gt_m > 0.0) {
            return Err(r.rule(
                "drivekit.evaluation.max_dist_to_gt_m",
                "must be a positive number of metres",
                "use AlpaSim's 4.0",
            ));
        }
        let dk = &self.drivekit;
        for ((key, names), value) in CHOICES.iter().zip([
            &dk.driver,
            &dk.traffic,
            &dk.backend,
            &dk.video.mode,
            &dk.log_compression,
        ]) {
            if !names.contains(&value.as_str()) {
                return Err(r.rule(
                    key,
                    &format!("is not one of {}", names.join(", ")),
                    &match super::suggest(
                        value,
                        &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                    ) {
                        Some(s) => format!("did you mean {s}?"),
                        None => format!("use one of {}", names.join(", ")),
                    },
                ));
            }
        }
        if !(dk.video.scale_m_per_px.is_finite() && dk.video.scale_m_per_px > 0.0) {
            return Err(r.rule(
                "drivekit.video.scale_m_per_px",
                "must be a positive number of metres per pixel",
                "use 0.25",
            ));
        }
        Ok(())
    }

    /// The capacity of every AlpaSim service of the configuration ([`SERVICES`] first, then any
    /// other with an endpoint): nr_gpus (a CPU service, `gpus: null` or `[]`, counts as 1) ×
    /// replicas_per_container × n_concurrent_rollouts.
    pub fn capacities(&self) -> Vec<Capacity> {
        let mut names: Vec<String> = SERVICES.iter().map(|s| s.to_string()).collect();
        for n in self.endpoints.keys() {
            if !names.contains(n) && self.services.contains_key(n) {
                names.push(n.clone());
            }
        }
        names
            .into_iter()
            .filter(|n| self.endpoints.contains_key(n))
            .map(|name| {
                let svc = self.services.get(&name);
                let e = &self.endpoints[&name];
                let gpus = svc
                    .and_then(|s| s.gpus.as_ref())
                    .map_or(1, |g| g.len().max(1) as u64);
                let replicas = svc.map_or(1, |s| u64::from(s.replicas_per_container));
                let concurrent = u64::from(e.n_concurrent_rollouts);
                Capacity {
                    capacity: gpus * replicas * concurrent,
                    service: name,
                    gpus,
                    replicas,
                    concurrent,
                    skipped: e.skip,
                }
            })
            .collect()
    }

    /// The deployed service with the smallest capacity (it bounds the concurrent rollouts).
    pub fn bottleneck(&self) -> Option<Capacity> {
        self.capacities()
            .into_iter()
            .filter(|c| !c.skipped)
            .min_by_key(|c| c.capacity)
    }

    /// How many rollouts step together in one chunk on the CPU: the smallest capacity of a
    /// deployed service, but small enough to give each of `threads` threads work among `total`.
    pub fn chunk_size(&self, total: usize, threads: usize) -> usize {
        let capacity = self.bottleneck().map_or(64, |c| c.capacity).max(1) as usize;
        capacity.min(total.div_ceil(threads.max(1))).max(1)
    }

    /// Each camera's frame period (µs): its `frame_interval_us`, or `1e6 / fps` with a
    /// video-model renderer.
    pub fn frame_intervals(&self) -> Vec<u64> {
        self.simulation
            .cameras
            .iter()
            .map(|c| match self.video_model {
                Some(vm) => 1_000_000 / u64::from(vm.fps),
                None => c.frame_interval_us,
            })
            .collect()
    }

    /// Rollouts the driver service takes at once per address (`runtime.endpoints.driver`).
    pub fn driver_concurrency(&self) -> usize {
        self.endpoints
            .get("driver")
            .map_or(64, |e| e.n_concurrent_rollouts.max(1) as usize)
    }

    /// Control steps a recording of `duration_us` supports after the start offset, and the
    /// configured n_sim_steps clipped to it; an error when not even one step fits.
    pub fn clip_steps(&self, duration_us: u64, scene: &str) -> Result<u32, ConfigError> {
        let s = &self.simulation;
        let available = if duration_us >= s.time_start_offset_us {
            (duration_us - s.time_start_offset_us) / s.control_timestep_us + 1
        } else {
            0
        };
        if available == 0 {
            return Err(ConfigError::Rule(Box::new(KeyError {
                key: "runtime.simulation_config.time_start_offset_us".into(),
                value: s.time_start_offset_us.to_string(),
                file: scene.to_string(),
                problem: format!(
                    "the recording lasts {duration_us} µs, shorter than the start offset"
                ),
                fix: "lower time_start_offset_us, or leave this scene out".into(),
            })));
        }
        Ok(s.n_sim_steps.min(available.min(u64::from(u32::MAX)) as u32))
    }

    /// The clocks, one line per camera (`check-config`).
    pub fn clock_table(&self) -> String {
        let hz = |us: u64| 1e6 / us as f64;
        let s = &self.simulation;
        let ctl = s.control_timestep_us;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "clock                              period (µs)   rate (Hz)   note"
        );
        let _ = writeln!(
            t,
            "driver decision                    {ctl:>11}   {:>9.3}",
            hz(ctl)
        );
        let frame = |c: &Camera| match self.video_model {
            Some(vm) => 1_000_000 / u64::from(vm.fps),
            None => c.frame_interval_us,
        };
        for c in &s.cameras {
            let f = frame(c);
            let _ = writeln!(
                t,
                "camera {:<27} {f:>11}   {:>9.3}   {} frames per decision, shutter {} µs, {}×{} px{}",
                c.logical_id,
                hz(f),
                if ctl.is_multiple_of(f) { (ctl / f).to_string() } else { format!("{:.2}", ctl as f64 / f as f64) },
                c.shutter_duration_us,
                c.width,
                c.height,
                if self.subsample_factor > 1 {
                    format!("; the driver uses every {} frame(s)", self.subsample_factor)
                } else {
                    String::new()
                }
            );
        }
        let _ = writeln!(
            t,
            "egopose update                     {:>11}   {:>9.3}",
            s.egopose_interval_us,
            hz(s.egopose_interval_us)
        );
        let _ = writeln!(
            t,
            "start offset                       {:>11}               = {} control steps",
            s.time_start_offset_us,
            s.time_start_offset_us / ctl
        );
        let _ = writeln!(
            t,
            "ground truth forced for            {:>11}               = {:.2} control steps",
            s.force_gt_duration_us,
            s.force_gt_duration_us.max(0) as f64 / ctl as f64
        );
        if let Some(vm) = self.video_model {
            let _ = writeln!(
                t,
                "video-model renderer: {} fps, first chunk {} frames, then {} per decision",
                vm.fps, vm.first_chunk_frames, vm.chunk_frames
            );
        }
        let _ = writeln!(
            t,
            "n_sim_steps {} (≤ {:.1} s simulated), n_rollouts {} per scene, zero decision delay {}",
            s.n_sim_steps,
            f64::from(s.n_sim_steps) * ctl as f64 / 1e6,
            s.n_rollouts,
            if s.assert_zero_decision_delay {
                "asserted"
            } else {
                "not asserted"
            }
        );
        t
    }

    /// What `simulate check-config` prints: the files composed, the clock table, the capacity
    /// table, drivekit's choices, every warning, and with `verbose` the keys drivekit does not
    /// read.
    pub fn check_report(&self, verbose: bool) -> String {
        let mut t = String::new();
        if !self.sources.is_empty() {
            let _ = writeln!(t, "composed from:");
            for f in &self.sources {
                let _ = writeln!(t, "  {}", f.display());
            }
            let _ = writeln!(t);
        }
        t.push_str(&self.clock_table());
        let _ = writeln!(t);
        t.push_str(&self.capacity_table());
        let _ = writeln!(t);
        let d = &self.drivekit;
        let _ = writeln!(
            t,
            "drivekit: driver {}, traffic {}, backend {}, videos {} ({} px, {} m/px), logs {}",
            d.driver,
            d.traffic,
            d.backend,
            d.video.mode,
            d.video.size_px,
            d.video.scale_m_per_px,
            d.log_compression
        );
        if !self.scenes.scene_ids.is_empty() {
            let _ = writeln!(
                t,
                "scenes: {} listed ({}{})",
                self.scenes.scene_ids.len(),
                self.scenes
                    .scene_ids
                    .iter()
                    .take(3)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if self.scenes.scene_ids.len() > 3 {
                    ", …"
                } else {
                    ""
                }
            );
        }
        for w in &self.warnings {
            let _ = writeln!(t, "warning: {w}");
        }
        if verbose {
            let unused = self.unused_keys();
            let _ = writeln!(t, "{} keys drivekit does not read:", unused.len());
            for k in unused {
                let _ = writeln!(t, "  {k}  (from {})", self.tree.origin(&k));
            }
        }
        t
    }

    /// The capacity table, naming the bottleneck (`check-config`).
    pub fn capacity_table(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "service       gpus  replicas  concurrent  capacity");
        for c in self.capacities() {
            let _ = writeln!(
                t,
                "{:<12} {:>5}  {:>8}  {:>10}  {:>8}{}",
                c.service,
                c.gpus,
                c.replicas,
                c.concurrent,
                c.capacity,
                if c.skipped { "  (skip: left out)" } else { "" }
            );
        }
        match self.bottleneck() {
            Some(b) => {
                let _ = writeln!(
                    t,
                    "at most {} rollouts at once: {} is the bottleneck ({} × {} × {}); nr_workers {}",
                    b.capacity, b.service, b.gpus, b.replicas, b.concurrent, self.nr_workers
                );
            }
            None => {
                let _ = writeln!(
                    t,
                    "every service is skipped; nr_workers {}",
                    self.nr_workers
                );
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(y: &str) -> Result<SimConfig, ConfigError> {
        SimConfig::parse(y, std::path::Path::new("wizard-config.yaml"))
    }

    fn err(y: &str) -> String {
        parse(y).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_the_10hz_base_config_and_round_trip() {
        let c = SimConfig::default();
        let s = &c.simulation;
        assert_eq!(
            (
                s.control_timestep_us,
                s.egopose_interval_us,
                s.time_start_offset_us
            ),
            (100_000, 100_000, 300_000)
        );
        assert_eq!(s.cameras[0].frame_interval_us, 100_000);
        assert!(s.assert_zero_decision_delay);
        assert_eq!(c.bottleneck().unwrap().capacity, 64);
        let again = parse(&c.to_yaml()).unwrap();
        assert_eq!(again.simulation, c.simulation);
        assert_eq!(again.drivekit, c.drivekit);
        assert_eq!(again.to_yaml(), c.to_yaml());
    }

    #[test]
    fn yaml_1_1_numbers_and_the_start_offset_default() {
        let c = parse("runtime:\n  simulation_config:\n    control_timestep_us: 500_000\n    cameras: [{logical_id: c, frame_interval_us: 500_000}]\n").unwrap();
        assert_eq!(c.simulation.control_timestep_us, 500_000);
        assert_eq!(
            c.simulation.time_start_offset_us, 1_500_000,
            "3 control steps"
        );
    }

    #[test]
    fn each_rule_names_key_value_file_and_fix() {
        let sc = "runtime:\n  simulation_config:\n";
        let e = err(&format!("{sc}    egopose_interval_us: 50000\n"));
        assert!(
            e.contains("egopose_interval_us = 50000 (from wizard-config.yaml)")
                && e.contains("set runtime.simulation_config.egopose_interval_us: 100000"),
            "{e}"
        );
        let e = err(&format!("{sc}    time_start_offset_us: 250000\n"));
        assert!(
            e.contains("time_start_offset_us = 250000") && e.contains("use 200000 or 300000"),
            "{e}"
        );
        let e = err(&format!(
            "{sc}    cameras: [{{logical_id: c, frame_interval_us: 33334}}]\n"
        ));
        assert!(
            e.contains("cameras.0.frame_interval_us = 33334")
                && e.contains("stale frame")
                && e.contains("control_timestep_us: 100002"),
            "{e}"
        );
        parse(&format!("{sc}    assert_zero_decision_delay: false\n    cameras: [{{logical_id: c, frame_interval_us: 33334}}]\n")).unwrap();
        let e = err(&format!("{sc}    force_gt_duration_us: -5\n"));
        assert!(
            e.contains("force_gt_duration_us = -5") && e.contains("≥ 0"),
            "{e}"
        );
        let e = err(&format!("{sc}    force_gt_duration_us: 150000\n"));
        assert!(e.contains("use 100000 or 200000"), "{e}");
        let e = err("services: {driver: {replicas_per_container: 0}}\n");
        assert!(
            e.contains("services.driver.replicas_per_container: 1"),
            "{e}"
        );
        let e = err(&format!("{sc}    n_rollouts: many\n"));
        assert!(
            e.contains("n_rollouts = many") && e.contains("expected an integer"),
            "{e}"
        );
        let e = err(&format!("{sc}    n_rollouts: 100000000\n"));
        assert!(e.contains("between 1 and 100000"), "{e}");
        let e = err("drivekit: {evaluation: {ttc_step_s: 0.0001}}\n");
        assert!(
            e.contains("ttc_step_s") && e.contains("at least 0.01"),
            "{e}"
        );
        let e = err("runtime: {endpoints: {driver: {n_concurrent_rollouts: 0}}}\n");
        assert!(e.contains("skip: true"), "{e}");
    }

    #[test]
    fn the_tuning_guides_clock_scenarios_pass() {
        for (ctl, frame, sub, offset) in [
            (500_000, 500_000, 1, 1_500_000),
            (200_000, 200_000, 1, 600_000),
            (100_000, 100_000, 1, 300_000),
            (100_002, 33_334, 3, 300_006),
        ] {
            let y = format!("driver: {{inference: {{subsample_factor: {sub}}}}}\nruntime:\n  simulation_config:\n    control_timestep_us: {ctl}\n    time_start_offset_us: {offset}\n    cameras: [{{logical_id: c, frame_interval_us: {frame}}}]\n");
            let c = parse(&y).unwrap_or_else(|e| panic!("{y}: {e}"));
            assert!(c.clock_table().contains("frames per decision"));
        }
        // The tuning guide's older key.
        let c = parse("driver: {inference: {Cframes_subsample: 3}}\n").unwrap();
        assert_eq!(c.subsample_factor, 3);
    }

    #[test]
    fn unknown_keys_warn_once_drivekit_typos_get_a_suggestion() {
        let c = parse("eval: {enabled: true, num_processes: 4}\nwizard: {log_dir: x}\ndrivekit: {perturbation: {sed: 3}}\n").unwrap();
        let w = c.warnings.join("\n");
        assert!(
            w.contains("drivekit.perturbation.sed (did you mean drivekit.perturbation.seed?)"),
            "{w}"
        );
        assert!(
            w.contains("3 keys drivekit does not use") && w.contains("eval (2), wizard (1)"),
            "{w}"
        );
    }
}
