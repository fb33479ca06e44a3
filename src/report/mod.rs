//! Presentation helpers shared by the binaries: progress bars, number formatting, plot fonts.

pub mod format;
pub mod progress;
