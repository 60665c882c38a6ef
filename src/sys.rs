//! Every raw system call vskel makes, behind small safe functions.
//!
//! The rest of the crate never builds paths to walk a tree: it opens a tree
//! root once and reaches everything below it with `*at()` calls relative to
//! directory descriptors. Directories are opened with `openat2()` and
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, so a symlink planted anywhere in a
//! tree (say by a vserver's root user) can never lead vskel, running as root,
//! outside that tree. Final components are never followed (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`).
//!
//! The crate denies `unsafe`; the wrappers used here (rustix) are safe, so
//! this module has no `unsafe` block of its own today. If one is ever
//! needed it belongs here, with a `// SAFETY:` comment.

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, FileType, IFlags, Mode, OFlags, RenameFlags, ResolveFlags};

/// Flags for opening a directory we walk.
const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NOFOLLOW);

/// Resolution rules for every path below a tree root.
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Cleared once `FICLONE` says the filesystem cannot reflink (vskel works
/// on one filesystem, so one answer holds for the whole run).
static REFLINK_MAY_WORK: AtomicBool = AtomicBool::new(true);

/// Largest chunk handed to one `copy_file_range` call.
const COPY_CHUNK: usize = 1 << 30;

/// Open a tree root given by an administrator's path (symlinks in that path
/// are the administrator's choice and are followed; nothing below is).
pub fn open_root(path: &Path) -> io::Result<OwnedFd> {
    Ok(rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Open the directory `rel` below `root` without following any symlink.
/// An empty `rel` opens the root itself.
pub fn open_dir_beneath(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    match rfs::openat2(root, rel, DIR_FLAGS, Mode::empty(), BENEATH) {
        // No openat2 (old kernel), or a path longer than PATH_MAX (a deep
        // tree): one component at a time, each with O_NOFOLLOW.
        Err(rustix::io::Errno::NOSYS | rustix::io::Errno::NAMETOOLONG) => {
            open_dir_by_components(root, rel)
        }
        other => Ok(other?),
    }
}

/// Fallback for kernels without `openat2()`: walk one component at a time,
/// each opened with `O_NOFOLLOW`, refusing `..`.
fn open_dir_by_components(root: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let mut fd = rfs::openat(root, ".", DIR_FLAGS, Mode::empty())?;
    for component in rel.components() {
        match component {
            Component::Normal(name) => {
                fd = rfs::openat(&fd, name, DIR_FLAGS, Mode::empty())?;
            }
            Component::CurDir => {}
            _ => return Err(io::Error::from_raw_os_error(libc::EXDEV)),
        }
    }
    Ok(fd)
}

/// Open the child directory `name` of `dir` (never a symlink).
pub fn open_subdir(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(dir, name, DIR_FLAGS, Mode::empty())?)
}

/// Open the regular file `name` in `dir` for reading, never following a
/// symlink and never blocking on a FIFO that was swapped in.
pub fn open_file_read(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )?)
}

/// Create the new file `name` in `dir` for writing; fails if it exists.
pub fn create_file(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?)
}

/// Create the new file `name` in `dir` open for reading and writing;
/// fails if it exists.
pub fn create_rw(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?)
}

/// One directory entry as `getdents` reports it.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// The entry's name.
    pub name: CString,
    /// The type `getdents` gave; may be `Unknown` on some filesystems.
    pub file_type: FileType,
    /// The inode number `getdents` gave.
    pub ino: u64,
}

/// Read all entries of an open directory, without `.` and `..`.
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<DirEntry>> {
    let mut out = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        out.push(DirEntry {
            name: name.to_owned(),
            file_type: entry.file_type(),
            ino: entry.ino(),
        });
    }
    Ok(out)
}

/// `lstat` of `name` in `dir`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<rfs::Stat> {
    Ok(rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// Inode number of a `stat` result (field widths differ per architecture).
#[allow(clippy::unnecessary_cast)]
pub fn ino_of(st: &rfs::Stat) -> u64 {
    st.st_ino as u64
}

/// Device of a `stat` result.
#[allow(clippy::unnecessary_cast)]
pub fn dev_of(st: &rfs::Stat) -> u64 {
    st.st_dev as u64
}

/// Link count of a `stat` result.
#[allow(clippy::unnecessary_cast)]
pub fn nlink_of(st: &rfs::Stat) -> u64 {
    st.st_nlink as u64
}

/// `fstat` of an open descriptor.
pub fn fstat(fd: BorrowedFd<'_>) -> io::Result<rfs::Stat> {
    Ok(rfs::fstat(fd)?)
}

/// `mkdir` of `name` in `dir`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    Ok(rfs::mkdirat(dir, name, Mode::from_raw_mode(mode))?)
}

/// Hard-link `old_name` in `old_dir` as `new_name` in `new_dir` (a symlink
/// is linked itself, not its target).
pub fn link_at(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    Ok(rfs::linkat(
        old_dir,
        old_name,
        new_dir,
        new_name,
        AtFlags::empty(),
    )?)
}

/// Read the target of the symlink `name` in `dir`.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<CString> {
    Ok(rfs::readlinkat(dir, name, Vec::new())?)
}

/// Make the symlink `name` in `dir` pointing at `target`.
pub fn symlink_at(target: &CStr, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rfs::symlinkat(target, dir, name)?)
}

/// Make a device node, FIFO or socket `name` in `dir`.
pub fn mknod_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    file_type: FileType,
    mode: u32,
    rdev: u64,
) -> io::Result<()> {
    Ok(rfs::mknodat(
        dir,
        name,
        file_type,
        Mode::from_raw_mode(mode),
        rdev,
    )?)
}

/// Remove the non-directory `name` in `dir`.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::empty())?)
}

/// Remove the empty directory `name` in `dir`.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Rename, failing with `EEXIST` when the target exists.
pub fn rename_noreplace(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        old_dir,
        old_name,
        new_dir,
        new_name,
        RenameFlags::NOREPLACE,
    )?)
}

/// Rename, replacing the target atomically.
pub fn rename_replace(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    Ok(rfs::renameat(old_dir, old_name, new_dir, new_name)?)
}

/// Exchange two names atomically (both must exist; either may be a
/// directory).
pub fn rename_exchange(
    old_dir: BorrowedFd<'_>,
    old_name: &CStr,
    new_dir: BorrowedFd<'_>,
    new_name: &CStr,
) -> io::Result<()> {
    Ok(rfs::renameat_with(
        old_dir,
        old_name,
        new_dir,
        new_name,
        RenameFlags::EXCHANGE,
    )?)
}

/// Change owner of an open file.
pub fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rfs::fchown(
        fd,
        Some(rfs::Uid::from_raw(uid)),
        Some(rfs::Gid::from_raw(gid)),
    )?)
}

/// Change owner of `name` in `dir` without following a symlink.
pub fn lchown_at(dir: BorrowedFd<'_>, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    lchown_some_at(dir, name, Some(uid), Some(gid))
}

/// Change the owner and/or group of `name` in `dir` (`None` keeps it),
/// without following a symlink.
pub fn lchown_some_at(
    dir: BorrowedFd<'_>,
    name: &CStr,
    uid: Option<u32>,
    gid: Option<u32>,
) -> io::Result<()> {
    Ok(rfs::chownat(
        dir,
        name,
        uid.map(rfs::Uid::from_raw),
        gid.map(rfs::Gid::from_raw),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// Change the mode of an open file.
pub fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    Ok(rfs::fchmod(fd, Mode::from_raw_mode(mode))?)
}

/// Change the mode of `name` in `dir`, never following a symlink: Linux
/// cannot change a symlink's mode, so a symlink (perhaps one a vserver put
/// in place of the name) answers `EOPNOTSUPP` and nothing else changes.
/// (`fchmodat` has no working `AT_SYMLINK_NOFOLLOW`; the change goes through
/// an `O_PATH` handle of the entry itself.)
pub fn chmod_at(dir: BorrowedFd<'_>, name: &CStr, mode: u32) -> io::Result<()> {
    let handle = open_handle_at(dir, name)?;
    chmod_handle(handle.as_fd(), mode)
}

/// Access and modification times, as (seconds, nanoseconds) pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    /// Last access.
    pub atime: (i64, i64),
    /// Last modification.
    pub mtime: (i64, i64),
}

impl Times {
    /// As `utimensat` takes them.
    pub fn to_rustix(self) -> rfs::Timestamps {
        let ts = |(sec, nsec): (i64, i64)| rfs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec as _,
        };
        rfs::Timestamps {
            last_access: ts(self.atime),
            last_modification: ts(self.mtime),
        }
    }
}

/// Set the times of an open file.
pub fn futimens(fd: BorrowedFd<'_>, times: Times) -> io::Result<()> {
    Ok(rfs::futimens(fd, &times.to_rustix())?)
}

/// Set the times of `name` in `dir` without following a symlink.
pub fn lutimens_at(dir: BorrowedFd<'_>, name: &CStr, times: Times) -> io::Result<()> {
    Ok(rfs::utimensat(
        dir,
        name,
        &times.to_rustix(),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// A path through `/proc/self/fd` naming `name` inside the open `dir`, for
/// the few calls (xattrs on symlinks) that have no `*at()` form. The final
/// component is only ever used with the `l*` (no-follow) calls.
pub fn proc_path(dir: BorrowedFd<'_>, name: &CStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(name.to_bytes()));
    p
}

/// The names of all extended attributes of an open file.
pub fn flist_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    list_names(|buf| rfs::flistxattr(fd, buf), || rfs::flistxattr_query(fd))
}

/// The value of one extended attribute of an open file.
pub fn fget_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    read_growing(
        |buf| rfs::fgetxattr(fd, name, buf),
        || rfs::fgetxattr_query(fd, name),
    )
}

/// Set one extended attribute of an open file.
pub fn fset_xattr(fd: BorrowedFd<'_>, name: &CStr, value: &[u8]) -> io::Result<()> {
    Ok(rfs::fsetxattr(fd, name, value, rfs::XattrFlags::empty())?)
}

/// The names of all extended attributes of a path, not following a symlink.
pub fn llist_xattrs(path: &Path) -> io::Result<Vec<CString>> {
    list_names(
        |buf| rfs::llistxattr(path, buf),
        || rfs::llistxattr_query(path),
    )
}

/// The value of one extended attribute of a path, not following a symlink.
pub fn lget_xattr(path: &Path, name: &CStr) -> io::Result<Vec<u8>> {
    read_growing(
        |buf| rfs::lgetxattr(path, name, buf),
        || rfs::lgetxattr_query(path, name),
    )
}

/// Set one extended attribute of a path, not following a symlink.
pub fn lset_xattr(path: &Path, name: &CStr, value: &[u8]) -> io::Result<()> {
    Ok(rfs::lsetxattr(path, name, value, rfs::XattrFlags::empty())?)
}

/// First size tried for an xattr value or name list.
const XATTR_BUF: usize = 256;

/// Read a value whose size is unknown: try a buffer, and on `ERANGE` ask
/// for the size and try again (it may grow in between).
fn read_growing(
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    query: impl Fn() -> rustix::io::Result<usize>,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; XATTR_BUF];
    loop {
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => {
                let need = query()?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// A name list; a filesystem without xattrs has none.
fn list_names(
    read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    query: impl Fn() -> rustix::io::Result<usize>,
) -> io::Result<Vec<CString>> {
    match read_growing(read, query) {
        Ok(list) => Ok(split_xattr_names(&list)),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

fn split_xattr_names(list: &[u8]) -> Vec<CString> {
    list.split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| CString::new(s).ok())
        .collect()
}

/// Is the immutable attribute (`chattr +i`) set on this open file?
pub fn is_immutable(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(rfs::ioctl_getflags(fd)?.contains(IFlags::IMMUTABLE))
}

/// Set or clear the immutable attribute (`chattr +/-i`); returns whether it
/// was set before.
pub fn set_immutable(fd: BorrowedFd<'_>, on: bool) -> io::Result<bool> {
    let flags = rfs::ioctl_getflags(fd)?;
    let was = flags.contains(IFlags::IMMUTABLE);
    if was != on {
        let mut new = flags;
        new.set(IFlags::IMMUTABLE, on);
        rfs::ioctl_setflags(fd, new)?;
    }
    Ok(was)
}

/// Is the immutable attribute set on `name` in `dir` (not following a
/// symlink, not opening it)? `None` when the filesystem does not report
/// the attribute through `statx`.
pub fn immutable_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<bool>> {
    use rfs::{StatxAttributes, StatxFlags};
    let st = rfs::statx(
        dir,
        name,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::BASIC_STATS,
    )?;
    Ok(st
        .stx_attributes_mask
        .contains(StatxAttributes::IMMUTABLE)
        .then(|| st.stx_attributes.contains(StatxAttributes::IMMUTABLE)))
}

/// Copy all data of `src` into the empty `dst`, keeping holes: a reflink
/// where the filesystem offers `FICLONE`; else, for a file that may have
/// holes, only the data extents that `SEEK_DATA`/`SEEK_HOLE` report, each
/// at its own offset, and then the length, so holes (a trailing one too)
/// stay holes. A plain `copy_file_range` of the whole file would write
/// every hole out as zeros on ext4: a 1 GiB sparse file of no blocks would
/// cost 1 GiB per copy. A file with as many blocks as bytes (almost every
/// file) has no hole to keep and is copied in one go, without the walk.
pub fn copy_data(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    if REFLINK_MAY_WORK.load(Ordering::Relaxed) {
        match rfs::ioctl_ficlone(dst, src) {
            Ok(()) => return Ok(()),
            // The filesystem has no reflinks (ext4): stop asking.
            Err(
                rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::NOTTY | rustix::io::Errno::INVAL,
            ) => REFLINK_MAY_WORK.store(false, Ordering::Relaxed),
            Err(_) => {}
        }
    }
    let st = rfs::fstat(src)?;
    let len = len.min(st.st_size as u64);
    if (st.st_blocks as u64).saturating_mul(BLOCK_UNIT) >= len {
        // No room for a hole: allocated at least as much as it holds. (A
        // source that shrinks meanwhile gives a copy as short as it is.)
        copy_range(src, dst, 0, len)?;
        return Ok(());
    }
    let mut pos: u64 = 0;
    let mut written_to: u64 = 0;
    while pos < len {
        let data = match rfs::seek(src, rfs::SeekFrom::Data(pos)) {
            Ok(data) => data,
            // Nothing but a hole from `pos` to the end.
            Err(rustix::io::Errno::NXIO) => break,
            // No SEEK_DATA here (it reports all as data where it works at
            // all): copy the rest as it is.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => pos,
            Err(e) => return Err(e.into()),
        };
        if data >= len {
            break;
        }
        let hole = match rfs::seek(src, rfs::SeekFrom::Hole(data)) {
            Ok(hole) => hole.min(len),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => len,
            Err(e) => return Err(e.into()),
        };
        let want = hole - data;
        let copied = copy_range(src, dst, data, want)?;
        written_to = data + copied;
        if copied < want {
            // The source shrank while we copied: end the copy where it ends.
            let end = (rfs::fstat(src)?.st_size as u64).min(len);
            rfs::ftruncate(dst, end)?;
            return Ok(());
        }
        pos = hole;
    }
    // The copy is as long as the source, a trailing hole included.
    if written_to != len {
        rfs::ftruncate(dst, len)?;
    }
    Ok(())
}

/// The unit of `st_blocks`.
const BLOCK_UNIT: u64 = 512;

/// Copy `len` bytes at offset `at` of `src` to the same offset of `dst`:
/// `copy_file_range`, else (across filesystems) `sendfile`, else
/// read/write. Returns the bytes copied (fewer at the source's end).
fn copy_range(src: BorrowedFd<'_>, dst: BorrowedFd<'_>, at: u64, len: u64) -> io::Result<u64> {
    let mut copied: u64 = 0;
    while copied < len {
        let want = usize::try_from(len - copied)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        let mut off_in = at + copied;
        let mut off_out = at + copied;
        match rfs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
            Ok(0) => break,
            Ok(n) => copied += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(
                rustix::io::Errno::XDEV
                | rustix::io::Errno::INVAL
                | rustix::io::Errno::NOSYS
                | rustix::io::Errno::OPNOTSUPP,
            ) if copied == 0 => return copy_range_by_sendfile(src, dst, at, len),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(copied)
}

/// [`copy_range`] where `copy_file_range` cannot (across filesystems):
/// `sendfile` on the descriptors themselves (`io::copy` would duplicate
/// both and try `copy_file_range` again first: 5 more syscalls a file).
fn copy_range_by_sendfile(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    at: u64,
    len: u64,
) -> io::Result<u64> {
    rfs::seek(dst, rfs::SeekFrom::Start(at))?;
    let mut copied: u64 = 0;
    while copied < len {
        let want = usize::try_from(len - copied)
            .unwrap_or(COPY_CHUNK)
            .min(COPY_CHUNK);
        let mut off_in = at + copied;
        match rfs::sendfile(dst, src, Some(&mut off_in), want) {
            Ok(0) => break, // the source shrank while we copied
            Ok(n) => copied += n as u64,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) if copied == 0 => {
                return copy_range_by_read_write(src, dst, at, len);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(copied)
}

/// Buffer of the read/write fallback.
const READ_WRITE_CHUNK: usize = 1 << 17;

fn copy_range_by_read_write(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    at: u64,
    len: u64,
) -> io::Result<u64> {
    let mut buf = vec![0u8; READ_WRITE_CHUNK];
    let mut copied: u64 = 0;
    while copied < len {
        let want = usize::try_from(len - copied)
            .unwrap_or(READ_WRITE_CHUNK)
            .min(READ_WRITE_CHUNK);
        let n = match rustix::io::pread(src, &mut buf[..want], at + copied) {
            Ok(0) => break,
            Ok(n) => n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        let mut written = 0;
        while written < n {
            match rustix::io::pwrite(dst, &buf[written..n], at + copied + written as u64) {
                Ok(k) => written += k,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        copied += n as u64;
    }
    Ok(copied)
}

/// Take an exclusive `flock` on an open file, waiting for it.
pub fn lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::flock(fd, rfs::FlockOperation::LockExclusive)?)
}

/// Open (making it, mode 0600, if missing) the lock file `path`, never
/// through a symlink, and take its exclusive `flock`, waiting for it; the
/// lock lasts as long as the file is open.
pub fn open_locked(path: &Path) -> io::Result<std::fs::File> {
    let file = open_lock_file(path)?;
    lock_exclusive(file.as_fd())?;
    Ok(file)
}

/// [`open_locked`] without waiting: `None` while another holds the lock.
pub fn open_try_locked(path: &Path) -> io::Result<Option<std::fs::File>> {
    let file = open_lock_file(path)?;
    Ok(try_lock_exclusive(file.as_fd())?.then_some(file))
}

/// Open (making it, 0600) the lock file at `path`, not following a symlink.
fn open_lock_file(path: &Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// The soft limit on open files.
pub fn open_file_limit() -> u64 {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.unwrap_or(u64::MAX)
}

/// Raise the soft limit on open files to the hard limit (as
/// fuse-overlayfs does: a server of many files needs descriptors, and the
/// default soft limit of 1,024 is a relic of `select`). Returns the limit
/// now in force.
pub fn raise_open_file_limit() -> io::Result<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        setrlimit(Resource::Nofile, limit)?;
    }
    Ok(limit.current.unwrap_or(u64::MAX))
}

/// Flush an open file (or directory) to disk.
pub fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::fsync(fd)?)
}

/// Flush a whole filesystem to disk.
pub fn syncfs(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rfs::syncfs(fd)?)
}

/// `prefix` followed by [`unguessable_suffix`]: a name a vserver can
/// neither guess before it appears nor exhaust.
pub fn random_name(prefix: &str) -> io::Result<CString> {
    cname(OsStr::new(&format!("{prefix}{}", unguessable_suffix()?)))
}

/// The effective user ID.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Does this process run as root?
pub fn is_root() -> bool {
    euid() == 0
}

/// Is `fd` a terminal?
pub fn is_terminal(fd: impl AsFd) -> bool {
    rustix::termios::isatty(fd)
}

/// An entry that is not there: `ENOENT`, or `ENOTDIR` (a path component is
/// no directory). Only these mean "absent"; any other error (out of
/// descriptors, I/O) is a failure to report, never a missing name.
pub fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// `Ok(None)` for an absent entry ([`is_absent`]), other errors kept.
pub fn absent_as_none<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Make a C string from a path component (names never hold NUL bytes).
pub fn cname(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// View a C name as an `OsStr`.
pub fn os_name(name: &CStr) -> &OsStr {
    OsStr::from_bytes(name.to_bytes())
}

/// Open the parent of the open directory `dir` (its `..`: at the root of a
/// mount, the directory the mount sits on; at `/`, `/` itself), as an
/// `O_PATH` handle that can be `fstat`ed and walked from.
pub fn open_parent(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        c"..",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The ID of the mount the open file `fd` is on (`statx`'s `stx_mnt_id`):
/// two directories can be renamed between only when it is the same.
pub fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rfs::statx(fd, c"", AtFlags::EMPTY_PATH, rfs::StatxFlags::MNT_ID)?;
    if !rfs::StatxFlags::from_bits_retain(st.stx_mask).contains(rfs::StatxFlags::MNT_ID) {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// Try to take an exclusive `flock` on an open file without waiting:
/// `false` when another open file holds it.
pub fn try_lock_exclusive(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match rfs::flock(fd, rfs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(rustix::io::Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Bytes of randomness in [`unguessable_suffix`].
const SUFFIX_BYTES: usize = 16;

/// 128 random bits from the kernel, in hex: a name part nobody (a
/// vserver's root included) can guess or occupy in advance.
pub fn unguessable_suffix() -> io::Result<String> {
    let mut bytes = [0u8; SUFFIX_BYTES];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

// --- O_PATH handles ---
//
// A handle (`O_PATH | O_NOFOLLOW`) names one inode, whatever happens to its
// name afterwards, and works for every type: symlinks, FIFOs, sockets and
// device nodes too, which cannot be opened for I/O without side effects.
// Owner and times are set through the handle itself (`AT_EMPTY_PATH`);
// mode and xattrs have no such form on every kernel, so they go through
// the handle's `/proc/self/fd/N` magic link, which the kernel resolves to
// exactly the handle's inode (a symlink there is not followed further:
// tests below check it). A symlink's mode is never changed.

/// Open an `O_PATH` handle of `name` in `dir` (a symlink is the symlink
/// itself, never followed).
pub fn open_handle_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    Ok(rfs::openat(
        dir,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// The magic link through which calls reach exactly the inode of `fd`.
pub fn handle_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Change the mode of the inode of a handle (`EOPNOTSUPP` for a symlink).
pub fn chmod_handle(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    if FileType::from_raw_mode(fstat(fd)?.st_mode as _) == FileType::Symlink {
        return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
    }
    Ok(rfs::chmod(handle_path(fd), Mode::from_raw_mode(mode))?)
}

/// Change the owner and/or group of the inode of a handle (`None` keeps
/// it).
pub fn chown_handle(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    Ok(rfs::chownat(
        fd,
        c"",
        uid.map(rfs::Uid::from_raw),
        gid.map(rfs::Gid::from_raw),
        AtFlags::EMPTY_PATH,
    )?)
}

/// Set the times of the inode of a handle (`UTIME_OMIT`/`UTIME_NOW` as in
/// `utimensat`).
pub fn utimens_handle(fd: BorrowedFd<'_>, times: &rfs::Timestamps) -> io::Result<()> {
    Ok(rfs::utimensat(
        rfs::CWD,
        handle_path(fd),
        times,
        AtFlags::empty(),
    )?)
}

/// Open the inode of a handle anew with `flags` (never a name: the same
/// inode, or an error). Only regular files and directories are reopened;
/// anything else answers `ENXIO`, so no device or FIFO is ever opened.
pub fn reopen_handle(fd: BorrowedFd<'_>, flags: OFlags) -> io::Result<OwnedFd> {
    match FileType::from_raw_mode(fstat(fd)?.st_mode as _) {
        FileType::RegularFile | FileType::Directory => {}
        _ => return Err(io::Error::from_raw_os_error(libc::ENXIO)),
    }
    let flags = (flags - OFlags::NOFOLLOW - OFlags::CREATE - OFlags::EXCL) | OFlags::CLOEXEC;
    Ok(rfs::open(handle_path(fd), flags, Mode::empty())?)
}

/// The names of all extended attributes of the inode of a handle.
pub fn list_xattrs_handle(fd: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    let path = handle_path(fd);
    list_names(
        |buf| rfs::listxattr(&path, buf),
        || rfs::listxattr_query(&path),
    )
}

/// The value of one extended attribute of the inode of a handle.
pub fn get_xattr_handle(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Vec<u8>> {
    let path = handle_path(fd);
    read_growing(
        |buf| rfs::getxattr(&path, name, buf),
        || rfs::getxattr_query(&path, name),
    )
}

/// Set one extended attribute of the inode of a handle.
pub fn set_xattr_handle(
    fd: BorrowedFd<'_>,
    name: &CStr,
    value: &[u8],
    flags: rfs::XattrFlags,
) -> io::Result<()> {
    Ok(rfs::setxattr(handle_path(fd), name, value, flags)?)
}

/// Remove one extended attribute of the inode of a handle.
pub fn remove_xattr_handle(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    Ok(rfs::removexattr(handle_path(fd), name)?)
}

/// Do two `stat` results describe one inode?
pub fn same_inode(a: &rfs::Stat, b: &rfs::Stat) -> bool {
    dev_of(a) == dev_of(b) && ino_of(a) == ino_of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything done through a handle of a symlink lands on the symlink,
    /// never on its target; by name, `chmod_at` refuses a symlink.
    #[test]
    fn handles_of_symlinks_never_reach_the_target() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("target"), b"t").unwrap();
        std::os::unix::fs::symlink(d.path().join("target"), d.path().join("link")).unwrap();
        let dir = open_root(d.path()).unwrap();
        let before = stat_at(dir.as_fd(), c"target").unwrap();
        let handle = open_handle_at(dir.as_fd(), c"link").unwrap();
        assert_eq!(
            chmod_handle(handle.as_fd(), 0o4777)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(
            chmod_at(dir.as_fd(), c"link", 0o4777)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::EOPNOTSUPP)
        );
        let omit = rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        };
        let times = rfs::Timestamps {
            last_access: omit,
            last_modification: rfs::Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            },
        };
        utimens_handle(handle.as_fd(), &times).unwrap();
        assert_eq!(
            reopen_handle(handle.as_fd(), OFlags::RDWR)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENXIO)
        );
        if is_root() {
            chown_handle(handle.as_fd(), Some(5), Some(5)).unwrap();
            set_xattr_handle(handle.as_fd(), c"trusted.t", b"1", rfs::XattrFlags::empty()).unwrap();
            assert_eq!(
                get_xattr_handle(handle.as_fd(), c"trusted.t").unwrap(),
                b"1"
            );
        } else {
            println!("SKIP (not root): chown and trusted xattrs through a handle");
        }
        let link = stat_at(dir.as_fd(), c"link").unwrap();
        assert_eq!(link.st_mtime, 1, "the symlink's own time was set");
        let after = stat_at(dir.as_fd(), c"target").unwrap();
        assert_eq!(
            (
                after.st_mode,
                after.st_uid,
                after.st_mtime,
                after.st_mtime_nsec
            ),
            (
                before.st_mode,
                before.st_uid,
                before.st_mtime,
                before.st_mtime_nsec
            ),
            "the target is untouched"
        );
        let target = open_file_read(dir.as_fd(), c"target").unwrap();
        assert!(fget_xattr(target.as_fd(), c"trusted.t").is_err());
    }
}

#[cfg(test)]
mod handle_tests {
    //! The handle calls act on the handle's own inode: on a symlink, never
    //! on its target; and after a rename swaps another entry in under the
    //! name, still on the inode first opened.

    use super::*;

    fn scratch(label: &str) -> (tempfile::TempDir, OwnedFd) {
        let dir = tempfile::Builder::new().prefix(label).tempdir().unwrap();
        let fd = open_root(dir.path()).unwrap();
        (dir, fd)
    }

    #[test]
    fn handle_calls_on_a_symlink_never_reach_its_target() {
        let (dir, fd) = scratch("vskel-handles-");
        let target = dir.path().join("target");
        std::fs::write(&target, b"decoy").unwrap();
        let before = rfs::stat(&target).unwrap();
        symlink_at(c"target", fd.as_fd(), c"link").unwrap();
        let h = open_handle_at(fd.as_fd(), c"link").unwrap();

        let err = chmod_handle(h.as_fd(), 0o4777).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
        // The magic link itself refuses too, so nothing ever reaches the
        // target even without the check above.
        assert!(rfs::chmod(handle_path(h.as_fd()), Mode::from_raw_mode(0o4777)).is_err());
        let times = Times {
            atime: (1_000, 0),
            mtime: (2_000, 0),
        };
        utimens_handle(h.as_fd(), &times.to_rustix()).unwrap();
        // utimensat through the magic link (following it) stops at the
        // link too.
        rfs::utimensat(
            rfs::CWD,
            handle_path(h.as_fd()),
            &Times {
                atime: (1_500, 0),
                mtime: (2_500, 0),
            }
            .to_rustix(),
            AtFlags::empty(),
        )
        .unwrap();
        if is_root() {
            chown_handle(h.as_fd(), Some(4321), Some(4321)).unwrap();
            set_xattr_handle(
                h.as_fd(),
                c"trusted.vskel-test",
                b"v",
                rfs::XattrFlags::empty(),
            )
            .unwrap();
            assert_eq!(
                get_xattr_handle(h.as_fd(), c"trusted.vskel-test").unwrap(),
                b"v"
            );
            assert!(
                list_xattrs_handle(h.as_fd())
                    .unwrap()
                    .contains(&c"trusted.vskel-test".to_owned())
            );
            remove_xattr_handle(h.as_fd(), c"trusted.vskel-test").unwrap();
            set_xattr_handle(
                h.as_fd(),
                c"trusted.vskel-test",
                b"w",
                rfs::XattrFlags::empty(),
            )
            .unwrap();
        }

        let after = rfs::stat(&target).unwrap();
        assert_eq!(after.st_mode, before.st_mode, "the target's mode changed");
        assert_eq!((after.st_uid, after.st_gid), (before.st_uid, before.st_gid));
        assert_eq!(
            after.st_mtime, before.st_mtime,
            "the target's mtime changed"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"decoy");
        assert!(
            flist_xattrs(open_file_read(fd.as_fd(), c"target").unwrap().as_fd())
                .unwrap()
                .is_empty()
        );
        let link = stat_at(fd.as_fd(), c"link").unwrap();
        assert_eq!(link.st_mtime, 2_500, "the symlink's own mtime is set");
        if is_root() {
            assert_eq!((link.st_uid, link.st_gid), (4321, 4321));
            let on_link = llist_xattrs(&dir.path().join("link")).unwrap();
            assert!(on_link.contains(&c"trusted.vskel-test".to_owned()));
        }
    }

    #[test]
    fn a_handle_keeps_its_inode_when_a_symlink_takes_its_name() {
        let (dir, fd) = scratch("vskel-handles-swap-");
        let decoy = dir.path().join("decoy");
        std::fs::write(&decoy, b"decoy").unwrap();
        let decoy_mode = rfs::stat(&decoy).unwrap().st_mode;
        mknod_at(fd.as_fd(), c"fifo", FileType::Fifo, 0o600, 0).unwrap();
        let h = open_handle_at(fd.as_fd(), c"fifo").unwrap();
        let made = fstat(h.as_fd()).unwrap();
        // A vserver's root renames a symlink over the name.
        symlink_at(c"decoy", fd.as_fd(), c"s").unwrap();
        rename_replace(fd.as_fd(), c"s", fd.as_fd(), c"fifo").unwrap();

        chmod_handle(h.as_fd(), 0o4755).unwrap();
        utimens_handle(
            h.as_fd(),
            &Times {
                atime: (7, 0),
                mtime: (7, 0),
            }
            .to_rustix(),
        )
        .unwrap();
        let st = fstat(h.as_fd()).unwrap();
        assert_eq!((st.st_dev, st.st_ino), (made.st_dev, made.st_ino));
        assert_eq!(st.st_mode & 0o7777, 0o4755);
        assert_eq!(st.st_mtime, 7);
        assert_eq!(rfs::stat(&decoy).unwrap().st_mode, decoy_mode);
    }
}
