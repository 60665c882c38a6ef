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

use std::collections::HashMap;
use std::ffi::OsStr;
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
use crate::view::overlay::{DirInfo, Overlay, Resolved};

/// Counts of what a flatten did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlattenCounts {
    /// Entries hard-linked to the link layer (the skel's global).
    pub linked: u64,
    /// Entries copied.
    pub copied: u64,
    /// Directories made.
    pub dirs: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
}

/// Where the shown entry lives: the upper layer, or lower layer `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Source {
    Upper,
    Lower(usize),
}

struct Flattener<'a> {
    overlay: &'a Overlay,
    into: &'a TreeRoot,
    link_layer: Option<usize>,
    protect: Protect,
    progress: &'a Progress,
    counts: FlattenCounts,
    /// First copy of each multiply-linked source inode (dev, ino).
    groups: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, Meta)>,
}

/// Write the merged tree of `overlay` into the empty directory `into`.
/// Entries shown from lower layer `link_layer` are hard-linked.
pub fn flatten(
    overlay: &Overlay,
    into: &TreeRoot,
    link_layer: Option<usize>,
    protect: Protect,
    progress: &Progress,
) -> Result<FlattenCounts> {
    let mut f = Flattener {
        overlay,
        into,
        link_layer,
        protect,
        progress,
        counts: FlattenCounts::default(),
        groups: HashMap::new(),
        dirs: Vec::new(),
    };
    let root = overlay
        .dir_info(ROOT_ID)
        .map_err(|e| op_err("read", Path::new("/"), e))?;
    let root_meta = Meta::from_stat(
        &sys::fstat(overlay.upper_layer().fd())
            .map_err(|e| Error::io("stat", overlay.upper_layer().path(), e))?,
    )
    .with_xattrs(overlay.upper_layer().fd())
    .map_err(|e| Error::io("read xattrs", overlay.upper_layer().path(), e))?;
    f.dirs.push((PathBuf::new(), without_private(root_meta)));
    f.walk(&root)?;
    // Deepest first does not matter for times (children are done); the
    // root's own metadata is in the list too.
    for (rel, meta) in std::mem::take(&mut f.dirs) {
        let fd = into.open_dir(&rel)?;
        meta.apply_to_fd(fd.as_fd())
            .map_err(|e| Error::io("set metadata", into.display(&rel), e))?;
    }
    Ok(f.counts)
}

fn op_err(action: &'static str, path: &Path, e: fuser::Errno) -> Error {
    Error::io(action, path, std::io::Error::from_raw_os_error(e.code()))
}

fn without_private(mut meta: Meta) -> Meta {
    meta.xattrs
        .retain(|(name, _)| !format::is_private_xattr(name.to_bytes()));
    meta
}

impl Flattener<'_> {
    fn walk(&mut self, dir: &DirInfo) -> Result<()> {
        let listing = self
            .overlay
            .list(dir)
            .map_err(|e| op_err("list", &dir.path, e))?;
        let dst = self.into.open_dir(&dir.path)?;
        let mut sources: HashMap<Source, OwnedFd> = HashMap::new();
        for item in listing {
            let rel = child_path(&dir.path, &item.name);
            let r = match self.overlay.resolve(dir, &item.name) {
                Ok(r) => r,
                Err(e) if e == fuser::Errno::ENOENT => continue, // gone meanwhile
                Err(e) => return Err(op_err("resolve", &rel, e)),
            };
            self.progress.inc(1);
            let (source, src_rel) = source_of(&r, &rel);
            if let std::collections::hash_map::Entry::Vacant(slot) = sources.entry(source) {
                slot.insert(self.layer(source).open_dir(split(&src_rel).0)?);
            }
            let src_dir = sources[&source].as_fd();
            let name = sys::cname(&item.name).map_err(|e| Error::io("name", &rel, e))?;
            let src_name = sys::cname(split(&src_rel).1).map_err(|e| Error::io("name", &rel, e))?;
            if r.found.kind == FileType::Directory {
                sys::mkdir_at(dst.as_fd(), &name, 0o700)
                    .map_err(|e| Error::io("make directory", self.into.display(&rel), e))?;
                let sub = sys::open_subdir(src_dir, &src_name).map_err(|e| {
                    Error::io("open directory", self.layer(source).display(&src_rel), e)
                })?;
                let meta = Meta::from_stat(&r.stat)
                    .with_xattrs(sub.as_fd())
                    .map_err(|e| Error::io("read xattrs", &rel, e))?;
                self.dirs.push((rel.clone(), without_private(meta)));
                self.counts.dirs += 1;
                let child = DirInfo {
                    id: r.id,
                    path: rel,
                    upper: r.found.upper,
                    lower: r.found.lower.clone(),
                };
                self.walk(&child)?;
            } else if matches!(source, Source::Lower(l) if Some(l) == self.link_layer) {
                self.link(src_dir, &src_name, dst.as_fd(), &name, &rel)?;
            } else {
                self.copy(src_dir, &src_name, dst.as_fd(), &name, &rel, &r)?;
            }
        }
        Ok(())
    }

    fn layer(&self, source: Source) -> &TreeRoot {
        match source {
            Source::Upper => self.overlay.upper_layer(),
            Source::Lower(i) => self.overlay.lower_layer(i),
        }
    }

    fn link(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &std::ffi::CStr,
        dst_dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
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
        linked.map_err(|e| Error::io("hard-link", self.into.display(rel), e))?;
        self.counts.linked += 1;
        Ok(())
    }

    fn copy(
        &mut self,
        src_dir: BorrowedFd<'_>,
        src_name: &std::ffi::CStr,
        dst_dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        rel: &Path,
        r: &Resolved,
    ) -> Result<()> {
        let key = (sys::dev_of(&r.stat), sys::ino_of(&r.stat));
        if sys::nlink_of(&r.stat) > 1 {
            if let Some(first) = self.groups.get(&key) {
                let (parent, first_name) = split(first);
                let first_dir = self.into.open_dir(parent)?;
                let first_name = sys::cname(first_name).map_err(|e| Error::io("name", first, e))?;
                sys::link_at(first_dir.as_fd(), &first_name, dst_dir, name)
                    .map_err(|e| Error::io("hard-link", self.into.display(rel), e))?;
                self.counts.copied += 1;
                return Ok(());
            }
            self.groups.insert(key, rel.to_path_buf());
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
        self.counts.copied += 1;
        Ok(())
    }
}

/// Where the entry `r` shown at `rel` lives, and its path in that layer.
fn source_of(r: &Resolved, rel: &Path) -> (Source, PathBuf) {
    match (&r.found.upper, &r.found.lower) {
        (true, _) | (false, None) => (Source::Upper, rel.to_path_buf()),
        (false, Some(lower)) => (Source::Lower(lower.layers[0]), lower.path.clone()),
    }
}

fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("")),
        path.file_name().unwrap_or_default(),
    )
}
