//! The scene catalogue (`simulate scenes DIR`): what each scene of a directory holds, one row per
//! scene (loaded in parallel), and benchmark splits as text files of scene ids
//! (`simulate run --split FILE`).

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Scene, SignalState};

/// One catalogue row.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Scene id.
    pub scene_id: String,
    /// The dataset (the scene's first tag, else the start of its source).
    pub dataset: String,
    /// Duration (s).
    pub duration_s: f64,
    /// Agents besides the ego.
    pub agents: usize,
    /// Lanes.
    pub lanes: usize,
    /// Lanes with a signal.
    pub signals: usize,
    /// Steps at which some signal is red.
    pub red_steps: usize,
    /// Stop signs.
    pub stop_signs: usize,
    /// Lanes with a speed limit.
    pub speed_limits: usize,
    /// Tags.
    pub tags: Vec<String>,
    /// The file.
    pub file: PathBuf,
}

impl Entry {
    /// The row of `scene`, read from `file`.
    pub fn of(scene: &Scene, file: &Path) -> Entry {
        let ts = &scene.timestamps_us;
        let red_steps = (0..ts.len())
            .filter(|&i| scene.signals.iter().any(|s| s.states[i].is_red()))
            .count();
        Entry {
            scene_id: scene.scene_id.clone(),
            dataset: scene.tags.first().cloned().unwrap_or_else(|| {
                scene
                    .source
                    .split([' ', ':', '('])
                    .next()
                    .unwrap_or_default()
                    .to_string()
            }),
            duration_s: (ts.last().unwrap_or(&0) - ts.first().unwrap_or(&0)) as f64 / 1e6,
            agents: scene.agents.len(),
            lanes: scene.map.lanes.len(),
            signals: scene
                .signals
                .iter()
                .filter(|s| s.states.iter().any(|x| *x != SignalState::Unknown))
                .count(),
            red_steps,
            stop_signs: scene.map.stop_signs.len(),
            speed_limits: scene
                .map
                .lanes
                .iter()
                .filter(|l| l.speed_limit_mps.is_some())
                .count(),
            tags: scene.tags.clone(),
            file: file.to_path_buf(),
        }
    }
}

/// The catalogue of a directory: its scenes' rows sorted by id, and the files that could not be
/// read (each with the problem).
pub fn catalogue(dir: &Path) -> std::io::Result<(Vec<Entry>, Vec<String>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == super::EXTENSION))
        .collect();
    files.sort();
    let rows: Vec<Result<Entry, String>> = files
        .par_iter()
        .map(|f| {
            Scene::load(f)
                .map(|s| Entry::of(&s, f))
                .map_err(|e| e.to_string())
        })
        .collect();
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for r in rows {
        match r {
            Ok(e) => ok.push(e),
            Err(e) => bad.push(e),
        }
    }
    ok.sort_by(|a, b| a.scene_id.cmp(&b.scene_id));
    Ok((ok, bad))
}

/// The catalogue as a table.
pub fn table(entries: &[Entry]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header([
        "scene",
        "dataset",
        "s",
        "agents",
        "lanes",
        "signals",
        "red steps",
        "stop signs",
        "speed limits",
        "tags",
    ]);
    for e in entries {
        t.add_row([
            e.scene_id.clone(),
            e.dataset.clone(),
            format!("{:.1}", e.duration_s),
            e.agents.to_string(),
            e.lanes.to_string(),
            e.signals.to_string(),
            e.red_steps.to_string(),
            e.stop_signs.to_string(),
            e.speed_limits.to_string(),
            e.tags
                .iter()
                .skip(1)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        ]);
    }
    t.to_string()
}

/// A split that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SplitError {
    /// Unreadable.
    #[error("{file}: {source}")]
    Io {
        /// the file
        file: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// No scene ids in it.
    #[error("{0}: no scene ids (one per line; # starts a comment)")]
    Empty(PathBuf),
}

/// The scene ids of a split file: one per line (the first whitespace-separated word), blank
/// lines and `#` comments ignored, duplicates dropped, order kept.
pub fn read_split(file: &Path) -> Result<Vec<String>, SplitError> {
    let text = std::fs::read_to_string(file).map_err(|e| SplitError::Io {
        file: file.to_path_buf(),
        source: e,
    })?;
    let mut ids: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(id) = line.split_whitespace().next() {
            if !ids.iter().any(|x| x == id) {
                ids.push(id.to_string());
            }
        }
    }
    if ids.is_empty() {
        return Err(SplitError::Empty(file.to_path_buf()));
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_skip_comments_blanks_and_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("val14.txt");
        std::fs::write(
            &f,
            "# nuPlan Val14\na1b2  starting_left_turn\n\n  c3d4\na1b2 # again\n",
        )
        .unwrap();
        assert_eq!(read_split(&f).unwrap(), vec!["a1b2", "c3d4"]);
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(read_split(&f)
            .unwrap_err()
            .to_string()
            .contains("no scene ids"));
    }
}
