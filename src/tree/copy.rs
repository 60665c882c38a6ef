//! The tree copier: one source tree into one or more target trees, each
//! entry hard-linked, copied or token-rendered as its target says.
//!
//! `build-skel` uses it to split a root filesystem into global/local/static,
//! `create-vs` to stack global (linked), local (copied) and static
//! (rendered) into a new vserver. A [`How::Share`] target gets hard links
//! only where [`Protect::shares_by_link`] says so (under protection, regular
//! files), copies of everything else. A [`Policy`] decides, per entry, which
//! target it goes to, or whether it is left out.
//!
//! How it runs: one rayon task per directory, every access relative to an
//! open directory descriptor below the tree roots (no symlink is followed).
//! New directories are made `0700` and get their real owner, mode, xattrs
//! and times only at the end, once nothing more is written into them (so
//! their mtimes match the source's and a read-only source directory can
//! still be filled). Hard-link groups among copied files are kept within
//! each target; linked entries keep theirs by construction. An entry that a
//! previous, lower layer put at the same place is replaced (upper wins, as
//! in an overlay).

use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use rustix::fs::FileType;
use serde::Serialize;
use tracing::warn;

use super::TreeRoot;
use super::entry::{CopySpec, Transform, copy_entry};
use super::meta::Meta;
use super::remove::remove_tree_at;
use super::walk::par_walk;
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sys;
use crate::tokens::{Tokens, render};

/// Mode of a directory while it is being filled.
const FILLING_DIR_MODE: u32 = 0o700;

/// How often a hard link is retried when a concurrent run relocks the
/// protected inode between our unlock and our link.
const PROTECTED_LINK_ATTEMPTS: usize = 8;

/// How entries reach a target.
#[derive(Debug, Clone)]
pub enum How {
    /// Hard links to the source's inodes; directories are made. For the
    /// skel's own clones of its parts (split-skel, merge-skel's `.bak`),
    /// which must keep every inode.
    Link,
    /// A vserver's global part: hard links where [`Protect::shares_by_link`]
    /// allows, copies of the rest (under protection, every non-regular
    /// file: no flag can guard a shared one); directories are made.
    Share,
    /// Copies keeping metadata and hard-link groups.
    Copy,
    /// Copies of regular files with `%%TOKENS%%` replaced; others copied.
    Render(Tokens),
}

/// One tree being written.
#[derive(Debug)]
pub struct Target {
    /// The target's root (exists already).
    pub tree: TreeRoot,
    /// How entries are put into it.
    pub how: How,
}

/// Where one entry of the source goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Left out (a directory: with everything below it).
    Skip,
    /// Into the target with this index (a directory: and descend).
    Into(usize),
    /// A directory made empty in the target with this index (not descended).
    EmptyDir(usize),
}

/// What a policy sees of an entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryInfo<'a> {
    /// Path relative to the source root.
    pub rel: &'a Path,
    /// The entry's type.
    pub file_type: FileType,
    /// Device and inode, given for directories only (cheap for the rest).
    pub dev_ino: Option<(u64, u64)>,
    /// The target its parent directory went to.
    pub parent_target: usize,
}

/// Decides where each entry goes.
pub trait Policy: Sync {
    /// Place one entry.
    fn place(&self, entry: &EntryInfo<'_>) -> Place;
}

/// Everything into the one target its parent is in (target 0 at the root).
#[derive(Debug, Clone, Copy, Default)]
pub struct Everything;

impl Policy for Everything {
    fn place(&self, entry: &EntryInfo<'_>) -> Place {
        Place::Into(entry.parent_target)
    }
}

/// Counts of what a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CopyCounts {
    /// Entries hard-linked to the source.
    pub linked: u64,
    /// Entries copied (files, symlinks, device nodes).
    pub copied: u64,
    /// Regular files rendered with tokens.
    pub rendered: u64,
    /// Directories made.
    pub dirs: u64,
    /// Entries left out by the policy.
    pub skipped: u64,
    /// Bytes of file data copied or rendered.
    pub bytes: u64,
}

impl std::ops::AddAssign for CopyCounts {
    fn add_assign(&mut self, other: Self) {
        self.linked += other.linked;
        self.copied += other.copied;
        self.rendered += other.rendered;
        self.dirs += other.dirs;
        self.skipped += other.skipped;
        self.bytes += other.bytes;
    }
}

/// The outcome of a copy.
#[derive(Debug, Clone, Default)]
pub struct CopyReport {
    /// Counts of what was done.
    pub counts: CopyCounts,
    /// Unknown `%%TOKENS%%` met while rendering, with the files holding them.
    pub unknown_tokens: BTreeMap<String, BTreeSet<PathBuf>>,
    /// Device nodes that could not be made (no privilege), left out.
    pub devices_left_out: Vec<PathBuf>,
}

/// Options of one copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions<'a> {
    /// Protection of shared inodes: `immutable` ones are unlocked to link.
    pub protect: Protect,
    /// Progress display (ticked once per entry).
    pub progress: &'a Progress,
}

/// Copy `source` into `targets` as `policy` says.
pub fn copy_tree(
    source: &TreeRoot,
    targets: &[Target],
    policy: &dyn Policy,
    options: CopyOptions<'_>,
) -> Result<CopyReport> {
    let copier = Copier {
        source,
        targets,
        policy,
        options,
        counters: Counters::default(),
        dirs: Mutex::new(Vec::new()),
        ensured: Mutex::new(HashSet::new()),
        groups: Mutex::new(HashMap::new()),
        unknown_tokens: Mutex::new(BTreeMap::new()),
        devices_left_out: Mutex::new(Vec::new()),
    };
    par_walk(
        DirJob {
            rel: PathBuf::new(),
            target: 0,
            is_root: true,
        },
        &|job| copier.visit_dir(job),
    )?;
    copier.finish_dirs()?;
    Ok(CopyReport {
        counts: copier.counters.snapshot(),
        unknown_tokens: into_inner(copier.unknown_tokens),
        devices_left_out: into_inner(copier.devices_left_out),
    })
}

fn into_inner<T>(m: Mutex<T>) -> T {
    m.into_inner()
}

fn lock<T>(m: &Mutex<T>) -> parking_lot::MutexGuard<'_, T> {
    m.lock()
}

struct DirJob {
    rel: PathBuf,
    target: usize,
    is_root: bool,
}

/// A directory whose metadata is applied once it is complete.
struct PendingDir {
    target: usize,
    rel: PathBuf,
    meta: Meta,
}

#[derive(Default)]
struct Counters {
    linked: AtomicU64,
    copied: AtomicU64,
    rendered: AtomicU64,
    dirs: AtomicU64,
    skipped: AtomicU64,
    bytes: AtomicU64,
}

impl Counters {
    fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    fn snapshot(&self) -> CopyCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CopyCounts {
            linked: get(&self.linked),
            copied: get(&self.copied),
            rendered: get(&self.rendered),
            dirs: get(&self.dirs),
            skipped: get(&self.skipped),
            bytes: get(&self.bytes),
        }
    }
}

struct Copier<'a> {
    source: &'a TreeRoot,
    targets: &'a [Target],
    policy: &'a dyn Policy,
    options: CopyOptions<'a>,
    counters: Counters,
    dirs: Mutex<Vec<PendingDir>>,
    /// Directories made in a target other than their parent's, with parents.
    ensured: Mutex<HashSet<(usize, PathBuf)>>,
    /// First copy of each multiply-linked source inode, per target.
    groups: Mutex<HashMap<(usize, u64, u64), PathBuf>>,
    unknown_tokens: Mutex<BTreeMap<String, BTreeSet<PathBuf>>>,
    devices_left_out: Mutex<Vec<PathBuf>>,
}

impl Copier<'_> {
    fn src_err(&self, action: &'static str, rel: &Path, e: std::io::Error) -> Error {
        Error::io(action, self.source.display(rel), e)
    }

    fn dst_err(&self, target: usize, action: &'static str, rel: &Path, e: std::io::Error) -> Error {
        Error::io(action, self.targets[target].tree.display(rel), e)
    }

    fn visit_dir(&self, job: DirJob) -> Result<Vec<DirJob>> {
        let src_dir = self.source.open_dir(&job.rel)?;
        let meta = Meta::from_stat(
            &sys::fstat(src_dir.as_fd()).map_err(|e| self.src_err("stat", &job.rel, e))?,
        )
        .with_xattrs(src_dir.as_fd())
        .map_err(|e| self.src_err("read xattrs", &job.rel, e))?;
        {
            let mut dirs = lock(&self.dirs);
            let owners: Vec<usize> = if job.is_root {
                (0..self.targets.len()).collect()
            } else {
                vec![job.target]
            };
            for target in owners {
                dirs.push(PendingDir {
                    target,
                    rel: job.rel.clone(),
                    meta: meta.clone(),
                });
            }
        }
        let entries = sys::read_dir(src_dir.as_fd())
            .map_err(|e| self.src_err("read directory", &job.rel, e))?;
        let mut dst_dirs: Vec<Option<OwnedFd>> = (0..self.targets.len()).map(|_| None).collect();
        let mut children = Vec::new();
        for entry in entries {
            let rel = job.rel.join(sys::os_name(&entry.name));
            let mut file_type = entry.file_type;
            let mut dev_ino = None;
            if matches!(file_type, FileType::Directory | FileType::Unknown) {
                let st = sys::stat_at(src_dir.as_fd(), &entry.name)
                    .map_err(|e| self.src_err("stat", &rel, e))?;
                file_type = FileType::from_raw_mode(st.st_mode as _);
                if file_type == FileType::Directory {
                    dev_ino = Some((st.st_dev as u64, st.st_ino as u64));
                }
            }
            let place = self.policy.place(&EntryInfo {
                rel: &rel,
                file_type,
                dev_ino,
                parent_target: job.target,
            });
            self.options.progress.inc(1);
            let target = match place {
                Place::Skip => {
                    Counters::bump(&self.counters.skipped, 1);
                    continue;
                }
                Place::EmptyDir(_) if file_type != FileType::Directory => {
                    Counters::bump(&self.counters.skipped, 1);
                    continue;
                }
                Place::Into(t) | Place::EmptyDir(t) => t,
            };
            let dst_dir = self.dst_dir(&mut dst_dirs, target, &job)?;
            if file_type == FileType::Directory {
                self.make_dir(dst_dir, &entry.name, target, &rel)?;
                if place == Place::EmptyDir(target) {
                    let sub = sys::open_subdir(src_dir.as_fd(), &entry.name)
                        .map_err(|e| self.src_err("open directory", &rel, e))?;
                    let meta = Meta::from_stat(
                        &sys::fstat(sub.as_fd()).map_err(|e| self.src_err("stat", &rel, e))?,
                    )
                    .with_xattrs(sub.as_fd())
                    .map_err(|e| self.src_err("read xattrs", &rel, e))?;
                    lock(&self.dirs).push(PendingDir { target, rel, meta });
                } else {
                    children.push(DirJob {
                        rel,
                        target,
                        is_root: false,
                    });
                }
            } else {
                self.place_entry(
                    src_dir.as_fd(),
                    &entry.name,
                    file_type,
                    target,
                    dst_dir,
                    &rel,
                )?;
            }
        }
        Ok(children)
    }

    /// The open directory `job.rel` in `target`, made (with its ancestors)
    /// if the entry is the first of this directory to go to that target.
    fn dst_dir<'d>(
        &self,
        cache: &'d mut [Option<OwnedFd>],
        target: usize,
        job: &DirJob,
    ) -> Result<BorrowedFd<'d>> {
        if cache[target].is_none() {
            if target != job.target && !job.is_root {
                self.ensure_dir(target, &job.rel)?;
            }
            cache[target] = Some(self.targets[target].tree.open_dir(&job.rel)?);
        }
        Ok(cache[target]
            .as_ref()
            .map(|fd| fd.as_fd())
            .expect("just set"))
    }

    /// Make `rel` and its missing ancestors in `target`, with the source's
    /// metadata recorded for each.
    fn ensure_dir(&self, target: usize, rel: &Path) -> Result<()> {
        let mut ensured = lock(&self.ensured);
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            let parent = prefix.clone();
            prefix.push(component);
            if !ensured.insert((target, prefix.clone())) {
                continue;
            }
            let parent_fd = self.targets[target].tree.open_dir(&parent)?;
            let name = sys::cname(component.as_os_str())
                .map_err(|e| self.dst_err(target, "name", &prefix, e))?;
            self.make_dir(parent_fd.as_fd(), &name, target, &prefix)?;
            let src = self.source.open_dir(&prefix)?;
            let meta = Meta::from_stat(
                &sys::fstat(src.as_fd()).map_err(|e| self.src_err("stat", &prefix, e))?,
            )
            .with_xattrs(src.as_fd())
            .map_err(|e| self.src_err("read xattrs", &prefix, e))?;
            lock(&self.dirs).push(PendingDir {
                target,
                rel: prefix.clone(),
                meta,
            });
        }
        Ok(())
    }

    /// Make a directory; one already there from a lower layer is kept.
    fn make_dir(&self, dir: BorrowedFd<'_>, name: &CStr, target: usize, rel: &Path) -> Result<()> {
        match sys::mkdir_at(dir, name, FILLING_DIR_MODE) {
            Ok(()) => {
                Counters::bump(&self.counters.dirs, 1);
                Ok(())
            }
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                let st =
                    sys::stat_at(dir, name).map_err(|e| self.dst_err(target, "stat", rel, e))?;
                if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory {
                    return Ok(());
                }
                remove_tree_at(dir, name).map_err(|e| self.dst_err(target, "replace", rel, e))?;
                self.make_dir(dir, name, target, rel)
            }
            Err(e) => Err(self.dst_err(target, "make directory", rel, e)),
        }
    }

    fn place_entry(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        file_type: FileType,
        target: usize,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<()> {
        match &self.targets[target].how {
            // A symlink, device, FIFO or socket under protection: no flag
            // can guard a shared one, so each target gets its own copy.
            How::Share
                if !self
                    .options
                    .protect
                    .shares_by_link(file_type == FileType::RegularFile) =>
            {
                self.copy_special(src_dir, name, target, dst_dir, rel)
            }
            How::Link | How::Share => {
                self.link_entry(src_dir, name, dst_dir, target, rel)?;
                Counters::bump(&self.counters.linked, 1);
                Ok(())
            }
            How::Copy => self.copy_one(src_dir, name, file_type, target, dst_dir, rel, None),
            How::Render(tokens) => {
                self.copy_one(src_dir, name, file_type, target, dst_dir, rel, Some(tokens))
            }
        }
    }

    /// Hard-link a source entry into the target, replacing what a lower
    /// layer put there and unlocking an immutable (protected) inode.
    fn link_entry(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        dst_dir: BorrowedFd<'_>,
        target: usize,
        rel: &Path,
    ) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let err = match sys::link_at(src_dir, name, dst_dir, name) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match err.raw_os_error() {
                Some(libc::EEXIST) => remove_tree_at(dst_dir, name)
                    .map_err(|e| self.dst_err(target, "replace", rel, e))?,
                // An immutable inode (under any configured protection: a
                // skel protected before `protect` was changed is still
                // linked), unlocked for this link only.
                Some(libc::EPERM) if attempts < PROTECTED_LINK_ATTEMPTS => {
                    match link_unlocked(src_dir, name, dst_dir, name) {
                        Ok(()) => return Ok(()),
                        Err(e) if e.raw_os_error() == Some(libc::EPERM) => continue,
                        Err(e) => return Err(self.dst_err(target, "hard-link", rel, e)),
                    }
                }
                _ => return Err(self.dst_err(target, "hard-link", rel, err)),
            }
        }
    }

    /// Copy a non-directory; a regular file rendered with `tokens`, if
    /// given.
    #[allow(clippy::too_many_arguments)]
    fn copy_one(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        file_type: FileType,
        target: usize,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
        tokens: Option<&Tokens>,
    ) -> Result<()> {
        match file_type {
            FileType::RegularFile => self.copy_file(src_dir, name, target, dst_dir, rel, tokens),
            _ => self.copy_special(src_dir, name, target, dst_dir, rel),
        }
    }

    /// Another name of an inode already copied into this target.
    fn link_to_first(
        &self,
        first: &Path,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        target: usize,
        rel: &Path,
    ) -> Result<()> {
        let tree = &self.targets[target].tree;
        let first_dir = tree.open_dir(first.parent().unwrap_or(Path::new("")))?;
        let first_name = sys::cname(first.file_name().unwrap_or_default())
            .map_err(|e| self.dst_err(target, "name", first, e))?;
        loop {
            match sys::link_at(first_dir.as_fd(), &first_name, dst_dir, name) {
                Ok(()) => {
                    Counters::bump(&self.counters.copied, 1);
                    return Ok(());
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    remove_tree_at(dst_dir, name)
                        .map_err(|e| self.dst_err(target, "replace", rel, e))?
                }
                Err(e) => return Err(self.dst_err(target, "hard-link", rel, e)),
            }
        }
    }

    /// Copy a regular file, its data rendered with `tokens` when given,
    /// keeping hard-link groups.
    fn copy_file(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        target: usize,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
        tokens: Option<&Tokens>,
    ) -> Result<()> {
        let st = sys::stat_at(src_dir, name).map_err(|e| self.src_err("stat", rel, e))?;
        let render = |input: &[u8]| {
            let Some(tokens) = tokens else {
                return input.to_vec();
            };
            let rendered = render(input, tokens);
            if !rendered.unknown.is_empty() {
                let mut unknown = lock(&self.unknown_tokens);
                for key in rendered.unknown {
                    unknown
                        .entry(key)
                        .or_default()
                        .insert(self.targets[target].tree.display(rel));
                }
            }
            rendered.bytes
        };
        let spec = CopySpec {
            transform: tokens.map(|_| &render as &Transform<'_>),
            ..CopySpec::ALL
        };
        let copy = || {
            self.copy_replacing(src_dir, name, dst_dir, &spec)
                .map_err(|e| self.dst_err(target, "copy", rel, e))
        };
        let copied = if sys::nlink_of(&st) > 1 {
            let key = (target, sys::dev_of(&st), sys::ino_of(&st));
            let mut groups = lock(&self.groups);
            if let Some(first) = groups.get(&key).cloned() {
                drop(groups);
                return self.link_to_first(&first, dst_dir, name, target, rel);
            }
            let copied = copy()?;
            groups.insert(key, rel.to_path_buf());
            copied
        } else {
            copy()?
        };
        let count = if tokens.is_some() {
            &self.counters.rendered
        } else {
            &self.counters.copied
        };
        Counters::bump(count, 1);
        Counters::bump(&self.counters.bytes, copied);
        Ok(())
    }

    /// Copy a non-directory through the one copier ([`copy_entry`]),
    /// replacing what a lower layer put there; the bytes copied.
    fn copy_replacing(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        dst_dir: BorrowedFd<'_>,
        spec: &CopySpec<'_>,
    ) -> std::io::Result<u64> {
        let copied = match copy_entry(src_dir, name, dst_dir, Some(name), spec) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                remove_tree_at(dst_dir, name)?;
                copy_entry(src_dir, name, dst_dir, Some(name), spec)
            }
            other => other,
        }?;
        let bytes = copied.bytes;
        copied.made.keep();
        Ok(bytes)
    }

    /// Copy a symlink, device node, FIFO or socket.
    fn copy_special(
        &self,
        src_dir: BorrowedFd<'_>,
        name: &CStr,
        target: usize,
        dst_dir: BorrowedFd<'_>,
        rel: &Path,
    ) -> Result<()> {
        match self.copy_replacing(src_dir, name, dst_dir, &CopySpec::ALL) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !sys::is_root() => {
                warn!(
                    "{}: cannot make a device node without root; left out",
                    self.targets[target].tree.display(rel).display()
                );
                lock(&self.devices_left_out).push(rel.to_path_buf());
                return Ok(());
            }
            Err(e) => return Err(self.dst_err(target, "create", rel, e)),
        }
        Counters::bump(&self.counters.copied, 1);
        Ok(())
    }

    /// Give every directory made its source's metadata, now that nothing
    /// more is written into it.
    fn finish_dirs(&self) -> Result<()> {
        let dirs = std::mem::take(&mut *lock(&self.dirs));
        dirs.par_iter().try_for_each(|dir| {
            let fd = self.targets[dir.target].tree.open_dir(&dir.rel)?;
            dir.meta
                .apply_to_fd(fd.as_fd())
                .map_err(|e| self.dst_err(dir.target, "set metadata", &dir.rel, e))
        })
    }
}

/// Link an immutable (protected) inode `name` of `src_dir` as `dst_name`
/// in `dst_dir`: unlock it, link, lock it again (crash-safely: see
/// [`super::unlock`]). Link it under its final name: a rename of the new
/// link would be refused too.
pub(crate) fn link_unlocked(
    src_dir: BorrowedFd<'_>,
    name: &CStr,
    dst_dir: BorrowedFd<'_>,
    dst_name: &CStr,
) -> std::io::Result<()> {
    let file = sys::open_file_read(src_dir, name)?;
    let lifted = super::unlock::lift(file.as_fd())?;
    let result = sys::link_at(src_dir, name, dst_dir, dst_name);
    if let Some(lifted) = lifted {
        lifted.restore()?;
    }
    result
}
