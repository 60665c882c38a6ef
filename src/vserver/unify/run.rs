//! One unify run, candidate by candidate: the skel's file checked to be
//! the recorded one, the vserver's file found in a directory opened
//! beneath its tree and compared through its descriptor, then replaced
//! by the skel's inode (a link in the private scratch directory, checked,
//! and one rename), the flag of an immutable skel inode lifted for that;
//! and the times of each directory worked in put back.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::Stat;

use super::Unified;
use super::same::{hash, is_recorded, same_meta, unchanged, xattrs};
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::generation::{Entry, Kind};
use crate::protect::shared_by_link;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::place;

/// An open directory and the relative path it was opened as (none
/// inside: it is not a plain directory).
type OpenDir = Option<(PathBuf, Option<OwnedFd>)>;

/// The vserver's directory being worked in, with its times as found.
struct TreeDir {
    dir: OpenDir,
    times: Option<sys::Times>,
    touched: bool,
}

/// One unify run's state.
pub(super) struct Run<'a> {
    tree: &'a TreeRoot,
    global: &'a TreeRoot,
    /// The private scratch directory (none: dry run).
    scratch: Option<BorrowedFd<'a>>,
    protect: Protect,
    ignore_mtime: bool,
    /// The last parent opened in the vserver's tree.
    tree_dir: TreeDir,
    /// The last parent opened in the skel's global/.
    skel_dir: OpenDir,
    /// Per copy inode replaced: (its names, names replaced, bytes).
    copies: HashMap<(u64, u64), (u64, u64, u64)>,
    out: Unified,
}

/// How one candidate ended.
enum Outcome {
    Linked(Stat),
    Shared,
    Different,
    Absent,
    SkelChanged,
    Meanwhile,
    Emlink,
}

/// The vserver's file found identical: its directory, name and the
/// state it was hashed in.
struct Identical<'d> {
    dir: BorrowedFd<'d>,
    name: &'d CStr,
    hashed: Stat,
}

impl<'a> Run<'a> {
    /// A run over `tree` against the skel's `global`, reporting into
    /// `out`; without `scratch`, a dry run.
    pub(super) fn new(
        tree: &'a TreeRoot,
        global: &'a TreeRoot,
        scratch: Option<BorrowedFd<'a>>,
        protect: Protect,
        ignore_mtime: bool,
        out: Unified,
    ) -> Self {
        Run {
            tree,
            global,
            scratch,
            protect,
            ignore_mtime,
            tree_dir: TreeDir {
                dir: None,
                times: None,
                touched: false,
            },
            skel_dir: None,
            copies: HashMap::new(),
            out,
        }
    }

    /// Decide and (unless a dry run) replace the vserver's file of `e`.
    pub(super) fn one(&mut self, e: &Entry) -> Result<()> {
        let outcome = self.decide(e)?;
        let out = &mut self.out;
        out.candidates += 1;
        match outcome {
            Outcome::Linked(copy) => {
                out.linked += 1;
                out.paths.push(e.path.clone());
                let id = (sys::dev_of(&copy), sys::ino_of(&copy));
                let bytes = copy.st_blocks as u64 * 512;
                let seen = self
                    .copies
                    .entry(id)
                    .or_insert((sys::nlink_of(&copy), 0, bytes));
                seen.1 += 1;
                if seen.1 == seen.0 {
                    out.bytes_reclaimed += seen.2;
                }
            }
            Outcome::Shared => out.already_shared += 1,
            Outcome::Different => out.different += 1,
            Outcome::Absent => out.absent += 1,
            Outcome::SkelChanged => out.skel_changed += 1,
            Outcome::Meanwhile => out.changed_meanwhile += 1,
            Outcome::Emlink => out.emlink_copies += 1,
        }
        Ok(())
    }

    fn decide(&mut self, e: &Entry) -> Result<Outcome> {
        let parent = e.path.parent().unwrap_or(Path::new(""));
        let Some(leaf) = e.path.file_name() else {
            return Ok(Outcome::Absent);
        };
        let leaf = sys::cname(leaf).map_err(|err| Error::io("name", &e.path, err))?;
        let (tree, path) = (self.tree, &e.path);
        let io = |action: &'static str| move |err| Error::io(action, tree.display(path), err);
        let Some(skel_dir) = open_cached(&mut self.skel_dir, self.global, parent)? else {
            return Ok(Outcome::SkelChanged);
        };
        let skel_dir = skel_dir.as_fd();
        match sys::absent_as_none(sys::stat_at(skel_dir, &leaf)).map_err(io("stat"))? {
            Some(st) if is_recorded(&st, e) => {}
            _ => return Ok(Outcome::SkelChanged),
        }
        if self.tree_dir.dir.as_ref().is_none_or(|(p, _)| p != parent) {
            leave(&mut self.tree_dir, self.tree)?;
            self.tree_dir.touched = false;
            self.tree_dir.times = None;
        }
        let Some(dir) = open_cached(&mut self.tree_dir.dir, self.tree, parent)? else {
            return Ok(Outcome::Absent);
        };
        let dir = dir.as_fd();
        if self.tree_dir.times.is_none() {
            let st = sys::fstat(dir).map_err(|x| Error::io("stat", tree.display(parent), x))?;
            self.tree_dir.times = Some(times_of(&st));
        }
        let Some(st) = sys::absent_as_none(sys::stat_at(dir, &leaf)).map_err(io("stat"))? else {
            return Ok(Outcome::Absent);
        };
        // Only regular files are unified, and only what the protection
        // lets be shared by link (under protection a symlink, device or
        // FIFO stays each vserver's own copy).
        if Kind::of_stat(&st) != Kind::File || !shared_by_link(self.protect, e.kind) {
            return Ok(Outcome::Absent);
        }
        if (sys::dev_of(&st), sys::ino_of(&st)) == e.inode() {
            return Ok(Outcome::Shared);
        }
        if !same_meta(&st, e, self.ignore_mtime) {
            return Ok(Outcome::Different);
        }
        let file = sys::open_file_read(dir, &leaf).map_err(io("open"))?;
        let hashed = sys::fstat(file.as_fd()).map_err(io("stat"))?;
        if !sys::same_inode(&hashed, &st) || !same_meta(&hashed, e, self.ignore_mtime) {
            return Ok(Outcome::Meanwhile);
        }
        if xattrs(file.as_fd()).map_err(io("read xattrs"))? != e.xattrs
            || Some(hash(file.as_fd()).map_err(io("read"))?) != e.hash
        {
            return Ok(Outcome::Different);
        }
        if !unchanged(&hashed, &sys::fstat(file.as_fd()).map_err(io("stat"))?) {
            return Ok(Outcome::Meanwhile);
        }
        let Some(scratch) = self.scratch else {
            return Ok(Outcome::Linked(hashed));
        };
        // With protect = "immutable", neither a link nor a rename of the
        // skel's inode is allowed: its flag is lifted (crash-safely) for
        // both, then set again.
        let skel_file = sys::open_file_read(skel_dir, &leaf).map_err(io("open the skel's"))?;
        let skel_st = sys::fstat(skel_file.as_fd()).map_err(io("stat the skel's"))?;
        if !is_recorded(&skel_st, e) {
            return Ok(Outcome::SkelChanged);
        }
        let lifted = match self.protect {
            Protect::Immutable => crate::tree::unlock::lift(skel_file.as_fd())
                .map_err(io("lift the immutable attribute of the skel's"))?,
            Protect::None | Protect::Iunlink => None,
        };
        let here = Identical {
            dir,
            name: &leaf,
            hashed,
        };
        let outcome = replace(e, skel_dir, scratch, &here).map_err(io("hard-link"));
        if let Some(lifted) = lifted {
            lifted
                .restore()
                .map_err(io("set the immutable attribute again on the skel's"))?;
        }
        if matches!(outcome, Ok(Outcome::Linked(_))) {
            self.tree_dir.touched = true;
        }
        outcome
    }

    /// Finish: the last directory worked in gets its times back.
    pub(super) fn finish(mut self) -> Result<Unified> {
        leave(&mut self.tree_dir, self.tree)?;
        Ok(self.out)
    }
}

/// Replace the vserver's identical file `here` by the skel's inode of
/// `e` (in `skel_dir`, same name): linked in `scratch` under a random
/// name, checked, renamed over the vserver's name.
fn replace(
    e: &Entry,
    skel_dir: BorrowedFd<'_>,
    scratch: BorrowedFd<'_>,
    here: &Identical<'_>,
) -> std::io::Result<Outcome> {
    let made = place::make_link(scratch, None, Some(e.inode()), |at| {
        sys::link_at(skel_dir, here.name, scratch, at)
    });
    let temp = match made {
        Ok(temp) => temp,
        Err(x) if x.raw_os_error() == Some(libc::EMLINK) => return Ok(Outcome::Emlink),
        Err(x) => return Err(x),
    };
    // The link is the recorded inode (make_link checked); is it still the
    // recorded file?
    if !is_recorded(&sys::stat_at(scratch, temp.name())?, e) {
        return Ok(Outcome::SkelChanged);
    }
    // Right before the rename: the name is still the file hashed.
    match sys::absent_as_none(sys::stat_at(here.dir, here.name))? {
        Some(now) if sys::same_inode(&now, &here.hashed) && unchanged(&here.hashed, &now) => {}
        _ => return Ok(Outcome::Meanwhile),
    }
    match sys::rename_replace(scratch, temp.name(), here.dir, here.name) {
        Ok(()) => {
            temp.keep();
            Ok(Outcome::Linked(here.hashed))
        }
        // Gone, made immutable, or a directory now: the vserver's own
        // doing; left as it is.
        Err(x)
            if matches!(
                x.raw_os_error(),
                Some(libc::ENOENT | libc::EPERM | libc::EISDIR)
            ) =>
        {
            Ok(Outcome::Meanwhile)
        }
        Err(x) => Err(x),
    }
}

/// Give the directory `at` its times back if files were replaced in it
/// (a rename changes its mtime; the tree's listing must not change).
fn leave(at: &mut TreeDir, tree: &TreeRoot) -> Result<()> {
    if let (true, Some((rel, Some(fd))), Some(times)) = (at.touched, &at.dir, at.times) {
        sys::futimens(fd.as_fd(), times)
            .map_err(|e| Error::io("set the times of", tree.display(rel), e))?;
    }
    at.touched = false;
    Ok(())
}

/// Access and modification times of a stat.
#[allow(clippy::unnecessary_cast)]
fn times_of(st: &Stat) -> sys::Times {
    sys::Times {
        atime: (st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
    }
}

/// The directory `rel` of `root`, reusing `cache` when it holds it;
/// `None` when it is not a plain directory (absent, a symlink, a file).
fn open_cached<'c>(
    cache: &'c mut OpenDir,
    root: &TreeRoot,
    rel: &Path,
) -> Result<Option<&'c OwnedFd>> {
    if cache.as_ref().is_none_or(|(p, _)| p != rel) {
        let fd = match sys::open_dir_beneath(root.fd(), rel) {
            Ok(fd) => Some(fd),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
                ) =>
            {
                None
            }
            Err(e) => return Err(Error::io("open", root.display(rel), e)),
        };
        *cache = Some((rel.to_path_buf(), fd));
    }
    Ok(cache.as_ref().and_then(|(_, fd)| fd.as_ref()))
}
