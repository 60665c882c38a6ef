//! The overlay core: finding names through the layers, attributes, merged
//! directory listings. Mutations are in `mutate`, open files in `files`,
//! copy-up in `copyup`; the FUSE adapter (`fuse`) only translates.
//!
//! Every method returns `Result<_, Errno>`; none talks to the kernel, so
//! the logic is tested on temporary directories without mounting.
//!
//! Concurrency: `tree` is held shared by operations that only read the
//! namespace and exclusively by those that change it (create, unlink,
//! rename, copy-up, ...), so a change never interleaves with another. The
//! node table has its own short-held lock inside.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, INodeNo};
use rustix::fs::{FileType, Stat};

use super::LayerSpec;
use super::format;
use super::node::{Found, Lower, Nodes, ROOT_ID, child_path};
use crate::sys;
use crate::tree::TreeRoot;

/// Longest name a directory entry may have.
pub const NAME_MAX: usize = 255;
/// How long the kernel may keep entries and attributes that live only in
/// the read-only lowers (they never change underneath).
pub const LOWER_TTL: Duration = Duration::from_secs(3600);
/// How long the kernel may keep entries and attributes of the upper layer.
/// As long as the lowers': while mounted, the upper layer changes only
/// through the view. The kernel updates its own cache for the changes it
/// asks for (create, unlink, rename, setattr, write) and vskel invalidates
/// the nodes a change touches as a side effect (`Overlay::touch`). A
/// short TTL cost a LOOKUP per name and a GETATTR per node again every
/// second (deleting 10,000 files made a second ago: 4 requests each
/// instead of 3).
pub const UPPER_TTL: Duration = LOWER_TTL;
/// How long the kernel may keep a negative entry: a name no layer has.
/// As long as positive ones: the lowers do not change underneath, and a
/// name appears in the upper layer only by a request on that name
/// (create, mkdir, mknod, symlink, link, rename), whose reply the kernel
/// puts in place of its negative entry (as for kernel overlayfs, which
/// keeps negative dentries until memory is short).
pub const NEGATIVE_TTL: Duration = LOWER_TTL;
/// Bits above this are used to keep inode numbers of different
/// filesystems apart when the layers are not on one filesystem.
const DEV_SHIFT: u32 = 48;

/// Result of a view operation.
pub type OpResult<T> = Result<T, Errno>;

/// An entry for the kernel: attributes, generation, how long to trust it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Attributes (`attr.ino` is the node ID).
    pub attr: FileAttr,
    /// Generation of the node ID.
    pub generation: u64,
    /// How long the kernel may cache it.
    pub ttl: Duration,
}

/// One name in a merged directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name.
    pub name: OsString,
    /// Its type.
    pub kind: FileType,
    /// Its inode number in the view, when the listing knows it (lower
    /// entries); `None` for upper entries, which are resolved when asked.
    pub ino: Option<u64>,
    /// Its readdir offset: a hash of the name, so that a listing resumed
    /// after the directory changed neither skips nor repeats a name.
    pub cookie: u64,
}

/// Readdir offsets 1 and 2 are `.` and `..`; cookies start above.
pub const FIRST_COOKIE: u64 = 3;

/// Which kind of layer a file of the view lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The writable layer.
    Upper,
    /// One of the read-only layers (never written through the view).
    Lower,
}

/// The readdir cookie of a name (stable across mounts; 63 bits, as the
/// kernel's offsets are signed).
pub fn cookie_of(name: &OsStr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    (hasher.finish() >> 1).max(FIRST_COOKIE)
}

/// A name found through the layers, not yet entered in the node table.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The view inode number (node ID).
    pub id: u64,
    /// Where it is.
    pub found: Found,
    /// `stat` of what is shown (upper if there, else the top lower).
    pub stat: Stat,
    /// The shown directory merges more than one layer.
    pub merged: bool,
}

/// What is known of a directory node.
#[derive(Debug, Clone)]
pub struct DirInfo {
    /// Node ID.
    pub id: u64,
    /// Path in the view (and the upper layer).
    pub path: PathBuf,
    /// Exists in the upper layer.
    pub upper: bool,
    /// Lower content.
    pub lower: Option<Lower>,
}

impl DirInfo {
    /// The directory as seen from its lower layers only (to resolve a name
    /// the upper layer is known not to have).
    pub fn lower_only(&self) -> DirInfo {
        DirInfo {
            upper: false,
            ..self.clone()
        }
    }
}

/// The view over its layers.
#[derive(Debug)]
pub struct Overlay {
    pub(super) upper: TreeRoot,
    pub(super) work: TreeRoot,
    pub(super) lowers: Vec<TreeRoot>,
    /// Devices of the layers, in order (upper first): inode numbers from
    /// different devices are kept apart by [`Overlay::view_ino`].
    devs: Vec<u64>,
    single_dev: bool,
    pub(super) nodes: Mutex<Nodes>,
    pub(super) tree: RwLock<()>,
    work_seq: AtomicU64,
    /// This process's ID (part of scratch names; asked once, not per name).
    pid: u32,
    /// Multiply-linked lower files (built on first need, see `hardlinks`).
    pub(super) link_map: OnceLock<super::hardlinks::LinkMap>,
    /// Counts changes of the view (listings cached before are stale).
    pub(super) version: AtomicU64,
    /// Recent directory listings.
    listings: Mutex<Vec<CachedListing>>,
    /// Recently used layer directories.
    pub(super) dir_cache: DirCache,
    /// A directory changed identity during the current change.
    pub(super) dirs_changed: std::sync::atomic::AtomicBool,
    /// Nodes whose attributes changed as a side effect (a directory copied
    /// up becomes a merged one): the kernel's cached copies are invalidated.
    touched: Mutex<Vec<u64>>,
}

/// A listing of directory node `.0` taken at view version `.1`.
type CachedListing = (u64, u64, std::sync::Arc<Vec<Listed>>);

/// Directory listings kept (a listing is read in several replies; the
/// kernel keeps what it read in its own cache).
const LISTING_CACHE: usize = 16;

/// An `io::Error` as the errno the kernel gets.
pub fn errno(e: io::Error) -> Errno {
    Errno::from(e)
}

/// A name as a C string, refusing names the kernel would not send.
pub fn cname(name: &OsStr) -> OpResult<CString> {
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    sys::cname(name).map_err(errno)
}

impl Overlay {
    /// Open the layers of `spec` to serve them: scratch work happens in
    /// the work directory's `work/` (made if missing, locked while
    /// serving), cleared of the leftovers of an interrupted run
    /// (`workdir::prepare`: only of what vskel made).
    pub fn new(spec: &LayerSpec) -> crate::Result<Self> {
        let mut overlay = Self::open_layers(spec)?;
        let (scratch, _foreign) = super::workdir::prepare(&overlay.work)?;
        overlay.work = scratch;
        Ok(overlay)
    }

    /// Open the layers of `spec` only to read the merged tree (the work
    /// directory is left alone: a server may be using it). Layers that
    /// overlap are refused (`layout::check`).
    pub fn open_layers(spec: &LayerSpec) -> crate::Result<Self> {
        let upper = TreeRoot::open(&spec.upper)?;
        let work = TreeRoot::open(&spec.work)?;
        crate::tree::require_same_filesystem(&upper, &work)?;
        let lowers = spec
            .lowers
            .iter()
            .map(|p| TreeRoot::open(p))
            .collect::<crate::Result<Vec<_>>>()?;
        super::layout::check(&upper, &work, &lowers)?;
        let mut devs = vec![upper.dev()];
        devs.extend(lowers.iter().map(|l| l.dev()));
        let single_dev = devs.iter().all(|d| *d == devs[0]);
        let root_lower = Lower {
            path: PathBuf::new(),
            layers: (0..lowers.len()).collect(),
        };
        Ok(Overlay {
            upper,
            work,
            lowers,
            devs,
            single_dev,
            nodes: Mutex::new(Nodes::new(Some(root_lower))),
            tree: RwLock::new(()),
            work_seq: AtomicU64::new(0),
            pid: std::process::id(),
            link_map: OnceLock::new(),
            version: AtomicU64::new(0),
            listings: Mutex::new(Vec::new()),
            dir_cache: DirCache::default(),
            touched: Mutex::new(Vec::new()),
            dirs_changed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The upper layer.
    pub fn upper_layer(&self) -> &TreeRoot {
        &self.upper
    }

    /// Lower layer `i` (top first).
    pub fn lower_layer(&self, i: usize) -> &TreeRoot {
        &self.lowers[i]
    }

    /// The read-only layers, top first.
    pub fn lower_layers(&self) -> &[TreeRoot] {
        &self.lowers
    }

    /// The node table (held briefly).
    pub(super) fn nodes(&self) -> MutexGuard<'_, Nodes> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh name for scratch work in `work/` (it starts with
    /// `workdir::SCRATCH_PREFIX`: the only names a new server removes).
    pub(super) fn work_name(&self) -> CString {
        let n = self.work_seq.fetch_add(1, Ordering::Relaxed);
        CString::new(format!("#vskel-{}-{n}", self.pid)).expect("no NUL")
    }

    /// The view inode number of inode `ino` on device `dev`.
    pub(super) fn view_ino(&self, dev: u64, ino: u64) -> u64 {
        let id = if self.single_dev {
            ino
        } else {
            let index = self.devs.iter().position(|d| *d == dev).unwrap_or(0) as u64;
            (index << DEV_SHIFT) | (ino & ((1 << DEV_SHIFT) - 1))
        };
        if id == ROOT_ID { 1 << 63 } else { id }
    }

    /// The view inode number of an upper entry made in the view.
    pub(super) fn upper_ino(&self, st: &Stat) -> u64 {
        self.view_ino(self.devs[0], sys::ino_of(st))
    }

    /// What is known of directory node `id`.
    pub fn dir_info(&self, id: u64) -> OpResult<DirInfo> {
        let nodes = self.nodes();
        let node = nodes.get(id).ok_or(Errno::ENOENT)?;
        if node.kind != FileType::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(DirInfo {
            id,
            path: nodes.path(id).ok_or(Errno::ENOENT)?,
            upper: node.upper,
            lower: nodes.lower_of(id),
        })
    }

    /// Open a directory of the upper layer.
    pub(super) fn upper_dir(&self, path: &Path) -> OpResult<OwnedFd> {
        sys::open_dir_beneath(self.upper.fd(), path).map_err(errno)
    }

    /// Open a directory of lower layer `layer`.
    pub(super) fn lower_dir(&self, layer: usize, path: &Path) -> io::Result<OwnedFd> {
        sys::open_dir_beneath(self.lowers[layer].fd(), path)
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
        let mut upper_dir_hit: Option<(Stat, Option<PathBuf>)> = None;
        if dir.upper {
            let parent = fds.upper(self, dir)?;
            match sys::stat_at(parent, &name_c) {
                Ok(st) if format::is_whiteout(&st) => return Err(Errno::ENOENT),
                Ok(st) if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory => {
                    let sub = sys::open_subdir(parent, &name_c).map_err(errno)?;
                    let lower_path = if format::is_opaque(sub.as_fd()).map_err(errno)? {
                        None
                    } else {
                        match format::redirect(
                            sub.as_fd(),
                            dir.lower.as_ref().map(|l| l.path.as_path()),
                        )
                        .map_err(errno)?
                        {
                            Some(redirected) => Some(redirected),
                            None => dir.lower.as_ref().map(|l| child_path(&l.path, name)),
                        }
                    };
                    upper_dir_hit = Some((st, lower_path));
                }
                Ok(st) => return Ok(self.upper_non_dir(parent, &name_c, st)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        let (lower_path, probe): (Option<PathBuf>, Vec<usize>) = match &upper_dir_hit {
            // A redirect may point where the parent has no lower content.
            Some((_, Some(path))) => (Some(path.clone()), (0..self.lowers.len()).collect()),
            Some((_, None)) => (None, Vec::new()),
            None => match &dir.lower {
                Some(l) => (Some(child_path(&l.path, name)), l.layers.clone()),
                None => (None, Vec::new()),
            },
        };
        let mut lower_layers = Vec::new();
        let mut lower_stat: Option<Stat> = None;
        // Lower directories opened on the way: kept in the directory cache
        // for the lookups and the listing in them that usually follow.
        let mut opened_dirs: Vec<(usize, OwnedFd)> = Vec::new();
        if let Some(path) = &lower_path {
            let (parent_path, leaf) = split(path);
            let leaf = cname(leaf)?;
            // The directory's own lower content: its open layer dirs serve;
            // a redirect elsewhere opens its own.
            let own = dir.lower.as_ref().is_some_and(|l| l.path == parent_path);
            for layer in probe {
                let opened;
                let parent = if own {
                    match fds.lower(self, dir, layer) {
                        Some(fd) => fd,
                        None => continue,
                    }
                } else {
                    match self.lower_dir(layer, parent_path) {
                        Ok(fd) => {
                            opened = fd;
                            opened.as_fd()
                        }
                        Err(_) => continue,
                    }
                };
                let st = match sys::stat_at(parent, &leaf) {
                    Ok(st) => st,
                    Err(_) => continue,
                };
                if format::is_whiteout(&st) {
                    break;
                }
                let is_dir = FileType::from_raw_mode(st.st_mode as _) == FileType::Directory;
                let merging = upper_dir_hit.is_some() || !lower_layers.is_empty();
                if !is_dir {
                    if !merging {
                        lower_layers.push(layer);
                        lower_stat = Some(st);
                    }
                    break; // a non-directory ends the stack
                }
                lower_layers.push(layer);
                lower_stat.get_or_insert(st);
                let opaque = match sys::open_subdir(parent, &leaf) {
                    Ok(sub) => {
                        let opaque = format::is_opaque(sub.as_fd()).unwrap_or(false);
                        opened_dirs.push((layer, sub));
                        opaque
                    }
                    Err(_) => false,
                };
                if opaque {
                    break;
                }
            }
        }
        let lower = lower_path
            .filter(|_| !lower_layers.is_empty())
            .map(|path| Lower {
                path,
                layers: lower_layers.clone(),
            });
        let resolved = match (upper_dir_hit, lower_stat) {
            (Some((st, _)), top_lower) => {
                // A merged directory is its top lower directory's inode
                // (stat'ed by the probe above).
                let id = match (&lower, top_lower) {
                    (Some(l), Some(lst)) => {
                        self.view_ino(self.lowers[l.layers[0]].dev(), sys::ino_of(&lst))
                    }
                    _ => self.view_ino(self.devs[0], sys::ino_of(&st)),
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
                let layer = lower_layers[0];
                Ok(Resolved {
                    id: self.view_ino(self.lowers[layer].dev(), sys::ino_of(&st)),
                    merged: lower_layers.len() > 1,
                    found: Found {
                        kind,
                        upper: false,
                        lower,
                    },
                    stat: st,
                })
            }
            (None, None) => Err(Errno::ENOENT),
        }?;
        for (layer, fd) in opened_dirs {
            self.dir_cache.put(resolved.id, layer + 1, fd);
        }
        Ok(resolved)
    }

    /// A non-directory found in the upper layer.
    fn upper_non_dir(&self, parent: BorrowedFd<'_>, name: &CStr, st: Stat) -> Resolved {
        let id = match format::origin_at(parent, name) {
            Some((dev, ino)) => self.view_ino(dev, ino),
            None => self.view_ino(self.devs[0], sys::ino_of(&st)),
        };
        Resolved {
            id,
            merged: false,
            found: Found {
                kind: FileType::from_raw_mode(st.st_mode as _),
                upper: true,
                lower: None,
            },
            stat: st,
        }
    }

    /// Look `name` up in directory `parent` and enter it in the node table
    /// (one lookup the kernel now holds).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> OpResult<Entry> {
        let _shared = self.tree.read().unwrap_or_else(|p| p.into_inner());
        self.lookup_locked(parent, name, false)
    }

    /// [`Overlay::lookup`] with the tree lock already held; `fresh` says the
    /// entry was just made.
    pub(super) fn lookup_locked(&self, parent: u64, name: &OsStr, fresh: bool) -> OpResult<Entry> {
        let dir = self.dir_info(parent)?;
        let resolved = self.resolve(&dir, name)?;
        Ok(self.enter(parent, name, resolved, fresh))
    }

    /// Enter a resolved name in the node table.
    pub(super) fn enter(&self, parent: u64, name: &OsStr, r: Resolved, fresh: bool) -> Entry {
        let ttl = if r.found.upper { UPPER_TTL } else { LOWER_TTL };
        let generation = self.nodes().enter(r.id, parent, name, r.found, fresh);
        Entry {
            attr: attr(r.id, &r.stat, r.merged),
            generation,
            ttl,
        }
    }

    /// The attributes of node `id`.
    pub fn getattr(&self, id: u64) -> OpResult<(FileAttr, Duration)> {
        let _shared = self.tree.read().unwrap_or_else(|p| p.into_inner());
        self.getattr_locked(id)
    }

    /// [`Overlay::getattr`] with the tree lock held.
    pub(super) fn getattr_locked(&self, id: u64) -> OpResult<(FileAttr, Duration)> {
        if id == ROOT_ID {
            let st = sys::fstat(self.upper.fd()).map_err(errno)?;
            return Ok((attr(ROOT_ID, &st, !self.lowers.is_empty()), UPPER_TTL));
        }
        let (parent, name, upper, merged) = {
            let nodes = self.nodes();
            let node = nodes.get(id).ok_or(Errno::ENOENT)?;
            let merged = node.kind == FileType::Directory && node.has_lower();
            (node.parent, node.name.to_os_string(), node.upper, merged)
        };
        // Fast path: an entry made in the view, whose inode number is its
        // upper inode's, is one stat in its (cached) upper directory.
        if upper
            && !merged
            && let Some(st) = self.upper_stat(parent, &name)
            && self.upper_ino(&st) == id
            && !format::is_whiteout(&st)
        {
            return Ok((attr(id, &st, false), UPPER_TTL));
        }
        let dir = self.dir_info(parent)?;
        let r = self.resolve(&dir, &name)?;
        if r.id != id {
            return Err(Errno::ENOENT); // the name now holds another file
        }
        let ttl = if r.found.upper { UPPER_TTL } else { LOWER_TTL };
        Ok((attr(id, &r.stat, r.merged), ttl))
    }

    /// `stat` of `name` in the upper copy of directory node `parent`.
    fn upper_stat(&self, parent: u64, name: &OsStr) -> Option<Stat> {
        let fd = self.dir_cache.get_or_open(parent, UPPER_SLOT, || {
            let path = self.nodes().path(parent)?;
            self.upper_dir(&path).ok()
        })?;
        sys::stat_at(fd.as_fd(), &cname(name).ok()?).ok()
    }

    /// Attributes of an open file (from its descriptor: right even after
    /// the last name is gone).
    pub fn fgetattr(&self, id: u64, fd: BorrowedFd<'_>) -> OpResult<FileAttr> {
        let st = sys::fstat(fd).map_err(errno)?;
        Ok(attr(id, &st, false))
    }

    /// The target of symlink node `id`.
    pub fn readlink(&self, id: u64) -> OpResult<Vec<u8>> {
        let _shared = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let (dir, name) = self.where_is(id)?;
        let cname = cname(&name)?;
        let fd = self.shown_parent(&dir, &name)?;
        Ok(sys::readlink_at(fd.as_fd(), &cname)
            .map_err(errno)?
            .into_bytes())
    }

    /// The directory holding node `id` and its name there.
    pub(super) fn where_is(&self, id: u64) -> OpResult<(DirInfo, OsString)> {
        let (parent, name) = {
            let nodes = self.nodes();
            let node = nodes.get(id).ok_or(Errno::ENOENT)?;
            (node.parent, node.name.to_os_string())
        };
        Ok((self.dir_info(parent)?, name))
    }

    /// The open directory of the layer that shows `name` in `dir`, for
    /// `*at()` calls on it.
    pub(super) fn shown_parent(&self, dir: &DirInfo, name: &OsStr) -> OpResult<Arc<OwnedFd>> {
        self.shown_parent_in(dir, name).map(|(fd, _)| fd)
    }

    /// [`Overlay::shown_parent`], and which kind of layer it is in. A name
    /// the upper layer has costs one `stat` in the cached upper directory
    /// (a whole [`Overlay::resolve`] also reads its origin, or for a
    /// directory opens it and its lower ones).
    pub(super) fn shown_parent_in(
        &self,
        dir: &DirInfo,
        name: &OsStr,
    ) -> OpResult<(Arc<OwnedFd>, Layer)> {
        if dir.upper {
            let fd = self.upper_dir_cached(dir)?;
            match sys::stat_at(fd.as_fd(), &cname(name)?) {
                Ok(st) if format::is_whiteout(&st) => return Err(Errno::ENOENT),
                Ok(_) => return Ok((fd, Layer::Upper)),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(errno(e)),
            }
        }
        // Not in the upper layer: only the lowers can show it.
        let r = self.resolve(&dir.lower_only(), name)?;
        let lower = r.found.lower.as_ref().ok_or(Errno::ENOENT)?;
        let (parent, _) = split(&lower.path);
        let fd = self.lower_dir(lower.layers[0], parent).map_err(errno)?;
        Ok((Arc::new(fd), Layer::Lower))
    }

    /// The upper directory of directory `dir` (which must be in the upper
    /// layer), from the directory cache.
    pub(super) fn upper_dir_cached(&self, dir: &DirInfo) -> OpResult<Arc<OwnedFd>> {
        self.dir_cache
            .get_or_open(dir.id, UPPER_SLOT, || self.upper_dir(&dir.path).ok())
            .ok_or(Errno::ENOENT)
    }

    /// The merged listing of directory `dir`: upper names, then lower ones
    /// not hidden by a whiteout, an opaque directory or a name above.
    pub fn list(&self, dir: &DirInfo) -> OpResult<Vec<Listed>> {
        let mut out = Vec::new();
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut stop_lower = false;
        if dir.upper {
            let fd = self.upper_dir_cached(dir)?;
            stop_lower = format::is_opaque(fd.as_fd()).map_err(errno)?;
            self.list_layer(fd.as_fd(), None, &mut seen, &mut out)?;
        }
        if let (Some(lower), false) = (&dir.lower, stop_lower) {
            let last = lower.layers.len().saturating_sub(1);
            for (i, layer) in lower.layers.iter().enumerate() {
                let cached = self.dir_cache.get_or_open(dir.id, layer + 1, || {
                    self.lower_dir(*layer, &lower.path).ok()
                });
                let Some(fd) = cached else {
                    continue;
                };
                let dev = self.lowers[*layer].dev();
                self.list_layer(fd.as_fd(), Some(dev), &mut seen, &mut out)?;
                // An opaque directory hides the layers below (the last one
                // has none: no need to ask).
                if i < last && format::is_opaque(fd.as_fd()).unwrap_or(false) {
                    break;
                }
            }
        }
        out.sort_by_key(|l| l.cookie);
        Ok(out)
    }

    /// Add one layer's names to a listing; whiteouts hide names below.
    /// `lower_dev` is the device of a lower layer (its inode numbers are
    /// the view's), `None` for the upper layer.
    fn list_layer(
        &self,
        fd: BorrowedFd<'_>,
        lower_dev: Option<u64>,
        seen: &mut HashSet<OsString>,
        out: &mut Vec<Listed>,
    ) -> OpResult<()> {
        for entry in sys::read_dir(fd).map_err(errno)? {
            let name = sys::os_name(&entry.name).to_os_string();
            if seen.contains(&name) {
                continue;
            }
            let mut kind = entry.file_type;
            if matches!(kind, FileType::CharacterDevice | FileType::Unknown) {
                let st = match sys::stat_at(fd, &entry.name) {
                    Ok(st) => st,
                    Err(_) => continue, // gone meanwhile
                };
                if format::is_whiteout(&st) {
                    seen.insert(name);
                    continue;
                }
                kind = FileType::from_raw_mode(st.st_mode as _);
            }
            seen.insert(name.clone());
            let cookie = cookie_of(&name);
            out.push(Listed {
                ino: lower_dev.map(|dev| self.view_ino(dev, entry.ino)),
                name,
                kind,
                cookie,
            });
        }
        Ok(())
    }

    /// The merged listing of directory node `id`, from a small cache that
    /// any change of the view empties.
    pub fn listing(&self, id: u64) -> OpResult<std::sync::Arc<Vec<Listed>>> {
        let _shared = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let version = self.version.load(Ordering::Acquire);
        {
            let cache = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, _, list)) = cache.iter().find(|(d, v, _)| *d == id && *v == version) {
                return Ok(list.clone());
            }
        }
        let dir = self.dir_info(id)?;
        let list = std::sync::Arc::new(self.list(&dir)?);
        let mut cache = self.listings.lock().unwrap_or_else(|p| p.into_inner());
        cache.retain(|(_, v, _)| *v == version);
        if cache.len() >= LISTING_CACHE {
            cache.remove(0);
        }
        cache.push((id, version, list.clone()));
        Ok(list)
    }

    /// Node `id`'s attributes changed behind the kernel's back.
    pub(super) fn touch(&self, id: u64) {
        self.touched
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(id);
    }

    /// The nodes touched since the last call.
    pub fn take_touched(&self) -> Vec<u64> {
        std::mem::take(&mut *self.touched.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The parent of node `id` (the root is its own parent).
    pub fn parent_of(&self, id: u64) -> u64 {
        self.nodes().get(id).map_or(ROOT_ID, |n| n.parent)
    }

    /// A resolver for many names of directory node `dir` (readdirplus):
    /// holds the tree lock shared and the layer directories open.
    pub fn resolver(&self, dir: u64) -> OpResult<Resolver<'_>> {
        let guard = self.tree.read().unwrap_or_else(|p| p.into_inner());
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
        let _shared = self.tree.read().unwrap_or_else(|p| p.into_inner());
        let info = self.dir_info(dir)?;
        self.resolve(&info, name)
    }

    /// The inode number `name` in directory node `dir` has now, if any.
    pub fn peek_ino(&self, dir: u64, name: &OsStr) -> Option<u64> {
        self.resolve_in(dir, name).ok().map(|r| r.id)
    }

    /// The entry a resolved name gives, without entering it.
    pub fn entry_of(&self, r: &Resolved) -> Entry {
        let generation = self.nodes().get(r.id).map_or(0, |n| n.generation);
        Entry {
            attr: attr(r.id, &r.stat, r.merged),
            generation,
            ttl: if r.found.upper { UPPER_TTL } else { LOWER_TTL },
        }
    }

    /// Enter a resolved name (the kernel now holds one more lookup).
    pub fn enter_resolved(&self, dir: u64, name: &OsStr, r: Resolved) {
        self.nodes().enter(r.id, dir, name, r.found, false);
    }

    /// Give back `n` lookups of node `id`.
    pub fn forget(&self, id: u64, n: u64) {
        self.nodes().forget(id, n);
    }

    /// Filesystem statistics (of the upper layer's filesystem).
    pub fn statfs(&self) -> OpResult<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(self.upper.fd()).map_err(|e| errno(e.into()))
    }

    /// Number of nodes the kernel holds (for status and tests).
    pub fn node_count(&self) -> usize {
        self.nodes().len()
    }
}

/// Resolves names of one directory, one after the other.
#[derive(Debug)]
pub struct Resolver<'a> {
    _shared: std::sync::RwLockReadGuard<'a, ()>,
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
            let fd = overlay
                .dir_cache
                .get_or_open(dir.id, UPPER_SLOT, || overlay.upper_dir(&dir.path).ok());
            self.upper = Some(fd.ok_or(Errno::ENOENT)?);
        }
        Ok(self
            .upper
            .as_ref()
            .map(|fd| fd.as_fd())
            .expect("just opened"))
    }

    /// The directory of `dir`'s lower content in lower layer `layer`, if
    /// it has one.
    fn lower(&mut self, overlay: &Overlay, dir: &DirInfo, layer: usize) -> Option<BorrowedFd<'_>> {
        if self.lowers.len() <= layer {
            self.lowers.resize_with(layer + 1, || None);
        }
        let slot = &mut self.lowers[layer];
        if slot.is_none() {
            let path = &dir.lower.as_ref()?.path;
            *slot = Some(
                overlay
                    .dir_cache
                    .get_or_open(dir.id, layer + 1, || overlay.lower_dir(layer, path).ok()),
            );
        }
        slot.as_ref()
            .and_then(|fd| fd.as_ref())
            .map(|fd| fd.as_fd())
    }
}

/// Slot of the upper layer in the directory cache (lower layer `i` is
/// slot `i + 1`).
const UPPER_SLOT: usize = 0;
/// Open directories the cache keeps at most (well below the open-file
/// limit; a tree of any size is walked with at most this many).
const DIR_CACHE_SIZE: usize = 1024;

/// Recently used layer directories of view directories, so that lookups
/// in one directory do not walk its path in every layer again. Emptied at
/// every change of the view (a directory renamed, removed or copied up
/// must not be served from a stale descriptor).
#[derive(Debug, Default)]
pub struct DirCache {
    inner: Mutex<DirCacheInner>,
}

#[derive(Debug, Default)]
struct DirCacheInner {
    map: HashMap<(u64, usize), Option<Arc<OwnedFd>>>,
}

impl DirCache {
    /// The directory of node `id` in layer slot `slot`, opened by `open`
    /// if not cached (`None`: the layer has no such directory).
    fn get_or_open(
        &self,
        id: u64,
        slot: usize,
        open: impl FnOnce() -> Option<OwnedFd>,
    ) -> Option<Arc<OwnedFd>> {
        {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(hit) = inner.map.get(&(id, slot)) {
                return hit.clone();
            }
        }
        let opened = open().map(Arc::new);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= DIR_CACHE_SIZE {
            inner.map.clear();
        }
        inner.map.insert((id, slot), opened.clone());
        opened
    }

    /// Keep `fd`, the directory of node `id` in layer slot `slot`, unless
    /// one is kept already.
    fn put(&self, id: u64, slot: usize, fd: OwnedFd) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.len() >= DIR_CACHE_SIZE {
            inner.map.clear();
        }
        inner
            .map
            .entry((id, slot))
            .or_insert_with(|| Some(Arc::new(fd)));
    }

    /// Forget everything (the view changed).
    pub fn invalidate(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.map.clear();
    }
}

/// Split a relative path into its parent and final name.
pub fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("")),
        path.file_name().unwrap_or_default(),
    )
}

/// Kernel attributes from a `stat`.
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
pub fn attr(id: u64, st: &Stat, merged_dir: bool) -> FileAttr {
    let time = |sec: i64, nsec: i64| {
        if sec >= 0 {
            UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
        } else {
            UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::from_nanos(nsec as u64)
        }
    };
    let kind = FileType::from_raw_mode(st.st_mode as _);
    FileAttr {
        ino: INodeNo(id),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: time(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuse_kind(kind),
        perm: (st.st_mode as u32 & 0o7777) as u16,
        // A merged directory's link count is not known (as in overlayfs).
        nlink: if merged_dir { 1 } else { st.st_nlink as u32 },
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// The entry that tells the kernel a name does not exist: node ID 0 (the
/// kernel then keeps a negative entry for the entry TTL; nothing to
/// forget later).
pub fn negative_entry() -> Entry {
    Entry {
        attr: FileAttr {
            ino: INodeNo(0),
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: fuser::FileType::RegularFile,
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 0,
            flags: 0,
        },
        generation: 0,
        ttl: NEGATIVE_TTL,
    }
}

/// fuser's file type for rustix's.
pub fn fuse_kind(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharacterDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        _ => fuser::FileType::RegularFile,
    }
}
