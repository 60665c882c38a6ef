//! `remove-vs`: remove a vserver's tree (or view directory), config file,
//! context link and record; never the skel's inodes (shared files lose one
//! name, nothing more).
//!
//! A view is refused while it is mounted; a stale mount left by a dead
//! server is cleared first, with a warning.
//!
//! It holds the vserver's lock (the one `sync` takes), so it never runs
//! during a sync, materialize or create-vs of the same vserver. A
//! directory without a record (not made by vskel, or not a vserver at
//! all) is refused unless `--force-unregistered` says to remove it.
//!
//! The tree is first renamed into the staging area, so it vanishes from
//! `<root>` at once and whole; then it is deleted there, descriptor-relative
//! (a symlink planted inside cannot redirect the deletion). The record
//! goes last: a run killed half-way leaves it, and the next `remove-vs`
//! finishes (the staging entry goes with the next run's staging cleanup).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::context::find_links;
use super::registry::{self, Record};
use super::view::{ViewDirs, fsname};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{ContextFiles, Layout};
use crate::mount::stale::{clear_below, clear_if_stale};
use crate::mount::{PidFile, PidOwner};
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::validate::validate_name;

/// Refuse to remove a view that is being served or is mounted anywhere
/// below its directory; clear stale mounts (with a warning) there and
/// where a crashed server's pid file says it was mounted.
fn refuse_mounted_view(view: &ViewDirs, name: &str, skel: Option<&str>) -> Result<()> {
    match PidFile::read(&view.pid_file())? {
        Some((holder, true)) => {
            let at = holder
                .mountpoint
                .map(|m| format!(" at {}", m.display()))
                .unwrap_or_default();
            let pid = holder
                .pid
                .map(|p| format!(" (server pid {p})"))
                .unwrap_or_default();
            return Err(Error::Failed(format!(
                "view \"{name}\" is mounted{at}{pid}; `vskel unmount {name}` first, \
                 then remove it"
            )));
        }
        Some((
            PidOwner {
                mountpoint: Some(old),
                ..
            },
            false,
        )) => {
            if let Some(skel) = skel {
                clear_if_stale(&old, &fsname(skel, name))?;
            }
        }
        _ => {}
    }
    clear_below(&view.dir, &format!("view \"{name}\""))
}

/// What `remove-vs` removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// The vserver's name.
    pub name: String,
    /// Its tree, if it had one.
    #[serde(serialize_with = "crate::report_path::option")]
    pub root: Option<PathBuf>,
    /// Its view directory (`<root>/.views/<name>`), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::report_path::option")]
    pub view_dir: Option<PathBuf>,
    /// Its config file, if it had one.
    #[serde(serialize_with = "crate::report_path::option")]
    pub config_file: Option<PathBuf>,
    /// Its context ID, if it had a link.
    pub context: Option<u32>,
}

/// Remove the vserver `name`. A directory `<root>/<name>` (or
/// `<root>/.views/<name>`) that is no vserver vskel made (it has no
/// record) is refused unless `force_unregistered` says to remove it.
pub fn remove_vs(config: &Config, name: &str, force_unregistered: bool) -> Result<Removed> {
    validate_name("vserver name", name)?;
    crate::skel::lifecycle::refuse_temp_vserver(config, name)?;
    // Refuse what there is nothing to do for, or must not be done, before
    // taking the lock (which writes its file): then once more under it.
    refuse(config, name, force_unregistered)?;
    let state = StateFiles::new(config, name);
    let _lock = state.lock()?;
    let record = refuse(config, name, force_unregistered)?;
    let removed = remove_locked(config, name, record.as_ref())?;
    state.remove_lock_file()?;
    Ok(removed)
}

/// The record of `name`, or the reason not to remove it.
fn refuse(config: &Config, name: &str, force_unregistered: bool) -> Result<Option<Record>> {
    let record = registry::load(config, name)?;
    let parts = Parts::of(config, name, record.as_ref());
    if record.is_some() {
        if force_unregistered {
            return Err(Error::Usage(format!(
                "vserver \"{name}\" is registered; remove it without --force-unregistered"
            )));
        }
        return Ok(record);
    }
    let dirs: Vec<&PathBuf> = [
        parts.tree.as_ref().filter(|_| parts.has_tree),
        Some(&parts.view.dir).filter(|_| parts.has_view),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !dirs.is_empty() && !force_unregistered {
        let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
        return Err(Error::Usage(format!(
            "{} is not a vserver vskel made (there is no record of \"{name}\" in {}), so \
             remove-vs leaves it alone; if it is a vserver tree to delete with everything in \
             it, `vskel remove-vs --force-unregistered {name}` does",
            list.join(" and "),
            registry::records_dir(config).display()
        )));
    }
    if let Some(tree) = parts
        .tree
        .as_ref()
        .filter(|_| parts.has_tree && force_unregistered)
        && !tree.symlink_metadata().is_ok_and(|m| m.is_dir())
    {
        return Err(Error::Usage(format!(
            "{} is not a directory; --force-unregistered removes only a vserver tree",
            tree.display()
        )));
    }
    if dirs.is_empty() && !parts.has_conf && parts.contexts.is_empty() {
        return Err(Error::Usage(format!(
            "no vserver named \"{name}\" ({} does not exist); `vskel list` shows the vservers",
            Layout::new(config).vserver(name).display()
        )));
    }
    Ok(None)
}

/// What a vserver has on disk.
struct Parts {
    /// `<root>/<name>`.
    tree: Option<PathBuf>,
    has_tree: bool,
    view: ViewDirs,
    has_view: bool,
    conf: PathBuf,
    has_conf: bool,
    /// The context IDs whose links point at one of its roots.
    contexts: Vec<u32>,
}

impl Parts {
    fn of(config: &Config, name: &str, record: Option<&Record>) -> Parts {
        let tree = Layout::new(config).vserver(name);
        let view = ViewDirs::new(config, name);
        let conf = Layout::new(config).vserver_conf(name);
        let roots = registry::roots_of(config, name);
        let mut roots: Vec<&Path> = roots.iter().map(PathBuf::as_path).collect();
        if let Some(r) = record {
            roots.push(&r.root);
        }
        let contexts = find_links(&Layout::new(config).contexts(), &roots);
        Parts {
            has_tree: tree.symlink_metadata().is_ok(),
            tree: Some(tree),
            has_view: view.dir.symlink_metadata().is_ok(),
            view,
            has_conf: conf.symlink_metadata().is_ok(),
            conf,
            contexts,
        }
    }
}

/// Remove what vserver `name` has, its lock held: tree and view directory
/// (moved out of sight first, whole), every context link to its roots,
/// its config file and sync state, and last its record, so that a run
/// killed half-way leaves the record and a second run finishes the job.
/// The lock file stays (the caller may go on under the lock).
pub(crate) fn remove_locked(
    config: &Config,
    name: &str,
    record: Option<&Record>,
) -> Result<Removed> {
    let parts = Parts::of(config, name, record);
    if parts.has_view {
        refuse_mounted_view(&parts.view, name, record.and_then(|r| r.skel.as_deref()))?;
    }
    let trash = if parts.has_tree || parts.has_view {
        Some(Staging::create(config, &format!("rm-{name}"))?)
    } else {
        // What an interrupted remove-vs was deleting may still be there.
        Staging::remove_abandoned(config)?;
        None
    };
    if let Some(trash) = &trash {
        if let Some(tree) = parts.tree.as_ref().filter(|_| parts.has_tree) {
            std::fs::rename(tree, trash.path().join("tree"))
                .map_err(|e| Error::io("move out of the vservers root", tree, e))?;
        }
        if parts.has_view {
            std::fs::rename(&parts.view.dir, trash.path().join("view"))
                .map_err(|e| Error::io("move out of the views directory", &parts.view.dir, e))?;
        }
    }
    let contexts = Layout::new(config).contexts();
    for id in &parts.contexts {
        let link = ContextFiles::new(&contexts).link(*id);
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &link, e)),
        }
    }
    if parts.has_conf {
        std::fs::remove_file(&parts.conf).map_err(|e| Error::io("remove", &parts.conf, e))?;
    }
    if let Some(trash) = trash {
        trash.discard()?;
    }
    StateFiles::new(config, name).remove_sync_state()?;
    registry::remove(config, name)?;
    Ok(Removed {
        name: name.to_string(),
        root: parts.tree.filter(|_| parts.has_tree),
        view_dir: parts.has_view.then_some(parts.view.dir),
        config_file: parts.has_conf.then_some(parts.conf),
        context: record
            .and_then(|r| r.context)
            .filter(|id| parts.contexts.contains(id))
            .or_else(|| parts.contexts.first().copied()),
    })
}
