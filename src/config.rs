//! `wizard-config.yaml`: the parts `aggregate` needs (the expected scenes and rollouts), and a
//! canonical form to compare the configs of several shards. The simulator's full configuration
//! and its clock rules (DESIGN §6) build on this module.

use std::path::{Path, PathBuf};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// The YAML does not parse.
    #[error("{file}: invalid YAML: {message}")]
    Yaml {
        /// the file
        file: PathBuf,
        /// parser message
        message: String,
    },
}

/// What `aggregate` reads from a wizard-config.yaml.
#[derive(Debug, Clone, PartialEq)]
pub struct WizardConfig {
    /// The whole document, canonical (maps sorted), for comparing shards.
    pub canonical: serde_json::Value,
    /// `scenes.scene_ids`: the scenes the run is expected to cover, when listed.
    pub scene_ids: Option<Vec<String>>,
    /// `n_rollouts`: rollouts per scene, when given.
    pub n_rollouts: Option<u64>,
}

impl WizardConfig {
    /// Parses YAML text.
    pub fn parse(text: &str, file: &Path) -> Result<WizardConfig, ConfigError> {
        let yaml: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| ConfigError::Yaml {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?;
        // serde_json's Map is ordered by key: equal configs compare equal whatever the key order.
        let canonical = serde_json::to_value(&yaml).map_err(|e| ConfigError::Yaml {
            file: file.to_path_buf(),
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
        let n_rollouts = canonical.get("n_rollouts").and_then(|v| v.as_u64());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_does_not_matter_and_scenes_are_read() {
        let p = Path::new("w.yaml");
        let a = WizardConfig::parse("n_rollouts: 2\nscenes:\n  scene_ids: [a, b]\n", p).unwrap();
        let b = WizardConfig::parse("scenes: {scene_ids: [a, b]}\nn_rollouts: 2\n", p).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.scene_ids, Some(vec!["a".into(), "b".into()]));
        assert_eq!(a.n_rollouts, Some(2));
        assert!(WizardConfig::parse("a: [", p).is_err());
    }
}
