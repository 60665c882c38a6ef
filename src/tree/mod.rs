//! Trees on disk: opening a tree root once and reaching everything below it
//! relative to that root, copying between trees, the one way to copy an
//! entry ([`entry`]) and to compare two ([`compare`]), placing entries in
//! a live tree safely ([`place`]), removing trees, and lifting a protected
//! inode's immutable attribute for one link or unlink.
//!
//! Every tree operation in vskel goes through [`TreeRoot`], whose
//! [`TreeRoot::open_dir`] never follows a symlink (see [`crate::sys`]).

pub mod ancestry;
pub mod compare;
pub mod copy;
pub mod entry;
pub mod meta;
pub mod place;
pub mod remove;
pub mod unlock;
pub mod walk;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;
use crate::validate::validate_name;

/// An open directory tree, addressed by paths relative to its root.
#[derive(Debug)]
pub struct TreeRoot {
    fd: OwnedFd,
    path: PathBuf,
    dev: u64,
}

impl TreeRoot {
    /// Open the tree at `path` (which must be a directory).
    pub fn open(path: &Path) -> Result<Self> {
        let fd = sys::open_root(path).map_err(|e| Error::io("open directory", path, e))?;
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("stat", path, e))?;
        Ok(TreeRoot {
            fd,
            path: path.to_path_buf(),
            dev: st.st_dev as u64,
        })
    }

    /// The root's descriptor.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The path the root was opened at (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The device (filesystem) the root lives on.
    pub fn dev(&self) -> u64 {
        self.dev
    }

    /// Open the directory `rel` below the root, following no symlink.
    pub fn open_dir(&self, rel: &Path) -> Result<OwnedFd> {
        sys::open_dir_beneath(self.fd(), rel)
            .map_err(|e| Error::io("open directory", self.path.join(rel), e))
    }

    /// Open the directory `rel` below the root, following no symlink, as a
    /// tree of its own.
    pub fn subtree(&self, rel: &Path) -> Result<TreeRoot> {
        let fd = self.open_dir(rel)?;
        let path = self.display(rel);
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("stat", &path, e))?;
        Ok(TreeRoot {
            fd,
            path,
            dev: sys::dev_of(&st),
        })
    }

    /// The full path of `rel` (for messages only; never used to open).
    pub fn display(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.path.clone()
        } else {
            self.path.join(rel)
        }
    }
}

/// Refuse a setup where the existing ones of `paths` are not all on one
/// filesystem (missing paths are skipped: they will be made on their
/// parent's).
pub fn require_one_filesystem(paths: &[&Path]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut first: Option<(&Path, u64)> = None;
    for path in paths {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        match first {
            None => first = Some((path, meta.dev())),
            Some((other, dev)) if dev != meta.dev() => {
                return Err(cross_device(other, path));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn cross_device(a: &Path, b: &Path) -> Error {
    Error::Failed(format!(
        "{} and {} are on different filesystems; vskel hard-links between them, \
         so skels, views and vservers must live on one filesystem (check `root` in the config)",
        a.display(),
        b.display()
    ))
}

/// Refuse a setup where `a` and `b` are on different filesystems: hard links
/// cannot cross them.
pub fn require_same_filesystem(a: &TreeRoot, b: &TreeRoot) -> Result<()> {
    if a.dev() != b.dev() {
        return Err(cross_device(a.path(), b.path()));
    }
    Ok(())
}

/// The valid entry names of a directory (hidden and invalid names are left
/// out), sorted; a missing directory has none.
pub fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        if let Some(name) = entry.file_name().to_str()
            && validate_name("name", name).is_ok()
        {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}
