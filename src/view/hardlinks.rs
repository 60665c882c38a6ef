//! Hard links across copy-up: where the other names of a lower inode are.
//!
//! A lower file with several names is one inode in the view. When one name
//! is copied up, every other name of that inode that the view still shows
//! is hard-linked to the same upper copy in the same step (`copyup`), so a
//! write through one name is seen through all, `nlink` stays right, and the
//! upper layer alone says so (kernel overlayfs and `sync` read it as it is;
//! no index directory is needed).
//!
//! Finding the other names needs a map from lower inode to lower paths: the
//! [`LinkIndex`], built once per mount on the first copy-up of a
//! multiply-linked file, by one walk of the lower layers that records only
//! files with more than one link. This module reads layers only; it knows
//! nothing of the overlay that uses it.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustix::fs::FileType;

use super::format;
use super::node::child_path;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::walk::par_walk;

/// Lower paths of every multiply-linked lower file: (layer, inode) -> paths.
type LinkMap = HashMap<(usize, u64), Vec<PathBuf>>;

/// The lower names of multiply-linked lower files, indexed on first use.
#[derive(Debug, Default)]
pub struct LinkIndex {
    map: OnceLock<LinkMap>,
}

impl LinkIndex {
    /// The lower paths of inode `ino` of lower layer `layer` of `lowers`
    /// (the same layers every time: the index is built from the first
    /// call's).
    pub fn names(&self, lowers: &[TreeRoot], layer: usize, ino: u64) -> Vec<PathBuf> {
        let map = self.map.get_or_init(|| {
            let map = Mutex::new(LinkMap::new());
            for (i, tree) in lowers.iter().enumerate() {
                if let Err(e) = scan_layer(tree, i, &map) {
                    tracing::warn!("cannot index hard links of a lower layer: {e}");
                }
            }
            map.into_inner()
        });
        map.get(&(layer, ino)).cloned().unwrap_or_default()
    }
}

/// `base` joined with every component of `rest`.
pub fn child_path_all(base: &Path, rest: &Path) -> PathBuf {
    rest.components().fold(base.to_path_buf(), |path, c| {
        child_path(&path, c.as_os_str())
    })
}

/// Walk lower layer `tree` (number `layer`) and record its multiply-linked
/// files.
fn scan_layer(tree: &TreeRoot, layer: usize, into: &Mutex<LinkMap>) -> crate::Result<()> {
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
                    let path = rel.join(sys::os_name(&entry.name));
                    let st = match sys::absent_as_none(sys::stat_at(dir.as_fd(), &entry.name)) {
                        Ok(Some(st)) => st,
                        Ok(None) => continue, // gone since the listing
                        Err(e) => {
                            tracing::warn!(
                                "indexing hard links: {}: {e}",
                                tree.display(&path).display()
                            );
                            continue;
                        }
                    };
                    let kind = FileType::from_raw_mode(st.st_mode as _);
                    if kind == FileType::Directory {
                        subdirs.push(path);
                    } else if kind == FileType::RegularFile && sys::nlink_of(&st) > 1 {
                        found.push((sys::ino_of(&st), path));
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

/// Every directory of the upper layer `upper` that carries a redirect: (the
/// lower path it shows, its path in the view). Walks the upper layer's
/// directories (only when a multiply-linked file is copied up).
pub fn upper_redirects(upper: &TreeRoot) -> Vec<(PathBuf, PathBuf)> {
    let found = Mutex::new(Vec::new());
    let walked = par_walk(PathBuf::new(), &|rel: PathBuf| {
        let dir = upper.open_dir(&rel)?;
        let entries = sys::read_dir(dir.as_fd())
            .map_err(|e| crate::Error::io("read directory", upper.display(&rel), e))?;
        let mut subdirs = Vec::new();
        for entry in entries {
            if entry.file_type != FileType::Directory {
                continue;
            }
            let path = rel.join(sys::os_name(&entry.name));
            match sys::open_subdir(dir.as_fd(), &entry.name)
                .map(|sub| format::redirect(sub.as_fd(), None))
            {
                Ok(Ok(Some(target))) => found.lock().push((target, path.clone())),
                Ok(Ok(None)) => {}
                Ok(Err(e)) | Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(
                        "reading a redirect: {}: {e}",
                        upper.display(&path).display()
                    )
                }
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
