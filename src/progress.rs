//! Progress display for long work: a spinner with a count on a terminal,
//! nothing at all on a pipe, in CI or under `--quiet`. It appears only
//! once work starts ([`Progress::start`]), so it never covers a prompt.
//! Diagnostics go to stderr through [`LogWriter`], which takes the spinner
//! off the screen while it writes a line (the spinner comes back below
//! it), so a warning never lands in the spinner's line.

use std::io::{IsTerminal, Write};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle, WeakProgressBar};

/// How often the spinner redraws.
const TICK: Duration = Duration::from_millis(120);

/// The spinner on the screen now, if any (weak: a dropped display stops).
static SHOWN: Mutex<Option<WeakProgressBar>> = Mutex::new(None);

/// Make `bar` (or none) the one on the screen.
fn set_shown(bar: Option<&ProgressBar>) {
    *SHOWN.lock().unwrap_or_else(PoisonError::into_inner) = bar.map(ProgressBar::downgrade);
}

/// The spinner on the screen now.
fn shown() -> Option<ProgressBar> {
    SHOWN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .and_then(WeakProgressBar::upgrade)
}

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
        set_shown(Some(bar));
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
            set_shown(None);
            bar.finish_and_clear();
        }
    }
}

/// Stderr for the log: what one event writes is collected and written
/// at once when the writer is dropped (the logger makes one per event),
/// with the spinner taken off the screen meanwhile.
#[derive(Debug, Default)]
pub struct LogWriter {
    pending: Vec<u8>,
}

impl LogWriter {
    /// A writer for one log event.
    pub fn new() -> Self {
        Self::default()
    }

    fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // Nowhere to report a failure to write the log to stderr.
        let write = || {
            let _ = std::io::stderr().lock().write_all(&self.pending);
        };
        match shown() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
        self.pending.clear();
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.write_pending();
        Ok(())
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.write_pending();
    }
}
