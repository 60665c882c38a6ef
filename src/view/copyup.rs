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

use super::overlay::Errno;
use rustix::fs::FileType;

use super::format;
use super::node::{Lower, ROOT_ID};
use super::overlay::{OpResult, Overlay, cname, errno, split};
use crate::sys;
use crate::sys::absent_as_none;
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::meta::Meta;

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
        let links = self.copy_up_entry(&lower, kind, target_dir.as_fd(), &name)?;
        self.nodes().mark_upper(id);
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
    /// `target_dir`, through `work/`. For a regular file with more than one
    /// lower name, returns its (layer, inode) so the other names can follow.
    pub(super) fn copy_up_entry(
        &self,
        lower: &Lower,
        kind: FileType,
        target_dir: BorrowedFd<'_>,
        name: &OsStr,
    ) -> OpResult<Option<(usize, u64)>> {
        let layer = lower.top_layer();
        let (src_parent, src_name) = split(lower.path());
        let src_dir = self.lower_dir(layer, src_parent).map_err(errno)?;
        let src_name = cname(src_name)?;
        let tmp = self.work_name();
        let work = self.work.fd();
        let made = match kind {
            FileType::Directory => self
                .copy_dir(src_dir.as_fd(), &src_name, work, &tmp)
                .map(|()| None),
            _ => self.copy_non_dir(src_dir.as_fd(), &src_name, work, &tmp, layer),
        };
        let links = match made {
            Ok(links) => links,
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
        Ok(links)
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
    /// inode number in the view stays). For a regular file with more
    /// than one name, returns its (layer, inode).
    fn copy_non_dir(
        &self,
        src_dir: BorrowedFd<'_>,
        src_name: &std::ffi::CStr,
        work: BorrowedFd<'_>,
        tmp: &std::ffi::CStr,
        layer: usize,
    ) -> OpResult<Option<(usize, u64)>> {
        let st = sys::stat_at(src_dir, src_name).map_err(errno)?;
        let origin = format::format_origin(self.lowers[layer].dev(), sys::ino_of(&st));
        let keep = |name: &[u8]| !format::is_private_xattr(name);
        // A trusted.* xattr can be set on symlinks and device nodes too.
        let extra = [(format::ORIGIN_XATTR, origin.as_bytes())];
        let spec = CopySpec {
            keep_xattr: &keep,
            extra_xattrs: &extra,
        };
        let copied = copy_entry(src_dir, src_name, work, Some(tmp), &spec).map_err(errno)?;
        // Renamed into the upper layer by the caller, who removes it on
        // failure.
        copied.made.keep();
        let meta = copied.meta;
        let links = meta.file_type == FileType::RegularFile && meta.nlink > 1;
        Ok(links.then_some((layer, meta.ino)))
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
