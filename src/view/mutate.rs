//! Changing the view: making, linking, removing and renaming entries, and
//! changing attributes and xattrs. Every change lands in the upper layer
//! (copying up what it touches first); names removed from a lower layer
//! become whiteouts, renamed lower directories get a redirect.

use std::ffi::{CStr, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustix::fs::{FileType, RenameFlags, Timespec, Timestamps};

use super::copyup::lower_has;
use super::format;
use super::killpriv;
use super::node::Found;
use super::overlay::{Overlay, UPPER_TTL};
use super::types::{Attrs, Entry, Errno, Layer, OpResult, cname, errno};
use super::types::{DirInfo, Resolved};
use crate::sys;
use crate::sys::absent_as_none;
use crate::tree::remove::remove_tree_at;
use tracing::debug;

/// Who asks: the caller's IDs become the owner of what is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// User ID.
    pub uid: u32,
    /// Group ID.
    pub gid: u32,
}

/// What to make.
#[derive(Debug, Clone, Copy)]
pub enum Make<'a> {
    /// A regular file (the creator gets an open descriptor back).
    File {
        /// Permission bits asked for (before the umask).
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Permission bits asked for (before the umask).
        mode: u32,
    },
    /// A device node, FIFO or socket.
    Node {
        /// Which of them.
        kind: FileType,
        /// Permission bits asked for (before the umask).
        mode: u32,
        /// Device number (devices only).
        rdev: u64,
    },
    /// A symbolic link.
    Symlink {
        /// What it points at.
        target: &'a CStr,
    },
}

/// Attribute changes (`None` leaves one as it is).
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// A truncate that also clears the suid and sgid bits (the kernel asked
    /// for it), by a caller of this group (see [`super::killpriv`]).
    pub kill_suidgid: Option<u32>,
    /// `chown(f, -1, -1)` by this caller (an empty SETATTR): clears what a
    /// chown clears (see [`super::killpriv::chowned_mode`]).
    pub chown_nothing: Option<Caller>,
}

/// A time to set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// This time.
    At(SystemTime),
}

/// The tree lock held for a change. What was cached while the change
/// was under way is dropped with it, as it may describe the state before.
pub struct Exclusive<'a> {
    overlay: &'a Overlay,
    _guard: parking_lot::RwLockWriteGuard<'a, ()>,
}

impl Drop for Exclusive<'_> {
    fn drop(&mut self) {
        self.overlay.stale_caches();
    }
}

/// Bit of a directory mode that makes new entries take its group.
const SET_GID: u32 = 0o2000;

impl Overlay {
    /// The tree lock, exclusively, for a change.
    pub(super) fn exclusive(&self) -> Exclusive<'_> {
        let guard = self.tree.write();
        self.stale_caches();
        Exclusive {
            overlay: self,
            _guard: guard,
        }
    }

    /// Cached listings and directories may no longer be true.
    fn stale_caches(&self) {
        self.caches.begin_change();
    }

    /// A directory was renamed, removed or copied up: cached layer
    /// directories may be wrong now, and again when the change ends.
    pub(super) fn dirs_changed(&self) {
        self.caches.dirs_changed();
    }

    /// Copy up directory `parent` and open its upper copy.
    fn upper_parent(&self, parent: u64) -> OpResult<(DirInfo, Arc<OwnedFd>)> {
        self.copy_up(parent)?;
        let dir = self.dir_info(parent)?;
        let fd = self.upper_dir_cached(&dir)?;
        Ok((dir, fd))
    }

    /// Make a new entry `name` in `parent`. For a file, also returns a
    /// descriptor open for writing (`O_RDWR`).
    pub fn make(
        &self,
        parent: u64,
        name: &OsStr,
        what: Make<'_>,
        umask: u32,
        caller: Caller,
    ) -> OpResult<(Entry, Option<OwnedFd>)> {
        let cname = cname(name)?;
        // A 0/0 character device is a whiteout in the upper layer: made
        // there it would hide itself (kernel overlayfs refuses it too).
        if let Make::Node { kind, rdev, .. } = what
            && format::is_whiteout_kind(kind, rdev)
        {
            return Err(Errno::PERM);
        }
        let _exclusive = self.exclusive();
        let (dir, parent_fd) = self.upper_parent(parent)?;
        let parent_fd = parent_fd.as_fd();
        // A whiteout here hides a lower entry: the new entry replaces it
        // (and a new directory must not show the lower one's content).
        let over_whiteout = match sys::stat_at(parent_fd, &cname) {
            Ok(st) if format::is_whiteout(&st) => true,
            Ok(_) => return Err(Errno::EXIST),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => false,
            Err(e) => return Err(errno(e)),
        };
        if !over_whiteout {
            // Shown from a lower layer? (Whiteouts within the lowers count.)
            match self.resolve(&dir.lower_only(), name) {
                Ok(_) => return Err(Errno::EXIST),
                Err(e) if e == Errno::NOENT => {}
                Err(e) => return Err(e),
            }
        }
        let parent_st = sys::fstat(parent_fd).map_err(errno)?;
        let parent_setgid = parent_st.st_mode as u32 & SET_GID != 0;
        let gid = if parent_setgid {
            parent_st.st_gid as u32
        } else {
            caller.gid
        };
        let mask = |mode: u32| mode & !umask & 0o7777;
        // A directory made in a setgid directory is setgid too (as Linux
        // does); files only take the group.
        let dir_mode = |mode: u32| {
            if parent_setgid {
                mask(mode) | SET_GID
            } else {
                mask(mode)
            }
        };
        // Made in place, as kernel overlayfs does; over a whiteout, made
        // under a scratch name in work/ and exchanged with the whiteout
        // (atomic), so the lower entry never shows through.
        let tmp = self.work_name();
        let (at, at_name) = if over_whiteout {
            (self.work.fd(), tmp.as_c_str())
        } else {
            (parent_fd, cname.as_c_str())
        };
        let made = (|| -> std::io::Result<Option<OwnedFd>> {
            let file = match what {
                Make::File { mode } => Some(sys::create_rw(at, at_name, mask(mode))?),
                Make::Dir { mode } => {
                    sys::mkdir_at(at, at_name, dir_mode(mode))?;
                    if over_whiteout {
                        let d = sys::open_subdir(at, at_name)?;
                        format::set_opaque(d.as_fd())?;
                    }
                    None
                }
                Make::Node { kind, mode, rdev } => {
                    sys::mknod_at(at, at_name, kind, mask(mode), rdev)?;
                    None
                }
                Make::Symlink { target } => {
                    sys::symlink_at(target, at, at_name)?;
                    None
                }
            };
            match &file {
                Some(fd) => sys::fchown(fd.as_fd(), caller.uid, gid)?,
                None => sys::lchown_at(at, at_name, caller.uid, gid)?,
            }
            // chown may clear setuid/setgid; the mode is the caller's
            match (what, &file) {
                (Make::File { mode }, Some(fd)) => sys::fchmod(fd.as_fd(), mask(mode))?,
                (Make::Dir { mode }, _) => sys::chmod_at(at, at_name, dir_mode(mode))?,
                (Make::File { mode } | Make::Node { mode, .. }, _) => {
                    sys::chmod_at(at, at_name, mask(mode))?
                }
                (Make::Symlink { .. }, _) => {}
            }
            Ok(file)
        })();
        let file = match made {
            Ok(file) => file,
            Err(e) => {
                if let Err(cleanup) = remove_tree_at(at, at_name) {
                    debug!("cleaning up a failed create: {cleanup}");
                }
                return Err(errno(e));
            }
        };
        if over_whiteout {
            self.move_into_place(&tmp, parent_fd, &cname, true)?;
        }
        let st = sys::stat_at(parent_fd, &cname).map_err(errno)?;
        let made = Resolved {
            id: self.upper_ino(&st),
            found: Found {
                kind: FileType::from_raw_mode(st.st_mode as _),
                upper: true,
                lower: None,
            },
            stat: st,
            merged: false,
        };
        Ok((self.enter(parent, name, made, true), file))
    }

    /// Move `work/tmp` to `name` in the upper `dir`; over a whiteout by an
    /// atomic exchange, after which the whiteout is removed.
    fn move_into_place(
        &self,
        tmp: &CStr,
        dir: BorrowedFd<'_>,
        name: &CStr,
        over_whiteout: bool,
    ) -> OpResult<()> {
        let work = self.work.fd();
        let moved = if over_whiteout {
            rustix::fs::renameat_with(work, tmp, dir, name, RenameFlags::EXCHANGE)
                .map_err(|e| errno(e.into()))
                .map(|()| {
                    let _ = sys::unlink_at(work, tmp);
                })
        } else {
            sys::rename_noreplace(work, tmp, dir, name).map_err(errno)
        };
        if moved.is_err() {
            let _ = remove_tree_at(work, tmp);
        }
        moved
    }

    /// Give node `id` another name, `name` in `parent`.
    pub fn link(&self, id: u64, parent: u64, name: &OsStr) -> OpResult<Entry> {
        let cname = cname(name)?;
        let _exclusive = self.exclusive();
        let dir = self.dir_info(parent)?;
        match self.resolve(&dir, name) {
            Ok(_) => return Err(Errno::EXIST),
            Err(e) if e == Errno::NOENT => {}
            Err(e) => return Err(e),
        }
        self.copy_up(id)?;
        let src = self.locate(id)?;
        if src.layer != Layer::Upper {
            return Err(Errno::IO); // copied up above
        }
        let (_, parent_fd) = self.upper_parent(parent)?;
        if let Ok(st) = sys::stat_at(parent_fd.as_fd(), &cname)
            && format::is_whiteout(&st)
        {
            sys::unlink_at(parent_fd.as_fd(), &cname).map_err(errno)?;
        }
        sys::link_at(src.parent.as_fd(), &src.name, parent_fd.as_fd(), &cname).map_err(errno)?;
        self.lookup_locked(parent, name, false)
    }

    /// Remove the non-directory `name` from `parent`.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> OpResult<()> {
        self.remove(parent, name, false)
    }

    /// Remove the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> OpResult<()> {
        self.remove(parent, name, true)
    }

    fn remove(&self, parent: u64, name: &OsStr, want_dir: bool) -> OpResult<()> {
        let cname = cname(name)?;
        let _exclusive = self.exclusive();
        let dir = self.dir_info(parent)?;
        let r = self.resolve(&dir, name)?;
        let is_dir = r.found.kind == FileType::Directory;
        match (want_dir, is_dir) {
            (true, false) => return Err(Errno::NOTDIR),
            (false, true) => return Err(Errno::ISDIR),
            _ => {}
        }
        if is_dir {
            let child = DirInfo {
                id: r.id,
                path: super::node::child_path(&dir.path, name),
                upper: r.found.upper,
                lower: r.found.lower.clone(),
            };
            if !self.list(&child)?.is_empty() {
                return Err(Errno::NOTEMPTY);
            }
        }
        if is_dir {
            self.dirs_changed();
        }
        let in_upper = r.found.upper || self.copy_up_shared_lower_file(parent, name, &r)?;
        let needs_whiteout = lower_has(self, dir.lower.as_ref(), name)?;
        let (_, parent_fd) = self.upper_parent(parent)?;
        self.remove_upper(parent_fd.as_fd(), &cname, in_upper, needs_whiteout)?;
        self.nodes().drop_name(r.id, parent, name);
        Ok(())
    }

    /// Take `name` out of the upper `dir`, leaving a whiteout when a lower
    /// entry must stay hidden.
    fn remove_upper(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        in_upper: bool,
        needs_whiteout: bool,
    ) -> OpResult<()> {
        match (in_upper, needs_whiteout) {
            (false, false) => Ok(()),
            (false, true) => format::make_whiteout(dir, name).map_err(errno),
            (true, false) => {
                // Nothing below to hide: removed in place (a directory
                // still holding whiteouts goes the long way).
                match sys::unlink_at(dir, name).or_else(|e| match e.raw_os_error() {
                    Some(libc::EISDIR) => sys::rmdir_at(dir, name),
                    _ => Err(e),
                }) {
                    Ok(()) => Ok(()),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                        self.remove_upper_via_work(dir, name, false)
                    }
                    Err(e) => Err(errno(e)),
                }
            }
            (true, true) => self.remove_upper_via_work(dir, name, true),
        }
    }

    /// Move `name` out of the upper `dir` into work/ (atomically leaving a
    /// whiteout if asked) and delete it there.
    fn remove_upper_via_work(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        whiteout: bool,
    ) -> OpResult<()> {
        let work = self.work.fd();
        let tmp = self.work_name();
        let flags = if whiteout {
            RenameFlags::WHITEOUT
        } else {
            RenameFlags::empty()
        };
        rustix::fs::renameat_with(dir, name, work, &tmp, flags).map_err(|e| errno(e.into()))?;
        remove_tree_at(work, &tmp).map_err(errno)
    }

    /// Rename `name` in `parent` to `new_name` in `new_parent`.
    pub fn rename(
        &self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> OpResult<()> {
        let cname = cname(name)?;
        let new_cname = cname_of(new_name)?;
        if new_name.len() > super::types::NAME_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        let _exclusive = self.exclusive();
        let src_dir = self.dir_info(parent)?;
        let dst_dir = self.dir_info(new_parent)?;
        let src = self.resolve(&src_dir, name)?;
        let dst = match self.resolve(&dst_dir, new_name) {
            Ok(d) => Some(d),
            Err(e) if e == Errno::NOENT => None,
            Err(e) => return Err(e),
        };
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        if flags.contains(RenameFlags::NOREPLACE) && dst.is_some() {
            return Err(Errno::EXIST);
        }
        if exchange && dst.is_none() {
            return Err(Errno::NOENT);
        }
        if let Some(d) = &dst {
            if d.id == src.id && !exchange {
                return Ok(()); // two names of one inode: nothing to do
            }
            let src_is_dir = src.found.kind == FileType::Directory;
            let dst_is_dir = d.found.kind == FileType::Directory;
            if !exchange {
                if src_is_dir && !dst_is_dir {
                    return Err(Errno::NOTDIR);
                }
                if !src_is_dir && dst_is_dir {
                    return Err(Errno::ISDIR);
                }
                if dst_is_dir {
                    let child = DirInfo {
                        id: d.id,
                        path: super::node::child_path(&dst_dir.path, new_name),
                        upper: d.found.upper,
                        lower: d.found.lower.clone(),
                    };
                    if !self.list(&child)?.is_empty() {
                        return Err(Errno::NOTEMPTY);
                    }
                }
            }
        }
        self.dirs_changed();
        // Everything involved goes to the upper layer first.
        self.nodes()
            .enter(src.id, parent, name, src.found.clone(), false);
        let src_needs_whiteout = lower_has(self, src_dir.lower.as_ref(), name)?;
        let dst_lower_exists = lower_has(self, dst_dir.lower.as_ref(), new_name)?;
        let result = (|| {
            self.copy_up(src.id)?;
            self.mark_moved_dir(src.id)?;
            if let Some(d) = &dst {
                self.nodes()
                    .enter(d.id, new_parent, new_name, d.found.clone(), false);
                if exchange {
                    self.copy_up(d.id)?;
                    self.mark_moved_dir(d.id)?;
                } else {
                    self.copy_up_shared_lower_file(new_parent, new_name, d)?;
                }
            }
            let (_, from) = self.upper_parent(parent)?;
            let (_, to) = self.upper_parent(new_parent)?;
            if exchange {
                // A directory without lower content of its own, swapped to
                // where a lower directory is, must not show that one's
                // content (kernel overlayfs marks it opaque too).
                let own_only =
                    |r: &Resolved| r.found.kind == FileType::Directory && r.found.lower.is_none();
                if own_only(&src) && dst_lower_exists {
                    let moved = sys::open_subdir(from.as_fd(), &cname).map_err(errno)?;
                    format::set_opaque(moved.as_fd()).map_err(errno)?;
                }
                if dst.as_ref().is_some_and(own_only) && src_needs_whiteout {
                    let moved = sys::open_subdir(to.as_fd(), &new_cname).map_err(errno)?;
                    format::set_opaque(moved.as_fd()).map_err(errno)?;
                }
                return rustix::fs::renameat_with(
                    from.as_fd(),
                    &cname,
                    to.as_fd(),
                    &new_cname,
                    RenameFlags::EXCHANGE,
                )
                .map_err(|e| errno(e.into()));
            }
            let is_dir = src.found.kind == FileType::Directory;
            // A directory without lower content of its own, put where a
            // lower directory is (shown or hidden), must not show that
            // one's content.
            if is_dir && src.found.lower.is_none() && dst_lower_exists {
                let moved = sys::open_subdir(from.as_fd(), &cname).map_err(errno)?;
                format::set_opaque(moved.as_fd()).map_err(errno)?;
            }
            // Linux renames no directory over a whiteout: exchange the two
            // (atomic), which leaves the whiteout at the old name, where it
            // is wanted or removed.
            let over_whiteout = dst.is_none()
                && absent_as_none(sys::stat_at(to.as_fd(), &new_cname))
                    .map_err(errno)?
                    .is_some_and(|st| format::is_whiteout(&st));
            if is_dir && over_whiteout {
                rustix::fs::renameat_with(
                    from.as_fd(),
                    &cname,
                    to.as_fd(),
                    &new_cname,
                    RenameFlags::EXCHANGE,
                )
                .map_err(|e| errno(e.into()))?;
                if !src_needs_whiteout {
                    sys::unlink_at(from.as_fd(), &cname).map_err(errno)?;
                }
                return Ok(());
            }
            // An empty directory replaced may still hold whiteouts.
            if let Some(d) = &dst
                && d.found.kind == FileType::Directory
                && d.found.upper
                && let Ok(old) = sys::open_subdir(to.as_fd(), &new_cname)
            {
                crate::tree::remove::clear_dir(old.as_fd()).map_err(errno)?;
            }
            // A whiteout at the old name, atomically for files; Linux
            // makes none for directories, so there it follows the rename (a
            // crash in between shows the old lower directory again; nothing
            // is lost).
            let flags = if src_needs_whiteout && !is_dir {
                RenameFlags::WHITEOUT
            } else {
                RenameFlags::empty()
            };
            rustix::fs::renameat_with(from.as_fd(), &cname, to.as_fd(), &new_cname, flags)
                .map_err(|e| errno(e.into()))?;
            if src_needs_whiteout && is_dir {
                format::make_whiteout(from.as_fd(), &cname).map_err(errno)?;
            }
            Ok(())
        })();
        if result.is_ok() {
            let mut nodes = self.nodes();
            match &dst {
                Some(d) if exchange => nodes.rename(d.id, new_parent, new_name, parent, name),
                Some(d) => nodes.drop_name(d.id, new_parent, new_name),
                None => {}
            }
            nodes.rename(src.id, parent, name, new_parent, new_name);
            drop(nodes);
            self.touch(src.id);
            if let Some(d) = &dst {
                self.touch(d.id);
            }
        }
        // The lookups taken above for the rename are given back.
        self.nodes().forget(src.id, 1);
        if let Some(d) = &dst {
            self.nodes().forget(d.id, 1);
        }
        result
    }

    /// A directory with lower content that moves records where that content
    /// is (absolute redirect), so it follows the directory.
    fn mark_moved_dir(&self, id: u64) -> OpResult<()> {
        let (kind, lower) = {
            let nodes = self.nodes();
            let node = nodes.get(id).ok_or(Errno::NOENT)?;
            (node.kind(), nodes.lower_of(id))
        };
        let Some(lower) = lower.filter(|_| kind == FileType::Directory) else {
            return Ok(());
        };
        let (dir, name) = self.where_is(id)?;
        let parent = self.upper_dir(&dir.path)?;
        let fd = sys::open_subdir(parent.as_fd(), &cname(&name)?).map_err(errno)?;
        format::set_redirect(fd.as_fd(), lower.path()).map_err(errno)
    }

    /// Change attributes of node `id` (copying it up). `fh` is the open
    /// file the request came with, if any; a node whose every name is gone
    /// is changed through any open file of it (the kernel sends no handle
    /// with `fchmod` and the like). When that file is in the upper layer
    /// the change acts on its descriptor, which is right even after every
    /// name of the file is gone. Otherwise it acts on an `O_PATH` handle of
    /// the checked upper entry, never on a name. Returns the attributes
    /// after the change.
    pub fn setattr(
        &self,
        id: u64,
        change: &SetAttr,
        fh: Option<u64>,
    ) -> OpResult<(Attrs, Duration)> {
        let _exclusive = self.exclusive();
        let open = match fh.and_then(|fh| self.handles.open_file(fh)) {
            Some(open) => Some(open),
            None if self.is_unlinked(id) => self.handles.any_file_of(id),
            None => None,
        };
        if let Some(open) = open.filter(|o| o.layer == Layer::Upper) {
            let fd = open.file.as_fd();
            apply_attrs(Target::Open(fd), change)?;
            return Ok((self.fgetattr(id, fd)?, UPPER_TTL));
        }
        self.copy_up(id)?;
        let (handle, layer) = self.handle_of(id)?;
        if layer != Layer::Upper {
            return Err(Errno::IO); // copied up above: a lower file is never changed
        }
        apply_attrs(Target::Handle(handle.as_fd()), change)?;
        self.getattr_locked(id)
    }

    /// Set an xattr of node `id` (copying it up).
    pub fn setxattr(&self, id: u64, name: &CStr, value: &[u8], flags: i32) -> OpResult<()> {
        if format::is_private_xattr(name.to_bytes()) {
            return Err(Errno::PERM);
        }
        let _exclusive = self.exclusive();
        let handle = self.upper_handle(id)?;
        let flags = rustix::fs::XattrFlags::from_bits_truncate(flags as _);
        sys::set_xattr_handle(handle.as_fd(), name, value, flags).map_err(errno)
    }

    /// Remove an xattr of node `id` (copying it up). One it does not have
    /// is ENODATA, and nothing is copied up (as kernel overlayfs does).
    pub fn removexattr(&self, id: u64, name: &CStr) -> OpResult<()> {
        if format::is_private_xattr(name.to_bytes()) {
            return Err(Errno::NODATA);
        }
        self.getxattr(id, name)?;
        let _exclusive = self.exclusive();
        let handle = self.upper_handle(id)?;
        sys::remove_xattr_handle(handle.as_fd(), name).map_err(errno)
    }

    /// Copy node `id` up and take a handle of its upper entry.
    fn upper_handle(&self, id: u64) -> OpResult<OwnedFd> {
        self.copy_up(id)?;
        match self.handle_of(id)? {
            (handle, Layer::Upper) => Ok(handle),
            (_, Layer::Lower(_)) => Err(Errno::IO), // copied up above
        }
    }
}

fn cname_of(name: &OsStr) -> OpResult<std::ffi::CString> {
    cname(name)
}

/// What attribute changes act on: never a name.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// An open file of the upper layer (the caller's).
    Open(BorrowedFd<'a>),
    /// An `O_PATH` handle of an upper entry.
    Handle(BorrowedFd<'a>),
}

/// Apply attribute changes to the inode `target` names.
fn apply_attrs(target: Target<'_>, change: &SetAttr) -> OpResult<()> {
    let (Target::Open(fd) | Target::Handle(fd)) = target;
    let kind = FileType::from_raw_mode(sys::fstat(fd).map_err(errno)?.st_mode as _);
    if change.uid.is_some() || change.gid.is_some() {
        sys::chown_handle(fd, change.uid, change.gid).map_err(errno)?;
    }
    if let Some(caller) = change.chown_nothing
        && kind == FileType::RegularFile
    {
        let path_handle = matches!(target, Target::Handle(_));
        killpriv::kill_as_chown(fd, path_handle, caller.gid, caller.uid == 0)?;
    }
    // Linux cannot change a symlink's mode; chmod of one is a no-op here.
    if let Some(mode) = change.mode
        && kind != FileType::Symlink
    {
        match target {
            Target::Open(fd) => sys::fchmod(fd, mode & 0o7777),
            Target::Handle(fd) => sys::chmod_handle(fd, mode & 0o7777),
        }
        .map_err(errno)?;
    }
    if let Some(size) = change.size {
        if kind != FileType::RegularFile {
            return Err(if kind == FileType::Directory {
                Errno::ISDIR
            } else {
                Errno::INVAL
            });
        }
        // A chown kills on its own (the host kernel does it as it changes
        // the owner); the kernel asks for a truncate's.
        if let Some(gid) = change.kill_suidgid
            && change.uid.is_none()
            && change.gid.is_none()
        {
            killpriv::kill_suidgid(fd, matches!(target, Target::Handle(_)), gid)?;
        }
        let truncate = |fd: BorrowedFd<'_>| rustix::fs::ftruncate(fd, size);
        match target {
            // The kernel sends the handle of a file opened for writing.
            Target::Open(fd) if truncate(fd).is_ok() => {}
            Target::Open(fd) | Target::Handle(fd) => {
                let file = sys::reopen_handle(
                    fd,
                    rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::NONBLOCK,
                )
                .map_err(errno)?;
                truncate(file.as_fd()).map_err(|e| errno(e.into()))?;
            }
        }
    }
    if change.atime.is_some() || change.mtime.is_some() {
        let times = Timestamps {
            last_access: timespec(change.atime),
            last_modification: timespec(change.mtime),
        };
        match target {
            Target::Open(fd) => rustix::fs::futimens(fd, &times).map_err(|e| errno(e.into())),
            Target::Handle(fd) => sys::utimens_handle(fd, &times).map_err(errno),
        }?;
    }
    Ok(())
}

fn timespec(t: Option<SetTime>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        Some(SetTime::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        Some(SetTime::At(t)) => match t.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: d.subsec_nanos() as _,
            },
            Err(e) => {
                let d = e.duration();
                let (sec, nsec) = if d.subsec_nanos() == 0 {
                    (-(d.as_secs() as i64), 0)
                } else {
                    (-(d.as_secs() as i64) - 1, 1_000_000_000 - d.subsec_nanos())
                };
                Timespec {
                    tv_sec: sec,
                    tv_nsec: nsec as _,
                }
            }
        },
    }
}
