//! `remove-vs`: remove a vserver's tree (or view directory), config file,
//! context link and record; never the skel's inodes (shared files lose one
//! name, nothing more).
//!
//! A view is refused while it is mounted; a stale mount left by a dead
//! server is cleared first, with a warning.
//!
//! The tree is first renamed into the staging area, so it vanishes from
//! `<root>` at once and whole; then it is deleted there, descriptor-relative
//! (a symlink planted inside cannot redirect the deletion).

use std::path::PathBuf;

use serde::Serialize;

use super::context::find_link;
use super::registry::{self, Kind};
use super::view::{ViewDirs, fsname};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::staging::Staging;
use crate::validate::validate_name;
use crate::view::mountpoint::{Holder, PidFile, clear_below, clear_if_stale};

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
            Holder {
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
    pub root: Option<PathBuf>,
    /// Its view directory (`<root>/.views/<name>`), if it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view_dir: Option<PathBuf>,
    /// Its config file, if it had one.
    pub config_file: Option<PathBuf>,
    /// Its context ID, if it had a link.
    pub context: Option<u32>,
}

/// Remove the vserver `name`.
pub fn remove_vs(config: &Config, name: &str) -> Result<Removed> {
    validate_name("vserver name", name)?;
    let record = registry::load(config, name)?;
    let root = config.vserver_dir(name);
    let view = ViewDirs::new(config, name);
    // A view's context link points at its merged/ directory.
    let linked_root = match &record {
        Some(r) if r.kind == Kind::View => r.root.clone(),
        _ => root.clone(),
    };
    let conf = config.vserver_conf(name);
    let contexts = config.contexts_dir();
    let context = record
        .as_ref()
        .and_then(|r| r.context)
        .filter(|id| {
            std::fs::read_link(contexts.join(id.to_string())).ok() == Some(linked_root.clone())
        })
        .or_else(|| find_link(&contexts, &linked_root));
    let has_tree = root.symlink_metadata().is_ok();
    let has_view = view.dir.symlink_metadata().is_ok();
    let has_conf = conf.symlink_metadata().is_ok();
    if !has_tree && !has_view && !has_conf && record.is_none() && context.is_none() {
        return Err(Error::Usage(format!(
            "no vserver named \"{name}\" ({} does not exist); `vskel list` shows the vservers",
            root.display()
        )));
    }

    if has_view {
        refuse_mounted_view(&view, name, record.as_ref().and_then(|r| r.skel.as_deref()))?;
    }
    let trash = if has_tree || has_view {
        Some(Staging::create(config, &format!("rm-{name}"))?)
    } else {
        None
    };
    if let Some(trash) = &trash {
        if has_tree {
            std::fs::rename(&root, trash.path().join("tree"))
                .map_err(|e| Error::io("move out of the vservers root", &root, e))?;
        }
        if has_view {
            std::fs::rename(&view.dir, trash.path().join("view"))
                .map_err(|e| Error::io("move out of the views directory", &view.dir, e))?;
        }
    }
    if let Some(id) = context {
        let link = contexts.join(id.to_string());
        std::fs::remove_file(&link).map_err(|e| Error::io("remove", &link, e))?;
    }
    if has_conf {
        std::fs::remove_file(&conf).map_err(|e| Error::io("remove", &conf, e))?;
    }
    crate::sync::state::StateFiles::new(config, name).remove_all()?;
    registry::remove(config, name)?;
    if let Some(trash) = trash {
        trash.discard()?;
    }
    Ok(Removed {
        name: name.to_string(),
        root: has_tree.then_some(root),
        view_dir: has_view.then_some(view.dir),
        config_file: has_conf.then_some(conf),
        context,
    })
}
