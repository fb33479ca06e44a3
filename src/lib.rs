//! drivekit: closed-loop evaluation of autonomous-driving policies.
//!
//! The pipeline (see `DESIGN.md` beside the repository, and README.md):
//! scenes → `simulate` (per shard) → `runs/X/rollouts/…` → `aggregate` → `runs/X/aggregate/…`.
//! Stages talk only through files in AlpaSim's run-directory layout, so each reruns alone.
//!
//! Layers, bottom to top: formats and plumbing ([`fsutil`], [`config`], [`run_dir`],
//! [`metrics_file`], [`report`], [`scene`]); metric vocabulary ([`metrics`]); file consumers
//! ([`aggregate`]); test and benchmark data ([`fixtures`]). Binaries in `src/bin/` only parse
//! flags and call one of these.
#![warn(missing_docs)]

pub mod aggregate;
pub mod alpasim_grpc;
pub mod config;
pub mod cuda;
pub mod evaluate;
pub mod fixtures;
pub mod fsutil;
pub mod geometry;
pub mod metrics;
pub mod metrics_file;
pub mod render;
pub mod report;
pub mod rng;
pub mod rollout;
pub mod run_dir;
pub mod runner;
pub mod scene;
pub mod sim;
pub mod sim_config;
pub mod state;
pub mod telemetry;
pub mod video;
