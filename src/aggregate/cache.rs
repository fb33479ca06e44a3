//! Per-batch reductions kept between runs in `aggregate/.cache/reductions.bin`, keyed by the
//! batch's metrics.parquet size and mtime, so re-aggregating after new shards land reads only the
//! new files. A cache written by another drivekit version or other chain settings is ignored.

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::load::BatchReduction;
use super::trajectory::ChainParams;
use super::unprocessed::BatchKey;
use crate::fsutil;

/// Location under aggregate/.
pub const FILE: &str = ".cache/reductions.bin";

/// Reductions by batch key.
pub type Cache = HashMap<BatchKey, BatchReduction>;

#[derive(Serialize, Deserialize)]
struct Stored {
    version: String,
    max_dist_to_gt_m: f64,
    entries: Vec<(BatchKey, BatchReduction)>,
}

fn version() -> String {
    format!("drivekit-{}-cache-2", env!("CARGO_PKG_VERSION"))
}

/// Loads the cache; empty when absent, unreadable or made with other settings.
pub fn load(path: &Path, params: &ChainParams) -> Cache {
    read(path, params).unwrap_or_default()
}

/// Loads the cache; `None` when absent, unreadable or made with other settings.
pub fn read(path: &Path, params: &ChainParams) -> Option<Cache> {
    // Streamed from the file (not read whole first).
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path).ok()?);
    match bincode::deserialize_from::<_, Stored>(file) {
        Ok(s) if s.version == version() && s.max_dist_to_gt_m == params.max_dist_to_gt_m => {
            Some(s.entries.into_iter().collect())
        }
        _ => None,
    }
}

/// Saves the cache atomically.
pub fn save(
    path: &Path,
    params: &ChainParams,
    entries: &[(BatchKey, BatchReduction)],
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct StoredRef<'a> {
        version: String,
        max_dist_to_gt_m: f64,
        entries: &'a [(BatchKey, BatchReduction)],
    }
    let stored = StoredRef {
        version: version(),
        max_dist_to_gt_m: params.max_dist_to_gt_m,
        entries,
    };
    // Streamed into the file: a million rollouts' reductions are not held twice.
    fsutil::write_atomic_with_as(path, fsutil::Durability::Renamed, |w| {
        bincode::serialize_into(w, &stored).map_err(std::io::Error::other)
    })
}
