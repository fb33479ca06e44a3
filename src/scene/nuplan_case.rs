//! nuPlan devkit metric test cases (JSON; copies in `tests/data/nuplan_metric_cases/`) → [`Scene`], so
//! drivekit's metrics can be checked against the values nuPlan's own tests assert.
//!
//! Conventions (nuPlan devkit, data/README.md): the ego `pose` is the **rear axle** `[x, y,
//! heading]` with `velocity` `[longitudinal, lateral]` in the ego frame; the ego footprint is the
//! Pacifica's (width 2.297 m, rear axle → front 4.049 m, rear axle → rear 1.127 m), so the box
//! centre lies 1.461 m ahead of the rear axle. World objects give the box **centre** pose, `size`
//! = `[width, length]` and `speed` along the box heading. `ego_future_states[i]` and
//! `world_future_states[i]` share a timestamp. The cases carry no map. Python's `Infinity`/`NaN`
//! tokens (in `expected`) are read as null.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AgentClass, Map, Scene, SceneError, Track};

/// Pacifica width (m).
pub const EGO_WIDTH_M: f64 = 2.297;
/// Rear axle to front bumper (m).
pub const REAR_AXLE_TO_FRONT_M: f64 = 4.049;
/// Rear axle to rear bumper (m).
pub const REAR_AXLE_TO_REAR_M: f64 = 1.127;
/// Pacifica height (m), not used by the metrics.
pub const EGO_HEIGHT_M: f64 = 1.777;

/// Why a case could not be imported; each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// File could not be read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// Not a nuPlan metric case.
    #[error("{file}: not a nuPlan metric case ({message})")]
    Json {
        /// the file
        file: PathBuf,
        /// parser message
        message: String,
    },
    /// The result does not validate.
    #[error(transparent)]
    Scene(#[from] SceneError),
}

#[derive(Deserialize)]
struct EgoState {
    pose: [f64; 3],
    velocity: [f64; 2],
    time_us: i64,
}

#[derive(Deserialize)]
struct BoxJson {
    pose: [f64; 3],
    size: [f64; 2],
}

#[derive(Deserialize)]
struct Agent {
    id: i64,
    #[serde(rename = "box")]
    bbox: BoxJson,
    #[serde(default)]
    speed: f64,
}

#[derive(Deserialize, Default)]
struct World {
    #[serde(default)]
    vehicles: Vec<Agent>,
    #[serde(default)]
    pedestrians: Vec<Agent>,
    #[serde(default)]
    bicycles: Vec<Agent>,
    #[serde(default)]
    genericobjects: Vec<Agent>,
}

#[derive(Deserialize)]
struct Case {
    ego: EgoState,
    #[serde(default)]
    ego_future_states: Vec<EgoState>,
    #[serde(default)]
    world: World,
    #[serde(default)]
    world_future_states: Vec<World>,
}

/// Replaces the bare tokens `Infinity`, `-Infinity` and `NaN` (outside strings) with `null`, so
/// Python-written JSON parses.
pub fn python_json_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            rest = &rest[c.len_utf8()..];
            continue;
        }
        if let Some(tok) = ["-Infinity", "Infinity", "NaN"]
            .iter()
            .find(|t| rest.starts_with(**t))
        {
            out.push_str("null");
            rest = &rest[tok.len()..];
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// Scene id of a case file: `nuplan-<metric dir>-<case name>`.
pub fn case_id(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("nuplan-{dir}-{stem}")
}

/// Imports one case file.
pub fn import_case(path: &Path) -> Result<Scene, CaseError> {
    let text = std::fs::read_to_string(path).map_err(|e| CaseError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    let case: Case =
        serde_json::from_str(&python_json_to_json(&text)).map_err(|e| CaseError::Json {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let egos: Vec<&EgoState> = std::iter::once(&case.ego)
        .chain(&case.ego_future_states)
        .collect();
    let worlds: Vec<&World> = std::iter::once(&case.world)
        .chain(&case.world_future_states)
        .collect();
    let n = egos.len();
    let length = REAR_AXLE_TO_FRONT_M + REAR_AXLE_TO_REAR_M;
    let mut ego = Track::empty(
        "EGO".into(),
        AgentClass::Vehicle,
        (length, EGO_WIDTH_M, EGO_HEIGHT_M),
        n,
    );
    let centre_offset = (REAR_AXLE_TO_FRONT_M - REAR_AXLE_TO_REAR_M) / 2.0;
    for (i, e) in egos.iter().enumerate() {
        let [x, y, h] = e.pose;
        let (s, c) = h.sin_cos();
        ego.valid[i] = true;
        ego.x[i] = x + centre_offset * c;
        ego.y[i] = y + centre_offset * s;
        ego.yaw[i] = h;
        ego.vx[i] = e.velocity[0] * c - e.velocity[1] * s;
        ego.vy[i] = e.velocity[0] * s + e.velocity[1] * c;
    }
    let mut agents: BTreeMap<(u8, i64), Track> = BTreeMap::new();
    for (i, w) in worlds.iter().enumerate().take(n) {
        let groups: [(&[Agent], AgentClass, u8, &str); 4] = [
            (&w.vehicles, AgentClass::Vehicle, 0, "vehicle"),
            (&w.pedestrians, AgentClass::Pedestrian, 1, "pedestrian"),
            (&w.bicycles, AgentClass::Cyclist, 2, "bicycle"),
            (&w.genericobjects, AgentClass::Static, 3, "object"),
        ];
        for (list, class, order, label) in groups {
            for a in list {
                let [width, length] = a.bbox.size;
                let t = agents.entry((order, a.id)).or_insert_with(|| {
                    Track::empty(format!("{label}-{}", a.id), class, (length, width, 1.5), n)
                });
                let [x, y, h] = a.bbox.pose;
                t.valid[i] = true;
                t.x[i] = x;
                t.y[i] = y;
                t.yaw[i] = h;
                t.vx[i] = a.speed * h.cos();
                t.vy[i] = a.speed * h.sin();
            }
        }
    }
    let scene = Scene {
        signals: Vec::new(),
        tags: Vec::new(),
        meta: Default::default(),
        scene_id: case_id(path),
        source: format!(
            "nuPlan devkit metric test case (Apache-2.0): {}",
            path.display()
        ),
        timestamps_us: egos.iter().map(|e| e.time_us).collect(),
        map: Map::default(),
        ego,
        agents: agents.into_values().collect(),
    };
    scene.validate()?;
    Ok(scene)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_tokens_outside_strings_become_null() {
        let t = r#"{"a": Infinity, "b": [-Infinity, NaN], "s": "Infinity \" NaN"}"#;
        let v: serde_json::Value = serde_json::from_str(&python_json_to_json(t)).unwrap();
        assert!(v["a"].is_null() && v["b"][0].is_null() && v["b"][1].is_null());
        assert_eq!(v["s"], "Infinity \" NaN");
    }
}
