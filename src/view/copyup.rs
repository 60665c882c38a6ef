//! Copy-up: bring a lower entry into the upper layer before it changes.
//!
//! The copy is made in `work/` (data, owner, mode, xattrs including file
//! capabilities, times; a non-directory by [`crate::tree::entry`]'s
//! copier) and renamed into the upper layer in one step, so a
//! crash leaves either no copy or a whole one. Parents are copied up first
//! (directories only: their metadata, never their content). A copied-up
//! file records the lower inode it came from (`format::ORIGIN_XATTR`), so
//! its inode number in the view does not change.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use super::types::Errno;
use rustix::fs::FileType;

use super::format;
use super::hardlinks::{child_path_all, upper_redirects};
use super::node::{Lower, ROOT_ID, child_path};
use super::overlay::Overlay;
use super::types::{DirInfo, Resolved};
use super::types::{OpResult, cname, errno, split};
use crate::sys;
use crate::sys::absent_as_none;
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::meta::Meta;

/// What a copy-up made.
#[derive(Debug, Default)]
pub(super) struct CopiedUp {
    /// A regular file with more than one lower name: its (layer, inode),
    /// so the other names can follow.
    pub links: Option<(usize, u64)>,
    /// A non-directory: the inode number of the copy.
    pub copy_ino: Option<u64>,
}

impl Overlay {
    /// Make sure node `id` exists in the upper layer (with the tree lock
    /// held exclusively).
    pub(super) fn copy_up(&self, id: u64) -> OpResult<()> {
        let (name_of, upper, lower, kind) = {
            let nodes = self.nodes();
            let node = nodes.get(id).ok_or(Errno::NOENT)?;
            let name_of = nodes.name_of(id).map(|(p, n)| (p, n.to_os_string()));
            (name_of, node.upper(), nodes.lower_of(id), node.kind())
        };
        if upper || id == ROOT_ID {
            return Ok(());
        }
        // A lower file whose name is gone has nowhere to be copied to.
        let (parent, name) = name_of.ok_or(Errno::NOENT)?;
        self.copy_up(parent)?;
        let lower = lower.ok_or(Errno::IO)?;
        let dir = self.dir_info(parent)?;
        let target_dir = self.upper_dir_cached(&dir)?;
        let CopiedUp { links, copy_ino } =
            self.copy_up_entry(&lower, kind, target_dir.as_fd(), &name)?;
        {
            let mut nodes = self.nodes();
            nodes.mark_upper(id);
            if let Some(ino) = copy_ino {
                nodes.set_upper_copy(id, ino);
            }
        }
        if kind == FileType::Directory {
            self.touch(id); // now a merged directory (its nlink shows 1)
            self.dirs_changed();
        }
        if let Some((layer, ino)) = links {
            let upper_path = super::node::child_path(&dir.path, &name);
            self.link_up_other_names(id, layer, ino, &upper_path, lower.path())?;
        }
        Ok(())
    }

    /// Copy the lower entry `lower` to `name` in the upper directory
    /// `target_dir`, through `work/`. Returns, for a regular file with more
    /// than one lower name, its (layer, inode) so the other names can
    /// follow, and for a non-directory the inode number of the copy.
    pub(super) fn copy_up_entry(
        &self,
        lower: &Lower,
        kind: FileType,
        target_dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> OpResult<CopiedUp> {
        let layer = lower.top_layer();
        let (src_parent, src_name) = split(lower.path());
        let src_dir = self.lower_dir(layer, src_parent).map_err(errno)?;
        let src_name = cname(src_name)?;
        let tmp = self.work_name();
        let work = self.work.fd();
        let made = match kind {
            FileType::Directory => self
                .copy_dir(src_dir.as_fd(), &src_name, work, &tmp)
                .map(|()| CopiedUp::default()),
            _ => self.copy_non_dir(src_dir.as_fd(), &src_name, work, &tmp, layer),
        };
        let copied = match made {
            Ok(copied) => copied,
            Err(e) => {
                let _ = crate::tree::remove::remove_tree_at(work, &tmp);
                return Err(e);
            }
        };
        let target = cname(name)?;
        // A copy-up is no change the view's users made: like kernel
        // overlayfs, keep the upper parent's times as they were.
        let parent_times = sys::fstat(target_dir)
            .ok()
            .map(|st| Meta::from_stat(&st).times);
        sys::rename_noreplace(work, &tmp, target_dir, &target).map_err(|e| {
            let _ = crate::tree::remove::remove_tree_at(work, &tmp);
            errno(e)
        })?;
        if let Some(times) = parent_times {
            let _ = sys::futimens(target_dir, times); // best effort, as the kernel's
        }
        Ok(copied)
    }

    fn copy_dir(
        &self,
        src_dir: BorrowedFd<'_>,
        src_name: &std::ffi::CStr,
        work: BorrowedFd<'_>,
        tmp: &std::ffi::CStr,
    ) -> OpResult<()> {
        let src = sys::open_subdir(src_dir, src_name).map_err(errno)?;
        let meta = lower_meta(src.as_fd())?;
        sys::mkdir_at(work, tmp, 0o700).map_err(errno)?;
        let made = sys::open_subdir(work, tmp).map_err(errno)?;
        meta.apply_to_fd(made.as_fd()).map_err(errno)
    }

    /// Copy a non-directory to `tmp` in `work`, recording its origin (the
    /// inode number in the view stays). Returns, for a regular file with
    /// more than one name, its (layer, inode), and the copy's inode number.
    fn copy_non_dir(
        &self,
        src_dir: BorrowedFd<'_>,
        src_name: &std::ffi::CStr,
        work: BorrowedFd<'_>,
        tmp: &std::ffi::CStr,
        layer: usize,
    ) -> OpResult<CopiedUp> {
        let st = sys::stat_at(src_dir, src_name).map_err(errno)?;
        let origin = format::format_origin(self.lowers[layer].dev(), sys::ino_of(&st));
        let keep = |name: &[u8]| !format::is_private_xattr(name);
        // A trusted.* xattr can be set on symlinks and device nodes too.
        let extra = [(format::ORIGIN_XATTR, origin.as_bytes())];
        let spec = CopySpec {
            keep_xattr: &keep,
            extra_xattrs: &extra,
            transform: None,
        };
        let copied = copy_entry(src_dir, src_name, work, Some(tmp), &spec).map_err(errno)?;
        // Renamed into the upper layer by the caller, who removes it on
        // failure.
        let copy_ino = copied.made.id().1;
        copied.made.keep();
        let meta = copied.meta;
        let links = meta.file_type == FileType::RegularFile && meta.nlink > 1;
        Ok(CopiedUp {
            links: links.then_some((layer, meta.ino)),
            copy_ino: Some(copy_ino),
        })
    }
}

/// Metadata of an open lower entry, without overlay-private xattrs.
fn lower_meta(fd: BorrowedFd<'_>) -> OpResult<Meta> {
    let st = sys::fstat(fd).map_err(errno)?;
    let mut meta = Meta::from_stat(&st).with_xattrs(fd).map_err(errno)?;
    meta.xattrs
        .retain(|(n, _)| !format::is_private_xattr(n.to_bytes()));
    Ok(meta)
}

/// Is there a lower entry called `name` in the lower content of a directory
/// (so that removing or renaming the name needs a whiteout)?
pub(super) fn lower_has(overlay: &Overlay, lower: Option<&Lower>, name: &OsStr) -> OpResult<bool> {
    let Some(lower) = lower else {
        return Ok(false);
    };
    let cname = cname(name)?;
    for (layer, path) in &lower.at {
        let Some(dir) = absent_as_none(overlay.lower_dir(*layer, path)).map_err(errno)? else {
            continue;
        };
        if absent_as_none(sys::stat_at(dir.as_fd(), &cname))
            .map_err(errno)?
            .is_some()
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Hard links across copy-up (the lower names come from `hardlinks`).
impl Overlay {
    /// Make the directory `path` and its parents exist in the upper layer
    /// (copying them up from the lowers).
    pub(super) fn ensure_upper_dirs(&self, path: &Path) -> OpResult<()> {
        let mut dir = self.dir_info(ROOT_ID)?;
        for component in path.components() {
            let name = component.as_os_str();
            let r = self.resolve(&dir, name)?;
            if r.found.kind != FileType::Directory {
                return Err(Errno::NOTDIR);
            }
            if !r.found.upper {
                let parent = self.upper_dir(&dir.path)?;
                let lower = r.found.lower.clone().ok_or(Errno::IO)?;
                self.copy_up_entry(&lower, FileType::Directory, parent.as_fd(), name)?;
                self.nodes().mark_upper(r.id);
                self.touch(r.id);
                self.dirs_changed();
            }
            dir = DirInfo {
                id: r.id,
                path: child_path(&dir.path, name),
                upper: true,
                lower: r.found.lower,
            };
        }
        Ok(())
    }

    /// Before the lower file `r`, shown as `name` in `parent`, loses that
    /// name (unlink, or a rename over it): if the lower layer has other
    /// names of the same inode, copy it up first. The names the view still
    /// shows then become upper hard links of one copy, whose `nlink` drops
    /// with this name as it should (kernel overlayfs needs `index=on` for
    /// this). Returns whether it was copied up.
    pub(super) fn copy_up_shared_lower_file(
        &self,
        parent: u64,
        name: &OsStr,
        r: &Resolved,
    ) -> OpResult<bool> {
        if r.found.upper || r.found.kind != FileType::RegularFile || sys::nlink_of(&r.stat) < 2 {
            return Ok(false);
        }
        let Some(lower) = &r.found.lower else {
            return Ok(false);
        };
        let names = self
            .links
            .names(&self.lowers, lower.top_layer(), sys::ino_of(&r.stat));
        if !names.iter().any(|other| other != lower.path()) {
            return Ok(false); // its other links are outside the view
        }
        self.nodes()
            .enter(r.id, parent, name, r.found.clone(), false);
        self.copy_up(r.id)?;
        Ok(true)
    }

    /// After `upper_path` was copied up from lower inode `ino` of `layer`:
    /// link every other name the view shows of that inode to the copy.
    pub(super) fn link_up_other_names(
        &self,
        id: u64,
        layer: usize,
        ino: u64,
        upper_path: &Path,
        lower_path: &Path,
    ) -> OpResult<()> {
        let others: Vec<PathBuf> = self
            .links
            .names(&self.lowers, layer, ino)
            .into_iter()
            .filter(|other| other != lower_path)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let redirects = upper_redirects(&self.upper);
        for other in others {
            // Where the view shows that lower name: at the same path, or
            // below a renamed directory whose redirect points above it.
            let mut candidates = vec![other.clone()];
            for (target, view_path) in &redirects {
                if let Ok(rest) = other.strip_prefix(target) {
                    candidates.push(child_path_all(view_path, rest));
                }
            }
            for candidate in candidates {
                // Only names the view still shows as this very inode, from
                // the lower layer (not removed, replaced or linked up).
                match self.shown_at(&candidate) {
                    Ok(Some((_, r))) if r.id == id && !r.found.upper => {}
                    _ => continue,
                }
                let (parent, name) = split(&candidate);
                self.ensure_upper_dirs(parent)?;
                let (src_parent, src_name) = split(upper_path);
                let from = self.upper_dir(src_parent)?;
                let to = self.upper_dir(parent)?;
                sys::link_at(from.as_fd(), &cname(src_name)?, to.as_fd(), &cname(name)?)
                    .map_err(errno)?;
            }
        }
        Ok(())
    }
}
