//! Hard links across copy-up.
//!
//! A lower file with several names is one inode in the view. When one name
//! is copied up, every other name of that inode that the view still shows
//! is hard-linked to the same upper copy in the same step, so a write
//! through one name is seen through all, `nlink` stays right, and the upper
//! layer alone says so (kernel overlayfs and `sync` read it as it is; no
//! index directory is needed).
//!
//! Finding the other names needs a map from lower inode to lower paths. It
//! is built once per mount, on the first copy-up of a multiply-linked file,
//! by one walk of the lower layers that records only files with more than
//! one link.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::overlay::{OpResult, Overlay, cname, errno, split};
use super::resolve::{DirInfo, Resolved};
use crate::sys;
use crate::tree::walk::par_walk;

/// Lower paths of every multiply-linked lower file: (layer, inode) -> paths.
pub type LinkMap = HashMap<(usize, u64), Vec<PathBuf>>;

/// `base` joined with every component of `rest`.
fn child_path_all(base: &Path, rest: &Path) -> PathBuf {
    rest.components().fold(base.to_path_buf(), |path, c| {
        super::node::child_path(&path, c.as_os_str())
    })
}

/// Walk lower layer `layer` and record its multiply-linked files.
pub fn scan_layer(overlay: &Overlay, layer: usize, into: &Mutex<LinkMap>) -> crate::Result<()> {
    let tree = &overlay.lowers[layer];
    par_walk(PathBuf::new(), &|rel: PathBuf| {
        let dir = tree.open_dir(&rel)?;
        let entries = sys::read_dir(dir.as_fd())
            .map_err(|e| crate::Error::io("read directory", tree.display(&rel), e))?;
        let mut subdirs = Vec::new();
        let mut found = Vec::new();
        for entry in entries {
            match entry.file_type {
                FileType::Directory => subdirs.push(rel.join(sys::os_name(&entry.name))),
                FileType::RegularFile | FileType::Unknown => {
                    let Ok(st) = sys::stat_at(dir.as_fd(), &entry.name) else {
                        continue;
                    };
                    let kind = FileType::from_raw_mode(st.st_mode as _);
                    if kind == FileType::Directory {
                        subdirs.push(rel.join(sys::os_name(&entry.name)));
                    } else if kind == FileType::RegularFile && sys::nlink_of(&st) > 1 {
                        found.push((sys::ino_of(&st), rel.join(sys::os_name(&entry.name))));
                    }
                }
                _ => {}
            }
        }
        if !found.is_empty() {
            let mut map = into.lock();
            for (ino, path) in found {
                map.entry((layer, ino)).or_default().push(path);
            }
        }
        Ok(subdirs)
    })
}

impl Overlay {
    /// The lower paths of inode `ino` of lower layer `layer` (built on
    /// first use).
    pub(super) fn lower_names(&self, layer: usize, ino: u64) -> OpResult<Vec<PathBuf>> {
        let map = self.link_map.get_or_init(|| {
            let map = Mutex::new(LinkMap::new());
            for layer in 0..self.lowers.len() {
                if let Err(e) = scan_layer(self, layer, &map) {
                    tracing::warn!("cannot index hard links of a lower layer: {e}");
                }
            }
            map.into_inner()
        });
        Ok(map.get(&(layer, ino)).cloned().unwrap_or_default())
    }

    /// Every directory of the upper layer that carries a redirect: (the
    /// lower path it shows, its path in the view). Walks the upper layer's
    /// directories (only when a multiply-linked file is copied up).
    fn upper_redirects(&self) -> Vec<(PathBuf, PathBuf)> {
        let found = Mutex::new(Vec::new());
        let walked = par_walk(PathBuf::new(), &|rel: PathBuf| {
            let dir = self.upper.open_dir(&rel)?;
            let entries = sys::read_dir(dir.as_fd())
                .map_err(|e| crate::Error::io("read directory", self.upper.display(&rel), e))?;
            let mut subdirs = Vec::new();
            for entry in entries {
                if entry.file_type != FileType::Directory {
                    continue;
                }
                let path = rel.join(sys::os_name(&entry.name));
                if let Ok(sub) = sys::open_subdir(dir.as_fd(), &entry.name)
                    && let Ok(Some(target)) = super::format::redirect(sub.as_fd(), None)
                {
                    found.lock().push((target, path.clone()));
                }
                subdirs.push(path);
            }
            Ok(subdirs)
        });
        if let Err(e) = walked {
            tracing::warn!("cannot read the upper layer's redirects: {e}");
        }
        found.into_inner()
    }

    /// Make the directory `path` and its parents exist in the upper layer
    /// (copying them up from the lowers).
    pub(super) fn ensure_upper_dirs(&self, path: &Path) -> OpResult<()> {
        let mut dir = self.dir_info(super::node::ROOT_ID)?;
        for component in path.components() {
            let name = component.as_os_str();
            let r = self.resolve(&dir, name)?;
            if r.found.kind != FileType::Directory {
                return Err(super::overlay::Errno::NOTDIR);
            }
            if !r.found.upper {
                let parent = self.upper_dir(&dir.path)?;
                let lower = r.found.lower.clone().ok_or(super::overlay::Errno::IO)?;
                self.copy_up_entry(&lower, FileType::Directory, parent.as_fd(), name)?;
                self.nodes().mark_upper(r.id);
                self.touch(r.id);
                self.dirs_changed();
            }
            dir = DirInfo {
                id: r.id,
                path: super::node::child_path(&dir.path, name),
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
        let names = self.lower_names(lower.top_layer(), sys::ino_of(&r.stat))?;
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
            .lower_names(layer, ino)?
            .into_iter()
            .filter(|other| other != lower_path)
            .collect();
        if others.is_empty() {
            return Ok(());
        }
        let redirects = self.upper_redirects();
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
