//! Presentation helpers shared by the stages: progress bars and number formatting.

pub mod format;
pub mod plot;
pub mod progress;
pub mod timing;

/// Makes a closed stdout end the process quietly, as for any Unix filter (`telemetry RUN | head`,
/// `simulate scene-info … | true`): Rust ignores SIGPIPE, so printing to a closed pipe would
/// panic instead. Every binary calls this first. Outputs are written atomically before anything
/// is printed, so being stopped while printing loses nothing.
pub fn quiet_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal at start-up, before any thread
    // exists, has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
