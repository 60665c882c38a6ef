//! What unify counts as the same file: the skel's file is the recorded
//! one (inode, kind, mode, owner, size, mtime); a vserver's file has the
//! recorded metadata (mtime optional), xattrs and BLAKE3 content; and an
//! inode did not change between two looks (size, mtime, ctime).

use std::os::fd::BorrowedFd;

use rustix::fs::Stat;

use crate::generation::{self, Entry, Kind};
use crate::sys;

/// Is `st` the skel file `e` records: its inode, kind, mode, owner, size
/// and mtime?
pub(super) fn is_recorded(st: &Stat, e: &Entry) -> bool {
    (sys::dev_of(st), sys::ino_of(st)) == e.inode()
        && Kind::of_stat(st) == Kind::File
        && same_meta(st, e, false)
}

/// Do mode, owner, size and (unless `ignore_mtime`) mtime match `e`?
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
pub(super) fn same_meta(st: &Stat, e: &Entry, ignore_mtime: bool) -> bool {
    st.st_mode as u32 & 0o7777 == e.mode
        && st.st_uid as u32 == e.uid
        && st.st_gid as u32 == e.gid
        && st.st_size as u64 == e.size
        && (ignore_mtime || (st.st_mtime as i64, st.st_mtime_nsec as i64) == e.mtime)
}

/// Has nothing about the inode changed between the two stats (size,
/// mtime, ctime: data, mode, owner and xattrs)?
#[allow(clippy::unnecessary_cast)]
pub(super) fn unchanged(a: &Stat, b: &Stat) -> bool {
    a.st_size == b.st_size
        && (a.st_mtime as i64, a.st_mtime_nsec as i64)
            == (b.st_mtime as i64, b.st_mtime_nsec as i64)
        && (a.st_ctime as i64, a.st_ctime_nsec as i64)
            == (b.st_ctime as i64, b.st_ctime_nsec as i64)
}

/// Every xattr of the open file, sorted by name (as a generation records
/// them).
pub(super) fn xattrs(fd: BorrowedFd<'_>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for n in sys::flist_xattrs(fd)? {
        match sys::fget_xattr(fd, &n) {
            Ok(value) => out.push((n.into_bytes(), value)),
            // Removed since it was listed.
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// BLAKE3 of the open file's data, read from its start.
pub(super) fn hash(fd: BorrowedFd<'_>) -> std::io::Result<generation::Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::from(fd.try_clone_to_owned()?);
    std::io::copy(&mut file, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}
