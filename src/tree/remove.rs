//! Removing trees without ever following a symlink.
//!
//! Removal is descriptor-relative all the way down, so a vserver's root user
//! who swaps a directory for a symlink while the tree is being removed only
//! gets the symlink removed. Files that carry the immutable attribute
//! because they share an inode with a protected skel are unlocked for the
//! unlink (crash-safely, see [`super::unlock`]) and locked again while
//! other names still hold the inode.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;

use crate::sys;

/// How often an unlink is retried when a concurrent run relocks the
/// protected inode between our unlock and our unlink.
const UNLINK_ATTEMPTS: usize = 8;

/// Remove `name` in `dir`, whatever it is; a directory with all it holds.
pub fn remove_tree_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match sys::open_subdir(dir, name) {
        Ok(sub) => {
            for entry in sys::read_dir(sub.as_fd())? {
                if matches!(entry.file_type, FileType::Directory | FileType::Unknown) {
                    remove_tree_at(sub.as_fd(), &entry.name)?;
                } else {
                    unlink_entry(sub.as_fd(), &entry.name)?;
                }
            }
            drop(sub);
            sys::rmdir_at(dir, name)
        }
        // Not a directory (or a symlink to one): unlink the entry itself.
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            unlink_entry(dir, name)
        }
        Err(e) => Err(e),
    }
}

/// Remove everything inside the directory `dir`, keeping `dir` itself.
pub fn clear_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    for entry in sys::read_dir(dir)? {
        remove_tree_at(dir, &entry.name)?;
    }
    Ok(())
}

/// Unlink a non-directory, clearing the immutable attribute if that is what
/// stops it (and setting it again when the inode keeps other names).
pub fn unlink_entry(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    match sys::unlink_at(dir, name) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => unlink_immutable(dir, name, e),
        other => other,
    }
}

fn unlink_immutable(dir: BorrowedFd<'_>, name: &CStr, original: io::Error) -> io::Result<()> {
    let st = sys::stat_at(dir, name)?;
    if FileType::from_raw_mode(st.st_mode as _) != FileType::RegularFile {
        return Err(original);
    }
    let file = sys::open_file_read(dir, name)?;
    if !sys::is_immutable(file.as_fd())? {
        return Err(original);
    }
    let mut attempts = 0;
    loop {
        attempts += 1;
        // Crash-safe: see `super::unlock`.
        let lifted = super::unlock::lift(file.as_fd())?;
        let result = sys::unlink_at(dir, name);
        let still_linked = sys::fstat(file.as_fd())?.st_nlink > 0;
        match lifted {
            Some(lifted) if still_linked => lifted.restore()?,
            Some(lifted) => lifted.release(),
            None => {}
        }
        match result {
            // A concurrent run set the flag again between our lift and
            // our unlink (it had lifted it too): lift it again.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && attempts < UNLINK_ATTEMPTS => {}
            other => return other,
        }
    }
}
