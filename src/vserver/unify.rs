//! `unify` as an op (util-vserver's vhashify/vunify): hard-link a tree
//! vserver's files that are identical to its skel's global files at the
//! same paths to the skel's inodes, one file at a time, atomically.
//!
//! Candidates are the global regular files of the generation the
//! vserver's record names, and only while the skel still has the recorded
//! inode there (same device and inode, kind, mode, owner, size, mtime):
//! unify never links a vserver to a skel file changed since. The
//! vserver's file is identical when its kind, mode, owner, size and mtime
//! (unless `ignore_mtime`: then it takes the skel's) match the record;
//! only then are its xattrs read and its content hashed (BLAKE3), through
//! the descriptor that was checked to be the file at that name, and
//! compared with the record's.
//!
//! The tree is hostile: parents are opened with
//! [`sys::open_dir_beneath`] (no symlink followed), the file is compared
//! by descriptor, and it is replaced by hard-linking the skel's inode
//! under a random name in the private staging directory
//! ([`place::make_link`], checked to be the recorded inode) and one
//! `rename()` over the vserver's name. Right before that rename the name
//! is checked once more to be the inode that was hashed, unchanged (same
//! size, mtime and ctime: any write, chmod, chown or xattr change moves
//! the ctime). What is left is the moment between that check and the
//! rename: a vserver's root writing its own copy then loses that write,
//! as with any file replaced by rename; no other vserver, and nothing
//! outside the tree, is affected, because the name is in a directory
//! opened beneath the tree and the rename replaces only that name. So
//! the check narrows the window rather than closing it, which would need
//! a compare-and-rename the kernel does not have.
//!
//! Renames change a directory's mtime: a directory files were replaced
//! in gets its access and modification times back (a vserver changing
//! that directory at the same moment may see its own change's time go).
//!
//! `EMLINK` (the skel inode has as many names as the filesystem allows)
//! keeps the copy (counted). With `protect = "immutable"` the kernel
//! allows neither a link nor a rename of the skel's inode, so its flag is
//! lifted (crash-safely, [`crate::tree::unlock`]) for the link, the
//! checks and the rename of that one file, and set again. Bytes
//! reclaimed count a copy's allocated blocks once its last name was
//! replaced. The vserver's lock is held throughout; a view is refused.
//!
//! Trust in the skel: the skel's file is taken to hold the recorded
//! content when its inode, size and mtime are the recorded ones (it is
//! not hashed again). Under `protect = "none"` a vserver's root can write
//! a shared inode in place and set its mtime back; finding that is
//! `verify`'s work, and unify then links one more vserver to it.

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::Stat;
use serde::Serialize;

use super::registry::{self, Kind as VsKind, Record};
use crate::config::{Config, Protect};
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Kind, Part};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::skel::Skel;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::place;

/// What to unify.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The tree vserver.
    pub name: String,
    /// Compare and report, write nothing.
    pub dry_run: bool,
    /// Files whose mtime alone differs are linked too (and take the
    /// skel's mtime).
    pub ignore_mtime: bool,
}

/// What `unify` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unified {
    /// The vserver.
    pub name: String,
    /// Its skel.
    pub skel: String,
    /// The skel generation compared with.
    pub generation: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Global regular files of the generation.
    pub candidates: u64,
    /// Already the skel's inode.
    pub already_shared: u64,
    /// Linked to the skel's inode (with `dry_run`: would be).
    pub linked: u64,
    /// Bytes of disk space given back (with `dry_run`: would be).
    pub bytes_reclaimed: u64,
    /// Identical, but kept as a copy: the skel inode has too many links
    /// (`EMLINK`).
    pub emlink_copies: u64,
    /// Left alone: content or metadata differ.
    pub different: u64,
    /// Left alone: absent, not a regular file, or below something that
    /// is not a plain directory.
    pub absent: u64,
    /// Left alone: the skel's file is no longer the recorded inode.
    pub skel_changed: u64,
    /// Left alone: the file changed while it was compared.
    pub changed_meanwhile: u64,
    /// The paths linked (with `dry_run`: that would be).
    pub paths: Vec<PathBuf>,
}

/// Unify tree vserver `request.name` with its skel.
pub fn unify(config: &Config, request: &Request, progress: &Progress) -> Result<Unified> {
    let name = &request.name;
    crate::validate::validate_name("vserver name", name)?;
    // Checked before the lock is taken (which writes its file), and once
    // more under it: a remove-vs or upgrade-vs may have ended meanwhile.
    checked_record(config, name)?;
    let _lock = StateFiles::new(config, name).lock()?;
    let record = checked_record(config, name)?;
    let skel_name = record.skel.clone().unwrap_or_default();
    let generation_n = record.generation.unwrap_or_default();
    let skel = Skel::open(config, &skel_name)?;
    let tree_path = Layout::new(config).vserver(name);
    crate::tree::require_one_filesystem(&[&tree_path, &skel.global()])?;
    let tree = TreeRoot::open(&tree_path)?;
    let global = TreeRoot::open(&skel.global())?;
    let recorded = generation::load(&skel.dirs, generation_n)?;
    let staging = if request.dry_run {
        None
    } else {
        Some(Staging::create(config, &format!("unify-{name}"))?)
    };
    let scratch = match &staging {
        Some(s) => Some(sys::open_root(s.path()).map_err(|e| Error::io("open", s.path(), e))?),
        None => None,
    };
    let mut run = Run {
        tree: &tree,
        global: &global,
        scratch: scratch.as_ref().map(|s| s.as_fd()),
        protect: config.protect,
        ignore_mtime: request.ignore_mtime,
        tree_dir: TreeDir {
            dir: None,
            times: None,
            touched: false,
        },
        skel_dir: None,
        copies: HashMap::new(),
        out: Unified {
            name: name.clone(),
            skel: skel.name.clone(),
            generation: generation_n,
            dry_run: request.dry_run,
            ..Unified::default()
        },
    };
    progress.start(&format!("unifying {name}"));
    for e in recorded
        .entries()
        .iter()
        .filter(|e| e.part == Part::Global && e.kind == Kind::File)
    {
        run.out.candidates += 1;
        run.one(e)?;
        progress.inc(1);
    }
    run.finish()?;
    progress.finish();
    if scratch.is_some() {
        sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
    }
    let out = run.out;
    drop(scratch);
    if let Some(staging) = staging {
        staging.discard()?;
    }
    Ok(out)
}

/// The record of tree vserver `name`, or why it cannot be unified.
fn checked_record(config: &Config, name: &str) -> Result<Record> {
    let record = registry::load(config, name)?
        .ok_or_else(|| Error::Failed(format!("no vserver \"{name}\" is recorded")))?;
    if record.creating {
        return Err(Error::Failed(format!(
            "vserver {name} is being created, or its create-vs was interrupted \
             (`vskel create-vs` of {name} again, or `vskel remove-vs {name}`, clears it)"
        )));
    }
    match record.kind {
        VsKind::Tree => {}
        VsKind::View => {
            return Err(Error::Failed(format!(
                "vserver {name} is a view: it reads the skel's files from the skel itself, and \
                 the copies it made of them live in its upper layer ({}), which unify does not \
                 touch; a view's file that should be the skel's again is reset with \
                 `vskel upgrade-vs {name}` when the skel changes it, or by removing the copy \
                 from the upper layer while the view is unmounted",
                Layout::new(config).view(name).upper().display()
            )));
        }
        VsKind::Unregistered => {
            return Err(Error::Failed(format!(
                "vserver {name} is not one vskel made (it has no record)"
            )));
        }
    }
    if record.skel.is_none() {
        return Err(Error::Failed(format!("the record of {name} names no skel")));
    }
    if record.generation.is_none() {
        return Err(Error::Failed(format!(
            "vserver {name} was made before skel generations were recorded: vskel cannot tell \
             which skel files it was made from, so it cannot unify it"
        )));
    }
    Ok(record)
}

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
struct Run<'a> {
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

impl Run<'_> {
    fn one(&mut self, e: &Entry) -> Result<()> {
        let outcome = self.decide(e)?;
        let out = &mut self.out;
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
        if Kind::of_stat(&st) != Kind::File {
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
    fn finish(&mut self) -> Result<()> {
        leave(&mut self.tree_dir, self.tree)
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

/// Is `st` the skel file `e` records: its inode, kind, mode, owner, size
/// and mtime?
fn is_recorded(st: &Stat, e: &Entry) -> bool {
    (sys::dev_of(st), sys::ino_of(st)) == e.inode()
        && Kind::of_stat(st) == Kind::File
        && same_meta(st, e, false)
}

/// Do mode, owner, size and (unless `ignore_mtime`) mtime match `e`?
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn same_meta(st: &Stat, e: &Entry, ignore_mtime: bool) -> bool {
    st.st_mode as u32 & 0o7777 == e.mode
        && st.st_uid as u32 == e.uid
        && st.st_gid as u32 == e.gid
        && st.st_size as u64 == e.size
        && (ignore_mtime || (st.st_mtime as i64, st.st_mtime_nsec as i64) == e.mtime)
}

/// Has nothing about the inode changed between the two stats (size,
/// mtime, ctime: data, mode, owner and xattrs)?
#[allow(clippy::unnecessary_cast)]
fn unchanged(a: &Stat, b: &Stat) -> bool {
    a.st_size == b.st_size
        && (a.st_mtime as i64, a.st_mtime_nsec as i64)
            == (b.st_mtime as i64, b.st_mtime_nsec as i64)
        && (a.st_ctime as i64, a.st_ctime_nsec as i64)
            == (b.st_ctime as i64, b.st_ctime_nsec as i64)
}

/// Every xattr of the open file, sorted by name (as a generation records
/// them).
fn xattrs(fd: BorrowedFd<'_>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
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
fn hash(fd: BorrowedFd<'_>) -> std::io::Result<generation::Hash> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::from(fd.try_clone_to_owned()?);
    std::io::copy(&mut file, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}
