//! The rollout: the trace a stepper records ([`trace`]), the metrics.parquet rows it becomes
//! ([`rows`]), rollout.asl — AlpaSim's simulation log (DESIGN §5), a stream of `[u32 big-endian
//! length][protobuf LogEntry]` records with no header — written from it ([`encode`], [`sink`]) and
//! read back ([`asl`], [`replay`]: a log becomes traces again). [`proto`] holds the messages
//! (prost derives with AlpaSim's field numbers, so no protoc is needed); [`poses`] and
//! [`metadata`] encode the hot records directly; [`convert`] dumps a log as text or Parquet.
//!
//! Below the steppers (`sim`, `cuda`), the renderer (`video`), `runner` and `evaluate`: they all
//! meet here, and nothing here imports them.

pub mod asl;
pub mod convert;
pub mod encode;
pub mod metadata;
pub mod poses;
pub mod proto;
pub mod replay;
pub mod rows;
pub mod sink;
pub mod trace;
