//! Progress display for long work: a spinner with a count on a terminal,
//! nothing at all on a pipe, in CI or under `--quiet`. It appears only
//! once work starts ([`Progress::start`]), so it never covers a prompt.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// How often the spinner redraws.
const TICK: Duration = Duration::from_millis(120);

/// A progress display; every method is a no-op when hidden.
#[derive(Debug, Default)]
pub struct Progress {
    enabled: bool,
    bar: OnceLock<ProgressBar>,
}

impl Progress {
    /// A display that never shows anything.
    pub fn hidden() -> Self {
        Self::default()
    }

    /// A display for the terminal: shown only when stderr is a terminal
    /// and `CI` is not set.
    pub fn for_terminal() -> Self {
        Progress {
            enabled: std::io::stderr().is_terminal() && std::env::var_os("CI").is_none(),
            bar: OnceLock::new(),
        }
    }

    /// Show the display (if enabled) with `label`, or relabel it.
    pub fn start(&self, label: &str) {
        if !self.enabled {
            return;
        }
        let bar = self.bar.get_or_init(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg}: {human_pos} entries")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(TICK);
            bar
        });
        bar.set_message(label.to_string());
    }

    /// Count `n` more entries done.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = self.bar.get() {
            bar.inc(n);
        }
    }

    /// Remove the display.
    pub fn finish(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
