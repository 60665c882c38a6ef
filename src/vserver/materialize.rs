//! `vskel materialize`: sync a view, then retire it, so the vserver is an
//! ordinary on-disk tree from then on.
//!
//! It holds the vserver's lock throughout (no sync, create-vs or remove-vs
//! of it runs meanwhile). Order, each step idempotent and each crash point
//! one the next `materialize` (or `remove-vs`) completes:
//! 1. unmount the view if it is mounted (so the sync sees a view nobody
//!    writes to);
//! 2. sync (itself crash-safe: the old tree or the new);
//! 3. point the context link at the tree (killed after this, the vserver
//!    is still a view whose link points at its synced tree: a rerun syncs
//!    nothing new and goes on);
//! 4. record the vserver as a tree;
//! 5. remove the view's sync state and `.views/NAME`.
//!
//! A rerun that finds the record saying "tree" while `.views/NAME` is
//! still there (killed after step 4, or after an older vskel saved the
//! record before relinking) does steps 3 and 5 again, with a warning.

use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use super::context;
use super::mount::SERVER_EXIT_WAIT;
use super::registry::{self, Kind, Record};
use super::sync::{SyncedView, sync_view_holding};
use super::view::{self, ViewDirs};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::mount::stale::unmount;
use crate::mount::{PidFile, mount_at, wait_for_exit};
use crate::progress::Progress;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::validate::validate_name;

/// What `materialize` did.
#[derive(Debug, Clone, Serialize)]
pub struct Materialized {
    /// The sync (none when an interrupted materialize was finished: its
    /// sync had completed).
    pub sync: Option<SyncedView>,
    /// The vserver.
    pub name: String,
    /// Its tree.
    #[serde(serialize_with = "crate::report_path::path")]
    pub root: PathBuf,
    /// The mount point unmounted first, if the view was mounted.
    #[serde(serialize_with = "crate::report_path::option")]
    pub unmounted: Option<PathBuf>,
    /// The view directory removed.
    #[serde(serialize_with = "crate::report_path::path")]
    pub view_dir: PathBuf,
    /// An interrupted materialize was finished.
    pub resumed: bool,
}

/// The report as one line of text, as `vskel materialize` prints it.
impl std::fmt::Display for Materialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done = self;
        let unmounted = done
            .unmounted
            .as_ref()
            .map(|m| format!(" (unmounted {} first)", m.display()))
            .unwrap_or_default();
        match &done.sync {
            Some(sync) => write!(
                f,
                "materialized {} into {}{unmounted}: {} entries hard-linked to the skel, {} \
                 copied; removed {}",
                done.name,
                done.root.display(),
                sync.tree.counts.linked,
                sync.tree.counts.copied,
                done.view_dir.display()
            ),
            None => write!(
                f,
                "finished the interrupted materialize of {} into {}{unmounted}: removed {}",
                done.name,
                done.root.display(),
                done.view_dir.display()
            ),
        }
    }
}

/// Make view vserver `name` an on-disk tree.
pub fn materialize(config: &Config, name: &str, progress: &Progress) -> Result<Materialized> {
    validate_name("vserver name", name)?;
    let dirs = ViewDirs::new(config, name);
    // Refuse anything but a view (a tree, an unknown name) with a clear
    // error before taking the lock; again under it.
    let interrupted = |record: Option<&Record>| {
        record.is_some_and(|r| r.kind == Kind::Tree) && dirs.dir.symlink_metadata().is_ok()
    };
    if !interrupted(registry::load(config, name)?.as_ref()) {
        view::open(config, name)?;
    }
    let state = StateFiles::new(config, name);
    let lock = state.lock()?;
    let record = registry::load(config, name)?;
    if let Some(record) = record.filter(|r| interrupted(Some(r))) {
        warn!("finishing an interrupted materialize of {name}");
        let unmounted = unmount_view(&dirs)?;
        let tree = Layout::new(config).vserver(name);
        if !tree.is_dir() {
            return Err(Error::Failed(format!(
                "vserver {name} is recorded as a tree at {} but has none, while its view \
                 {} is still there; fix the record by hand or `vskel remove-vs {name}`",
                tree.display(),
                dirs.dir.display()
            )));
        }
        retire_view(config, &record, &tree, &dirs, &state)?;
        return Ok(Materialized {
            sync: None,
            name: name.to_string(),
            root: tree,
            unmounted,
            view_dir: dirs.dir,
            resumed: true,
        });
    }
    view::open(config, name)?;
    let unmounted = unmount_view(&dirs)?;
    let sync = sync_view_holding(config, name, false, progress, Some(&lock))?;

    let mut record = registry::load(config, name)?
        .ok_or_else(|| Error::Failed(format!("the record of {name} vanished during the sync")))?;
    if let Some(id) = record.context {
        context::relink(&Layout::new(config).contexts(), id, &sync.tree.root)?;
    }
    record.kind = Kind::Tree;
    record.root = sync.tree.root.clone();
    record.post_create_pending = false;
    registry::save(config, &record)?;
    retire_view(config, &record, &sync.tree.root, &dirs, &state)?;
    info!("view {name} materialized into {}", sync.tree.root.display());
    Ok(Materialized {
        name: name.to_string(),
        root: sync.tree.root.clone(),
        sync: Some(sync),
        unmounted,
        view_dir: dirs.dir,
        resumed: false,
    })
}

/// Steps 3 (again: idempotent) and 5: the context link points at `tree`,
/// the sync state and the view directory go.
fn retire_view(
    config: &Config,
    record: &Record,
    tree: &Path,
    dirs: &ViewDirs,
    state: &StateFiles,
) -> Result<()> {
    if let Some(id) = record.context {
        context::relink(&Layout::new(config).contexts(), id, tree)?;
    }
    // The tree follows no view any more: its sync state goes.
    state.remove_sync_state()?;
    let trash = Staging::create(config, &format!("rm-view-{}", record.name))?;
    std::fs::rename(&dirs.dir, trash.path().join("view"))
        .map_err(|e| Error::io("move out of the views directory", &dirs.dir, e))?;
    trash.discard()?;
    state.remove_lock_file()
}

/// Unmount the view if it is mounted (where its server's pid file says,
/// or at its default mount point) and wait for the server to exit.
fn unmount_view(dirs: &ViewDirs) -> Result<Option<PathBuf>> {
    let holder = PidFile::read(&dirs.pid_file())?;
    let mountpoint = holder
        .as_ref()
        .and_then(|(h, _)| h.mountpoint.clone())
        .unwrap_or_else(|| dirs.merged());
    if mount_at(&mountpoint)?.is_none_or(|m| !m.is_fuse()) {
        return Ok(None);
    }
    unmount(&mountpoint, false)?;
    if let Some(pid) = holder.and_then(|(h, live)| h.pid.filter(|_| live))
        && !wait_for_exit(pid, SERVER_EXIT_WAIT)?
    {
        return Err(Error::Failed(format!(
            "the view's server (pid {pid}) has not exited {} s after the unmount; \
             nothing was synced",
            SERVER_EXIT_WAIT.as_secs()
        )));
    }
    Ok(Some(mountpoint))
}
