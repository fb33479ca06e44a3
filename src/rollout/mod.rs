//! rollout.asl, AlpaSim's simulation log (DESIGN §5): a stream of `[u32 big-endian length]
//! [protobuf LogEntry]` records, no header. [`proto`] holds the messages (prost derives with
//! AlpaSim's field numbers, so no protoc is needed); [`asl`] writes and reads the stream.

pub mod asl;
pub mod convert;
pub mod metadata;
pub mod poses;
pub mod proto;
