//! The sync writer: the merged tree of a view, as the view shows it,
//! written out as a plain directory tree.
//!
//! The [`Writer`] is a [`TreeSink`] of the core's merged-tree walk
//! ([`Overlay::walk`]: the same resolution the FUSE view uses), so
//! whiteouts, opaque and redirected directories come out exactly as the
//! view shows them. Entries shown from the "link" layer (a vserver's
//! skel global) become hard links to its inodes (under protection only
//! its regular files: see [`crate::protect::shared_by_link`]); everything
//! else is
//! copied by [`crate::tree::entry`] with owner, mode, xattrs (never the
//! overlay's own) and times; hard-link groups among copies are kept.
//! Directory metadata is applied last, so mtimes come out as the view
//! shows them.
//!
//! The writer writes one entry or a whole subtree; the first sync uses it
//! on an empty directory in staging ([`flatten`]), the incremental sync on
//! single paths of the live tree ([`Writer::write_entry`]). Either way every
//! entry is made exclusively and gets its metadata through a descriptor of
//! what was made, never through its name; in the live tree it is made in
//! a private scratch directory and then installed by one rename
//! ([`crate::tree::place`]), so no reader of the tree ever sees a
//! half-written entry and the vserver's root never gets hold of one before
//! its metadata is set. A new directory is filled through its descriptor.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::warn;

use super::state::StateFiles;
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::meta::Meta;
use crate::tree::place::{self, Temp};
use crate::view::format;
use crate::view::node::{ROOT_ID, child_path};
use crate::view::overlay::Overlay;
use crate::view::types::Layer;
use crate::view::types::Resolved;
use crate::view::types::split;
use crate::view::walk::{Entry, TreeSink};

/// Counts of what a sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyncCounts {
    /// Entries hard-linked to the link layer (the skel's global).
    pub linked: u64,
    /// Entries copied (files, symlinks, device nodes; directories made
    /// are counted in `dirs`).
    pub copied: u64,
    /// Directories made.
    pub dirs: u64,
    /// Entries removed from the tree (with everything below them).
    pub removed: u64,
    /// Directories whose owner, mode, xattrs or times were updated.
    pub updated: u64,
    /// Entries of the tree left as they were.
    pub unchanged: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
}

/// One change a sync makes (or, with `--dry-run`, would make).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `link`, `copy`, `mkdir`, `remove` or `update`.
    pub action: &'static str,
    /// The path in the vserver.
    #[serde(serialize_with = "crate::report_path::path")]
    pub path: PathBuf,
}

/// Where an atomic writer makes each entry before it is installed: a
/// private directory outside every tree, on the tree's filesystem, and the
/// state files that record the random names used inside the tree.
#[derive(Clone, Copy)]
pub struct Scratch<'a> {
    /// The private directory.
    pub dir: BorrowedFd<'a>,
    /// Where names used inside the tree are journalled.
    pub state: &'a StateFiles,
}

/// Writes view entries into a tree.
pub struct Writer<'a> {
    /// The view's layers.
    pub overlay: &'a Overlay,
    /// The tree written into.
    pub into: &'a TreeRoot,
    link_layer: Option<usize>,
    protect: Protect,
    progress: &'a Progress,
    /// Make each entry in the scratch directory, then install it.
    atomic: bool,
    /// The scratch directory (writing atomically).
    scratch: Option<Scratch<'a>>,
    /// Only count and record what would be done.
    pub dry_run: bool,
    /// What was done so far.
    pub counts: SyncCounts,
    /// The changes, when they are recorded (incremental syncs).
    pub changes: Option<Vec<Change>>,
    /// First placed name of each multiply-linked source inode (dev, ino).
    groups: HashMap<(u64, u64), PathBuf>,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<PendingDir>,
    /// The tree directories being filled, innermost last (`None` when
    /// dry-running).
    filling: Vec<Option<OwnedFd>>,
}

/// A directory whose metadata is applied once it is filled.
struct PendingDir {
    rel: PathBuf,
    meta: Meta,
    /// (device, inode) of the directory made (`None`: the tree's root).
    made: Option<(u64, u64)>,
}

/// Write the merged tree of `overlay` into the empty directory `into`.
/// Entries shown from lower layer `link_layer` are hard-linked. With
/// `dry_run`, nothing is written and only the counts come back.
pub fn flatten(
    overlay: &Overlay,
    into: &TreeRoot,
    link_layer: Option<usize>,
    protect: Protect,
    dry_run: bool,
    progress: &Progress,
) -> Result<SyncCounts> {
    let mut w = Writer::new(overlay, into, link_layer, protect, progress);
    w.dry_run = dry_run;
    let root = overlay
        .dir_info(ROOT_ID)
        .map_err(|e| Error::io("read", Path::new("/"), e))?;
    let root_meta = without_private(
        Meta::from_stat(
            &sys::fstat(overlay.upper_layer().fd())
                .map_err(|e| Error::io("stat", overlay.upper_layer().path(), e))?,
        )
        .with_xattrs(overlay.upper_layer().fd())
        .map_err(|e| Error::io("read xattrs", overlay.upper_layer().path(), e))?,
    );
    w.dirs.push(PendingDir {
        rel: PathBuf::new(),
        meta: root_meta,
        made: None,
    });
    let dst = if dry_run {
        None
    } else {
        Some(into.open_dir(Path::new(""))?)
    };
    w.filling.push(dst);
    overlay.walk(&root, &mut w)?;
    w.filling.pop();
    w.finish_dirs()?;
    Ok(w.counts)
}

/// Metadata without the overlay's private xattrs.
pub fn without_private(mut meta: Meta) -> Meta {
    meta.xattrs
        .retain(|(name, _)| !format::is_private_xattr(name.to_bytes()));
    meta
}

impl<'a> Writer<'a> {
    /// A writer into `into`; non-atomic, writing, recording no changes.
    pub fn new(
        overlay: &'a Overlay,
        into: &'a TreeRoot,
        link_layer: Option<usize>,
        protect: Protect,
        progress: &'a Progress,
    ) -> Self {
        Writer {
            overlay,
            into,
            link_layer,
            protect,
            progress,
            atomic: false,
            scratch: None,
            dry_run: false,
            counts: SyncCounts::default(),
            changes: None,
            groups: HashMap::new(),
            dirs: Vec::new(),
            filling: Vec::new(),
        }
    }

    /// Make every entry in `scratch` and install it from there (see
    /// [`crate::tree::place`]), and record every change. `None` when
    /// dry-running: nothing is made.
    pub fn atomic(mut self, scratch: Option<Scratch<'a>>) -> Self {
        self.atomic = true;
        self.scratch = scratch;
        self.changes = Some(Vec::new());
        self
    }

    /// Record a change.
    pub fn note(&mut self, action: &'static str, path: &Path) {
        if let Some(changes) = &mut self.changes {
            changes.push(Change {
                action,
                path: path.to_path_buf(),
            });
        }
    }

    /// Write the entry `e` as its name in tree directory `dst` (None when
    /// dry-running). A directory is made and filled.
    pub fn write_entry(&mut self, e: &Entry<'_>, dst: Option<BorrowedFd<'_>>) -> Result<()> {
        if !e.is_dir() {
            return self.write_leaf(e, dst);
        }
        let made = self.begin_dir(e, dst)?;
        // Filled through the descriptor of the directory made, never by
        // its name.
        self.filling.push(made);
        let overlay = self.overlay;
        let walked = overlay.walk(&e.resolved.as_dir(e.rel.to_path_buf()), self);
        self.filling.pop();
        walked
    }

    /// Count and note directory `e`, and make it in `dst` (None when
    /// dry-running), returning it open for filling.
    fn begin_dir(&mut self, e: &Entry<'_>, dst: Option<BorrowedFd<'_>>) -> Result<Option<OwnedFd>> {
        self.progress.inc(1);
        self.counts.dirs += 1;
        self.note("mkdir", e.rel);
        match dst {
            Some(dst) => Ok(Some(self.make_dir(e, dst)?)),
            None => Ok(None),
        }
    }

    /// Write the non-directory `e` as its name in `dst` (None when
    /// dry-running): hard-linked from the link layer, else copied.
    fn write_leaf(&mut self, e: &Entry<'_>, dst: Option<BorrowedFd<'_>>) -> Result<()> {
        self.progress.inc(1);
        let (rel, r, name) = (e.rel, e.resolved, e.name);
        let src_name = e.layer_name()?;
        let link = self.links(e.shown, &r.stat);
        if link {
            self.counts.linked += 1;
            self.note("link", rel);
        } else {
            self.counts.copied += 1;
            self.note("copy", rel);
        }
        let Some(dst) = dst else {
            return Ok(());
        };
        let (at_dir, at_name) = self.making_at(dst, name)?;
        let made = if link {
            self.link(e.layer_dir, &src_name, at_dir, at_name, rel, r)?
        } else {
            self.copy(e.layer_dir, &src_name, at_dir, at_name, rel, r)?
        };
        self.put(made, dst, name, rel)?;
        if !link {
            self.group_record(r, rel);
        }
        Ok(())
    }

    /// The tree directory being filled, lent to `f` (`None` when
    /// dry-running).
    fn in_filling<T>(
        &mut self,
        f: impl FnOnce(&mut Self, Option<BorrowedFd<'_>>) -> Result<T>,
    ) -> Result<T> {
        let Some(dst) = self.filling.pop() else {
            return Err(Error::Failed(
                "internal error: the sync writer is filling no directory".into(),
            ));
        };
        let out = f(self, dst.as_ref().map(|d| d.as_fd()));
        self.filling.push(dst);
        out
    }

    /// Where an entry for `name` in `dst` is made: in the scratch directory
    /// under a random name (writing atomically), else at its name.
    fn making_at<'n>(
        &self,
        dst: BorrowedFd<'n>,
        name: &'n CStr,
    ) -> Result<(BorrowedFd<'n>, Option<&'n CStr>)>
    where
        'a: 'n,
    {
        if !self.atomic {
            return Ok((dst, Some(name)));
        }
        match self.scratch {
            Some(scratch) => Ok((scratch.dir, None)),
            None => Err(Error::Failed(
                "internal error: an atomic sync writer has no scratch directory".into(),
            )),
        }
    }

    /// Hand over the finished entry: install it at `name` in `dst` (writing
    /// atomically), else keep it where it was made.
    fn put(&self, made: Temp<'_>, dst: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<()> {
        if !self.atomic {
            made.keep();
            return Ok(());
        }
        let Some(scratch) = self.scratch else {
            return Err(Error::Failed(
                "internal error: an atomic sync writer has no scratch directory".into(),
            ));
        };
        let parent = split(rel).0;
        let mut note = |temp: &CStr| {
            scratch
                .state
                .note_temp(&child_path(parent, sys::os_name(temp)))
                .map_err(|e| std::io::Error::other(e.to_string()))
        };
        place::install(made, dst, name, &mut note)
            .map_err(|e| Error::io("put in place", self.into.display(rel), e))
    }

    /// Make directory `e` (as its name in `dst`) with the source's metadata
    /// but its final times, and return it open for filling.
    fn make_dir(&mut self, e: &Entry<'_>, dst: BorrowedFd<'_>) -> Result<OwnedFd> {
        let rel = e.rel;
        let err = |action, err| Error::io(action, self.into.display(rel), err);
        let sub = sys::open_subdir(e.layer_dir, &e.layer_name()?).map_err(|err| {
            Error::io(
                "open directory",
                self.overlay.layer_tree(e.shown).display(e.layer_path),
                err,
            )
        })?;
        let meta = without_private(
            Meta::from_stat(&e.resolved.stat)
                .with_xattrs(sub.as_fd())
                .map_err(|err| Error::io("read xattrs", rel, err))?,
        );
        let (at_dir, at_name) = self.making_at(dst, e.name)?;
        let (made, fd) = place::make_dir(at_dir, at_name).map_err(|e| err("make directory", e))?;
        let id = made.id();
        if self.atomic {
            // Shown with its owner and mode from the start; its times
            // are set again once it is filled.
            meta.apply_to_fd(fd.as_fd())
                .map_err(|e| err("set metadata", e))?;
        }
        self.put(made, dst, e.name, rel)?;
        self.dirs.push(PendingDir {
            rel: rel.to_path_buf(),
            meta,
            made: Some(id),
        });
        Ok(fd)
    }

    /// Is an entry shown from `shown` (its source's stat `st`) hard-linked
    /// into the tree? Only from the link layer, and there only what
    /// [`crate::protect::shared_by_link`] allows (under protection,
    /// regular files; other non-directories are copied).
    pub fn links(&self, shown: Layer, st: &rustix::fs::Stat) -> bool {
        matches!(shown, Layer::Lower(l) if Some(l) == self.link_layer)
            && crate::protect::shared_by_link(self.protect, crate::generation::Kind::of_stat(st))
    }

    /// The name already placed in this sync for the multiply-linked source
    /// inode of `r`, if any.
    pub fn group_peek(&self, r: &Resolved) -> Option<PathBuf> {
        if sys::nlink_of(&r.stat) <= 1 {
            return None;
        }
        self.groups
            .get(&(sys::dev_of(&r.stat), sys::ino_of(&r.stat)))
            .cloned()
    }

    /// `rel` now holds the source inode of `r` (for its other names).
    pub fn group_record(&mut self, r: &Resolved, rel: &Path) {
        if sys::nlink_of(&r.stat) > 1 {
            self.groups
                .entry((sys::dev_of(&r.stat), sys::ino_of(&r.stat)))
                .or_insert_with(|| rel.to_path_buf());
        }
    }

    /// Apply the metadata of the directories written, each through a
    /// descriptor checked to be the directory made.
    pub fn finish_dirs(&mut self) -> Result<()> {
        for PendingDir { rel, meta, made } in std::mem::take(&mut self.dirs) {
            let fd = match self.into.open_dir(&rel) {
                Ok(fd) => fd,
                Err(e) if made.is_some() && self.atomic => {
                    // A live tree: its root may have moved it meanwhile.
                    warn!("{e}; its metadata was not set");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let err = |action, e| Error::io(action, self.into.display(&rel), e);
            let st = sys::fstat(fd.as_fd()).map_err(|e| err("stat", e))?;
            if made.is_some_and(|id| id != (sys::dev_of(&st), sys::ino_of(&st))) {
                warn!(
                    "{} was replaced while it was being synced; its metadata was not set",
                    self.into.display(&rel).display()
                );
                continue;
            }
            meta.apply_to_fd(fd.as_fd())
                .map_err(|e| err("set metadata", e))?;
        }
        Ok(())
    }

    /// Hard-link the link layer's entry `src_name` as `name` (or a random
    /// name) in `dst_dir`.
    fn link<'d>(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &CStr,
        dst_dir: BorrowedFd<'d>,
        name: Option<&CStr>,
        rel: &Path,
        r: &Resolved,
    ) -> Result<Temp<'d>> {
        let source = (sys::dev_of(&r.stat), sys::ino_of(&r.stat));
        place::make_link(dst_dir, name, Some(source), |at| {
            match sys::link_at(src_dir, src_name, dst_dir, at) {
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                    crate::tree::copy::link_unlocked(src_dir, src_name, dst_dir, at)
                }
                other => other,
            }
        })
        .map_err(|e| Error::io("hard-link", self.into.display(rel), e))
    }

    /// Copy the entry `r` (`src_name` in `src_dir`) as `name` (or a random
    /// name) in `dst_dir`, its metadata set through a descriptor of what
    /// was made.
    fn copy<'d>(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &CStr,
        dst_dir: BorrowedFd<'d>,
        name: Option<&CStr>,
        rel: &Path,
        r: &Resolved,
    ) -> Result<Temp<'d>> {
        let dst_err = |action, e| Error::io(action, self.into.display(rel), e);
        if let Some(first) = self.group_peek(r) {
            let (parent, first_name) = split(&first);
            let first_dir = self.into.open_dir(parent)?;
            let first_name = sys::cname(first_name).map_err(|e| Error::io("name", &first, e))?;
            return place::make_link(dst_dir, name, None, |at| {
                sys::link_at(first_dir.as_fd(), &first_name, dst_dir, at)
            })
            .map_err(|e| dst_err("hard-link", e));
        }
        let keep = |name: &[u8]| !format::is_private_xattr(name);
        let spec = CopySpec {
            keep_xattr: &keep,
            extra_xattrs: &[],
            transform: None,
        };
        let copied =
            copy_entry(src_dir, src_name, dst_dir, name, &spec).map_err(|e| dst_err("copy", e))?;
        self.counts.bytes += copied.bytes;
        Ok(copied.made)
    }
}

/// A path component as a C string, for messages naming `rel`.
pub fn cname_of(name: &OsStr, rel: &Path) -> Result<CString> {
    sys::cname(name).map_err(|e| Error::io("name", rel, e))
}

impl TreeSink for Writer<'_> {
    fn dir(&mut self, e: &Entry<'_>) -> Result<()> {
        let made = self.in_filling(|w, dst| w.begin_dir(e, dst))?;
        self.filling.push(made);
        Ok(())
    }

    fn leaf(&mut self, e: &Entry<'_>) -> Result<()> {
        self.in_filling(|w, dst| w.write_leaf(e, dst))
    }

    fn end_dir(&mut self, _e: &Entry<'_>) -> Result<()> {
        self.filling.pop();
        Ok(())
    }
}
