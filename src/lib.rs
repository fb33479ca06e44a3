//! drivekit: closed-loop evaluation of autonomous-driving policies.
//!
//! The pipeline (see `DESIGN.md` beside the repository, and README.md):
//! scenes → `simulate` (per shard) → `runs/X/rollouts/…` → `aggregate` → `runs/X/aggregate/…`.
//! Stages talk only through files in AlpaSim's run-directory layout, so each reruns alone.
//!
//! On the simulate side the rollout trace ([`rollout::trace`]) is the spine: the one step loop
//! ([`sim::stepper::run_chunk`], over a CPU or CUDA [`sim::stepper::StepBackend`]) records it, the
//! runner's writer turns it into rollout.asl and metrics.parquet ([`rollout`]), the renderer draws
//! it ([`video`]), and `evaluate` / `render` read logs back into traces. The metric table
//! ([`metrics::table`]) names every per-step metric once.
//!
//! Layers, bottom to top. A module imports only from its own layer or the layers below it, and no
//! two modules import each other (`tests/layering.rs` reads this list and checks the code):
//!
//! 1. plumbing: [`fsutil`], [`process`], [`rng`], [`geometry`], [`report`], [`alpasim_grpc`]
//! 2. formats: [`config`], [`run_dir`], [`dict_chunk`], [`metrics_file`], [`scene`]
//! 3. vocabulary: [`metrics`], [`telemetry`]
//! 4. state: [`state`]
//! 5. rollout: [`rollout`]
//! 6. renderer: [`video`]
//! 7. simulation: [`sim`]
//! 8. device: [`cuda`]
//! 9. shard loop: [`runner`]
//! 10. consumers and test data: [`evaluate`], [`render`], [`aggregate`], [`peer_results`], [`fixtures`]
//!
//! Binaries in `src/bin/` only parse flags, call one of these and map the result to an exit code.
#![warn(missing_docs)]

pub mod aggregate;
pub mod alpasim_grpc;
pub mod config;
pub mod cuda;
pub mod dict_chunk;
pub mod evaluate;
pub mod fixtures;
pub mod fsutil;
pub mod geometry;
pub mod metrics;
pub mod metrics_file;
pub mod peer_results;
pub mod process;
pub mod render;
pub mod report;
pub mod rng;
pub mod rollout;
pub mod run_dir;
pub mod runner;
pub mod scene;
pub mod sim;

pub mod state;
pub mod telemetry;
pub mod video;
