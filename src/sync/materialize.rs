//! `vskel materialize`: sync a view, then retire it, so the vserver is an
//! ordinary on-disk tree from then on.
//!
//! Order, each step safe to be interrupted after: unmount the view if it
//! is mounted (so the flatten sees a view nobody writes to); sync; record
//! the vserver as a tree and point its context link at the tree; remove
//! `.views/NAME`. A leftover view directory after a crash is removed by
//! `vskel remove-vs` or a second `materialize`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tracing::info;

use super::{Synced, sync_view};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::staging::Staging;
use crate::view::mountpoint::{PidFile, mount_at, unmount, wait_for_exit};
use crate::vserver::registry::{self, Kind};
use crate::vserver::view::{self, ViewDirs};

/// How long to wait for a view's server to exit after unmounting it.
const SERVER_EXIT_WAIT: Duration = Duration::from_secs(10);

/// What `materialize` did.
#[derive(Debug, Clone, Serialize)]
pub struct Materialized {
    /// The sync.
    pub sync: Synced,
    /// The mount point unmounted first, if the view was mounted.
    pub unmounted: Option<PathBuf>,
    /// The view directory removed.
    pub view_dir: PathBuf,
}

/// Make view vserver `name` an on-disk tree.
pub fn materialize(config: &Config, name: &str, progress: &Progress) -> Result<Materialized> {
    // Refuses anything but a view (a tree, an unknown name) with a clear error.
    view::open(config, name)?;
    let dirs = ViewDirs::new(config, name);
    let unmounted = unmount_view(&dirs)?;
    let sync = sync_view(config, name, false, progress)?;

    let mut record = registry::load(config, name)?
        .ok_or_else(|| Error::Failed(format!("the record of {name} vanished during the sync")))?;
    record.kind = Kind::Tree;
    record.root = sync.root.clone();
    record.post_create_pending = false;
    registry::save(config, &record)?;
    if let Some(id) = record.context {
        relink_context(config, id, &sync.root)?;
    }
    let trash = Staging::create(config, &format!("rm-view-{name}"))?;
    std::fs::rename(&dirs.dir, trash.path().join("view"))
        .map_err(|e| Error::io("move out of the views directory", &dirs.dir, e))?;
    trash.discard()?;
    // The tree follows no view any more: its sync state goes.
    super::state::StateFiles::new(config, name).remove_all()?;
    info!("view {name} materialized into {}", sync.root.display());
    Ok(Materialized {
        sync,
        unmounted,
        view_dir: dirs.dir,
    })
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

/// Point `<etc>/contexts/<id>` at `tree` (replacing the link atomically).
fn relink_context(config: &Config, id: u32, tree: &std::path::Path) -> Result<()> {
    let link = config.contexts_dir().join(id.to_string());
    let tmp = config
        .contexts_dir()
        .join(format!(".{id}.new{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(tree, &tmp).map_err(|e| Error::io("symlink", &tmp, e))?;
    std::fs::rename(&tmp, &link).map_err(|e| Error::io("replace", &link, e))?;
    Ok(())
}
