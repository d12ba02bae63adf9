//! A spinner with the time spent, on stderr, while `ctl` waits for long work (an
//! import run, a discovery run, a download). Only on a terminal: scripts and pipes
//! get the output alone.

use indicatif::{ProgressBar, ProgressStyle};
use std::future::Future;
use std::io::IsTerminal;
use std::time::Duration;

/// Awaits `work`, showing `message` and the elapsed time meanwhile when stderr is a
/// terminal; the line is cleared when the work ends.
pub async fn while_waiting<T>(message: String, work: impl Future<Output = T>) -> T {
    if !std::io::stderr().is_terminal() {
        return work.await;
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(Duration::from_millis(120));
    let out = work.await;
    bar.finish_and_clear();
    out
}
