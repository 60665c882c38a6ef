//! Finding names through the layers: which layer shows a name, what the
//! name is (its node ID: the lower inode's number, also after copy-up, or
//! the upper inode's for an entry made in the view), and where a node
//! known by the node table is shown now, checked ([`Overlay::locate`]), so
//! that nothing is ever done by a name that no longer shows the node.
//!
//! Only `ENOENT` and `ENOTDIR` mean "absent" here; any other error (out of
//! descriptors, I/O) is reported, never taken for a missing name.

use std::ffi::{CStr, CString, OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fs::{FileType, Stat};

use super::caches::UPPER_SLOT;
use super::format;
use super::node::{Found, Lower, ROOT_ID, child_path};
use super::overlay::Overlay;
use super::types::{DirInfo, Errno, Layer, OpResult, Resolved, cname, errno, split};
use crate::sys;

/// Where the lower layers are searched for a name, as redirects change it
/// from one layer to the next (kernel overlayfs' rules).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Aim {
    /// This name in the directory's own content of each layer.
    Below(OsString),
    /// This path from the root of every layer (below the one that said so).
    Absolute(PathBuf),
}

impl Aim {
    /// Where to search after a directory carrying `redirect`.
    fn redirected(self, redirect: format::Redirect) -> Aim {
        match (redirect, self) {
            (format::Redirect::Absolute(path), _) => Aim::Absolute(path),
            (format::Redirect::Relative(name), Aim::Below(_)) => Aim::Below(name),
            (format::Redirect::Relative(name), Aim::Absolute(path)) => {
                Aim::Absolute(split(&path).0.join(name))
            }
        }
    }
}

/// Where a node is shown, checked by [`Overlay::locate`].
#[derive(Debug)]
pub(super) struct Located {
    /// The layer directory holding it.
    pub parent: Arc<OwnedFd>,
    /// Its name there (`.` for the root, in the upper root).
    pub name: CString,
    /// Which kind of layer that is.
    pub layer: Layer,
    /// `stat` of what the name held when checked.
    pub stat: Stat,
}

/// Resolves names of one directory, one after the other.
#[derive(Debug)]
pub struct Resolver<'a> {
    _shared: parking_lot::RwLockReadGuard<'a, ()>,
    overlay: &'a Overlay,
    info: DirInfo,
    fds: DirFds,
}

impl Resolver<'_> {
    /// Find `name` in the directory.
    pub fn resolve(&mut self, name: &OsStr) -> OpResult<Resolved> {
        self.overlay.resolve_with(&mut self.fds, &self.info, name)
    }
}

/// The layer directories of one view directory, opened on first use and
/// kept for the next name (readdirplus resolves a whole listing).
#[derive(Debug, Default)]
pub struct DirFds {
    upper: Option<Arc<OwnedFd>>,
    lowers: Vec<Option<Option<Arc<OwnedFd>>>>,
}

impl DirFds {
    /// The upper directory of `dir` (which must exist in the upper layer).
    fn upper(&mut self, overlay: &Overlay, dir: &DirInfo) -> OpResult<BorrowedFd<'_>> {
        if self.upper.is_none() {
            self.upper = Some(overlay.upper_dir_cached(dir)?);
        }
        Ok(self
            .upper
            .as_ref()
            .map(|fd| fd.as_fd())
            .expect("just opened"))
    }

    /// The directory of `dir`'s lower content in lower layer `layer`, if
    /// it has one.
    fn lower(
        &mut self,
        overlay: &Overlay,
        dir: &DirInfo,
        layer: usize,
    ) -> OpResult<Option<BorrowedFd<'_>>> {
        let Some(lower) = &dir.lower else {
            return Ok(None);
        };
        if self.lowers.len() <= layer {
            self.lowers.resize_with(layer + 1, || None);
        }
        let slot = &mut self.lowers[layer];
        if slot.is_none() {
            let fd =
                overlay
                    .caches
                    .dirs
                    .get_or_open(dir.id, layer + 1, || match lower.path_in(layer) {
                        Some(path) => sys::absent_as_none(overlay.lower_dir(layer, path)),
                        None => Ok(None),
                    });
            *slot = Some(fd.map_err(errno)?);
        }
        Ok(slot
            .as_ref()
            .and_then(|fd| fd.as_ref())
            .map(|fd| fd.as_fd()))
    }
}

impl Overlay {
    /// What the view shows at `rel` (relative to its root) and the
    /// directory that shows it, found through the layers from the root
    /// without the node table; `None` when it shows nothing there (the
    /// root itself is no entry). Only `ENOENT` and `ENOTDIR` mean nothing.
    pub fn shown_at(&self, rel: &std::path::Path) -> OpResult<Option<(DirInfo, Resolved)>> {
        let mut dir = self.dir_info(ROOT_ID)?;
        let mut components = rel.iter().peekable();
        while let Some(name) = components.next() {
            let r = match self.resolve(&dir, name) {
                Ok(r) => r,
                Err(e) if e == Errno::NOENT || e == Errno::NOTDIR => return Ok(None),
                Err(e) => return Err(e),
            };
            if components.peek().is_none() {
                return Ok(Some((dir, r)));
            }
            if r.found.kind != FileType::Directory {
                return Ok(None);
            }
            let path = child_path(&dir.path, name);
            dir = DirInfo {
                id: r.id,
                path,
                upper: r.found.upper,
                lower: r.found.lower,
            };
        }
        Ok(None)
    }

    /// What is known of directory node `id`.
    pub fn dir_info(&self, id: u64) -> OpResult<DirInfo> {
        let nodes = self.nodes();
        let node = nodes.get(id).ok_or(Errno::NOENT)?;
        if node.kind() != FileType::Directory {
            return Err(Errno::NOTDIR);
        }
        Ok(DirInfo {
            id,
            path: nodes.path(id).ok_or(Errno::NOENT)?,
            upper: node.upper(),
            lower: nodes.lower_of(id),
        })
    }

    /// Find `name` in directory `dir` through the layers.
    pub fn resolve(&self, dir: &DirInfo, name: &OsStr) -> OpResult<Resolved> {
        self.resolve_with(&mut DirFds::default(), dir, name)
    }

    /// [`Overlay::resolve`], reusing the layer directories `fds` holds open
    /// for `dir` (many names of one directory cost one open per layer).
    pub(super) fn resolve_with(
        &self,
        fds: &mut DirFds,
        dir: &DirInfo,
        name: &OsStr,
    ) -> OpResult<Resolved> {
        let name_c = cname(name)?;
        // A directory in the upper layer: its stat, and how its lower
        // content is found (`None`: opaque, it has none).
        let mut upper_dir_hit: Option<(Stat, Option<Aim>)> = None;
        if dir.upper {
            let parent = fds.upper(self, dir)?;
            match sys::stat_at(parent, &name_c) {
                Ok(st) if format::is_whiteout(&st) => return Err(Errno::NOENT),
                Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory => {
                    let sub = sys::open_subdir(parent, &name_c).map_err(errno)?;
                    let aim = if format::is_opaque(sub.as_fd()).map_err(errno)? {
                        None
                    } else {
                        let start = Aim::Below(name.to_os_string());
                        Some(match format::redirect_of(sub.as_fd()).map_err(errno)? {
                            Some(r) => start.redirected(r),
                            None => start,
                        })
                    };
                    upper_dir_hit = Some((st, aim));
                }
                Ok(st) => return self.upper_non_dir(parent, &name_c, st),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let mut aim = match &upper_dir_hit {
            Some((_, aim)) => aim.clone(),
            None => Some(Aim::Below(name.to_os_string())),
        };
        let mut found_at: Vec<(usize, PathBuf)> = Vec::new();
        let mut lower_stat: Option<Stat> = None;
        // Lower directories opened on the way: kept in the directory cache
        // for the lookups and the listing in them that usually follow.
        let mut opened_dirs: Vec<(usize, OwnedFd)> = Vec::new();
        let last_layer = self.lowers.len().saturating_sub(1);
        for layer in 0..self.lowers.len() {
            let Some(current) = &aim else {
                break;
            };
            // Where this layer may hold it: below the directory's own
            // content in this layer, or where an absolute redirect says.
            let path = match current {
                Aim::Below(leaf) => match dir.lower.as_ref().and_then(|l| l.path_in(layer)) {
                    Some(parent) => child_path(parent, leaf),
                    None => continue,
                },
                Aim::Absolute(path) => path.clone(),
            };
            let (parent_path, leaf) = split(&path);
            let leaf = cname(leaf)?;
            // The directory's own layer directories serve (and stay open
            // for the next name); a redirect elsewhere opens its own.
            let own = matches!(current, Aim::Below(n) if n == name)
                && dir.lower.as_ref().and_then(|l| l.path_in(layer)) == Some(parent_path);
            let opened;
            let parent = if own {
                match fds.lower(self, dir, layer)? {
                    Some(fd) => fd,
                    None => continue,
                }
            } else {
                match sys::absent_as_none(self.lower_dir(layer, parent_path)).map_err(errno)? {
                    Some(fd) => {
                        opened = fd;
                        opened.as_fd()
                    }
                    None => continue,
                }
            };
            let st = match sys::absent_as_none(sys::stat_at(parent, &leaf)).map_err(errno)? {
                Some(st) => st,
                None => continue,
            };
            if format::is_whiteout(&st) {
                break;
            }
            let is_dir = FileType::from_raw_mode(st.st_mode as _) == FileType::Directory;
            let merging = upper_dir_hit.is_some() || !found_at.is_empty();
            if !is_dir {
                if !merging {
                    found_at.push((layer, path));
                    lower_stat = Some(st);
                }
                break; // a non-directory ends the stack
            }
            found_at.push((layer, path));
            lower_stat.get_or_insert(st);
            let sub = sys::open_subdir(parent, &leaf).map_err(errno)?;
            let opaque = format::is_opaque(sub.as_fd()).map_err(errno)?;
            // A lower layer that was once an upper one: its renamed
            // directories say where the layers below hold their content.
            if !opaque
                && layer < last_layer
                && let Some(r) = format::redirect_of(sub.as_fd()).map_err(errno)?
            {
                aim = aim.map(|a| a.redirected(r));
            }
            opened_dirs.push((layer, sub));
            if opaque {
                break;
            }
        }
        let lower = (!found_at.is_empty()).then_some(Lower { at: found_at });
        let resolved = match (upper_dir_hit, lower_stat) {
            (Some((st, _)), top_lower) => {
                // A merged directory is its top lower directory's inode
                // (stat'ed by the probe above).
                let id = match (&lower, top_lower) {
                    (Some(l), Some(lst)) => {
                        self.view_ino(self.lowers[l.top_layer()].dev(), sys::ino_of(&lst))
                    }
                    _ => self.upper_ino(&st),
                };
                Ok(Resolved {
                    id,
                    merged: lower.is_some(),
                    found: Found {
                        kind: FileType::Directory,
                        upper: true,
                        lower,
                    },
                    stat: st,
                })
            }
            (None, Some(st)) => {
                let kind = FileType::from_raw_mode(st.st_mode as _);
                let (layer, merged) = match &lower {
                    Some(l) => (l.top_layer(), l.at.len() > 1),
                    None => return Err(Errno::NOENT),
                };
                Ok(Resolved {
                    id: self.view_ino(self.lowers[layer].dev(), sys::ino_of(&st)),
                    merged,
                    found: Found {
                        kind,
                        upper: false,
                        lower,
                    },
                    stat: st,
                })
            }
            (None, None) => Err(Errno::NOENT),
        }?;
        for (layer, fd) in opened_dirs {
            self.caches.dirs.put(resolved.id, layer + 1, fd);
        }
        Ok(resolved)
    }

    /// A non-directory found in the upper layer.
    fn upper_non_dir(&self, parent: BorrowedFd<'_>, name: &CStr, st: Stat) -> OpResult<Resolved> {
        let id = match format::origin_at(parent, name).map_err(errno)? {
            Some((dev, ino)) => self.view_ino(dev, ino),
            None => self.upper_ino(&st),
        };
        Ok(Resolved {
            id,
            merged: false,
            found: Found {
                kind: FileType::from_raw_mode(st.st_mode as _),
                upper: true,
                lower: None,
            },
            stat: st,
        })
    }

    /// The directory holding node `id` and its name there.
    /// `ENOENT` for a node whose name is gone (it lives on only through its
    /// open handles). The name is what the node table knows; before acting
    /// on what it holds, [`Overlay::locate`] checks that it still shows
    /// the node.
    pub(super) fn where_is(&self, id: u64) -> OpResult<(DirInfo, OsString)> {
        let (parent, name) = {
            let nodes = self.nodes();
            let (parent, name) = nodes.name_of(id).ok_or(Errno::NOENT)?;
            (parent, name.to_os_string())
        };
        Ok((self.dir_info(parent)?, name))
    }

    /// Has node `id` lost every name it was known by (it lives on only
    /// through open handles)?
    pub fn is_unlinked(&self, id: u64) -> bool {
        let nodes = self.nodes();
        nodes.get(id).is_some() && nodes.name_of(id).is_none()
    }

    /// Where node `id` is shown, checked: the name the node table knows
    /// still shows this very node (an upper entry made in the view by its
    /// inode number, a copied-up one by its origin, anything else by
    /// resolving it through the layers), or `ENOENT`. Every operation on a
    /// node by name starts here, so no name that now holds something else
    /// (a file renamed over, a symlink put in its place) is ever acted on.
    /// With the tree lock held, the upper layer changes only through the
    /// view, so what is checked stays true while the lock is held.
    pub(super) fn locate(&self, id: u64) -> OpResult<Located> {
        if id == ROOT_ID {
            let parent = self.upper.fd().try_clone_to_owned().map_err(errno)?;
            let stat = sys::fstat(parent.as_fd()).map_err(errno)?;
            return Ok(Located {
                parent: Arc::new(parent),
                name: c".".to_owned(),
                layer: Layer::Upper,
                stat,
            });
        }
        let (dir, name) = self.where_is(id)?;
        let name_c = cname(&name)?;
        if dir.upper {
            let parent = self.upper_dir_cached(&dir)?;
            match sys::stat_at(parent.as_fd(), &name_c) {
                Ok(st) if format::is_whiteout(&st) => return Err(Errno::NOENT),
                Ok(st) => {
                    let shows = if self.upper_ino(&st) == id {
                        true // made in the view (a lower inode has another number)
                    } else if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory {
                        self.resolve(&dir, &name)?.id == id
                    } else if self.nodes().upper_copy(id) == Some(sys::ino_of(&st)) {
                        true // the copy this node was copied up to
                    } else if self.upper_non_dir(parent.as_fd(), &name_c, st)?.id == id {
                        self.nodes().set_upper_copy(id, sys::ino_of(&st));
                        true // a copy of this node's lower file (its origin says)
                    } else {
                        false
                    };
                    if !shows {
                        return Err(Errno::NOENT);
                    }
                    return Ok(Located {
                        parent,
                        name: name_c,
                        layer: Layer::Upper,
                        stat: st,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let r = self.resolve(&dir.lower_only(), &name)?;
        if r.id != id {
            return Err(Errno::NOENT);
        }
        let lower = r.found.lower.as_ref().ok_or(Errno::NOENT)?;
        let (parent_path, leaf) = split(lower.path());
        let parent = self
            .lower_dir(lower.top_layer(), parent_path)
            .map_err(errno)?;
        Ok(Located {
            parent: Arc::new(parent),
            name: cname(leaf)?,
            layer: Layer::Lower(lower.top_layer()),
            stat: r.stat,
        })
    }

    /// An `O_PATH` handle of node `id` as [`Overlay::locate`] finds it,
    /// checked to be the inode it stat'ed, and the layer it is in. Metadata
    /// is read and changed through it (`sys`'s `*_handle` calls), never
    /// through the name.
    pub(super) fn handle_of(&self, id: u64) -> OpResult<(OwnedFd, Layer)> {
        let at = self.locate(id)?;
        let handle = sys::open_handle_at(at.parent.as_fd(), &at.name).map_err(errno)?;
        if !sys::same_inode(&sys::fstat(handle.as_fd()).map_err(errno)?, &at.stat) {
            return Err(Errno::NOENT);
        }
        Ok((handle, at.layer))
    }

    /// The upper directory of directory `dir` (which must be in the upper
    /// layer), from the directory cache.
    pub(super) fn upper_dir_cached(&self, dir: &DirInfo) -> OpResult<Arc<OwnedFd>> {
        self.caches
            .dirs
            .get_or_open(dir.id, UPPER_SLOT, || {
                sys::absent_as_none(self.upper_dir_io(&dir.path))
            })
            .map_err(errno)?
            .ok_or(Errno::NOENT)
    }

    /// A resolver for many names of directory node `dir` (readdirplus):
    /// holds the tree lock shared and the layer directories open.
    pub fn resolver(&self, dir: u64) -> OpResult<Resolver<'_>> {
        let guard = self.tree.read();
        let info = self.dir_info(dir)?;
        Ok(Resolver {
            _shared: guard,
            overlay: self,
            info,
            fds: DirFds::default(),
        })
    }

    /// Resolve `name` in directory node `dir` without entering it.
    pub fn resolve_in(&self, dir: u64, name: &OsStr) -> OpResult<Resolved> {
        let _shared = self.tree.read();
        let info = self.dir_info(dir)?;
        self.resolve(&info, name)
    }

    /// The inode number `name` in directory node `dir` has now, if any.
    pub fn peek_ino(&self, dir: u64, name: &OsStr) -> Option<u64> {
        self.resolve_in(dir, name).ok().map(|r| r.id)
    }
}
