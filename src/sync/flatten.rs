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
//! ([`super::apply`]) on single paths of the live tree, where every
//! non-directory is written under a temporary name and renamed over its
//! final one, so no reader of the tree ever sees a half-written file.

use std::collections::HashMap;
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use serde::Serialize;

use crate::config::Protect;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::meta::Meta;
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

/// The temporary name a file is written under before it is renamed over
/// its final name (the first of these the view does not show itself).
pub const TEMP_NAMES: [&CStr; 3] = [c".#vskel-sync#", c".#vskel-sync#1", c".#vskel-sync#2"];

/// Writes view entries into a tree.
pub struct Writer<'a> {
    /// The view's layers.
    pub overlay: &'a Overlay,
    /// The tree written into.
    pub into: &'a TreeRoot,
    link_layer: Option<usize>,
    protect: Protect,
    progress: &'a Progress,
    /// Write non-directories under a temporary name, then rename.
    atomic: bool,
    /// Only count and record what would be done.
    pub dry_run: bool,
    /// What was done so far.
    pub counts: SyncCounts,
    /// The changes, when they are recorded (incremental syncs).
    pub changes: Option<Vec<Change>>,
    /// First placed name of each multiply-linked source inode (dev, ino).
    groups: HashMap<(u64, u64), PathBuf>,
    /// The temporary name chosen for each directory written into.
    temps: HashMap<PathBuf, &'static CStr>,
    /// Directories whose metadata is applied at the end.
    dirs: Vec<(PathBuf, Meta)>,
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
    w.dirs.push((PathBuf::new(), root_meta));
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
            dry_run: false,
            counts: SyncCounts::default(),
            changes: None,
            groups: HashMap::new(),
            temps: HashMap::new(),
            dirs: Vec::new(),
        }
    }

    /// Write files under a temporary name and rename them into place, and
    /// record every change.
    pub fn atomic(mut self) -> Self {
        self.atomic = true;
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
        let listing = self
            .overlay
            .list(dir)
            .map_err(|e| op_err("list", &dir.path, e))?;
        let dst = if self.dry_run {
            None
        } else {
            Some(self.into.open_dir(&dir.path)?)
        };
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
            if let Some(dst) = dst {
                let sub = sys::open_subdir(src_dir, &src_name).map_err(|e| {
                    Error::io("open directory", self.layer(source).display(src_rel), e)
                })?;
                // Made under a temporary name when something else may hold
                // the name, so the name never goes missing.
                let at = if self.atomic {
                    self.temp_name(rel)?
                } else {
                    name
                };
                if self.atomic {
                    let _ = crate::tree::remove::remove_tree_at(dst, at);
                }
                sys::mkdir_at(dst, at, 0o700)
                    .map_err(|e| Error::io("make directory", self.into.display(rel), e))?;
                let meta = without_private(
                    Meta::from_stat(&r.stat)
                        .with_xattrs(sub.as_fd())
                        .map_err(|e| Error::io("read xattrs", rel, e))?,
                );
                if self.atomic {
                    // Shown with its owner and mode from the start; its
                    // times are set again once it is filled.
                    let made = sys::open_subdir(dst, at)
                        .map_err(|e| Error::io("open directory", self.into.display(rel), e))?;
                    meta.apply_to_fd(made.as_fd())
                        .map_err(|e| Error::io("set metadata", self.into.display(rel), e))?;
                    self.rename_over(dst, at, name, rel)?;
                }
                self.dirs.push((rel.to_path_buf(), meta));
            }
            let child = DirInfo {
                id: r.id,
                path: rel.to_path_buf(),
                upper: r.found.upper,
                lower: r.found.lower.clone(),
            };
            return self.walk(&child);
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
        let temp;
        let at: &CStr = if self.atomic {
            temp = self.temp_name(rel)?;
            // A temporary left by an interrupted sync.
            let _ = crate::tree::remove::remove_tree_at(dst, temp);
            temp
        } else {
            name
        };
        if link {
            self.link(src_dir, &src_name, dst, at, rel)?;
        } else {
            self.copy(src_dir, &src_name, dst, at, rel, r)?;
        }
        if self.atomic {
            self.rename_over(dst, at, name, rel)?;
        }
        if !link {
            self.group_record(r, rel);
        }
        Ok(())
    }

    /// Rename the finished `temp` over `name`. Where a rename cannot
    /// replace what is there (a directory, or a non-directory with a
    /// directory), the two are exchanged and the old one removed.
    fn rename_over(&self, dir: BorrowedFd<'_>, temp: &CStr, name: &CStr, rel: &Path) -> Result<()> {
        let err = |e| Error::io("rename into place", self.into.display(rel), e);
        let is_dir =
            |st: &rustix::fs::Stat| FileType::from_raw_mode(st.st_mode as _) == FileType::Directory;
        let placing_dir = sys::stat_at(dir, temp).map(|st| is_dir(&st)).map_err(err)?;
        match sys::stat_at(dir, name) {
            Ok(st) if is_dir(&st) || placing_dir => {
                rustix::fs::renameat_with(dir, temp, dir, name, rustix::fs::RenameFlags::EXCHANGE)
                    .map_err(|e| err(e.into()))?;
                crate::tree::remove::remove_tree_at(dir, temp).map_err(err)
            }
            _ => sys::rename_replace(dir, temp, dir, name).map_err(err),
        }
    }

    /// The temporary name for writing `rel`: one its directory does not show.
    /// Chosen once per directory: resolving from the root for every file
    /// written would repeat the whole path's lookups.
    fn temp_name(&mut self, rel: &Path) -> Result<&'static CStr> {
        let parent = split(rel).0;
        if let Some(temp) = self.temps.get(parent) {
            return Ok(temp);
        }
        for temp in TEMP_NAMES {
            let shown = crate::sync::apply::resolve_path(
                self.overlay,
                &child_path(parent, sys::os_name(temp)),
            )
            .map_err(|e| op_err("resolve", rel, e))?;
            if shown.is_none() {
                self.temps.insert(parent.to_path_buf(), temp);
                return Ok(temp);
            }
        }
        Err(Error::Failed(format!(
            "cannot sync {}: its directory holds all of vskel's temporary names",
            rel.display()
        )))
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

    /// Directory `rel` gets metadata `meta` at the end.
    pub fn dir_meta_later(&mut self, rel: PathBuf, meta: Meta) {
        self.dirs.push((rel, meta));
    }

    /// Apply the metadata of the directories written.
    pub fn finish_dirs(&mut self) -> Result<()> {
        for (rel, meta) in std::mem::take(&mut self.dirs) {
            let fd = self.into.open_dir(&rel)?;
            meta.apply_to_fd(fd.as_fd())
                .map_err(|e| Error::io("set metadata", self.into.display(&rel), e))?;
        }
        Ok(())
    }

    fn link(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &CStr,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
    ) -> Result<()> {
        let linked = match sys::link_at(src_dir, src_name, dst_dir, name) {
            Err(e)
                if e.raw_os_error() == Some(libc::EPERM) && self.protect == Protect::Immutable =>
            {
                crate::tree::copy::link_unlocked(src_dir, src_name, dst_dir).and_then(|()| {
                    if src_name == name {
                        Ok(())
                    } else {
                        // link_unlocked keeps the name; rename to ours.
                        sys::rename_noreplace(dst_dir, src_name, dst_dir, name)
                    }
                })
            }
            other => other,
        };
        linked.map_err(|e| Error::io("hard-link", self.into.display(rel), e))
    }

    fn copy(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &CStr,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
        rel: &Path,
        r: &Resolved,
    ) -> Result<()> {
        if let Some(first) = self.group_peek(r) {
            let (parent, first_name) = split(&first);
            let first_dir = self.into.open_dir(parent)?;
            let first_name = sys::cname(first_name).map_err(|e| Error::io("name", &first, e))?;
            return sys::link_at(first_dir.as_fd(), &first_name, dst_dir, name)
                .map_err(|e| Error::io("hard-link", self.into.display(rel), e));
        }
        let dst_err = |action, e| Error::io(action, self.into.display(rel), e);
        match r.found.kind {
            FileType::RegularFile => {
                let src = sys::open_file_read(src_dir, src_name).map_err(|e| dst_err("open", e))?;
                let meta = without_private(
                    Meta::from_stat(&sys::fstat(src.as_fd()).map_err(|e| dst_err("stat", e))?)
                        .with_xattrs(src.as_fd())
                        .map_err(|e| dst_err("read xattrs", e))?,
                );
                let out =
                    sys::create_file(dst_dir, name, 0o600).map_err(|e| dst_err("create", e))?;
                sys::copy_data(src.as_fd(), out.as_fd(), meta.size)
                    .map_err(|e| dst_err("copy data", e))?;
                meta.apply_to_fd(out.as_fd())
                    .map_err(|e| dst_err("set metadata", e))?;
                self.counts.bytes += meta.size;
            }
            kind => {
                let meta = without_private(
                    Meta::from_stat(&r.stat)
                        .with_xattrs_at(src_dir, src_name)
                        .map_err(|e| dst_err("read xattrs", e))?,
                );
                if kind == FileType::Symlink {
                    let target =
                        sys::readlink_at(src_dir, src_name).map_err(|e| dst_err("readlink", e))?;
                    sys::symlink_at(&target, dst_dir, name).map_err(|e| dst_err("symlink", e))?;
                } else {
                    sys::mknod_at(dst_dir, name, kind, meta.mode, meta.rdev)
                        .map_err(|e| dst_err("mknod", e))?;
                }
                meta.apply_at(dst_dir, name)
                    .map_err(|e| dst_err("set metadata", e))?;
            }
        }
        Ok(())
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
