//! Making new entries for a tree that someone else may be changing at the
//! same moment (a vserver's live tree, whose root user is hostile), so that
//! vskel, running as root, only ever acts on what it made itself.
//!
//! * An entry is made exclusively (`O_CREAT | O_EXCL`, `mkdir`, `mknod`,
//!   `symlink`, `link`: each fails on an existing name). In a live tree it
//!   is made under a random name in a private scratch directory on the
//!   tree's filesystem (`<root>/.vskel/staging/`, mode 0700, outside every
//!   tree), which nothing of a vserver can reach while the entry is being
//!   made.
//! * Its owner, mode, xattrs and times are then set through a descriptor of
//!   what was made: the open file, the open directory, or for other types
//!   an `O_PATH` handle opened right after making it and checked (type,
//!   filesystem, one link, device number, symlink target, inode of a hard
//!   link) to be that entry. No name is trusted between two calls.
//! * [`install`] moves the finished entry into the tree with one
//!   `rename()`, replacing what was there (a protected, immutable file
//!   moved or replaced has its attribute lifted for that rename and set
//!   again on the inode the skel and other vservers still share).
//! * An entry made but not installed is removed on every error path: its
//!   [`Temp`] guard removes it on drop, and only if the name still holds
//!   the inode it made.
//!
//! Why install this way. A rename from the scratch directory moves only
//! the new entry; the old one it replaces is unlinked where it is. A
//! directory is never moved out of a tree, not even for a moment: a
//! process inside it (its working directory) could then climb out of the
//! vserver with `..`. So when the old entry is a directory (which a rename
//! cannot replace by a file), or the new entry is one and the name is
//! taken, the new entry is first renamed under a fresh random name beside
//! the old one, the two are swapped with `RENAME_EXCHANGE` (the name never
//! goes missing) and the old one is removed from that random name, inside
//! the tree. That name is journalled before it is used, so a sync killed
//! in between removes it next time; no other name of the tree is ever
//! removed for being "a temporary". A vserver's root can rename anything
//! over that random name once it sees it, but what it swaps in is then its
//! own entry at its own name: the identity check before the exchange
//! refuses it, and at worst the exchange installs an entry of the tree into
//! the tree, which the vserver's root could do itself.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{FileType, Stat};
use tracing::warn;

use super::remove::remove_tree_at;
use crate::sys;

/// Prefix of every random name vskel uses in a directory.
pub const TEMP_PREFIX: &str = ".#vskel-";

/// Fresh random names tried before giving up: one of 2^128 is taken only
/// if something is badly wrong (a broken random source).
const RANDOM_NAME_ATTEMPTS: usize = 8;

/// How often an install restarts when the entry at its name changes type
/// under it (a concurrent writer in the tree).
const INSTALL_ATTEMPTS: usize = 4;

/// Mode of a directory while it is being made.
const MAKING_DIR_MODE: u32 = 0o700;
/// Mode of a file while it is being written.
const MAKING_FILE_MODE: u32 = 0o600;

/// An entry vskel made and has not handed over yet: removed on drop unless
/// [`Temp::keep`] was called, and only if its name still holds the inode
/// that was made.
#[derive(Debug)]
pub struct Temp<'d> {
    dir: BorrowedFd<'d>,
    name: CString,
    id: (u64, u64),
    armed: bool,
}

impl<'d> Temp<'d> {
    fn new(dir: BorrowedFd<'d>, name: CString, made: &Stat) -> Self {
        Temp {
            dir,
            name,
            id: id_of(made),
            armed: true,
        }
    }

    /// The name it has now.
    pub fn name(&self) -> &CStr {
        &self.name
    }

    /// (device, inode) of what was made.
    pub fn id(&self) -> (u64, u64) {
        self.id
    }

    /// The entry is where it belongs: do not remove it.
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let shown = sys::os_name(&self.name).to_string_lossy();
        match sys::stat_at(self.dir, &self.name) {
            Ok(st) if id_of(&st) == self.id => {
                if let Err(e) = remove_tree_at(self.dir, &self.name) {
                    warn!("cannot remove the unfinished {shown}: {e}");
                }
            }
            Ok(_) => warn!("{shown} was replaced by something vskel did not make; left alone"),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => warn!("cannot check the unfinished {shown}: {e}"),
        }
    }
}

/// Make an entry with `make(name)` in `dir`: as `name`, or (`None`) under a
/// fresh random name, tried again with another while one is taken.
/// Returns the name used.
fn made_as(
    name: Option<&CStr>,
    mut make: impl FnMut(&CStr) -> io::Result<()>,
) -> io::Result<CString> {
    if let Some(name) = name {
        make(name)?;
        return Ok(name.to_owned());
    }
    for _ in 0..RANDOM_NAME_ATTEMPTS {
        let temp = sys::random_name(TEMP_PREFIX)?;
        match make(&temp) {
            Ok(()) => return Ok(temp),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every random temporary name tried was taken",
    ))
}

/// A new regular file `name` (or a random name) in `dir`, open for
/// writing, mode 0600 until its metadata is applied.
pub fn create_file<'d>(
    dir: BorrowedFd<'d>,
    name: Option<&CStr>,
) -> io::Result<(Temp<'d>, OwnedFd)> {
    let mut fd = None;
    let name = made_as(name, |at| {
        fd = Some(sys::create_file(dir, at, MAKING_FILE_MODE)?);
        Ok(())
    })?;
    let fd = fd.ok_or_else(|| io::Error::other("no file was made"))?;
    let st = sys::fstat(fd.as_fd())?;
    Ok((Temp::new(dir, name, &st), fd))
}

/// A new directory `name` (or a random name) in `dir`, open, mode 0700
/// until its metadata is applied.
pub fn make_dir<'d>(dir: BorrowedFd<'d>, name: Option<&CStr>) -> io::Result<(Temp<'d>, OwnedFd)> {
    let name = made_as(name, |at| sys::mkdir_at(dir, at, MAKING_DIR_MODE))?;
    // Nothing else can be at the name in a private directory; elsewhere
    // `O_NOFOLLOW | O_DIRECTORY` and the checks keep to a directory of
    // ours, new and empty.
    let fd = sys::open_subdir(dir, &name)?;
    let st = sys::fstat(fd.as_fd())?;
    // (Not its link count: btrfs counts 1 for every directory.)
    let empty = sys::read_dir(fd.as_fd())?.is_empty();
    check(&st, dir, FileType::Directory, empty)?;
    Ok((Temp::new(dir, name, &st), fd))
}

/// A new device node, FIFO or socket `name` (or a random name) in `dir`,
/// with an `O_PATH` handle checked to be it.
pub fn make_special<'d>(
    dir: BorrowedFd<'d>,
    name: Option<&CStr>,
    kind: FileType,
    mode: u32,
    rdev: u64,
) -> io::Result<(Temp<'d>, OwnedFd)> {
    let name = made_as(name, |at| {
        sys::mknod_at(dir, at, kind, mode & MAKING_FILE_MODE, rdev)
    })?;
    let handle = sys::open_handle_at(dir, &name)?;
    let st = sys::fstat(handle.as_fd())?;
    let is_device = matches!(kind, FileType::CharacterDevice | FileType::BlockDevice);
    let rdev_ok = !is_device || st.st_rdev as u64 == rdev;
    check(&st, dir, kind, rdev_ok && sys::nlink_of(&st) == 1)?;
    Ok((Temp::new(dir, name, &st), handle))
}

/// A new symlink `name` (or a random name) in `dir` pointing at `target`,
/// with an `O_PATH` handle checked to be it.
pub fn make_symlink<'d>(
    dir: BorrowedFd<'d>,
    name: Option<&CStr>,
    target: &CStr,
) -> io::Result<(Temp<'d>, OwnedFd)> {
    let name = made_as(name, |at| sys::symlink_at(target, dir, at))?;
    let handle = sys::open_handle_at(dir, &name)?;
    let st = sys::fstat(handle.as_fd())?;
    let same_target = sys::readlink_at(handle.as_fd(), c"")? == target;
    check(
        &st,
        dir,
        FileType::Symlink,
        same_target && sys::nlink_of(&st) == 1,
    )?;
    Ok((Temp::new(dir, name, &st), handle))
}

/// A new hard link `name` (or a random name) in `dir` made by `link(at)`,
/// which must be the inode `expect` (device, inode), when given; never a
/// directory.
pub fn make_link<'d>(
    dir: BorrowedFd<'d>,
    name: Option<&CStr>,
    expect: Option<(u64, u64)>,
    link: impl FnMut(&CStr) -> io::Result<()>,
) -> io::Result<Temp<'d>> {
    let name = made_as(name, link)?;
    let handle = sys::open_handle_at(dir, &name)?;
    let st = sys::fstat(handle.as_fd())?;
    let kind = kind_of(&st);
    let right_inode = expect.is_none_or(|id| id == id_of(&st));
    check(&st, dir, kind, right_inode && kind != FileType::Directory)?;
    Ok(Temp::new(dir, name, &st))
}

/// Refuse an entry that is not what was just made.
fn check(st: &Stat, dir: BorrowedFd<'_>, kind: FileType, ok: bool) -> io::Result<()> {
    let same_fs = sys::dev_of(st) == sys::dev_of(&sys::fstat(dir)?);
    if ok && same_fs && kind_of(st) == kind {
        return Ok(());
    }
    Err(io::Error::other(
        "the entry just made was replaced by another one before its metadata was set",
    ))
}

/// Move the finished entry `temp` (in the private directory it was made in)
/// to `name` in tree directory `dir`, replacing what is there. `note_temp`
/// is told, before it is used, the random name in `dir` that the old entry
/// is swapped out to when rename cannot replace it (see the module doc);
/// it must record it durably.
pub fn install(
    temp: Temp<'_>,
    dir: BorrowedFd<'_>,
    name: &CStr,
    note_temp: &mut dyn FnMut(&CStr) -> io::Result<()>,
) -> io::Result<()> {
    let placing_dir =
        sys::stat_at(temp.dir, &temp.name).map(|st| kind_of(&st) == FileType::Directory)?;
    for _ in 0..INSTALL_ATTEMPTS {
        let moved = if placing_dir {
            sys::rename_noreplace(temp.dir, &temp.name, dir, name)
        } else {
            sys::rename_replace(temp.dir, &temp.name, dir, name)
        };
        match moved {
            Ok(()) => {
                temp.keep();
                return Ok(());
            }
            // A directory holds the name (for a file), or anything does
            // (for a directory).
            Err(e) if matches!(e.raw_os_error(), Some(libc::EISDIR | libc::EEXIST)) => {}
            // An immutable (protected, shared) file is moved or replaced.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !placing_dir => {
                return replace_immutable(temp, dir, name, e);
            }
            Err(e) => return Err(e),
        }
        match sys::stat_at(dir, name) {
            Ok(_) => return swap_in(temp, dir, name, note_temp),
            // Gone meanwhile: a plain rename will do.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(
        "the entry at this name kept changing while it was replaced",
    ))
}

/// Install the file `temp` where a rename was refused (EPERM) because an
/// immutable (protected, shared) inode takes part: the link being
/// installed (a skel inode hard-linked into the tree), the file it
/// replaces, or both. Their attribute is lifted (crash-safely, see
/// [`super::unlock`]) for the one rename and set again on each inode that
/// other names (the skel's, other vservers') still hold. `refused` is
/// returned when neither is an immutable regular file.
fn replace_immutable(
    temp: Temp<'_>,
    dir: BorrowedFd<'_>,
    name: &CStr,
    refused: io::Error,
) -> io::Result<()> {
    let immutable_at = |at: BorrowedFd<'_>, n: &CStr| -> io::Result<Option<OwnedFd>> {
        let st = match sys::stat_at(at, n) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
            Err(e) => return Err(e),
        };
        if kind_of(&st) != FileType::RegularFile {
            return Ok(None);
        }
        let fd = sys::open_file_read(at, n)?;
        let same = sys::ino_of(&sys::fstat(fd.as_fd())?) == sys::ino_of(&st);
        Ok((same && sys::is_immutable(fd.as_fd())?).then_some(fd))
    };
    let source = immutable_at(temp.dir, &temp.name)?;
    let target = immutable_at(dir, name)?;
    if source.is_none() && target.is_none() {
        return Err(refused);
    }
    let mut lifted = Vec::new();
    for fd in source.iter().chain(target.iter()) {
        if let Some(l) = super::unlock::lift(fd.as_fd())? {
            lifted.push((l, fd));
        }
    }
    let moved = sys::rename_replace(temp.dir, &temp.name, dir, name);
    for (l, fd) in lifted {
        if sys::fstat(fd.as_fd())?.st_nlink > 0 {
            l.restore()?;
        } else {
            l.release();
        }
    }
    moved?;
    temp.keep();
    Ok(())
}

/// Install `temp` over an entry a rename cannot replace: beside it under a
/// random name, exchanged with it, the old one removed from there.
fn swap_in(
    temp: Temp<'_>,
    dir: BorrowedFd<'_>,
    name: &CStr,
    note_temp: &mut dyn FnMut(&CStr) -> io::Result<()>,
) -> io::Result<()> {
    let id = temp.id;
    let beside = made_as(None, |at| {
        note_temp(at)?;
        sys::rename_noreplace(temp.dir, &temp.name, dir, at)
    })?;
    temp.keep(); // moved: the guard below now covers it
    let ours = Temp {
        dir,
        name: beside,
        id,
        armed: true,
    };
    let at_beside = sys::stat_at(dir, &ours.name)?;
    if id_of(&at_beside) != id {
        return Err(io::Error::other(
            "the new entry was replaced before it could be put in place",
        ));
    }
    match sys::rename_exchange(dir, &ours.name, dir, name) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            // The old entry went meanwhile.
            sys::rename_noreplace(dir, &ours.name, dir, name)?;
            ours.keep();
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    // What is beside now is the old entry; it goes (inside the tree).
    let beside = ours.name.clone();
    ours.keep();
    remove_tree_at(dir, &beside)
}

#[allow(clippy::unnecessary_cast)]
fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

fn id_of(st: &Stat) -> (u64, u64) {
    (sys::dev_of(st), sys::ino_of(st))
}
