//! Presentation helpers shared by the stages: progress bars and number formatting.

pub mod format;
pub mod plot;
pub mod progress;
pub mod timing;
