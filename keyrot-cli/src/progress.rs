//! Progress of long runs on a terminal: users done of the total and failures so far, on
//! stderr, with `indicatif`. Nothing at all unless both stdout and stderr are terminals (so a
//! pipe, a file or a log collector gets exactly the output it got before) and the caller did
//! not ask for JSON.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyrot_core::UserReport;
use keyrot_core::driver::RunObserver;
use keyrot_core::report::{GatherObserver, UserState};

/// A progress bar on stderr, or nothing.
#[derive(Debug)]
pub struct Progress {
    bar: Option<ProgressBar>,
    failures: AtomicUsize,
}

impl Progress {
    /// A bar when `wanted` and both stdout and stderr are terminals; otherwise a progress that
    /// shows nothing.
    pub fn on_terminal(wanted: bool) -> Self {
        let shown = wanted && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        Self::new(shown)
    }

    /// A bar on stderr if `shown`, else nothing.
    pub fn new(shown: bool) -> Self {
        let bar = shown.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            // A plain template: no colours, whatever NO_COLOR says.
            let style = ProgressStyle::with_template("{bar:30} {pos}/{len} users done, {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style.progress_chars("#>-"));
            bar.set_message("0 failed");
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            bar,
            failures: AtomicUsize::new(0),
        }
    }

    fn set_total(&self, users: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(u64::try_from(users).unwrap_or(u64::MAX));
        }
    }

    fn done(&self, failed: bool) {
        let failures = if failed {
            self.failures.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failures.load(Ordering::Relaxed)
        };
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{failures} failed"));
            bar.inc(1);
        }
    }

    /// Draws the final count (whatever the draw rate) and ends its line, so that what the
    /// command prints next starts on a clean line.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
            // A terminal that went away is no reason to fail the command.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), b"\n");
        }
    }
}

impl RunObserver for Progress {
    fn started(&self, users: usize) {
        self.set_total(users);
    }

    fn user_done(&self, report: &UserReport) {
        self.done(report.outcome.is_failure());
    }
}

impl GatherObserver for Progress {
    fn started(&self, users: usize) {
        self.set_total(users);
    }

    fn user_done(&self, state: &UserState) {
        self.done(state.attention);
    }
}
