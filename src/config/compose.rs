//! Hydra-style composition, as AlpaSim's wizard composes its configuration: a primary config file
//! whose directory holds the config groups (`deploy/`, `driver/`, `topology/`, …), defaults lists
//! (`group: option`, `group: null`, `optional group: option`, `/absolute_group: option`,
//! `override /group: option`, `option@package`, `_self_`, AlpaSim's `config_schema`), packages
//! (a group file lands at its group's key unless its first lines say `# @package _global_` or
//! another package), and command-line overrides: `key=value` and `++key=value` set a key,
//! `+key=value` adds one, `~key` removes one, `group=option` picks a group's option and
//! `+group=option` adds a group the defaults list does not name.
//!
//! Order, as in Hydra 1.1+: a defaults list is applied in order, the file's own content where
//! `_self_` stands (at the end when it is not listed); overrides of groups apply before loading,
//! those of keys after composing, then interpolations are resolved ([`super::interpolate`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_norway::Value;

use super::tree::{file_origin, Tree};
use super::ConfigError;

/// How a `key=value` override sets its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// `key=value`: the key should exist.
    Set,
    /// `+key=value`: the key should not exist yet.
    Add,
    /// `++key=value`: set whether or not it exists.
    Force,
}

/// One command-line override.
#[derive(Debug, Clone, PartialEq)]
pub enum Override {
    /// `group=option` (or `+group=option`, `add`): pick a config group's option (`None`: `null`).
    Group {
        /// the group path (`topology`, `exp/presets`)
        group: String,
        /// the option (a file of the group, without `.yaml`)
        option: Option<String>,
        /// `+group=…`: a group the defaults list does not name
        add: bool,
    },
    /// `key=value`, `+key=value`, `++key=value`.
    Key {
        /// dotted key path
        path: String,
        /// the value, parsed as YAML
        value: Value,
        /// how
        mode: KeyMode,
    },
    /// `~key`.
    Delete {
        /// dotted key path
        path: String,
    },
}

/// Parses command-line overrides; `config_dir` (the primary config's directory) tells groups
/// (its subdirectories) from keys.
pub fn parse_overrides(
    args: &[String],
    config_dir: Option<&Path>,
) -> Result<Vec<Override>, ConfigError> {
    args.iter()
        .map(|a| {
            let bad = |why: &str| ConfigError::Override {
                text: a.clone(),
                message: why.to_string(),
            };
            if let Some(path) = a.strip_prefix('~') {
                let path = path.split('=').next().unwrap_or(path).trim();
                if path.is_empty() {
                    return Err(bad("expected ~key"));
                }
                return Ok(Override::Delete {
                    path: path.to_string(),
                });
            }
            let (lhs, rhs) = a.split_once('=').ok_or_else(|| {
                bad("expected key=value, +key=value, ++key=value, ~key or group=option")
            })?;
            let (mode, key) = if let Some(k) = lhs.strip_prefix("++") {
                (KeyMode::Force, k)
            } else if let Some(k) = lhs.strip_prefix('+') {
                (KeyMode::Add, k)
            } else {
                (KeyMode::Set, lhs)
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(bad("the key is empty"));
            }
            let is_group = mode != KeyMode::Force
                && !key.contains('.')
                && config_dir.is_some_and(|d| d.join(key).is_dir());
            if is_group {
                let option = rhs.trim();
                return Ok(Override::Group {
                    group: key.trim_start_matches('/').to_string(),
                    option: (option != "null" && !option.is_empty()).then(|| option.to_string()),
                    add: mode == KeyMode::Add,
                });
            }
            let value = if rhs.trim().is_empty() {
                Value::String(String::new())
            } else {
                serde_norway::from_str(rhs).unwrap_or_else(|_| Value::String(rhs.to_string()))
            };
            Ok(Override::Key {
                path: key.to_string(),
                value,
                mode,
            })
        })
        .collect()
}

/// A file to merge, and where.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    package: String,
    content: Value,
}

/// A config file read: its `# @package` header, content and defaults list.
struct ConfigFile {
    package: Option<String>,
    content: Value,
    defaults: Vec<Value>,
}

fn read_file(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
        file: path.to_path_buf(),
        source: e,
    })?;
    parse_file(&text, path)
}

/// A config file's text, read as [`read_file`] reads it.
fn parse_file(text: &str, path: &Path) -> Result<ConfigFile, ConfigError> {
    let package = text
        .lines()
        .take_while(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        .find_map(|l| {
            l.trim_start()
                .trim_start_matches('#')
                .trim()
                .strip_prefix("@package")
                .map(|p| p.trim().to_string())
        });
    let mut content: Value = if text.trim().is_empty() {
        Value::Mapping(Default::default())
    } else {
        serde_norway::from_str(text).map_err(|e| ConfigError::Yaml {
            file: path.to_path_buf(),
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })?
    };
    if content.is_null() {
        content = Value::Mapping(Default::default());
    }
    let Value::Mapping(m) = &mut content else {
        return Err(ConfigError::Yaml {
            file: path.to_path_buf(),
            line: None,
            message: "the top level is not a mapping of keys".into(),
        });
    };
    let defaults = match m.remove("defaults") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Sequence(s)) => s,
        Some(_) => {
            return Err(ConfigError::Yaml {
                file: path.to_path_buf(),
                line: None,
                message: "`defaults` is not a list".into(),
            })
        }
    };
    Ok(ConfigFile {
        package,
        content,
        defaults,
    })
}

/// What [`compose`] produced.
#[derive(Debug, Clone)]
pub struct Composed {
    /// The composed tree (overrides applied, interpolations not yet resolved).
    pub tree: Tree,
    /// The files merged, in order.
    pub files: Vec<PathBuf>,
    /// Warnings (groups left out, overrides of keys that did not exist).
    pub warnings: Vec<String>,
}

/// How strictly a defaults list is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A config to compose (`simulate run --config`, `check-config`): a group or option that does
    /// not exist is an error.
    Compose,
    /// A run dir's resolved wizard-config.yaml: its groups are not beside it, so a defaults list
    /// it still carries is left out with a warning.
    Resolved,
}

struct Composer<'a> {
    dir: PathBuf,
    /// The primary config's path and text (it need not be a file: a converted config).
    primary: (&'a Path, &'a str),
    mode: Mode,
    groups: &'a HashMap<String, Option<String>>,
    found: HashMap<String, Option<String>>,
    stack: Vec<PathBuf>,
    entries: Vec<Entry>,
    warnings: Vec<String>,
}

/// The options of group `g` in `dir` (its .yaml files), for messages.
fn options_of(dir: &Path, g: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join(g))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            (p.extension().is_some_and(|x| x == "yaml"))
                .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .flatten()
        })
        .collect();
    v.sort();
    v
}

/// The group subdirectories of `dir`, for messages.
fn groups_of(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

impl Composer<'_> {
    /// Expands the defaults list of `file` (of group `group`, "" for the primary config) into
    /// entries, the file's own content at `package`.
    fn expand(
        &mut self,
        file: &Path,
        group: &str,
        package: Option<&str>,
        extra: &[(String, Option<String>)],
    ) -> Result<(), ConfigError> {
        if let Some(i) = self.stack.iter().position(|f| f == file) {
            let mut cycle: Vec<String> = self.stack[i..].iter().map(|f| file_origin(f)).collect();
            cycle.push(file_origin(file));
            return Err(ConfigError::DefaultsCycle(cycle));
        }
        let cf = if file == self.primary.0 {
            parse_file(self.primary.1, file)?
        } else {
            read_file(file)?
        };
        let own_package = match package {
            Some(p) => p.to_string(),
            None => match cf.package.as_deref() {
                Some("_global_") => String::new(),
                Some("_group_") | None => group.replace('/', "."),
                Some(p) => p.to_string(),
            },
        };
        self.stack.push(file.to_path_buf());
        let mut items: Vec<Value> = cf.defaults.clone();
        if !items.iter().any(|v| v.as_str() == Some("_self_")) {
            items.push(Value::String("_self_".into()));
        }
        for item in &items {
            match item {
                Value::String(s) if s == "_self_" => self.entries.push(Entry {
                    file: file.to_path_buf(),
                    package: own_package.clone(),
                    content: cf.content.clone(),
                }),
                // AlpaSim's structured schema (Python): drivekit's own defaults stand in for it.
                Value::String(s) if s == "config_schema" => {}
                Value::String(s) => {
                    // `option` or `option@package` of this file's own group.
                    let (option, pkg) = match s.split_once('@') {
                        Some((o, p)) => (o, Some(p)),
                        None => (s.as_str(), None),
                    };
                    self.load(group, option, pkg, false, file)?;
                }
                Value::Mapping(m) if m.len() == 1 => {
                    let (k, v) = m.iter().next().expect("one entry");
                    let key = k.as_str().unwrap_or_default().trim();
                    let option = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s.clone()),
                        other => Some(super::tree::key_text(other)),
                    };
                    let (is_override, key) = match key.strip_prefix("override ") {
                        Some(k) => (true, k.trim()),
                        None => (false, key),
                    };
                    let (optional, key) = match key.strip_prefix("optional ") {
                        Some(k) => (true, k.trim()),
                        None => (false, key),
                    };
                    let (gkey, pkg) = match key.split_once('@') {
                        Some((g, p)) => (g, Some(p)),
                        None => (key, None),
                    };
                    let g = match gkey.strip_prefix('/') {
                        Some(abs) => abs.to_string(),
                        None if group.is_empty() => gkey.to_string(),
                        None => format!("{group}/{gkey}"),
                    };
                    if is_override {
                        self.found.insert(g, option);
                        continue;
                    }
                    let chosen = self.groups.get(&g).or_else(|| self.found.get(&g)).cloned();
                    let option = chosen.unwrap_or(option);
                    if let Some(o) = option {
                        self.load_group(&g, &o, pkg, optional, file)?;
                    }
                }
                other => {
                    return Err(ConfigError::Yaml {
                        file: file.to_path_buf(),
                        line: None,
                        message: format!(
                        "defaults entry {other:?}: expected `group: option`, `option` or `_self_`"
                    ),
                    })
                }
            }
        }
        for (g, o) in extra {
            if let Some(o) = o {
                self.load_group(g, o, None, false, file)?;
            }
        }
        self.stack.pop();
        Ok(())
    }

    /// Loads option `o` of group `g` (absolute group path).
    fn load_group(
        &mut self,
        g: &str,
        o: &str,
        pkg: Option<&str>,
        optional: bool,
        from: &Path,
    ) -> Result<(), ConfigError> {
        let path = self.dir.join(g).join(format!("{o}.yaml"));
        if !path.is_file() {
            if optional {
                return Ok(());
            }
            if self.mode == Mode::Resolved {
                self.warnings.push(format!(
                    "{}: defaults entry {g}: {o} left out (no config group {g}/ beside this file; a run's wizard-config.yaml is normally resolved already)",
                    from.display()
                ));
                return Ok(());
            }
            if !self.dir.join(g).is_dir() {
                return Err(ConfigError::NoGroup {
                    group: g.to_string(),
                    dir: self.dir.clone(),
                    groups: groups_of(&self.dir),
                });
            }
            return Err(ConfigError::NoOption {
                group: g.to_string(),
                option: o.to_string(),
                options: options_of(&self.dir, g),
            });
        }
        self.expand(&path, g, pkg, &[])
    }

    /// Loads `option` of the group of the file being expanded (or a config beside the primary).
    fn load(
        &mut self,
        group: &str,
        option: &str,
        pkg: Option<&str>,
        optional: bool,
        from: &Path,
    ) -> Result<(), ConfigError> {
        self.load_group(group, option, pkg, optional, from)
    }
}

/// Composes the config file `primary` (its directory holds the groups) with `overrides`.
pub fn compose(
    primary: &Path,
    overrides: &[Override],
    mode: Mode,
) -> Result<Composed, ConfigError> {
    let text = std::fs::read_to_string(primary).map_err(|e| ConfigError::Io {
        file: primary.to_path_buf(),
        source: e,
    })?;
    compose_text(&text, primary, overrides, mode)
}

/// Composes a primary config given as `text`, as if it were the file `primary`.
pub fn compose_text(
    text: &str,
    primary: &Path,
    overrides: &[Override],
    mode: Mode,
) -> Result<Composed, ConfigError> {
    let dir = primary
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let mut groups: HashMap<String, Option<String>> = HashMap::new();
    let mut added: Vec<(String, Option<String>)> = Vec::new();
    for o in overrides {
        if let Override::Group { group, option, add } = o {
            if *add {
                added.push((group.clone(), option.clone()));
            } else {
                groups.insert(group.clone(), option.clone());
            }
        }
    }
    // Overrides found in group files (`override /g: o`) change what earlier entries load:
    // expand again until they stop changing.
    let mut found: HashMap<String, Option<String>> = HashMap::new();
    let (entries, mut warnings) = loop {
        let mut all = groups.clone();
        for (k, v) in &found {
            all.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut c = Composer {
            dir: dir.clone(),
            primary: (primary, text),
            mode,
            groups: &all,
            found: found.clone(),
            stack: Vec::new(),
            entries: Vec::new(),
            warnings: Vec::new(),
        };
        c.expand(primary, "", Some(""), &added)?;
        if c.found == found {
            break (c.entries, c.warnings);
        }
        found = c.found;
    };
    let mut tree = Tree::new();
    let mut files = Vec::new();
    for e in &entries {
        tree.merge_at(&e.package, &e.content, &file_origin(&e.file));
        if !files.contains(&e.file) {
            files.push(e.file.clone());
        }
    }
    // A key drivekit's defaults hold exists too (the defaults go under the composed tree).
    let known = super::known_keys();
    let mut leaves = tree.leaves();
    leaves.extend(
        known
            .iter()
            .filter(|k| !leaves.contains(k))
            .cloned()
            .collect::<Vec<_>>(),
    );
    for o in overrides {
        match o {
            Override::Group { .. } => {}
            Override::Key { path, value, mode } => {
                let exists = tree.get(path).is_some()
                    || known.contains(path)
                    || known.iter().any(|k| k.starts_with(&format!("{path}.")));
                // `name=option` with no such key and no such group: a misspelt group (Hydra
                // refuses it too).
                if !exists && *mode == KeyMode::Set && !path.contains('.') {
                    return Err(ConfigError::NoGroup {
                        group: path.clone(),
                        dir: dir.clone(),
                        groups: groups_of(&dir),
                    });
                }
                match mode {
                    KeyMode::Set if !exists => warnings.push(format!(
                        "override {path}={}: no such key in the composed configuration (added anyway; to add a key write +{path}=…){}",
                        super::tree::key_text(value),
                        super::suggest(path, &leaves)
                            .map(|s| format!("; did you mean {s}?"))
                            .unwrap_or_default()
                    )),
                    KeyMode::Add if exists => warnings.push(format!(
                        "override +{path}: the key exists already (replaced; ++{path}=… says so)"
                    )),
                    _ => {}
                }
                tree.set(path, value.clone(), "command line");
            }
            Override::Delete { path } => {
                if !tree.remove(path) {
                    warnings.push(format!("override ~{path}: no such key"));
                }
            }
        }
    }
    Ok(Composed {
        tree,
        files,
        warnings,
    })
}
