//! Protection of shared inodes (config `protect`).
//!
//! * `none`: nothing.
//! * `immutable`: `chattr +i` on every regular file of a skel's global
//!   tree. Linux refuses to link or unlink an immutable inode, so vskel
//!   unlocks it for exactly that call (see `tree::copy` and `tree::remove`),
//!   crash-safely: [`crate::tree::unlock`] records that a run lifts flags
//!   before it lifts one, and [`recover`], run at the start of every
//!   command, sets again what a killed run left lifted. [`skel_protection`]
//!   counts the global files that lack the flag (`vskel list --skels`).
//! * `iunlink`: Linux-VServer's immutable-unlink attribute (a file may be
//!   unlinked and linked, not changed), set with util-vserver's `setattr
//!   --iunlink`. It needs a Linux-VServer kernel (`/proc/virtual`); without
//!   one vskel refuses up front.
//!
//! Under either protection only regular files are shared by hard link:
//! [`shared_by_link`] is the one rule every place that puts a global entry
//! into a vserver's tree follows (create-vs, sync, upgrade-vs, unify,
//! repair, verify).

use parking_lot::Mutex;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::FileType;
use serde::Serialize;
use tracing::{debug, warn};

use crate::config::VSERVER_PROC;
use crate::config::{Config, Protect};
use crate::error::{Error, Result};
use crate::generation::Kind;
use crate::layout::Layout;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::unlock::{self, Scan, Session};
use crate::tree::walk::par_walk;

/// Files lacking the flag named in a warning.
const SHOWN_LACKING: usize = 3;

/// util-vserver's attribute tool.
const SETATTR: &str = "setattr";
/// Files handed to one `setattr` run.
const SETATTR_BATCH: usize = 512;

/// Is a global entry of `kind` shared by hard link between the skel and
/// its tree vservers under `protect`? Directories never are; the rest as
/// [`Protect::shares_by_link`] says (under protection, regular files
/// only: Linux has no immutable or immutable-unlink attribute for a
/// symlink, device node, FIFO or socket, so each vserver gets its own
/// copy of those, with the skel entry's target or device number, mode,
/// owner, times and xattrs: a few hundred tiny inodes on a Debian
/// minbase, changed with the skel only through `upgrade-vs`).
pub fn shared_by_link(protect: Protect, kind: Kind) -> bool {
    kind != Kind::Dir && protect.shares_by_link(kind == Kind::File)
}

/// Refuse a protection mode this machine cannot give.
pub fn check_supported(protect: Protect) -> Result<()> {
    if protect == Protect::Iunlink && !Path::new(VSERVER_PROC).exists() {
        return Err(Error::Failed(format!(
            "protect = \"iunlink\" needs a Linux-VServer kernel, and this kernel has none \
             ({VSERVER_PROC} is missing); set protect = \"immutable\" or \"none\" in the config"
        )));
    }
    Ok(())
}

/// Protect every regular file below `tree` as `protect` says; returns how
/// many files were protected.
pub fn protect_tree(tree: &TreeRoot, protect: Protect) -> Result<u64> {
    match protect {
        Protect::None => Ok(0),
        Protect::Immutable => {
            let files = regular_files(tree)?;
            for (dir_rel, name) in &files {
                let dir = tree.open_dir(dir_rel)?;
                let rel = dir_rel.join(sys::os_name(name));
                let file = sys::open_file_read(dir.as_fd(), name)
                    .map_err(|e| Error::io("open", tree.display(&rel), e))?;
                sys::set_immutable(file.as_fd(), true).map_err(|e| {
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOTTY | libc::EOPNOTSUPP | libc::EINVAL)
                    ) {
                        Error::Failed(format!(
                            "{}: this filesystem has no immutable attribute ({e}), which \
                             protect = \"immutable\" (the default) needs: put the vservers root \
                             on ext4, xfs or btrfs, or set protect = \"none\" in the config \
                             (every vserver's root can then change the files it shares)",
                            tree.display(&rel).display()
                        ))
                    } else {
                        Error::io("set immutable attribute", tree.display(&rel), e)
                    }
                })?;
            }
            Ok(files.len() as u64)
        }
        Protect::Iunlink => {
            check_supported(protect)?;
            let files = regular_files(tree)?;
            let paths: Vec<PathBuf> = files
                .iter()
                .map(|(dir, name)| tree.display(&dir.join(sys::os_name(name))))
                .collect();
            for batch in paths.chunks(SETATTR_BATCH) {
                let status = Command::new(SETATTR)
                    .arg("--iunlink")
                    .arg("--")
                    .args(batch)
                    .status()
                    .map_err(|e| Error::io("run", SETATTR, e))?;
                if !status.success() {
                    return Err(Error::Failed(format!(
                        "`{SETATTR} --iunlink` failed ({status}) on files of {}",
                        tree.path().display()
                    )));
                }
            }
            Ok(paths.len() as u64)
        }
    }
}

/// Every regular file below `tree` as (directory, name).
fn regular_files(tree: &TreeRoot) -> Result<Vec<(PathBuf, CString)>> {
    let found = Mutex::new(Vec::new());
    par_walk(PathBuf::new(), &|rel: PathBuf| {
        let dir = tree.open_dir(&rel)?;
        let mut subdirs = Vec::new();
        let entries = sys::read_dir(dir.as_fd())
            .map_err(|e| Error::io("read directory", tree.display(&rel), e))?;
        let mut files = Vec::new();
        for entry in entries {
            let mut ft = entry.file_type;
            if ft == FileType::Unknown {
                let st = sys::stat_at(dir.as_fd(), &entry.name)
                    .map_err(|e| Error::io("stat", tree.display(&rel), e))?;
                ft = FileType::from_raw_mode(st.st_mode as _);
            }
            match ft {
                FileType::Directory => subdirs.push(rel.join(sys::os_name(&entry.name))),
                FileType::RegularFile => files.push((rel.clone(), entry.name)),
                _ => {}
            }
        }
        found.lock().extend(files);
        Ok(subdirs)
    })?;
    Ok(found.into_inner())
}

/// Restore what runs killed half-way left unlocked, then let this run
/// lift flags (crash-safely) until the returned session is dropped.
/// Call it at the start of every command.
pub fn begin(config: &Config) -> UnlockSession<'_> {
    recover(config);
    let layout = Layout::new(config);
    UnlockSession {
        config,
        inner: Some(Session::start(layout.unlocked(), layout.skels())),
    }
}

/// A command's permission to lift immutable attributes (see [`begin`]).
#[derive(Debug)]
pub struct UnlockSession<'a> {
    config: &'a Config,
    inner: Option<Session>,
}

impl Drop for UnlockSession<'_> {
    fn drop(&mut self) {
        // A flag this run could not set again: restore it now if possible.
        if self.inner.take().is_some_and(Session::end) {
            recover(self.config);
        }
    }
}

/// Set the immutable attribute again on the global files that runs
/// killed half-way (their records in `<state>/unlocked` are unlocked) may
/// have left without it, warning with how many. Waits for a later command
/// if a live run is lifting flags now. Never fails: problems are warnings.
pub fn recover(config: &Config) {
    let dir = Layout::new(config).unlocked();
    let orphans = match unlock::scan(&dir) {
        Ok(Scan::Clean) => return,
        Ok(Scan::Busy) => {
            debug!(
                "records in {} belong to a running vskel; not recovering now",
                dir.display()
            );
            return;
        }
        Ok(Scan::Orphans(orphans)) => orphans,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !sys::is_root() => return,
        Err(e) => {
            warn!(
                "cannot look for immutable attributes left lifted by an interrupted run in {}: {e}",
                dir.display()
            );
            return;
        }
    };
    for orphan in orphans {
        let skels: Vec<(String, Option<(u64, u64)>)> = match &orphan.skels {
            Some(skels) => skels
                .iter()
                .map(|(n, d, i)| (n.clone(), Some((*d, *i))))
                .collect(),
            None => match crate::tree::list_names(&Layout::new(config).skels()) {
                Ok(names) => names.into_iter().map(|n| (n, None)).collect(),
                Err(e) => {
                    warn!(
                        "cannot list the skels to recover {}: {e}",
                        orphan.path.display()
                    );
                    continue;
                }
            },
        };
        let mut complete = true;
        for (name, identity) in skels {
            match restore_skel(config, &name, identity) {
                Ok(0) => {}
                Ok(n) => warn!(
                    "set the immutable attribute again on {n} global files of skel {name}, left \
                     unlocked by a vskel run that was interrupted ({})",
                    orphan.path.display()
                ),
                Err(e) => {
                    complete = false;
                    warn!(
                        "cannot set the immutable attribute again on skel {name}'s files \
                         (left unlocked by an interrupted run, {}): {e}",
                        orphan.path.display()
                    );
                }
            }
        }
        if complete && let Err(e) = orphan.done() {
            warn!("cannot remove a record in {}: {e}", dir.display());
        }
    }
}

/// Set `+i` on every regular global file of skel `name` that lacks it, if
/// its `global/` is still the directory `identity` names and the skel is
/// protected; returns how many were set.
fn restore_skel(config: &Config, name: &str, identity: Option<(u64, u64)>) -> Result<u64> {
    let path = Layout::new(config).skel(name).global();
    let tree = match TreeRoot::open(&path) {
        Ok(tree) => tree,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            debug!("skel {name} is gone; nothing to restore");
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    let st = sys::fstat(tree.fd()).map_err(|e| Error::io("stat", &path, e))?;
    if identity.is_some_and(|id| id != (sys::dev_of(&st), sys::ino_of(&st))) {
        warn!(
            "{} is not the directory an interrupted run unlocked files of (it was replaced); \
             left alone",
            path.display()
        );
        return Ok(0);
    }
    let files = scan_flags(&tree)?;
    let protected =
        config.protect == Protect::Immutable || files.iter().any(|(_, _, on)| *on == Some(true));
    if !protected {
        return Ok(0);
    }
    let mut restored = 0;
    for (dir_rel, file_name, on) in &files {
        if *on == Some(true) {
            continue;
        }
        let rel = dir_rel.join(sys::os_name(file_name));
        let dir = tree.open_dir(dir_rel)?;
        let file = match sys::open_file_read(dir.as_fd(), file_name) {
            Ok(file) => file,
            // Gone, or not a plain file any more: nothing to protect there.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ELOOP)) => continue,
            Err(e) => return Err(Error::io("open", tree.display(&rel), e)),
        };
        let st = sys::fstat(file.as_fd()).map_err(|e| Error::io("stat", tree.display(&rel), e))?;
        if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
            continue;
        }
        if !sys::set_immutable(file.as_fd(), true)
            .map_err(|e| Error::io("set immutable attribute", tree.display(&rel), e))?
        {
            restored += 1;
        }
    }
    Ok(restored)
}

/// Every regular file below `tree` with whether it is immutable (`None`:
/// it could not be told).
fn scan_flags(tree: &TreeRoot) -> Result<Vec<(PathBuf, CString, Option<bool>)>> {
    let mut out = Vec::new();
    for (dir_rel, name) in regular_files(tree)? {
        let dir = tree.open_dir(&dir_rel)?;
        let on = match sys::immutable_at(dir.as_fd(), &name) {
            Ok(Some(on)) => Some(on),
            Ok(None) => sys::open_file_read(dir.as_fd(), &name)
                .and_then(|f| sys::is_immutable(f.as_fd()))
                .ok(),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => {
                let rel = dir_rel.join(sys::os_name(&name));
                return Err(Error::io("stat", tree.display(&rel), e));
            }
        };
        out.push((dir_rel, name, on));
    }
    Ok(out)
}

/// How one skel's global files are protected.
#[derive(Debug, Clone, Serialize)]
pub struct SkelProtection {
    /// The skel.
    pub skel: String,
    /// Regular files in its `global/`.
    pub global_files: u64,
    /// How many of them carry the immutable attribute.
    pub immutable: u64,
    /// Some of those that lack it (at most a few), relative to `global/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[serde(serialize_with = "crate::report_path::list")]
    pub lacking: Vec<PathBuf>,
}

impl SkelProtection {
    /// Is this skel meant to be immutable (the config says so, or some of
    /// its files are) while some of its files are not?
    pub fn has_lost_flags(&self, protect: Protect) -> bool {
        (protect == Protect::Immutable || self.immutable > 0) && self.immutable < self.global_files
    }
}

/// Count the immutable global files of skel `name` (one `statx` each).
pub fn skel_protection(config: &Config, name: &str) -> Result<SkelProtection> {
    let tree = TreeRoot::open(&Layout::new(config).skel(name).global())?;
    let files = scan_flags(&tree)?;
    let immutable = files.iter().filter(|(_, _, on)| *on == Some(true)).count() as u64;
    let mut lacking: Vec<PathBuf> = files
        .iter()
        .filter(|(_, _, on)| *on != Some(true))
        .map(|(dir, name, _)| dir.join(sys::os_name(name)))
        .collect();
    lacking.sort();
    lacking.truncate(SHOWN_LACKING);
    Ok(SkelProtection {
        skel: name.to_string(),
        global_files: files.len() as u64,
        immutable,
        lacking,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Under any protection only regular files are linked; without it
    /// every non-directory is; directories never are.
    #[test]
    fn only_regular_files_are_shared_by_link_under_protection() {
        let others = [
            Kind::Symlink,
            Kind::Char,
            Kind::Block,
            Kind::Fifo,
            Kind::Socket,
        ];
        for protect in Protect::ALL {
            assert!(shared_by_link(protect, Kind::File), "{protect}");
            assert!(!shared_by_link(protect, Kind::Dir), "{protect}");
            for kind in others {
                assert_eq!(
                    shared_by_link(protect, kind),
                    protect == Protect::None,
                    "{protect} {kind:?}"
                );
            }
        }
    }
}
