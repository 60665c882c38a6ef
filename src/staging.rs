//! Staging directories: where a new skel or vserver tree is built before
//! one `rename()` publishes it, so it appears whole or not at all.
//!
//! Staging lives in `<root>/.vskel/staging/` (same filesystem as every
//! destination, so the rename is atomic). An entry is named
//! `<label>.<pid>`; one whose process is gone (killed half-way) is removed
//! by the next run.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::sys;
use crate::tree::remove::remove_tree_at;

/// Mode of vskel's private state directories.
const STATE_DIR_MODE: u32 = 0o700;

/// A directory being built; removed on drop unless published.
#[derive(Debug)]
pub struct Staging {
    parent: OwnedFd,
    name: CString,
    path: PathBuf,
    published: bool,
}

impl Staging {
    /// Make a fresh staging directory for `label` (e.g. `vs-web1`).
    pub fn create(config: &Config, label: &str) -> Result<Self> {
        let layout = Layout::new(config);
        let dir = layout.staging();
        make_private_dir(&layout.state())?;
        make_private_dir(&dir)?;
        let parent = sys::open_root(&dir).map_err(|e| Error::io("open directory", &dir, e))?;
        remove_stale(parent.as_fd(), &dir);
        let name = format!("{label}.{}", std::process::id());
        let cname = sys::cname(name.as_ref()).map_err(|e| Error::io("name", &dir, e))?;
        let path = dir.join(&name);
        sys::mkdir_at(parent.as_fd(), &cname, STATE_DIR_MODE)
            .map_err(|e| Error::io("make directory", &path, e))?;
        Ok(Staging {
            parent,
            name: cname,
            path,
            published: false,
        })
    }

    /// Remove what runs that are gone left in the staging area (every
    /// [`Staging::create`] does this too).
    pub fn remove_abandoned(config: &Config) -> Result<()> {
        let dir = Layout::new(config).staging();
        match sys::open_root(&dir) {
            Ok(parent) => {
                remove_stale(parent.as_fd(), &dir);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("open directory", &dir, e)),
        }
    }

    /// Where the tree is being built.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Delete the staging directory and all it holds, reporting failure.
    pub fn discard(mut self) -> Result<()> {
        self.published = true; // nothing left for Drop to do
        remove_tree_at(self.parent.as_fd(), &self.name).map_err(|e| {
            Error::io(
                "remove (what is left can be removed by hand)",
                &self.path,
                e,
            )
        })
    }

    /// Rename the staging directory to `dest` (which must not exist).
    pub fn publish(mut self, dest: &Path) -> Result<()> {
        let (dest_parent, dest_name) = split_parent(dest)?;
        let parent_fd =
            sys::open_root(dest_parent).map_err(|e| Error::io("open directory", dest_parent, e))?;
        match sys::rename_noreplace(
            self.parent.as_fd(),
            &self.name,
            parent_fd.as_fd(),
            &dest_name,
        ) {
            Ok(()) => {
                self.published = true;
                Ok(())
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::ENOTEMPTY)) => {
                Err(Error::Failed(format!(
                    "{} appeared while it was being built (another vskel run?); \
                     nothing of this run was kept",
                    dest.display()
                )))
            }
            Err(e) => Err(Error::io("rename into place", dest, e)),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        if let Err(e) = remove_tree_at(self.parent.as_fd(), &self.name) {
            warn!(
                "could not remove the unfinished {}: {e}; remove it by hand",
                self.path.display()
            );
        }
    }
}

/// Split a destination path into its parent directory and final name.
pub fn split_parent(path: &Path) -> Result<(&Path, CString)> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| Error::Failed(format!("{} has no final name", path.display())))?;
    let cname = sys::cname(name).map_err(|e| Error::io("name", path, e))?;
    Ok((parent, cname))
}

/// Make a directory only root can enter (and its parents, so also a
/// missing `<root>`: see `barrier`), if missing.
pub fn make_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(STATE_DIR_MODE)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::io("make directory", dir, e)),
    }
}

/// `label.pid` split in two.
fn split_label_pid(name: &str) -> Option<(&str, u32)> {
    let (label, pid) = name.rsplit_once('.')?;
    Some((label, pid.parse().ok()?))
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Remove staging entries whose process no longer runs.
fn remove_stale(parent: std::os::fd::BorrowedFd<'_>, dir: &Path) {
    let entries = match sys::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) => {
            warn!("cannot read {}: {e}", dir.display());
            return;
        }
    };
    for entry in entries {
        let name = entry.name.to_string_lossy().into_owned();
        let Some((_, pid)) = split_label_pid(&name) else {
            continue;
        };
        if process_alive(pid) {
            continue;
        }
        debug!("removing stale staging entry {name}");
        match remove_tree_at(parent, &entry.name) {
            Ok(()) => warn!(
                "removed {}, left unfinished by an interrupted run",
                dir.join(&name).display()
            ),
            Err(e) => warn!("cannot remove stale {}: {e}", dir.join(&name).display()),
        }
    }
}
