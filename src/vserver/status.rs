//! What each vserver is and, for a view, how it is served: mounted or
//! not, where, by which process, whether its mount is stale (its server
//! gone), and how much its upper layer holds. Read from the registry, the
//! views' pid files and `/proc/self/mountinfo` (through
//! [`super::mount::locate_view`]); the daemon's `status` adds what it
//! knows of the views it serves.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::mount::{ViewMount, locate_view};
use super::registry::{self, Kind, Record};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::ViewDirs;
use crate::mount::stale::{Probe, probe};
use crate::validate::validate_name;

/// Who serves a mounted view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServedBy {
    /// A `vskel mount` server of its own (it holds the view's pid file).
    Lone,
    /// The `vskel daemon` (only the daemon's `status` says so).
    Daemon,
}

/// One vserver's status. The view fields are null for a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsStatus {
    /// The vserver.
    pub name: String,
    /// Tree or view.
    pub kind: Kind,
    /// Its skel.
    pub skel: Option<String>,
    /// `create-vs` has not finished it (or was killed making it).
    pub incomplete: bool,
    /// A view: whether a mount of it is in the mount table (stale or not).
    pub mounted: Option<bool>,
    /// Where it is mounted.
    #[serde(serialize_with = "crate::report_path::option")]
    pub mountpoint: Option<PathBuf>,
    /// Who serves it (null when no live server holds its pid file).
    pub served_by: Option<ServedBy>,
    /// The serving process.
    pub pid: Option<u32>,
    /// Its mount is there but its server is gone (accesses fail with
    /// `ENOTCONN`): `vskel mount` or `vskel unmount --lazy` clears it.
    pub stale: Option<bool>,
    /// Bytes its upper layer takes on disk (`du`-like: each inode's
    /// `st_blocks` once); null when the upper layer is missing.
    pub upper_bytes: Option<u64>,
    /// The view's last error (what looking at it failed with; later also
    /// the daemon's last failure serving it).
    pub error: Option<String>,
}

impl VsStatus {
    /// Vserver `name` of `kind`, nothing else known yet.
    pub fn unknown(name: &str, kind: Kind) -> VsStatus {
        VsStatus {
            name: name.to_string(),
            kind,
            skel: None,
            incomplete: false,
            mounted: None,
            mountpoint: None,
            served_by: None,
            pid: None,
            stale: None,
            upper_bytes: None,
            error: None,
        }
    }
}

/// What `vskel status --format json` prints (and the daemon's `status`
/// answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// One entry per vserver.
    pub vservers: Vec<VsStatus>,
}

/// The status of the registered vservers, or of those `names` names (in
/// that order): an unknown name is a usage error, found before anything
/// is looked at.
pub fn status(config: &Config, names: &[String]) -> Result<Vec<VsStatus>> {
    let records = if names.is_empty() {
        registry::list(config)?
            .into_iter()
            .filter(|r| r.kind != Kind::Unregistered)
            .collect()
    } else {
        names
            .iter()
            .map(|name| named(config, name))
            .collect::<Result<Vec<_>>>()?
    };
    Ok(records.iter().map(|r| of_record(config, r)).collect())
}

fn named(config: &Config, name: &str) -> Result<Record> {
    validate_name("vserver name", name)?;
    match registry::load(config, name)? {
        Some(record) => Ok(record),
        None => Err(Error::Usage(format!(
            "no vserver named \"{name}\"; `vskel list` shows the vservers"
        ))),
    }
}

fn of_record(config: &Config, record: &Record) -> VsStatus {
    let mut status = mount_state(config, record);
    if record.kind != Kind::View {
        return status;
    }
    match upper_bytes(&ViewDirs::new(config, &record.name).upper()) {
        Ok(bytes) => status.upper_bytes = bytes,
        Err(e) => {
            let error = e.to_string();
            status.error = Some(match status.error.take() {
                Some(own) => format!("{own}; {error}"),
                None => error,
            });
        }
    }
    status
}

/// How a view's mount is, without its upper layer's size (cheap enough
/// for `list`): mounted and stale as in [`VsStatus`], None for a tree;
/// what could not be looked at, in `error`.
pub fn mount_state(config: &Config, record: &Record) -> VsStatus {
    let mut status = VsStatus::unknown(&record.name, record.kind);
    status.skel = record.skel.clone();
    status.incomplete = record.creating;
    if record.kind == Kind::View {
        let mut errors = Vec::new();
        match locate_view(config, record) {
            Ok(found) => served(&mut status, found, &mut errors),
            Err(e) => errors.push(e.to_string()),
        }
        status.error = (!errors.is_empty()).then(|| errors.join("; "));
    }
    status
}

/// Fill in how the view is served from what [`locate_view`] found.
fn served(status: &mut VsStatus, found: ViewMount, errors: &mut Vec<String>) {
    status.mounted = Some(found.mountpoint.is_some());
    status.stale = Some(false);
    if found.live {
        status.served_by = Some(ServedBy::Lone);
        status.pid = found.owner.as_ref().and_then(|o| o.pid);
    }
    let Some(mountpoint) = found.mountpoint else {
        return;
    };
    // A live server's mount answers; only one nobody serves is asked
    // (a hung one would make `status` wait).
    if !found.live {
        match probe(&mountpoint) {
            Probe::Dead => status.stale = Some(true),
            Probe::Live => {}
            Probe::Hung => errors.push(format!(
                "the mount at {} does not answer",
                mountpoint.display()
            )),
            Probe::Error(e) => errors.push(format!(
                "the mount at {} fails with: {e}",
                mountpoint.display()
            )),
        }
    }
    status.mountpoint = Some(mountpoint);
}

/// Bytes on disk below `upper` (its `st_blocks * 512`, each inode once),
/// walked without following symlinks (the upper layer is the vserver's to
/// write: hostile); None when `upper` is missing.
pub fn upper_bytes(upper: &Path) -> Result<Option<u64>> {
    let seen = Mutex::new(HashSet::new());
    let tally = super::du::tally(upper, &seen, false, &|_, _| super::du::Share::Own).map_err(
        |e| match e {
            Error::Io {
                action: "open",
                source,
                path,
            } if path.as_os_str() == upper.as_os_str() => {
                Error::io("open the upper layer", upper, source)
            }
            other => other,
        },
    )?;
    Ok(tally.map(|t| t.own))
}
