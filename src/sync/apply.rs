//! The incremental sync: bring the paths that changed since the last sync
//! to what the view shows now, in the live tree, leaving the rest alone.
//!
//! Each changed path is compared with the tree
//! ([`crate::tree::compare`]) and only rewritten if it differs: an entry is made in a private directory outside the tree and
//! renamed over the old one ([`crate::tree::place`]: readers see the old
//! entry or the new, never half, and the vserver's root never sees it
//! being made), a name the
//! view no longer shows is removed, a directory the tree lacks is made and
//! filled. A directory whose lower content changed shape (made opaque, or
//! renamed with a redirect) has its listing compared too, so entries that
//! only a lower layer held come and go with it. Directory metadata is
//! brought up to date last.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::view::types::Errno;
use rustix::fs::{FileType, Stat};

use super::writer::{Writer, cname_of, without_private};
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::compare::{CompareSpec, Side, same_entry};
use crate::tree::meta::Meta;
use crate::tree::remove::remove_tree_at;
use crate::view::format;
use crate::view::node::{ROOT_ID, child_path};
use crate::view::types::Layer;
use crate::view::types::split;
use crate::view::types::{DirInfo, Resolved};
use crate::view::walk::Entry;

/// How much of a changed directory is compared with the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Its own metadata (what it holds changed through other paths).
    Own,
    /// Also its listing: entries only lower layers held come and go.
    Listing,
    /// Everything below it (after an interrupted sync, or a redirect).
    All,
}

/// Applies changed paths to the tree.
pub struct Applier<'a> {
    /// The writer (and its counts).
    pub w: Writer<'a>,
    views: HashMap<PathBuf, DirInfo>,
    /// Tree directories whose metadata is checked at the end.
    meta_dirs: BTreeSet<PathBuf>,
    /// Subtrees already brought up to date in full.
    done: Vec<PathBuf>,
    /// Names added to the tree, minus names removed (entries below them
    /// included).
    pub net_entries: i64,
}

impl<'a> Applier<'a> {
    /// An applier writing through `w` (which must be atomic).
    pub fn new(w: Writer<'a>) -> Self {
        Applier {
            w,
            views: HashMap::new(),
            meta_dirs: BTreeSet::new(),
            done: Vec::new(),
            net_entries: 0,
        }
    }

    /// Remove what an interrupted sync may have left at its journalled
    /// temporary name `rel` inside the tree (a random name of its own).
    pub fn clean_temporary(&mut self, rel: &Path) -> Result<()> {
        let (parent, name) = split(rel);
        let dir = match sys::open_dir_beneath(self.w.into.fd(), parent) {
            Ok(dir) => dir,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                return Ok(());
            }
            Err(e) => return Err(Error::io("open directory", self.w.into.display(parent), e)),
        };
        let name = cname_of(name, rel)?;
        if stat_if_any(dir.as_fd(), &name, &self.w.into.display(rel))?.is_none() {
            return Ok(());
        }
        self.meta_dirs.insert(parent.to_path_buf());
        if !self.w.dry_run {
            remove_tree_at(dir.as_fd(), &name)
                .map_err(|e| Error::io("remove", self.w.into.display(rel), e))?;
        }
        Ok(())
    }

    /// Bring `rel` in the tree to what the view shows. `depth` says how
    /// much of it to compare if it is a directory the tree has too.
    pub fn apply(&mut self, rel: &Path, depth: Depth) -> Result<()> {
        if self.done.iter().any(|d| rel.starts_with(d)) {
            return Ok(());
        }
        if rel.as_os_str().is_empty() {
            if depth != Depth::Own {
                self.reconcile_listing(rel, depth == Depth::All)?;
            }
            self.meta_dirs.insert(PathBuf::new());
            return Ok(());
        }
        let desired = self.resolve(rel)?;
        let (parent_rel, name) = split(rel);
        // An interrupted sync may have renamed this path in already and so
        // moved its directory's times: check them even if nothing is left
        // to write here.
        self.meta_dirs.insert(parent_rel.to_path_buf());
        let parent = match sys::open_dir_beneath(self.w.into.fd(), parent_rel) {
            Ok(fd) => fd,
            Err(_) if desired.is_none() => return Ok(()), // gone with its parent
            Err(_) => {
                // The parent is missing from the tree (an interrupted run):
                // make it first, then this comes with it.
                return self.apply(parent_rel, Depth::All);
            }
        };
        let name_c = cname_of(name, rel)?;
        let current = stat_if_any(parent.as_fd(), &name_c, &self.w.into.display(rel))?;
        match desired {
            None => {
                if let Some(st) = current {
                    self.remove(parent.as_fd(), &name_c, rel, &st)?;
                }
                Ok(())
            }
            Some(r) => self.place(parent.as_fd(), rel, &r, current, depth),
        }
    }

    /// Make `rel` (in tree directory `parent`) what `r` says; `current` is
    /// what the tree has there now.
    fn place(
        &mut self,
        parent: BorrowedFd<'_>,
        rel: &Path,
        r: &Resolved,
        current: Option<Stat>,
        depth: Depth,
    ) -> Result<()> {
        let name = cname_of(split(rel).1, rel)?;
        let parent_rel = split(rel).0.to_path_buf();
        if r.found.kind == FileType::Directory {
            if current.is_some_and(|st| kind_of(&st) == FileType::Directory) {
                self.views
                    .insert(rel.to_path_buf(), r.as_dir(rel.to_path_buf()));
                if depth != Depth::Own {
                    self.reconcile_listing(rel, depth == Depth::All)?;
                }
                self.meta_dirs.insert(rel.to_path_buf());
                return Ok(());
            }
            self.write(parent, &name, rel, r, current.is_some())?;
            self.meta_dirs.insert(parent_rel);
            self.done.push(rel.to_path_buf());
            return Ok(());
        }
        if let Some(st) = &current {
            if self.matches(parent, &name, st, rel, r)? {
                return Ok(());
            }
        }
        self.write(parent, &name, rel, r, current.is_some())?;
        self.meta_dirs.insert(parent_rel);
        Ok(())
    }

    /// Write `r` as `rel` through the writer, counting new names.
    fn write(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        rel: &Path,
        r: &Resolved,
        replacing: bool,
    ) -> Result<()> {
        let (shown, layer_path) = r.shown(rel);
        let layer_dir = self
            .w
            .overlay
            .layer_tree(shown)
            .open_dir(split(&layer_path).0)?;
        let before = self.written();
        let dst = (!self.w.dry_run).then_some(parent);
        let entry = Entry {
            rel,
            name,
            resolved: r,
            shown,
            layer_path: &layer_path,
            layer_dir: layer_dir.as_fd(),
        };
        self.w.write_entry(&entry, dst)?;
        let added = (self.written() - before) as i64;
        self.net_entries += if replacing { added - 1 } else { added };
        Ok(())
    }

    fn written(&self) -> u64 {
        let c = &self.w.counts;
        c.linked + c.copied + c.dirs
    }

    /// Compare tree directory `rel` with the view's listing of it: remove
    /// what the view does not show, add what the tree lacks, and with
    /// `all` compare everything below too.
    fn reconcile_listing(&mut self, rel: &Path, all: bool) -> Result<()> {
        let Some(view_dir) = self.view_dir(rel)? else {
            return Ok(());
        };
        let listing = self
            .w
            .overlay
            .list(&view_dir)
            .map_err(|e| Error::io("list", rel, e))?;
        let tree_dir = self.w.into.open_dir(rel)?;
        let in_tree = sys::read_dir(tree_dir.as_fd())
            .map_err(|e| Error::io("read", self.w.into.display(rel), e))?;
        let shown: HashSet<&OsStr> = listing.iter().map(|l| l.name.as_os_str()).collect();
        for entry in &in_tree {
            let name = sys::os_name(&entry.name);
            if shown.contains(name) {
                continue;
            }
            let child = child_path(rel, name);
            if let Some(st) =
                stat_if_any(tree_dir.as_fd(), &entry.name, &self.w.into.display(&child))?
            {
                self.remove(tree_dir.as_fd(), &entry.name, &child, &st)?;
            }
        }
        for item in &listing {
            let child = child_path(rel, &item.name);
            let r = match self.w.overlay.resolve(&view_dir, &item.name) {
                Ok(r) => r,
                Err(e) if e == Errno::NOENT => continue,
                Err(e) => return Err(Error::io("resolve", &child, e)),
            };
            let name_c = cname_of(&item.name, &child)?;
            let current = stat_if_any(tree_dir.as_fd(), &name_c, &self.w.into.display(&child))?;
            let depth = if all { Depth::All } else { Depth::Own };
            if r.found.kind == FileType::Directory
                && current.is_some_and(|st| kind_of(&st) == FileType::Directory)
                && !all
            {
                // Unchanged below unless changed paths say otherwise.
                continue;
            }
            self.place(tree_dir.as_fd(), &child, &r, current, depth)?;
        }
        Ok(())
    }

    /// Remove `name` (at `rel`, with stat `st`) from tree directory `dir`.
    fn remove(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        rel: &Path,
        st: &Stat,
    ) -> Result<()> {
        let n = if kind_of(st) == FileType::Directory {
            count_entries(dir, name).map_err(|e| Error::io("read", self.w.into.display(rel), e))?
        } else {
            1
        };
        self.w.counts.removed += n;
        self.net_entries -= n as i64;
        self.w.note("remove", rel);
        self.meta_dirs.insert(split(rel).0.to_path_buf());
        if self.w.dry_run {
            return Ok(());
        }
        remove_tree_at(dir, name).map_err(|e| Error::io("remove", self.w.into.display(rel), e))
    }

    /// Does the tree's `name` in `parent` (stat `st`) already hold what
    /// the view shows as `r`?
    fn matches(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        st: &Stat,
        rel: &Path,
        r: &Resolved,
    ) -> Result<bool> {
        if kind_of(st) != r.found.kind {
            return Ok(false);
        }
        let (source, src_rel) = r.shown(rel);
        let same_inode =
            (sys::dev_of(st), sys::ino_of(st)) == (sys::dev_of(&r.stat), sys::ino_of(&r.stat));
        if self.w.links(source, &r.stat) {
            return Ok(same_inode);
        }
        if same_inode {
            // A copy must not be the layer's own inode.
            return Ok(false);
        }
        // A copy of an upper file has as many names in the tree as the
        // upper file has in the view. A skel file hard-linked into the tree
        // has more (its skel names too), so an upper file that equals one
        // (copied up unchanged, as when another name of it was removed)
        // is still written as a copy of its own.
        if source == Layer::Upper && sys::nlink_of(st) != sys::nlink_of(&r.stat) {
            return Ok(false);
        }
        if let Some(first) = self.w.group_peek(r) {
            let (first_parent, first_name) = split(&first);
            let first_st = match sys::open_dir_beneath(self.w.into.fd(), first_parent)
                .and_then(|d| sys::stat_at(d.as_fd(), &sys::cname(first_name)?))
            {
                Ok(s) => s,
                Err(_) => return Ok(false),
            };
            return Ok((sys::dev_of(st), sys::ino_of(st))
                == (sys::dev_of(&first_st), sys::ino_of(&first_st)));
        }
        let src_dir = self
            .w
            .overlay
            .layer_tree(source)
            .open_dir(split(&src_rel).0)?;
        let src_name = cname_of(split(&src_rel).1, rel)?;
        let keep = |name: &[u8]| !format::is_private_xattr(name);
        let spec = CompareSpec {
            keep_xattr: &keep,
            // Only the upper layer changes between syncs: lower files are
            // not read (their link counts count skel names too).
            content: source == Layer::Upper,
            links: source == Layer::Upper,
        };
        let same = same_entry(
            Side {
                dir: src_dir.as_fd(),
                name: &src_name,
                stat: &r.stat,
            },
            Side {
                dir: parent,
                name,
                stat: st,
            },
            &spec,
        )
        .map_err(|e| Error::io("compare", self.w.into.display(rel), e))?;
        if same {
            self.w.group_record(r, rel);
        }
        Ok(same)
    }

    /// Check the metadata of every directory touched or changed, and
    /// apply the view's where it differs. Call after all paths.
    pub fn finish(&mut self) -> Result<()> {
        if !self.w.dry_run {
            self.w.finish_dirs()?;
        }
        for rel in std::mem::take(&mut self.meta_dirs) {
            let Ok(tree_dir) = self.w.into.open_dir(&rel) else {
                continue; // removed, or (dry run) not made
            };
            let Some(want) = self.dir_meta(&rel)? else {
                continue;
            };
            let err = |e| Error::io("read", self.w.into.display(&rel), e);
            let have = Meta::from_stat(&sys::fstat(tree_dir.as_fd()).map_err(err)?)
                .with_xattrs(tree_dir.as_fd())
                .map_err(err)?;
            let mut want_x = want.xattrs.clone();
            let mut have_x = have.xattrs.clone();
            want_x.sort();
            have_x.sort();
            if (want.mode, want.uid, want.gid, want.times.mtime)
                == (have.mode, have.uid, have.gid, have.times.mtime)
                && want_x == have_x
            {
                continue;
            }
            self.w.counts.updated += 1;
            self.w.note("update", &rel);
            if self.w.dry_run {
                continue;
            }
            for (name, _) in &have.xattrs {
                if !want.xattrs.iter().any(|(n, _)| n == name) {
                    let _ = rustix::fs::fremovexattr(tree_dir.as_fd(), name.as_c_str());
                }
            }
            want.apply_to_fd(tree_dir.as_fd())
                .map_err(|e| Error::io("set metadata", self.w.into.display(&rel), e))?;
        }
        Ok(())
    }

    /// The view's metadata for directory `rel`, without private xattrs.
    fn dir_meta(&mut self, rel: &Path) -> Result<Option<Meta>> {
        let (fd, st): (OwnedFd, Stat) = if rel.as_os_str().is_empty() {
            let upper = self.w.overlay.upper_layer();
            let fd = sys::open_dir_beneath(upper.fd(), rel)
                .map_err(|e| Error::io("open", upper.path(), e))?;
            let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("stat", upper.path(), e))?;
            (fd, st)
        } else {
            let Some(r) = self.resolve(rel)? else {
                return Ok(None);
            };
            if r.found.kind != FileType::Directory {
                return Ok(None);
            }
            let (source, src_rel) = r.shown(rel);
            (
                self.w.overlay.layer_tree(source).open_dir(&src_rel)?,
                r.stat,
            )
        };
        let meta = Meta::from_stat(&st)
            .with_xattrs(fd.as_fd())
            .map_err(|e| Error::io("read xattrs", rel, e))?;
        Ok(Some(without_private(meta)))
    }

    /// What the view shows at `rel`, through cached directory lookups.
    pub fn resolve(&mut self, rel: &Path) -> Result<Option<Resolved>> {
        if rel.as_os_str().is_empty() {
            return Ok(None);
        }
        let (parent, name) = split(rel);
        let Some(dir) = self.view_dir(parent)? else {
            return Ok(None);
        };
        match self.w.overlay.resolve(&dir, name) {
            Ok(r) => Ok(Some(r)),
            Err(e) if e == Errno::NOENT || e == Errno::NOTDIR => Ok(None),
            Err(e) => Err(Error::io("resolve", rel, e)),
        }
    }

    fn view_dir(&mut self, rel: &Path) -> Result<Option<DirInfo>> {
        if let Some(info) = self.views.get(rel) {
            return Ok(Some(info.clone()));
        }
        let info = if rel.as_os_str().is_empty() {
            self.w
                .overlay
                .dir_info(ROOT_ID)
                .map_err(|e| Error::io("read", Path::new("/"), e))?
        } else {
            match self.resolve(rel)? {
                Some(r) if r.found.kind == FileType::Directory => r.as_dir(rel.to_path_buf()),
                _ => return Ok(None),
            }
        };
        self.views.insert(rel.to_path_buf(), info.clone());
        Ok(Some(info))
    }
}

/// Is the upper directory at `rel` redirected (its lower content moved)?
pub fn is_redirected(upper: BorrowedFd<'_>, rel: &Path) -> bool {
    sys::open_dir_beneath(upper, rel)
        .ok()
        .and_then(|fd| sys::fget_xattr(fd.as_fd(), format::REDIRECT_XATTR).ok())
        .is_some()
}

/// Is the upper directory at `rel` opaque?
pub fn is_opaque(upper: BorrowedFd<'_>, rel: &Path) -> bool {
    sys::open_dir_beneath(upper, rel)
        .ok()
        .and_then(|fd| format::is_opaque(fd.as_fd()).ok())
        .unwrap_or(false)
}

#[allow(clippy::unnecessary_cast)]
fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

fn stat_if_any(dir: BorrowedFd<'_>, name: &std::ffi::CStr, shown: &Path) -> Result<Option<Stat>> {
    match sys::stat_at(dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::io("stat", shown, e)),
    }
}

/// Entries in `name` (itself included), never following a symlink.
fn count_entries(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> std::io::Result<u64> {
    let sub = match sys::open_subdir(dir, name) {
        Ok(sub) => sub,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => return Ok(1),
        Err(e) => return Err(e),
    };
    let mut n = 1;
    for entry in sys::read_dir(sub.as_fd())? {
        n += if matches!(entry.file_type, FileType::Directory | FileType::Unknown) {
            count_entries(sub.as_fd(), &entry.name)?
        } else {
            1
        };
    }
    Ok(n)
}
