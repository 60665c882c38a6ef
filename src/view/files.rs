//! Open files of the view: opening (by a checked name, or again
//! through an open file for a node whose names are gone), reads and
//! writes, and reading xattrs.
//!
//! A handle holds the descriptor of the layer file it reads (a lower file
//! until something opens it for writing, which copies it up first).
//! Directories have no handles: `readdir` works from offsets alone (see
//! `listing`).

use std::ffi::{CStr, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

use super::types::Errno;
use rustix::fs::{Mode, OFlags};

use super::format;
use super::handles::OpenFile;
use super::killpriv;
use super::overlay::Overlay;
use super::types::{Layer, OpResult, errno};
use crate::sys;

/// Open flags passed on to the layer file (creation and truncation are
/// the view's business). Not `O_DIRECT`: vskel reads and writes served
/// files through its own buffers, which direct I/O would refuse as
/// unaligned (the kernel still bypasses its page cache for the caller's
/// direct I/O).
const PASSED_FLAGS: OFlags = OFlags::ACCMODE
    .union(OFlags::APPEND)
    .union(OFlags::NONBLOCK)
    .union(OFlags::SYNC)
    .union(OFlags::DSYNC)
    .union(OFlags::NOATIME);

impl Overlay {
    /// Open node `id` with `flags` (`open(2)` flags); a file opened for
    /// writing is copied up first, so only a read-only open returns a
    /// file of a lower layer.
    ///
    /// A node whose every name is gone is opened again only through a file
    /// of it still open (the kernel reaches it by `/proc/PID/fd/N`), see
    /// [`Overlay::reopen`].
    ///
    /// `kill` (the caller's group, when the kernel asks for it): an
    /// `O_TRUNC` open also clears the suid and sgid bits (see
    /// [`super::killpriv`]), in the same change.
    pub fn open(&self, id: u64, flags: i32, kill: Option<u32>) -> OpResult<(OwnedFd, Layer)> {
        match self.open_by_name(id, flags, kill) {
            Err(e) if e == Errno::NOENT => match self.handles.any_file_of(id) {
                Some(open) => self.reopen(&open, flags, kill),
                None => Err(e),
            },
            other => other,
        }
    }

    fn open_by_name(&self, id: u64, flags: i32, kill: Option<u32>) -> OpResult<(OwnedFd, Layer)> {
        let writes = opens_for_writing(flags);
        let flags = OFlags::from_bits_retain(flags as _);
        // Opening for writing copies up: a change of the view.
        let _exclusive;
        let _shared;
        if writes {
            _exclusive = self.exclusive();
            self.copy_up(id)?;
        } else {
            _shared = self.tree.read();
        }
        let at = self.locate(id)?;
        let fd = rustix::fs::openat(
            at.parent.as_fd(),
            &at.name,
            layer_open_flags(flags),
            Mode::empty(),
        )
        .map_err(|e| errno(e.into()))?;
        // The name was checked under the tree lock; that it opened the very
        // inode checked costs one fstat.
        if !sys::same_inode(&sys::fstat(fd.as_fd()).map_err(errno)?, &at.stat) {
            return Err(Errno::NOENT);
        }
        kill_on_truncate(fd.as_fd(), flags, kill)?;
        Ok((fd, at.layer))
    }

    /// Open anew the file that `open` (of node `id`) holds, with `flags`:
    /// for a node whose every name is gone, reached again through
    /// `/proc/PID/fd` (as kernel overlayfs allows). The same inode or
    /// nothing; writing needs a file of the upper layer, as nothing is
    /// copied up without a name.
    fn reopen(&self, open: &OpenFile, flags: i32, kill: Option<u32>) -> OpResult<(OwnedFd, Layer)> {
        if opens_for_writing(flags) && open.layer != Layer::Upper {
            return Err(Errno::NOENT);
        }
        let flags = OFlags::from_bits_retain(flags as _);
        let fd = sys::reopen_handle(open.file.as_fd(), layer_open_flags(flags)).map_err(errno)?;
        kill_on_truncate(fd.as_fd(), flags, kill)?;
        Ok((fd, open.layer))
    }

    /// Read `size` bytes at `offset` from an open file.
    pub fn read(file: &File, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// Write `data` at `offset` to an open file; `kill` (the caller's
    /// group, when the kernel asks for it) clears the suid and sgid bits
    /// first, as the kernel does (see [`super::killpriv`]).
    pub fn write(file: &File, offset: u64, data: &[u8], kill: Option<u32>) -> OpResult<u32> {
        if let Some(gid) = kill {
            killpriv::kill_suidgid(file.as_fd(), false, gid)?;
        }
        file.write_all_at(data, offset).map_err(errno)?;
        Ok(data.len() as u32)
    }

    /// The value of xattr `name` of node `id` (overlay-private ones are
    /// hidden).
    pub fn getxattr(&self, id: u64, name: &CStr) -> OpResult<Vec<u8>> {
        if format::is_private_xattr(name.to_bytes()) {
            return Err(Errno::NODATA);
        }
        let _shared = self.tree.read();
        let (handle, _) = self.handle_of(id)?;
        sys::get_xattr_handle(handle.as_fd(), name).map_err(errno)
    }

    /// The xattr names of node `id`, NUL-separated (without the private
    /// ones).
    pub fn listxattr(&self, id: u64) -> OpResult<Vec<u8>> {
        let _shared = self.tree.read();
        let (handle, _) = self.handle_of(id)?;
        let mut out = Vec::new();
        for name in sys::list_xattrs_handle(handle.as_fd()).map_err(errno)? {
            if !format::is_private_xattr(name.to_bytes()) {
                out.extend_from_slice(name.to_bytes_with_nul());
            }
        }
        Ok(out)
    }
}

/// The flags a layer file is opened with for an open of the view with
/// `flags`: never following a symlink, never creating.
fn layer_open_flags(flags: OFlags) -> OFlags {
    let mut open_flags = (flags & PASSED_FLAGS) | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if flags.contains(OFlags::TRUNC) {
        open_flags |= OFlags::TRUNC;
    }
    // The kernel handles O_APPEND by the offsets it sends.
    open_flags.remove(OFlags::APPEND);
    open_flags
}

/// After an `O_TRUNC` open asked to kill (`kill`: the caller's group),
/// clear the suid and sgid bits of the opened file `fd`.
fn kill_on_truncate(fd: BorrowedFd<'_>, flags: OFlags, kill: Option<u32>) -> OpResult<()> {
    match kill {
        Some(gid) if flags.contains(OFlags::TRUNC) => killpriv::kill_suidgid(fd, false, gid),
        _ => Ok(()),
    }
}

/// An open with `flags` (`open(2)` flags) may change the file: it is
/// writable or truncates (and so copies the file up).
pub fn opens_for_writing(flags: i32) -> bool {
    let flags = OFlags::from_bits_retain(flags as _);
    flags.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC)
}

/// Reply helper for xattr reads: the size when asked for 0 bytes, the data
/// when it fits, `ERANGE` when it does not.
pub enum XattrReply {
    /// Only the size was asked for.
    Size(u32),
    /// The data.
    Data(Vec<u8>),
}

/// Decide an xattr reply for a buffer of `size` bytes.
pub fn xattr_reply(value: Vec<u8>, size: u32) -> OpResult<XattrReply> {
    if size == 0 {
        Ok(XattrReply::Size(value.len() as u32))
    } else if value.len() > size as usize {
        Err(Errno::RANGE)
    } else {
        Ok(XattrReply::Data(value))
    }
}

/// `OsStr` as a C string for xattr names.
pub fn xattr_name(name: &OsStr) -> OpResult<std::ffi::CString> {
    sys::cname(name).map_err(errno)
}
