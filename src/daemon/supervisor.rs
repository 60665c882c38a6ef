//! One view under the daemon: its supervisor thread starts the view's
//! server ([`super::child`]), waits for it, and when it dies (crashed,
//! killed, its mount broken) records why and starts it again after a
//! backoff that doubles up to [`MAX_BACKOFF`], while the view is wanted.
//! A server that exits cleanly after an unmount the daemon did not ask for
//! (`umount` by hand, an `upgrade-vs` remounting the view) is not
//! restarted: the view is then simply not mounted until asked again.
//!
//! [`Slot`] is the view's shared state: what the control socket reports
//! and changes (wanted or not, where, the server's pid, the last error).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use tracing::{info, warn};

use super::child::{self, ChildServer, describe};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::vserver::mount::Mounted;

/// The first pause before a failed view is started again.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two starts of a failing view.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A server that served this long before it died starts the backoff over.
const STABLE: Duration = Duration::from_secs(60);

/// Where a view is in its life under the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Its server is starting.
    Starting,
    /// Its server runs and its mount is live.
    Serving,
    /// It failed; the next start is at this time.
    Retrying(Instant),
    /// Not served (not wanted, or unmounted outside the daemon).
    Stopped,
}

/// A view's state, as the control socket sees it.
#[derive(Debug, Clone)]
pub struct State {
    /// Keep it mounted (false: stop it, and never restart it).
    pub wanted: bool,
    /// It is one of `[daemon] views` (a reload may remove it).
    pub configured: bool,
    /// Where to mount it (None: its default mount point).
    pub at: Option<PathBuf>,
    /// See [`Phase`].
    pub phase: Phase,
    /// The live server's mount report.
    pub mounted: Option<Mounted>,
    /// Why it last failed (cleared when it serves again).
    pub error: Option<String>,
    /// Starts finished so far (served or failed).
    pub attempts: u64,
    /// Times its server died and was started again.
    pub restarts: u64,
    /// Start it now rather than at the end of the backoff.
    retry_now: bool,
}

/// A view the daemon looks after.
#[derive(Debug)]
pub struct Slot {
    /// The vserver.
    pub name: String,
    state: Mutex<State>,
    changed: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What every supervisor shares: how to start servers, and whom to tell
/// that a view's state changed.
#[derive(Debug)]
pub struct Shared {
    /// The global options for the servers (`--config PATH`).
    pub global_args: Vec<OsString>,
    /// The configuration now (replaced on reload).
    pub config: Arc<RwLock<Config>>,
    /// Bumped on every change of any view's state.
    pub generation: Mutex<u64>,
    /// Signalled with `generation`.
    pub any_change: Condvar,
    /// The daemon is stopping: the status line thread ends.
    stopping: AtomicBool,
}

impl Shared {
    /// Shared state for servers started with `global_args`, of `config`.
    pub fn new(global_args: Vec<OsString>, config: Arc<RwLock<Config>>) -> Shared {
        Shared {
            global_args,
            config,
            generation: Mutex::new(0),
            any_change: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Tell the status line thread to end.
    pub fn stop_status(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.bump();
    }

    /// Has [`Shared::stop_status`] been called?
    pub fn stopping_status(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Wait up to `timeout` for any view's state to change.
    pub fn wait_change(&self, timeout: Duration) {
        let mut generation = self.generation.lock();
        let _ = self.any_change.wait_for(&mut generation, timeout);
    }

    fn bump(&self) {
        *self.generation.lock() += 1;
        self.any_change.notify_all();
    }

    /// Wait until `done` holds (checked after every change) or `timeout`
    /// passes; whether it holds.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut generation = self.generation.lock();
        loop {
            // Checked without the lock: `done` looks at the slots' own.
            let seen = *generation;
            drop(generation);
            if done() {
                return true;
            }
            generation = self.generation.lock();
            if *generation != seen {
                continue;
            }
            if self
                .any_change
                .wait_until(&mut generation, deadline)
                .timed_out()
            {
                drop(generation);
                return done();
            }
        }
    }
}

impl Slot {
    /// A view not yet wanted.
    pub fn new(name: &str) -> Arc<Slot> {
        Arc::new(Slot {
            name: name.to_string(),
            state: Mutex::new(State {
                wanted: false,
                configured: false,
                at: None,
                phase: Phase::Stopped,
                mounted: None,
                error: None,
                attempts: 0,
                restarts: 0,
                retry_now: false,
            }),
            changed: Condvar::new(),
            thread: Mutex::new(None),
        })
    }

    /// A copy of its state.
    pub fn state(&self) -> State {
        self.state.lock().clone()
    }

    /// Change its state with `change`, then wake its supervisor.
    pub fn update<T>(&self, shared: &Shared, change: impl FnOnce(&mut State) -> T) -> T {
        let out = change(&mut self.state.lock());
        self.changed.notify_all();
        shared.bump();
        out
    }

    /// Want it served (at `at`, or where it is wanted already) and start
    /// its supervisor if none runs; a failing view is started now, not at
    /// the end of its backoff.
    pub fn want(self: &Arc<Self>, shared: &Arc<Shared>, at: Option<&Path>) {
        self.update(shared, |state| {
            state.wanted = true;
            state.retry_now = true;
            if at.is_some() {
                state.at = at.map(Path::to_path_buf);
            }
        });
        let mut thread = self.thread.lock();
        if thread.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        if let Some(ended) = thread.take()
            && ended.join().is_err()
        {
            warn!("view {}: its supervisor panicked", self.name);
        }
        let slot = self.clone();
        let for_thread = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("vskel-sv-{}", self.name))
            .spawn(move || slot.supervise(&for_thread));
        match spawned {
            Ok(handle) => *thread = Some(handle),
            Err(e) => {
                let error = format!("no thread to supervise it: {e}");
                warn!("view {}: {error}", self.name);
                drop(thread);
                self.update(shared, |s| {
                    s.wanted = false;
                    s.attempts += 1;
                    s.error = Some(error);
                });
            }
        }
    }

    /// Its supervisor thread, when it has ended (to join), else None.
    pub fn take_thread(&self) -> Option<JoinHandle<()>> {
        self.thread.lock().take()
    }

    /// The supervisor: start, wait, restart while wanted.
    fn supervise(&self, shared: &Shared) {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let at = {
                let mut state = self.state.lock();
                if !state.wanted {
                    state.phase = Phase::Stopped;
                    drop(state);
                    shared.bump();
                    return;
                }
                state.phase = Phase::Starting;
                state.retry_now = false;
                state.at.clone()
            };
            shared.bump();
            // What is wrong with the view itself (missing, not a view,
            // its layers broken) said here, where the server would only
            // log it.
            let checked = crate::vserver::view::open(&shared.config.read(), &self.name);
            let started =
                checked.and_then(|_| child::start(&shared.global_args, &self.name, at.as_deref()));
            let error = match started {
                Ok(server) => match self.serve(shared, server) {
                    Ended::Stop => return,
                    Ended::Died { error, stable } => {
                        if stable {
                            backoff = FIRST_BACKOFF;
                        }
                        self.update(shared, |s| s.restarts += 1);
                        error
                    }
                },
                Err(e) => {
                    // Counted with its error at once: a `mount` waiting
                    // for this attempt reads both.
                    let error = e.to_string();
                    self.update(shared, |s| {
                        s.attempts += 1;
                        s.error = Some(error.clone());
                    });
                    error
                }
            };
            warn!(
                "view {}: {error}; starting it again in {} s",
                self.name,
                backoff.as_secs()
            );
            let until = Instant::now() + backoff;
            self.update(shared, |s| {
                s.error = Some(error);
                s.phase = Phase::Retrying(until);
            });
            let mut state = self.state.lock();
            while state.wanted && !state.retry_now && Instant::now() < until {
                self.changed.wait_until(&mut state, until);
            }
            drop(state);
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Serve with a started server until it ends.
    fn serve(&self, shared: &Shared, server: ChildServer) -> Ended {
        let ChildServer {
            mut process,
            mounted,
            lifeline,
        } = server;
        let pid = mounted.pid;
        info!(
            "view {} mounted at {} (server pid {pid})",
            self.name,
            mounted.mountpoint.display()
        );
        let wanted = self.update(shared, |s| {
            s.phase = Phase::Serving;
            s.mounted = Some(mounted);
            s.error = None;
            s.attempts += 1;
            s.wanted
        });
        // Unwanted while it started: the closed lifeline stops it.
        let mut lifeline = Some(lifeline);
        if !wanted {
            lifeline = None;
        }
        let since = Instant::now();
        let status = process.wait();
        drop(lifeline);
        let stable = since.elapsed() >= STABLE;
        let mut state = self.state.lock();
        state.mounted = None;
        let outcome = if !state.wanted {
            info!("view {}: its server (pid {pid}) exited", self.name);
            state.phase = Phase::Stopped;
            Ended::Stop
        } else {
            match status {
                Ok(status) if status.success() => {
                    info!(
                        "view {} was unmounted outside the daemon; it stays unmounted \
                         until `vskel mount {}`",
                        self.name, self.name
                    );
                    state.wanted = false;
                    state.phase = Phase::Stopped;
                    state.error = Some(
                        "unmounted outside the daemon (not mounted again until `vskel mount`)"
                            .to_string(),
                    );
                    Ended::Stop
                }
                Ok(status) => Ended::Died {
                    error: format!("its server (pid {pid}) ended: {}", describe(status)),
                    stable,
                },
                Err(e) => Ended::Died {
                    error: format!("its server (pid {pid}) could not be waited for: {e}"),
                    stable,
                },
            }
        };
        drop(state);
        self.changed.notify_all();
        shared.bump();
        outcome
    }

    /// Stop wanting it; returns where it is mounted now, if it is.
    pub fn unwant(&self, shared: &Shared) -> Option<PathBuf> {
        self.update(shared, |s| {
            s.wanted = false;
            s.mounted.as_ref().map(|m| m.mountpoint.clone())
        })
    }

    /// Wait up to `timeout` for its supervisor to end; whether it did.
    pub fn wait_stopped(&self, shared: &Shared, timeout: Duration) -> bool {
        shared.wait_for(timeout, || {
            self.thread.lock().as_ref().is_none_or(|t| t.is_finished())
        })
    }

    /// Want it and wait up to `timeout` until it serves (its report) or
    /// its next start fails (the error).
    pub fn start_and_wait(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        at: Option<&Path>,
        timeout: Duration,
    ) -> Result<Mounted> {
        let before = self.state().attempts;
        if let Some(mounted) = self.state().mounted {
            if at.is_some_and(|at| at != mounted.mountpoint) {
                return Err(Error::Usage(format!(
                    "view \"{}\" is mounted at {} already; `vskel unmount {}` first",
                    self.name,
                    mounted.mountpoint.display(),
                    self.name
                )));
            }
            self.want(shared, None);
            return Ok(mounted);
        }
        self.want(shared, at);
        let mut outcome = None;
        shared.wait_for(timeout, || {
            let state = self.state();
            if let Some(mounted) = state.mounted {
                outcome = Some(Ok(mounted));
            } else if state.attempts > before || !state.wanted {
                outcome = Some(Err(state.error.unwrap_or_else(|| "it was stopped".into())));
            }
            outcome.is_some()
        });
        if matches!(outcome, Some(Err(_)) | None) {
            // Asked for by a command, not by the configuration: the error
            // goes to whoever asked, and the daemon does not go on trying
            // (a mistyped name would be retried forever).
            self.update(shared, |s| {
                if !s.configured && s.mounted.is_none() {
                    s.wanted = false;
                }
            });
        }
        match outcome {
            Some(Ok(mounted)) => Ok(mounted),
            Some(Err(error)) => Err(Error::Failed(format!(
                "view \"{}\" could not be mounted: {error}",
                self.name
            ))),
            None => Err(Error::Failed(format!(
                "view \"{}\" was not mounted within {} s",
                self.name,
                timeout.as_secs()
            ))),
        }
    }
}

/// How serving with one server ended.
enum Ended {
    /// Not wanted any more (or unmounted outside the daemon): stop.
    Stop,
    /// Its server died: start it again.
    Died { error: String, stable: bool },
}
