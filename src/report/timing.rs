//! Phase timings on stderr when `DRIVEKIT_TIMINGS` is set: a profiling aid that costs nothing
//! when off (`DRIVEKIT_TIMINGS=1 aggregate runs/X`).

use std::time::Instant;

/// Prints the time since the previous lap, labelled, when enabled.
pub struct PhaseTimer {
    start: Option<Instant>,
    indent: &'static str,
}

impl PhaseTimer {
    /// Enabled when `DRIVEKIT_TIMINGS` is set; `indent` prefixes nested phases.
    pub fn from_env(indent: &'static str) -> PhaseTimer {
        PhaseTimer {
            start: std::env::var_os("DRIVEKIT_TIMINGS").map(|_| Instant::now()),
            indent,
        }
    }

    /// Prints the phase that just ended and starts the next.
    pub fn lap(&mut self, phase: &str) {
        if let Some(t) = self.start.as_mut() {
            let label = format!("{}{phase}", self.indent);
            eprintln!("timing: {label:<28} {:8.3} s", t.elapsed().as_secs_f64());
            *t = Instant::now();
        }
    }
}
