//! One progress-bar factory: callers never branch on terminals. Bars draw on stderr only when it
//! is a terminal (so Slurm and CI logs stay clean) and when the caller asked for one.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar over `len` items, hidden when `enabled` is false or stderr is not a terminal.
pub fn bar(len: u64, msg: &'static str, enabled: bool) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{msg:>16} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}
