//! File metadata: capturing it from a source entry and applying it to a
//! copy (owner, mode, extended attributes, times, in that order).
//!
//! The order matters: `chown` clears setuid/setgid bits and file
//! capabilities, so the mode and `security.capability` are set after it;
//! times go last because every other change touches them.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FileType, Stat};
use tracing::debug;

use crate::sys::{self, Times};

/// Permission bits plus setuid, setgid and sticky.
pub const PERMISSION_BITS: u32 = 0o7777;

/// What is copied from an entry besides its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The entry's type.
    pub file_type: FileType,
    /// Permission bits incl. setuid/setgid/sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Access and modification times.
    pub times: Times,
    /// Size in bytes.
    pub size: u64,
    /// Number of hard links.
    pub nlink: u64,
    /// Device of the filesystem holding it.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number, for device nodes.
    pub rdev: u64,
    /// Extended attributes (name, value); empty until [`Meta::with_xattrs`].
    pub xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    /// Metadata from a `stat` result, without extended attributes.
    #[allow(clippy::unnecessary_cast)] // field widths differ per architecture
    pub fn from_stat(st: &Stat) -> Self {
        Meta {
            file_type: FileType::from_raw_mode(st.st_mode as _),
            mode: st.st_mode as u32 & PERMISSION_BITS,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            times: Times {
                atime: (st.st_atime as i64, st.st_atime_nsec as i64),
                mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            },
            size: st.st_size as u64,
            nlink: st.st_nlink as u64,
            dev: st.st_dev as u64,
            ino: st.st_ino as u64,
            rdev: st.st_rdev as u64,
            xattrs: Vec::new(),
        }
    }

    /// Add the extended attributes of the open file `fd`.
    pub fn with_xattrs(mut self, fd: BorrowedFd<'_>) -> io::Result<Self> {
        for name in sys::flist_xattrs(fd)? {
            match sys::fget_xattr(fd, &name) {
                Ok(value) => self.xattrs.push((name, value)),
                // Removed between list and get: nothing to copy.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self)
    }

    /// Add the extended attributes of `name` in `dir` without opening it
    /// (symlinks, device nodes, FIFOs).
    pub fn with_xattrs_at(mut self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Self> {
        let path = sys::proc_path(dir, name);
        for key in sys::llist_xattrs(&path)? {
            match sys::lget_xattr(&path, &key) {
                Ok(value) => self.xattrs.push((key, value)),
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self)
    }

    /// Apply owner, mode, xattrs and times to an open file or directory.
    pub fn apply_to_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        tolerate_unprivileged(sys::fchown(fd, self.uid, self.gid), "chown")?;
        sys::fchmod(fd, self.mode)?;
        for (name, value) in &self.xattrs {
            tolerate_unprivileged(sys::fset_xattr(fd, name, value), "set xattr")?;
        }
        sys::futimens(fd, self.times)
    }

    /// Apply owner, mode, xattrs and times to `name` in `dir`, which is not
    /// opened for I/O (a symlink's mode cannot be changed and is left as it
    /// is). The name is looked up once, for an `O_PATH` handle; everything
    /// then acts on that inode, even if the name changes meanwhile. Where
    /// the entry was just made, prefer checking the handle is what was made
    /// and calling [`Meta::apply_to_handle`].
    pub fn apply_at(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        let handle = sys::open_handle_at(dir, name)?;
        self.apply_to_handle(handle.as_fd())
    }

    /// Apply owner, mode, xattrs and times through an `O_PATH` handle (or
    /// any descriptor) of the entry, never through a name. A symlink's
    /// mode is left as it is.
    pub fn apply_to_handle(&self, handle: BorrowedFd<'_>) -> io::Result<()> {
        tolerate_unprivileged(
            sys::chown_handle(handle, Some(self.uid), Some(self.gid)),
            "chown",
        )?;
        if self.file_type != FileType::Symlink {
            sys::chmod_handle(handle, self.mode)?;
        }
        for (key, value) in &self.xattrs {
            tolerate_unprivileged(
                sys::set_xattr_handle(handle, key, value, rustix::fs::XattrFlags::empty()),
                "set xattr",
            )?;
        }
        sys::utimens_handle(handle, &self.times.to_rustix())
    }
}

/// Without root, owners and privileged xattrs cannot be kept; that is
/// expected for an unprivileged user's own trees, so it is logged, not fatal.
fn tolerate_unprivileged(result: io::Result<()>, what: &str) -> io::Result<()> {
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && !sys::is_root() => {
            debug!("{what} not permitted without root; left as is");
            Ok(())
        }
        other => other,
    }
}
