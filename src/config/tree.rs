//! A configuration tree: YAML values (key order kept) with, for every leaf, where its value came
//! from (a file, or the command line) — so an error about a value can name its file. Merging
//! follows Hydra/OmegaConf: mappings merge key by key, anything else (scalars, lists) replaces.

use std::collections::BTreeMap;
use std::path::Path;

use serde_norway::{Mapping, Value};

/// A dotted key path (`runtime.simulation_config.cameras.0.frame_interval_us`).
pub type KeyPath = String;

/// A composed configuration and the origin of each of its leaves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    /// The values; always a mapping at the root.
    pub root: Value,
    /// Leaf path → where its value came from (file path or `command line`).
    pub origins: BTreeMap<KeyPath, String>,
}

/// Joins a parent path and a child key.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// The string form of a mapping key (AlpaSim's keys are strings; numbers and booleans are
/// written as text).
pub fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => serde_norway::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

impl Tree {
    /// An empty tree (an empty mapping).
    pub fn new() -> Tree {
        Tree {
            root: Value::Mapping(Mapping::new()),
            origins: BTreeMap::new(),
        }
    }

    /// Merges `value` (from `origin`) into the tree at `at` (a dotted path; "" = the root).
    pub fn merge_at(&mut self, at: &str, value: &Value, origin: &str) {
        let slot = slot_mut(&mut self.root, at);
        merge_value(slot, value, at, origin, &mut self.origins);
    }

    /// Sets `path` to `value`, creating mappings on the way (a `+key=…` / `key=…` override).
    pub fn set(&mut self, path: &str, value: Value, origin: &str) {
        // The old leaves under the path go with it.
        let prefix = format!("{path}.");
        self.origins
            .retain(|k, _| k != path && !k.starts_with(&prefix));
        let slot = slot_mut(&mut self.root, path);
        *slot = Value::Null;
        merge_value(slot, &value, path, origin, &mut self.origins);
    }

    /// Removes `path` (a `~key` override); true when it existed.
    pub fn remove(&mut self, path: &str) -> bool {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (p, l),
            None => ("", path),
        };
        let prefix = format!("{path}.");
        self.origins
            .retain(|k, _| k != path && !k.starts_with(&prefix));
        match get_mut(&mut self.root, parent) {
            Some(Value::Mapping(m)) => m.remove(Value::String(last.to_string())).is_some(),
            _ => false,
        }
    }

    /// The value at `path`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        get(&self.root, path)
    }

    /// Where the value at `path` (or the deepest leaf under it) came from.
    pub fn origin(&self, path: &str) -> String {
        if let Some(o) = self.origins.get(path) {
            return o.clone();
        }
        let prefix = format!("{path}.");
        self.origins
            .iter()
            .find(|(k, _)| k.starts_with(&prefix))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| "drivekit's defaults".into())
    }

    /// Every leaf path of the tree, in order.
    pub fn leaves(&self) -> Vec<KeyPath> {
        let mut out = Vec::new();
        leaves(&self.root, "", &mut out);
        out
    }
}

/// The value at `path` of `v`, created (mappings on the way; list items by index) if needed.
fn slot_mut<'a>(mut v: &'a mut Value, path: &str) -> &'a mut Value {
    if path.is_empty() {
        return v;
    }
    for key in path.split('.') {
        let index = key
            .parse::<usize>()
            .ok()
            .filter(|_| matches!(v, Value::Sequence(_)));
        v = match (index, v) {
            (Some(i), Value::Sequence(seq)) => {
                if i >= seq.len() {
                    seq.resize(i + 1, Value::Null);
                }
                &mut seq[i]
            }
            (_, v) => {
                if !matches!(v, Value::Mapping(_)) {
                    *v = Value::Mapping(Mapping::new());
                }
                let Value::Mapping(m) = v else {
                    unreachable!("just made a mapping")
                };
                m.entry(Value::String(key.to_string()))
                    .or_insert(Value::Null)
            }
        };
    }
    v
}

/// Merges `src` into `dst` (OmegaConf semantics), recording each leaf's origin under `at`.
fn merge_value(
    dst: &mut Value,
    src: &Value,
    at: &str,
    origin: &str,
    origins: &mut BTreeMap<KeyPath, String>,
) {
    match (dst, src) {
        (Value::Mapping(d), Value::Mapping(s)) => {
            for (k, v) in s {
                let path = join(at, &key_text(k));
                let slot = d.entry(k.clone()).or_insert(Value::Null);
                merge_value(slot, v, &path, origin, origins);
            }
        }
        (dst, src) => {
            let prefix = format!("{at}.");
            origins.retain(|k, _| k != at && !k.starts_with(&prefix));
            *dst = src.clone();
            let mut leaf_paths = Vec::new();
            leaves(src, at, &mut leaf_paths);
            if leaf_paths.is_empty() {
                leaf_paths.push(at.to_string());
            }
            for p in leaf_paths {
                origins.insert(p, origin.to_string());
            }
        }
    }
}

fn leaves(v: &Value, at: &str, out: &mut Vec<KeyPath>) {
    match v {
        Value::Mapping(m) if !m.is_empty() => {
            for (k, v) in m {
                leaves(v, &join(at, &key_text(k)), out);
            }
        }
        Value::Sequence(s) if !s.is_empty() => {
            for (i, v) in s.iter().enumerate() {
                leaves(v, &join(at, &i.to_string()), out);
            }
        }
        // An empty document (or an empty root mapping) has no leaves.
        _ if at.is_empty() => {}
        _ => out.push(at.to_string()),
    }
}

/// The value at a dotted `path` of `v` (list items by index).
pub fn get<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let mut v = v;
    if path.is_empty() {
        return Some(v);
    }
    for key in path.split('.') {
        v = match v {
            Value::Mapping(m) => m.get(key)?,
            Value::Sequence(s) => s.get(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

fn get_mut<'a>(v: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut v = v;
    if path.is_empty() {
        return Some(v);
    }
    for key in path.split('.') {
        v = match v {
            Value::Mapping(m) => m.get_mut(key)?,
            Value::Sequence(s) => s.get_mut(key.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// The origin text of a file.
pub fn file_origin(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_norway::from_str(s).unwrap()
    }

    #[test]
    fn mappings_merge_lists_replace_and_origins_follow() {
        let mut t = Tree::new();
        t.merge_at("", &yaml("a: {b: 1, c: [1, 2]}\nd: x\n"), "base.yaml");
        t.merge_at("", &yaml("a: {c: [3], e: 5}\n"), "group.yaml");
        t.merge_at(
            "driver",
            &yaml("inference: {subsample_factor: 2}\n"),
            "driver/v.yaml",
        );
        assert_eq!(
            t.root,
            yaml("a: {b: 1, c: [3], e: 5}\nd: x\ndriver: {inference: {subsample_factor: 2}}\n")
        );
        assert_eq!(t.origin("a.b"), "base.yaml");
        assert_eq!(t.origin("a.c.0"), "group.yaml");
        assert!(!t.origins.contains_key("a.c.1"));
        assert_eq!(t.origin("driver.inference"), "driver/v.yaml");
        t.set("a.b", yaml("7"), "command line");
        assert_eq!(t.get("a.b"), Some(&yaml("7")));
        assert_eq!(t.origin("a.b"), "command line");
        t.set(
            "runtime.simulation_config.cameras.0.width",
            yaml("64"),
            "command line",
        );
        assert_eq!(
            t.get("runtime.simulation_config.cameras.0.width"),
            Some(&yaml("64"))
        );
        assert!(t.remove("d") && t.get("d").is_none() && !t.remove("d"));
        assert!(t.leaves().contains(&"a.e".to_string()));
    }
}
