//! Looking paths up in a tree that may be hostile (a vserver's), one after
//! another in record order: every parent is opened below the tree's root
//! with no symlink followed at any component (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), the leaf is `lstat`ed relative
//! to it, and the last parent stays open for its next sibling.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::Stat;

use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;

/// What is at a path.
pub enum Found<'a> {
    /// A parent is missing, not a directory, or a symlink (not followed).
    Blocked,
    /// The parent is there; the leaf `name` in `dir` is `stat` (none:
    /// absent).
    At {
        /// The parent, open.
        dir: BorrowedFd<'a>,
        /// The leaf's name.
        name: CString,
        /// The leaf, not followed if a symlink.
        stat: Option<Stat>,
    },
}

/// Looks paths up in one tree, keeping the last parent open.
pub struct Looker<'t> {
    tree: &'t TreeRoot,
    /// The last parent looked up, and its directory (none: blocked).
    last: Option<(PathBuf, Option<OwnedFd>)>,
}

impl<'t> Looker<'t> {
    /// A looker for `tree`.
    pub fn new(tree: &'t TreeRoot) -> Self {
        Looker { tree, last: None }
    }

    /// The tree.
    pub fn tree(&self) -> &'t TreeRoot {
        self.tree
    }

    /// Look `rel` (not the root itself) up.
    pub fn look(&mut self, rel: &Path) -> Result<Found<'_>> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Some(leaf) = rel.file_name() else {
            return Ok(Found::Blocked);
        };
        if self.last.as_ref().is_none_or(|(p, _)| p != parent) {
            let dir = match sys::open_dir_beneath(self.tree.fd(), parent) {
                Ok(fd) => Some(fd),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
                    ) =>
                {
                    None
                }
                Err(e) => return Err(Error::io("open", self.tree.display(parent), e)),
            };
            self.last = Some((parent.to_path_buf(), dir));
        }
        let Some((_, Some(dir))) = &self.last else {
            return Ok(Found::Blocked);
        };
        let name = sys::cname(leaf).map_err(|e| Error::io("name", rel, e))?;
        let stat = sys::absent_as_none(sys::stat_at(dir.as_fd(), &name))
            .map_err(|e| Error::io("stat", self.tree.display(rel), e))?;
        Ok(Found::At {
            dir: dir.as_fd(),
            name,
            stat,
        })
    }

    /// The (device, inode) at `rel`, if something is there.
    pub fn inode_at(&mut self, rel: &Path) -> Result<Option<(u64, u64)>> {
        Ok(match self.look(rel)? {
            Found::At { stat: Some(st), .. } => Some((sys::dev_of(&st), sys::ino_of(&st))),
            _ => None,
        })
    }
}
