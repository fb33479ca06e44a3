//! Older drivekit configurations — flat keys (`control_timestep_us: …` at the top, `deploy:`,
//! `perturbation:`, `evaluation:`, the external driver's settings under `driver:`) — converted to
//! AlpaSim's nesting with drivekit's section (`simulate config migrate FILE`). Loading such a file
//! converts it on the fly, with a warning saying how to convert it for good.

use std::path::Path;

use serde_norway::{Mapping, Value};

use super::ConfigError;

/// Keys only the older flat format has at its top level.
const FLAT_KEYS: [&str; 11] = [
    "control_timestep_us",
    "frame_interval_us",
    "egopose_interval_us",
    "time_start_offset_us",
    "assert_zero_decision_delay",
    "n_sim_steps",
    "n_rollouts",
    "force_gt_duration_us",
    "deploy",
    "perturbation",
    "evaluation",
];

/// drivekit's older service names → AlpaSim's.
const SERVICES: [(&str, Option<&str>); 5] = [
    ("sensor", Some("renderer")),
    ("driver", Some("driver")),
    ("controller", Some("controller")),
    ("traffic", Some("trafficsim")),
    ("evaluation", None),
];

/// A converted configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The configuration in AlpaSim's nesting.
    pub yaml: String,
    /// What to tell the user.
    pub warning: String,
}

fn take(m: &mut Mapping, k: &str) -> Option<Value> {
    m.remove(Value::String(k.to_string()))
}

fn section<'a>(m: &'a mut Mapping, path: &[&str]) -> &'a mut Mapping {
    let mut m = m;
    for k in path {
        let key = Value::String(k.to_string());
        if !matches!(m.get(&key), Some(Value::Mapping(_))) {
            m.insert(key.clone(), Value::Mapping(Mapping::new()));
        }
        m = match m.get_mut(&key) {
            Some(Value::Mapping(x)) => x,
            _ => unreachable!("just inserted a mapping"),
        };
    }
    m
}

/// `Some` converted text when `text` is an older drivekit configuration, else `None`.
pub fn convert_text(text: &str, file: &Path) -> Result<Option<Converted>, ConfigError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let v: Value = serde_norway::from_str(text).map_err(|e| ConfigError::Yaml {
        file: file.to_path_buf(),
        line: e.location().map(|l| l.line()),
        message: e.to_string(),
    })?;
    let Value::Mapping(mut m) = v else {
        return Ok(None);
    };
    let old_driver = matches!(m.get("driver"), Some(Value::Mapping(d)) if ["addresses", "timeout_s", "retries", "send_ground_truth", "camera_px"].iter().any(|k| d.contains_key(*k)) || d.get("inference").and_then(|i| i.get("Cframes_subsample")).is_some() && !m.contains_key("runtime"));
    if !FLAT_KEYS.iter().any(|k| m.contains_key(*k)) && !old_driver {
        return Ok(None);
    }
    let mut out = Mapping::new();
    let mut notes = Vec::new();
    for k in [
        "control_timestep_us",
        "egopose_interval_us",
        "time_start_offset_us",
        "assert_zero_decision_delay",
        "n_sim_steps",
        "n_rollouts",
        "force_gt_duration_us",
    ] {
        if let Some(v) = take(&mut m, k) {
            section(&mut out, &["runtime", "simulation_config"]).insert(Value::String(k.into()), v);
        }
    }
    if let Some(f) = take(&mut m, "frame_interval_us") {
        let cam: Value = serde_norway::from_str(&format!(
            "[{{logical_id: camera_front_wide_120fov, frame_interval_us: {}, shutter_duration_us: 30000, width: 512, height: 320}}]",
            super::tree::key_text(&f)
        ))
        .expect("a camera list");
        section(&mut out, &["runtime", "simulation_config"]).insert("cameras".into(), cam);
    }
    if let Some(Value::Mapping(mut d)) = take(&mut m, "driver") {
        let ext = [
            ("addresses", "addresses"),
            ("timeout_s", "timeout_s"),
            ("retries", "retries"),
            ("send_ground_truth", "send_ground_truth"),
        ];
        for (from, to) in ext {
            if let Some(v) = take(&mut d, from) {
                section(&mut out, &["drivekit", "external_driver"]).insert(to.into(), v);
            }
        }
        if let Some(v) = take(&mut d, "camera_px") {
            section(&mut out, &["drivekit", "camera"]).insert("size_px".into(), v);
        }
        if let Some(Value::Mapping(mut inf)) = take(&mut d, "inference") {
            if let Some(v) = take(&mut inf, "Cframes_subsample") {
                inf.insert("subsample_factor".into(), v);
            }
            d.insert("inference".into(), Value::Mapping(inf));
        }
        if !d.is_empty() {
            out.insert("driver".into(), Value::Mapping(d));
        }
    }
    if let Some(Value::Mapping(deploy)) = take(&mut m, "deploy") {
        for (svc, entry) in deploy {
            let name = super::tree::key_text(&svc);
            let Some((_, alpasim)) = SERVICES.iter().find(|(o, _)| *o == name) else {
                notes.push(format!("deploy.{name} (no such service) dropped"));
                continue;
            };
            let Some(alpasim) = alpasim else {
                notes.push(format!(
                    "deploy.{name} dropped (drivekit's evaluation is not an AlpaSim service)"
                ));
                continue;
            };
            let Value::Mapping(entry) = entry else {
                continue;
            };
            for (k, v) in entry {
                match super::tree::key_text(&k).as_str() {
                    "gpus" => {
                        let n = v.as_u64().unwrap_or(0);
                        let gpus = if n == 0 {
                            Value::Null
                        } else {
                            Value::Sequence((0..n).map(|g| Value::Number(g.into())).collect())
                        };
                        section(&mut out, &["services", alpasim]).insert("gpus".into(), gpus);
                    }
                    "replicas_per_container" => {
                        section(&mut out, &["services", alpasim])
                            .insert("replicas_per_container".into(), v);
                    }
                    "n_concurrent_rollouts" => {
                        section(&mut out, &["runtime", "endpoints", alpasim])
                            .insert("n_concurrent_rollouts".into(), v);
                    }
                    other => notes.push(format!("deploy.{name}.{other} dropped")),
                }
            }
        }
    }
    for k in ["perturbation", "evaluation"] {
        if let Some(v) = take(&mut m, k) {
            section(&mut out, &["drivekit"]).insert(k.into(), v);
        }
    }
    // Whatever else the file holds (scenes, …) keeps its place.
    for (k, v) in m {
        match out.get_mut(&k) {
            Some(Value::Mapping(existing)) => {
                if let Value::Mapping(extra) = v {
                    for (a, b) in extra {
                        existing.insert(a, b);
                    }
                }
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    let yaml = serde_norway::to_string(&Value::Mapping(out)).expect("plain data");
    Ok(Some(Converted {
        yaml,
        warning: format!(
            "{}: an older drivekit configuration (flat keys), read as AlpaSim's nesting{}; convert it for good with `simulate config migrate {}`",
            file.display(),
            if notes.is_empty() {
                String::new()
            } else {
                format!(" ({})", notes.join("; "))
            },
            file.display()
        ),
    }))
}

/// `simulate config migrate`: reads the file `old` and returns its AlpaSim-nested equivalent
/// (headed by a comment naming the source), checked to load as a configuration; `None` when it
/// is not an older drivekit configuration (nothing to convert).
pub fn migrate_file(old: &Path) -> Result<Option<String>, ConfigError> {
    let text = std::fs::read_to_string(old).map_err(|e| ConfigError::Io {
        file: old.to_path_buf(),
        source: e,
    })?;
    let Some(c) = convert_text(&text, old)? else {
        return Ok(None);
    };
    super::SimConfig::parse(&c.yaml, old)?;
    Ok(Some(format!(
        "# Converted from {} (an older drivekit configuration) to AlpaSim's nesting by\n# `simulate config migrate` (drivekit {}).\n{}",
        old.display(),
        env!("CARGO_PKG_VERSION"),
        c.yaml
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_flat_config_becomes_alpasims_nesting() {
        let old = "control_timestep_us: 200000\nframe_interval_us: 200000\negopose_interval_us: 200000\ntime_start_offset_us: 600000\nn_rollouts: 3\ndriver: {inference: {Cframes_subsample: 1}, addresses: [\"127.0.0.1:50051\"], camera_px: 0}\ndeploy: {driver: {n_concurrent_rollouts: 8, replicas_per_container: 2, gpus: 1}, evaluation: {n_concurrent_rollouts: 4}}\nperturbation: {seed: 7}\nscenes: {scene_ids: [a]}\n";
        let c = convert_text(old, Path::new("old.yaml")).unwrap().unwrap();
        let v: Value = serde_norway::from_str(&c.yaml).unwrap();
        let want: Value = serde_norway::from_str("runtime:\n  simulation_config: {control_timestep_us: 200000, egopose_interval_us: 200000, time_start_offset_us: 600000, n_rollouts: 3, cameras: [{logical_id: camera_front_wide_120fov, frame_interval_us: 200000, shutter_duration_us: 30000, width: 512, height: 320}]}\n  endpoints: {driver: {n_concurrent_rollouts: 8}}\ndrivekit:\n  external_driver: {addresses: [\"127.0.0.1:50051\"]}\n  camera: {size_px: 0}\n  perturbation: {seed: 7}\ndriver: {inference: {subsample_factor: 1}}\nservices: {driver: {replicas_per_container: 2, gpus: [0]}}\nscenes: {scene_ids: [a]}\n").unwrap();
        assert_eq!(v, want, "{}", c.yaml);
        assert!(
            c.warning.contains("simulate config migrate old.yaml")
                && c.warning.contains("deploy.evaluation dropped"),
            "{}",
            c.warning
        );
        assert!(convert_text("runtime: {nr_workers: 1}\n", Path::new("x"))
            .unwrap()
            .is_none());
    }
}
