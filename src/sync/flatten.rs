//! Flattening a view: its merged tree, as the view shows it, written out
//! as a plain directory tree.
//!
//! The walk goes through the overlay core itself (the same resolution the
//! FUSE view uses), so whiteouts, opaque and redirected directories come
//! out exactly as the view shows them. Entries shown from the "link" layer
//! (a vserver's skel global) become hard links to its inodes; everything
//! else is copied with owner, mode, xattrs (never the overlay's own) and
//! times; hard-link groups among copies are kept. Directory metadata is
//! applied last, so mtimes come out as the view shows them.
//!
//! The [`Writer`] here writes one entry or a whole subtree; the first sync
//! uses it on an empty directory in staging, the incremental sync
//! ([`super::apply`]) on single paths of the live tree. Either way every
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

use rustix::fs::FileType;
use serde::Serialize;
use tracing::warn;

use super::state::StateFiles;
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::meta::Meta;
use crate::tree::place::{self, Temp};
use crate::view::format;
use crate::view::node::{ROOT_ID, child_path};
use crate::view::overlay::Overlay;
use crate::view::resolve::{DirInfo, Resolved};

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
    pub path: PathBuf,
}

/// Where the shown entry lives: the upper layer, or lower layer `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The writable layer.
    Upper,
    /// Lower layer `i` (0 = top).
    Lower(usize),
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
        .map_err(|e| op_err("read", Path::new("/"), e))?;
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
    w.walk(&root)?;
    w.finish_dirs()?;
    Ok(w.counts)
}

/// An overlay error as an I/O error on `path`.
pub fn op_err(action: &'static str, path: &Path, e: crate::view::overlay::Errno) -> Error {
    Error::io(action, path, std::io::Error::from(e))
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

    /// Write every entry of view directory `dir` into the tree directory
    /// of the same path (which exists and is empty, unless dry-running).
    pub fn walk(&mut self, dir: &DirInfo) -> Result<()> {
        let dst = if self.dry_run {
            None
        } else {
            Some(self.into.open_dir(&dir.path)?)
        };
        self.walk_in(dir, dst)
    }

    /// [`Writer::walk`] into the open tree directory `dst` (None when
    /// dry-running).
    fn walk_in(&mut self, dir: &DirInfo, dst: Option<OwnedFd>) -> Result<()> {
        let listing = self
            .overlay
            .list(dir)
            .map_err(|e| op_err("list", &dir.path, e))?;
        let mut sources: HashMap<Source, OwnedFd> = HashMap::new();
        for item in listing {
            let rel = child_path(&dir.path, &item.name);
            let r = match self.overlay.resolve(dir, &item.name) {
                Ok(r) => r,
                Err(e) if e == crate::view::overlay::Errno::NOENT => continue, // gone meanwhile
                Err(e) => return Err(op_err("resolve", &rel, e)),
            };
            let (source, src_rel) = source_of(&r, &rel);
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.entry(source) {
                slot.insert(self.layer(source).open_dir(split(&src_rel).0)?);
            }
            let src_dir = sources[&source].as_fd();
            let name = sys::cname(&item.name).map_err(|e| Error::io("name", &rel, e))?;
            self.write_entry(
                src_dir,
                source,
                &src_rel,
                dst.as_ref().map(|d| d.as_fd()),
                &name,
                &rel,
                &r,
            )?;
        }
        Ok(())
    }

    /// Write the entry `r` shown at `rel` (found in layer `source` at
    /// `src_rel`, whose directory is `src_dir`) as `name` in `dst` (None
    /// when dry-running). A directory is made and filled.
    #[allow(clippy::too_many_arguments)]
    pub fn write_entry(
        &mut self,
        src_dir: BorrowedFd<'_>,
        source: Source,
        src_rel: &Path,
        dst: Option<BorrowedFd<'_>>,
        name: &CStr,
        rel: &Path,
        r: &Resolved,
    ) -> Result<()> {
        self.progress.inc(1);
        let src_name = sys::cname(split(src_rel).1).map_err(|e| Error::io("name", rel, e))?;
        if r.found.kind == FileType::Directory {
            self.counts.dirs += 1;
            self.note("mkdir", rel);
            let made = match dst {
                Some(dst) => {
                    Some(self.make_dir(src_dir, source, src_rel, &src_name, dst, name, rel, r)?)
                }
                None => None,
            };
            let child = DirInfo {
                id: r.id,
                path: rel.to_path_buf(),
                upper: r.found.upper,
                lower: r.found.lower.clone(),
            };
            // Filled through the descriptor of the directory made, never
            // by its name.
            return self.walk_in(&child, made);
        }
        let link = matches!(source, Source::Lower(l) if Some(l) == self.link_layer);
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
            self.link(src_dir, &src_name, at_dir, at_name, rel, r)?
        } else {
            self.copy(src_dir, &src_name, at_dir, at_name, rel, r)?
        };
        self.put(made, dst, name, rel)?;
        if !link {
            self.group_record(r, rel);
        }
        Ok(())
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

    /// Make directory `rel` (as `name` in `dst`) with the source's metadata
    /// but its final times, and return it open for filling.
    #[allow(clippy::too_many_arguments)]
    fn make_dir(
        &mut self,
        src_dir: BorrowedFd<'_>,
        source: Source,
        src_rel: &Path,
        src_name: &CStr,
        dst: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        r: &Resolved,
    ) -> Result<OwnedFd> {
        let err = |action, e| Error::io(action, self.into.display(rel), e);
        let sub = sys::open_subdir(src_dir, src_name)
            .map_err(|e| Error::io("open directory", self.layer(source).display(src_rel), e))?;
        let meta = without_private(
            Meta::from_stat(&r.stat)
                .with_xattrs(sub.as_fd())
                .map_err(|e| Error::io("read xattrs", rel, e))?,
        );
        let (at_dir, at_name) = self.making_at(dst, name)?;
        let (made, fd) = place::make_dir(at_dir, at_name).map_err(|e| err("make directory", e))?;
        let id = made.id();
        if self.atomic {
            // Shown with its owner and mode from the start; its times
            // are set again once it is filled.
            meta.apply_to_fd(fd.as_fd())
                .map_err(|e| err("set metadata", e))?;
        }
        self.put(made, dst, name, rel)?;
        self.dirs.push(PendingDir {
            rel: rel.to_path_buf(),
            meta,
            made: Some(id),
        });
        Ok(fd)
    }

    /// The tree of layer `source`.
    pub fn layer(&self, source: Source) -> &TreeRoot {
        match source {
            Source::Upper => self.overlay.upper_layer(),
            Source::Lower(i) => self.overlay.lower_layer(i),
        }
    }

    /// Is `source` the layer whose entries are hard-linked?
    pub fn is_link_layer(&self, source: Source) -> bool {
        matches!(source, Source::Lower(l) if Some(l) == self.link_layer)
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
        let protect = self.protect;
        let source = (sys::dev_of(&r.stat), sys::ino_of(&r.stat));
        place::make_link(dst_dir, name, Some(source), |at| {
            match sys::link_at(src_dir, src_name, dst_dir, at) {
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM) && protect == Protect::Immutable =>
                {
                    crate::tree::copy::link_unlocked(src_dir, src_name, dst_dir).and_then(|()| {
                        if src_name == at {
                            Ok(())
                        } else {
                            // link_unlocked keeps the name; rename to ours.
                            sys::rename_noreplace(dst_dir, src_name, dst_dir, at)
                        }
                    })
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
        match r.found.kind {
            FileType::RegularFile => {
                let src = sys::open_file_read(src_dir, src_name).map_err(|e| dst_err("open", e))?;
                let meta = without_private(
                    Meta::from_stat(&sys::fstat(src.as_fd()).map_err(|e| dst_err("stat", e))?)
                        .with_xattrs(src.as_fd())
                        .map_err(|e| dst_err("read xattrs", e))?,
                );
                if meta.file_type != FileType::RegularFile {
                    return Err(dst_err(
                        "copy",
                        std::io::Error::other("no longer a regular file in its layer"),
                    ));
                }
                let (made, out) =
                    place::create_file(dst_dir, name).map_err(|e| dst_err("create", e))?;
                sys::copy_data(src.as_fd(), out.as_fd(), meta.size)
                    .map_err(|e| dst_err("copy data", e))?;
                meta.apply_to_fd(out.as_fd())
                    .map_err(|e| dst_err("set metadata", e))?;
                self.counts.bytes += meta.size;
                Ok(made)
            }
            kind => {
                let meta = without_private(
                    Meta::from_stat(&r.stat)
                        .with_xattrs_at(src_dir, src_name)
                        .map_err(|e| dst_err("read xattrs", e))?,
                );
                let (made, handle) = if kind == FileType::Symlink {
                    let target =
                        sys::readlink_at(src_dir, src_name).map_err(|e| dst_err("readlink", e))?;
                    place::make_symlink(dst_dir, name, &target)
                        .map_err(|e| dst_err("symlink", e))?
                } else {
                    place::make_special(dst_dir, name, kind, meta.mode, meta.rdev)
                        .map_err(|e| dst_err("mknod", e))?
                };
                meta.apply_to_handle(handle.as_fd())
                    .map_err(|e| dst_err("set metadata", e))?;
                Ok(made)
            }
        }
    }
}

/// Where the entry `r` shown at `rel` lives, and its path in that layer.
pub fn source_of(r: &Resolved, rel: &Path) -> (Source, PathBuf) {
    match (&r.found.upper, &r.found.lower) {
        (true, _) | (false, None) => (Source::Upper, rel.to_path_buf()),
        (false, Some(lower)) => (Source::Lower(lower.top_layer()), lower.path().to_path_buf()),
    }
}

/// A path's parent and last component (`""` has parent `""`).
pub fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("")),
        path.file_name().unwrap_or_default(),
    )
}

/// A path component as a C string, for messages naming `rel`.
pub fn cname_of(name: &OsStr, rel: &Path) -> Result<CString> {
    sys::cname(name).map_err(|e| Error::io("name", rel, e))
}
