//! The views the daemon looks after, by name: which the configuration
//! asks for (`[daemon] views`, applied at start and on every reload), which
//! were mounted on request, and the commands on them (`mount`, `unmount`,
//! stopping all at shutdown) that the control socket's handler calls.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::{info, warn};

use super::child::READY_TIMEOUT;
use super::supervisor::{Phase, Shared, Slot, State};
use crate::config::{Config, DaemonViews};
use crate::error::{Error, Result};
use crate::mount::MountError;
use crate::vserver::mount::{Mounted, SERVER_EXIT_WAIT, Unmounted};
use crate::vserver::registry::{self, Kind};

/// The daemon's views.
#[derive(Debug)]
pub struct Views {
    shared: Arc<Shared>,
    slots: Mutex<BTreeMap<String, Arc<Slot>>>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// Views the configuration asks for now that it did not before.
    pub added: Vec<String>,
    /// Views it no longer asks for (stopped).
    pub removed: Vec<String>,
}

impl Views {
    /// No views yet; servers start with `shared`'s global options.
    pub fn new(shared: Arc<Shared>) -> Views {
        Views {
            shared,
            slots: Mutex::new(BTreeMap::new()),
        }
    }

    /// What every supervisor shares.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The slot of `name`, made if new.
    fn slot(&self, name: &str) -> Arc<Slot> {
        self.slots
            .lock()
            .entry(name.to_string())
            .or_insert_with(|| Slot::new(name))
            .clone()
    }

    /// The slot of `name` if the daemon knows the view.
    pub fn get(&self, name: &str) -> Option<Arc<Slot>> {
        self.slots.lock().get(name).cloned()
    }

    /// Every view's name and state.
    pub fn states(&self) -> Vec<(String, State)> {
        let slots: Vec<Arc<Slot>> = self.slots.lock().values().cloned().collect();
        slots
            .iter()
            .map(|slot| (slot.name.clone(), slot.state()))
            .collect()
    }

    /// The views `config` asks for: `["*"]` is every registered view now.
    fn configured(config: &Config) -> Result<Vec<String>> {
        Ok(match &config.daemon.views {
            DaemonViews::All => registry::list(config)?
                .into_iter()
                .filter(|r| r.kind == Kind::View)
                .map(|r| r.name)
                .collect(),
            DaemonViews::Named(names) => names.clone(),
        })
    }

    /// Serve the views `config` asks for and stop those it no longer asks
    /// for (views mounted on request stay); returns what changed.
    pub fn apply(&self, config: &Config) -> Result<Applied> {
        let wanted = Self::configured(config)?;
        let mut applied = Applied::default();
        for name in &wanted {
            let slot = self.slot(name);
            let newly = slot.update(&self.shared, |s| {
                let newly = !s.configured;
                s.configured = true;
                newly
            });
            if newly {
                applied.added.push(name.clone());
                if slot.state().phase == Phase::Stopped || !slot.state().wanted {
                    slot.want(&self.shared, None);
                }
            }
        }
        let gone: Vec<Arc<Slot>> = self
            .slots
            .lock()
            .values()
            .filter(|slot| !wanted.contains(&slot.name))
            .cloned()
            .collect();
        for slot in gone {
            let was = slot.update(&self.shared, |s| {
                std::mem::replace(&mut s.configured, false)
            });
            if was {
                applied.removed.push(slot.name.clone());
                if let Err(e) = self.stop(&slot, StopHow::Shutdown) {
                    warn!("view {}: {e}", slot.name);
                }
            }
        }
        Ok(applied)
    }

    /// Wait up to `timeout` until every wanted view was tried once
    /// (served or failed); whether all were.
    pub fn wait_all_tried(&self, timeout: Duration) -> bool {
        self.shared.wait_for(timeout, || {
            self.states()
                .iter()
                .all(|(_, s)| !s.wanted || s.attempts > 0)
        })
    }

    /// Mount view `name` (at `at`, or its default mount point) and keep it
    /// mounted; returns once it is live.
    pub fn mount(&self, name: &str, at: Option<&Path>) -> Result<Mounted> {
        crate::validate::validate_name("vserver name", name)?;
        self.slot(name)
            .start_and_wait(&self.shared, at, READY_TIMEOUT + Duration::from_secs(5))
    }

    /// Unmount view `name` and stop looking after it (until mounted
    /// again); busy, it is refused unless `lazy`. A view the daemon does
    /// not serve is unmounted as `vskel unmount` would.
    pub fn unmount(&self, config: &Config, target: &str, lazy: bool) -> Result<Unmounted> {
        let Some(slot) = self.get(target).filter(|s| s.state().wanted) else {
            return crate::vserver::mount::unmount(config, target, lazy);
        };
        let how = if lazy { StopHow::Lazy } else { StopHow::Plain };
        match self.stop(&slot, how) {
            Ok(report) => Ok(report),
            Err(e) => {
                // Busy: it still serves, and stays looked after.
                slot.want(&self.shared, None);
                Err(e)
            }
        }
    }

    /// Stop view `slot` (see [`StopHow`]); a view mounted is unmounted and
    /// its server waited for.
    fn stop(&self, slot: &Arc<Slot>, how: StopHow) -> Result<Unmounted> {
        let server_pid = slot.state().mounted.map(|m| m.pid);
        let mountpoint = slot.unwant(&self.shared);
        let mut lazy = how == StopHow::Lazy;
        if let Some(mountpoint) = &mountpoint {
            match crate::mount::stale::unmount(mountpoint, lazy) {
                Ok(()) => {}
                Err(Error::Mount(MountError::Busy { .. })) if how == StopHow::Shutdown => {
                    warn!(
                        "view {}: {} is busy; detaching it lazily (it goes when its last \
                         user leaves)",
                        slot.name,
                        mountpoint.display()
                    );
                    lazy = true;
                    if let Err(e) = crate::mount::stale::unmount(mountpoint, true) {
                        warn!("view {}: {e}", slot.name);
                    }
                }
                // Gone already (its server died): nothing to unmount.
                Err(Error::Mount(MountError::NotAMountPoint { .. })) => {}
                Err(e) => return Err(e),
            }
        }
        let wait = if lazy {
            Duration::from_secs(1)
        } else {
            SERVER_EXIT_WAIT
        };
        let exited = slot.wait_stopped(&self.shared, wait);
        if let Some(handle) = slot.take_thread().filter(|h| h.is_finished())
            && handle.join().is_err()
        {
            warn!("view {}: its supervisor panicked", slot.name);
        }
        if !exited && !lazy {
            warn!(
                "view {}: its server has not exited {} s after the unmount",
                slot.name,
                wait.as_secs()
            );
        }
        info!("view {} stopped", slot.name);
        Ok(Unmounted {
            name: Some(slot.name.clone()),
            mountpoint: mountpoint.unwrap_or_default(),
            lazy,
            server_pid,
            server_exited: server_pid.map(|_| exited),
        })
    }

    /// Stop wanting view `name` without unmounting it (materialize
    /// unmounts it itself); None when the daemon does not serve it.
    pub fn release(&self, name: &str) -> Option<Arc<Slot>> {
        let slot = self.get(name).filter(|s| s.state().wanted)?;
        slot.unwant(&self.shared);
        Some(slot)
    }

    /// Stop every view (shutdown): each unmounted, a busy one detached
    /// lazily with a warning.
    pub fn stop_all(&self) {
        let slots: Vec<Arc<Slot>> = self.slots.lock().values().cloned().collect();
        // In parallel: each waits for its own server to exit.
        std::thread::scope(|scope| {
            for slot in &slots {
                let state = slot.state();
                if !state.wanted && state.mounted.is_none() {
                    continue;
                }
                scope.spawn(move || {
                    if let Err(e) = self.stop(slot, StopHow::Shutdown) {
                        warn!("view {}: {e}", slot.name);
                    }
                });
            }
        });
    }
}

/// How to stop a view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopHow {
    /// Unmount; busy is an error.
    Plain,
    /// Detach now; it goes when its last user leaves.
    Lazy,
    /// Unmount; busy, detach lazily with a warning.
    Shutdown,
}
