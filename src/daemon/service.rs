//! `vskel daemon` itself: binds the control socket, mounts the configured
//! views (each served by a supervised child, [`super::supervisor`]), tells
//! systemd it is ready once every view was tried (`READY=1`, then a
//! `STATUS=` line on every change), re-reads the configuration on SIGHUP
//! or `reload`, and on SIGTERM/SIGINT unmounts every view (a busy one
//! lazily, with a warning) and exits.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sd_notify::NotifyState;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{debug, info, warn};

use super::handler::DaemonHandler;
use super::server::Server;
use super::supervisor::{Phase, Shared};
use super::views::{Applied, Views};
use crate::config::Config;
use crate::error::{Error, Result};

/// How long the start waits for every view's first try before it says
/// ready anyway.
const FIRST_TRY_WAIT: Duration = Duration::from_secs(90);
/// How often the status line is refreshed while nothing else happens.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// How the daemon was started.
#[derive(Debug, Clone)]
pub struct Started {
    /// The configuration file given (`--config`), re-read on reload.
    pub config_path: Option<PathBuf>,
    /// The global options for the views' servers.
    pub global_args: Vec<OsString>,
    /// Where and how to serve the control socket (its path wins over
    /// `[daemon] socket`, also on reload).
    pub server: Server,
}

/// Run the daemon with `config` until SIGTERM or SIGINT.
pub fn run(config: Config, started: Started) -> Result<()> {
    match crate::sys::raise_open_file_limit() {
        Ok(limit) => debug!("open-file limit {limit}"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::io("install signal handlers", "", e))?;
    let socket_path = started.server.socket.clone();
    let config = Arc::new(RwLock::new(config));
    let shared = Arc::new(Shared::new(started.global_args.clone(), config.clone()));
    let views = Arc::new(Views::new(shared.clone()));
    let reload: Arc<dyn Fn() -> Result<Applied> + Send + Sync> = {
        let (config, views, path) = (config.clone(), views.clone(), started.config_path.clone());
        let socket = socket_path.clone();
        Arc::new(move || reload(&config, &views, path.as_deref(), &socket))
    };
    let handler = DaemonHandler {
        config: config.clone(),
        views: views.clone(),
        reload: reload.clone(),
    };
    let _listening = started.server.listen(Arc::new(handler))?;
    info!("listening on {}", socket_path.display());
    let applied = views.apply(&config.read())?;
    info!("serving {} views", applied.added.len());
    if !views.wait_all_tried(FIRST_TRY_WAIT) {
        warn!(
            "not every view was tried within {} s; ready anyway",
            FIRST_TRY_WAIT.as_secs()
        );
    }
    notify(&[NotifyState::Ready]);
    let status = spawn_status_line(views.clone());
    info!("ready: {}", status_line(&views));
    for signal in signals.forever() {
        match signal {
            SIGHUP => {
                info!("SIGHUP: reloading the configuration");
                if let Err(e) = reload() {
                    warn!("reload: {e}");
                }
            }
            _ => {
                info!("signal {signal}: unmounting every view");
                break;
            }
        }
    }
    notify(&[NotifyState::Stopping]);
    shared.stop_status();
    views.stop_all();
    if status.join().is_err() {
        warn!("the status thread panicked");
    }
    info!("stopped");
    Ok(())
}

/// Re-read the configuration (from `path`, as at start) and apply it.
fn reload(
    config: &RwLock<Config>,
    views: &Views,
    path: Option<&std::path::Path>,
    socket: &std::path::Path,
) -> Result<Applied> {
    notify(&[
        NotifyState::Reloading,
        NotifyState::monotonic_usec_now().unwrap_or(NotifyState::Status("reloading")),
    ]);
    let fresh = Config::load(path);
    let result = fresh.map_err(Error::from).and_then(|fresh| {
        if fresh.daemon.socket != socket {
            warn!(
                "the control socket moves to {} only when the daemon restarts",
                fresh.daemon.socket.display()
            );
        }
        let mut fresh = fresh;
        fresh.daemon.socket = socket.to_path_buf();
        let applied = views.apply(&fresh)?;
        *config.write() = fresh;
        Ok(applied)
    });
    match &result {
        Ok(applied) => info!(
            "reloaded: {} views added, {} removed",
            applied.added.len(),
            applied.removed.len()
        ),
        Err(e) => warn!("reload failed, the configuration is unchanged: {e}"),
    }
    notify(&[NotifyState::Ready]);
    result
}

/// A thread that sends `STATUS=` to systemd whenever a view's state
/// changes (at most every 100 ms) and every [`STATUS_EVERY`].
fn spawn_status_line(views: Arc<Views>) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("vskel-status".into())
        .spawn(move || {
            let shared = views.shared().clone();
            let mut last = String::new();
            while !shared.stopping_status() {
                let line = status_line(&views);
                if line != last {
                    notify(&[NotifyState::Status(&line)]);
                    last = line;
                }
                shared.wait_change(STATUS_EVERY);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .unwrap_or_else(|e| {
            warn!("no status thread: {e}");
            std::thread::spawn(|| {})
        })
}

/// "serving 2 of 3 views; failing: web3" and the like.
fn status_line(views: &Views) -> String {
    let states = views.states();
    let wanted: Vec<_> = states.iter().filter(|(_, s)| s.wanted).collect();
    let serving = wanted
        .iter()
        .filter(|(_, s)| s.phase == Phase::Serving)
        .count();
    let failing: Vec<&str> = wanted
        .iter()
        .filter(|(_, s)| matches!(s.phase, Phase::Retrying(_)))
        .map(|(name, _)| name.as_str())
        .collect();
    let mut line = format!("serving {serving} of {} views", wanted.len());
    if !failing.is_empty() {
        line.push_str(&format!("; failing: {}", failing.join(", ")));
    }
    line
}

/// Tell systemd (a no-op outside a `Type=notify` unit).
fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        debug!("cannot notify systemd: {e}");
    }
}
