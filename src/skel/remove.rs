//! `remove-skel`: remove a skel whole (global, local, static, scripts,
//! configfile, generations with their kept trees, global.bak, local.bak,
//! locks), never while something uses it.
//!
//! Refused while any vserver or view vskel has a record of names the skel
//! (they are listed; the caller says which they are, from the vservers'
//! records, which this op layer below them cannot read), and while the skel is merged into its temporary
//! vserver (`split-skel` first). The checks run once before the caller
//! confirms and again under the skel's lifecycle lock (which `merge-skel`
//! and `split-skel` hold), so nothing starts using the skel in between.
//! Still under the lock, the skel's directory is renamed into the staging
//! area, so it vanishes from `<root>/.skel` at once and whole: a run
//! killed after that leaves nothing under the skel's name, and the next
//! command's staging cleanup removes the rest. It is then deleted there,
//! descriptor-relative; immutable files are unlocked for their unlink
//! crash-safely ([`crate::tree::remove`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;

use rustix::fs::FileType;
use serde::Serialize;

use super::{Skel, lifecycle};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::staging::Staging;
use crate::sys;

/// A skel that may be removed: nothing uses it.
#[derive(Debug, Clone)]
pub struct Removable {
    /// The skel.
    pub skel: Skel,
    /// Files (anything but directories) in its directory.
    pub files: u64,
}

/// What `remove-skel` removed.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedSkel {
    /// The skel's name.
    pub name: String,
    /// Its directory, gone now.
    #[serde(serialize_with = "crate::report_path::path")]
    pub path: PathBuf,
    /// Files (anything but directories) removed with it.
    pub files: u64,
}

/// The vservers and views that use a skel, one label each (say
/// `web (tree)`); none: it may go.
pub type Users<'a> = &'a dyn Fn(&Skel) -> Result<Vec<String>>;

/// Check that skel `name` exists and that nothing uses it, and count its
/// files (for a confirmation).
pub fn removable(config: &Config, name: &str, users: Users<'_>) -> Result<Removable> {
    let skel = Skel::named(config, name)?;
    let dir = &skel.dirs.dir;
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Failed(format!(
                "{} is not a directory, so not a skel vskel made; left alone",
                dir.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "no skel named \"{name}\" (looked for {}); `vskel list --skels` shows the skels",
                dir.display()
            )));
        }
        Err(e) => return Err(Error::io("stat", dir, e)),
    }
    refuse_merged(config, &skel)?;
    refuse_users(&skel, users)?;
    let fd = sys::open_root(dir).map_err(|e| Error::io("open", dir, e))?;
    let files = count_files(fd.as_fd()).map_err(|e| Error::io("count the files of", dir, e))?;
    Ok(Removable { skel, files })
}

/// Remove skel `name`: checked ([`removable`]), then `confirm`ed (an
/// error from it stops before anything is written), checked again under
/// the skel's lifecycle lock, moved into the staging area and deleted.
pub fn remove_skel(
    config: &Config,
    name: &str,
    users: Users<'_>,
    confirm: impl FnOnce(&Removable) -> Result<()>,
) -> Result<RemovedSkel> {
    let target = removable(config, name, users)?;
    confirm(&target)?;
    let skel = &target.skel;
    let staging = {
        let _lock = lifecycle::lock(skel)?;
        refuse_merged(config, skel)?;
        refuse_users(skel, users)?;
        let staging = Staging::create(config, &format!("rm-skel-{name}"))?;
        std::fs::rename(&skel.dirs.dir, staging.path().join("skel"))
            .map_err(|e| Error::io("move out of the skels directory", &skel.dirs.dir, e))?;
        staging
    };
    staging.discard()?;
    Ok(RemovedSkel {
        name: skel.name.clone(),
        path: skel.dirs.dir.clone(),
        files: target.files,
    })
}

/// Refuse a skel merged into its temporary vserver (or whose temporary
/// vserver's tree is there).
pub(super) fn refuse_merged(config: &Config, skel: &Skel) -> Result<()> {
    let temp_name = Layout::temp_vserver_name(&skel.name);
    let temp = Layout::new(config).vserver(&temp_name);
    if lifecycle::exists(&skel.dirs.merged_marker())? || lifecycle::exists(&temp)? {
        return Err(Error::Failed(format!(
            "skel {name} is merged into its temporary vserver {temp_name} ({}): \
             `vskel split-skel {name}` first (it keeps or drops the package work done there), \
             then remove the skel",
            temp.display(),
            name = skel.name
        )));
    }
    Ok(())
}

/// Refuse a skel that `users` says is in use.
fn refuse_users(skel: &Skel, users: Users<'_>) -> Result<()> {
    let users = users(skel)?;
    if users.is_empty() {
        return Ok(());
    }
    Err(Error::Failed(format!(
        "skel {} is used by {} vserver{}: {}; remove {} first (`vskel remove-vs NAME`)",
        skel.name,
        users.len(),
        if users.len() == 1 { "" } else { "s" },
        users.join(", "),
        if users.len() == 1 { "it" } else { "them" },
    )))
}

/// Everything but directories below `dir`, not following symlinks.
fn count_files(dir: BorrowedFd<'_>) -> std::io::Result<u64> {
    let mut n = 0;
    for entry in sys::read_dir(dir)? {
        let file_type = match entry.file_type {
            FileType::Unknown => {
                FileType::from_raw_mode(sys::stat_at(dir, &entry.name)?.st_mode as _)
            }
            t => t,
        };
        if file_type == FileType::Directory {
            n += count_files(sys::open_subdir(dir, &entry.name)?.as_fd())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}
