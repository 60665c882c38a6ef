//! The overlay core: the layers, the node table, and the requests that read
//! the view (lookup, getattr, readlink, forget, statfs). Finding names is in
//! `resolve`, merged listings in `listing`, what is cached in `caches`,
//! changes in `mutate`, open files in `files`, copy-up in `copyup`; the
//! FUSE adapter (`fuse`) only translates.
//!
//! Every method returns `Result<_, Errno>` (rustix's errno) and the core's
//! own types; none talks to the kernel, so `tests/core.rs` drives the core
//! on temporary directories without mounting.
//!
//! Concurrency: `tree` is held shared by operations that only read the
//! namespace and exclusively by those that change it (create, unlink,
//! rename, copy-up, ...), so a change never interleaves with another. The
//! node table has its own short-held lock inside.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use rustix::fs::{FileType, Stat};

use super::LayerSpec;
use super::caches::{Caches, UPPER_SLOT};
use super::format;
use super::handles::Handles;
use super::hardlinks::LinkIndex;
use super::node::{Lower, Nodes, ROOT_ID};
use super::types::{Attrs, Entry, Errno, OpResult, Resolved, attr, cname, errno};
use crate::sys;
use crate::tree::TreeRoot;

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
    /// Names of multiply-linked lower files (built on first need).
    pub(super) links: LinkIndex,
    /// What is cached between requests.
    pub(super) caches: Caches,
    /// Open files of the view by handle number.
    pub(super) handles: Handles,
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
        if spec.lowers.len() > super::node::MAX_LOWERS {
            return Err(crate::Error::Usage(format!(
                "{} lower layers given; a view stacks at most {} (as kernel overlayfs' \
                 default limit; nothing was mounted)",
                spec.lowers.len(),
                super::node::MAX_LOWERS
            )));
        }
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
        let root_lower = Lower::one(PathBuf::new(), 0..lowers.len());
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
            links: LinkIndex::default(),
            caches: Caches::new(sys::open_file_limit()),
            handles: Handles::default(),
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
        self.nodes.lock()
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

    /// Open a directory of the upper layer.
    pub(super) fn upper_dir(&self, path: &Path) -> OpResult<OwnedFd> {
        self.upper_dir_io(path).map_err(errno)
    }

    pub(super) fn upper_dir_io(&self, path: &Path) -> io::Result<OwnedFd> {
        sys::open_dir_beneath(self.upper.fd(), path)
    }

    /// Open a directory of lower layer `layer`.
    pub(super) fn lower_dir(&self, layer: usize, path: &Path) -> io::Result<OwnedFd> {
        sys::open_dir_beneath(self.lowers[layer].fd(), path)
    }

    /// Look `name` up in directory `parent` and enter it in the node table
    /// (one lookup the kernel now holds).
    pub fn lookup(&self, parent: u64, name: &OsStr) -> OpResult<Entry> {
        let _shared = self.tree.read();
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
    pub fn getattr(&self, id: u64) -> OpResult<(Attrs, Duration)> {
        let _shared = self.tree.read();
        self.getattr_locked(id)
    }

    /// [`Overlay::getattr`] with the tree lock held.
    pub(super) fn getattr_locked(&self, id: u64) -> OpResult<(Attrs, Duration)> {
        if id == ROOT_ID {
            let st = sys::fstat(self.upper.fd()).map_err(errno)?;
            return Ok((attr(ROOT_ID, &st, !self.lowers.is_empty()), UPPER_TTL));
        }
        let (parent, name, upper, merged) = {
            let nodes = self.nodes();
            let node = nodes.get(id).ok_or(Errno::NOENT)?;
            let merged = node.kind() == FileType::Directory && node.has_lower();
            let (parent, name) = nodes.name_of(id).ok_or(Errno::NOENT)?;
            (parent, name.to_os_string(), node.upper(), merged)
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
            return Err(Errno::NOENT); // the name now holds another file
        }
        let ttl = if r.found.upper { UPPER_TTL } else { LOWER_TTL };
        Ok((attr(id, &r.stat, r.merged), ttl))
    }

    /// `stat` of `name` in the upper copy of directory node `parent`.
    /// `None` whatever the reason: the caller then resolves the name the
    /// long way, which reports a real error.
    fn upper_stat(&self, parent: u64, name: &OsStr) -> Option<Stat> {
        let fd = self
            .caches
            .dirs
            .get_or_open(parent, UPPER_SLOT, || match self.nodes().path(parent) {
                Some(path) => sys::absent_as_none(self.upper_dir_io(&path)),
                None => Ok(None),
            })
            .ok()??;
        sys::stat_at(fd.as_fd(), &cname(name).ok()?).ok()
    }

    /// The attributes of node `id` for a request that came with open file
    /// `fh` (or none): from the open file if there is one, else by name,
    /// and for a node whose every name is gone from any open file of it
    /// (the kernel sends no handle with `fstat`).
    pub fn getattr_of(&self, id: u64, fh: Option<u64>) -> OpResult<(Attrs, Duration)> {
        if let Some(open) = fh.and_then(|fh| self.handles.open_file(fh)) {
            return Ok((self.fgetattr(id, open.file.as_fd())?, UPPER_TTL));
        }
        match self.getattr(id) {
            Err(e) if e == Errno::NOENT => match self.handles.any_file_of(id) {
                Some(open) => Ok((self.fgetattr(id, open.file.as_fd())?, UPPER_TTL)),
                None => Err(e),
            },
            other => other,
        }
    }

    /// The open files of the view.
    pub fn handles(&self) -> &Handles {
        &self.handles
    }

    /// Attributes of an open file (from its descriptor: right even after
    /// the last name is gone).
    pub fn fgetattr(&self, id: u64, fd: BorrowedFd<'_>) -> OpResult<Attrs> {
        let st = sys::fstat(fd).map_err(errno)?;
        Ok(attr(id, &st, false))
    }

    /// The target of symlink node `id`.
    pub fn readlink(&self, id: u64) -> OpResult<Vec<u8>> {
        let _shared = self.tree.read();
        let at = self.locate(id)?;
        Ok(sys::readlink_at(at.parent.as_fd(), &at.name)
            .map_err(errno)?
            .into_bytes())
    }

    /// Node `id`'s attributes changed behind the kernel's back.
    pub(super) fn touch(&self, id: u64) {
        self.caches.node_touched(id);
    }

    /// The nodes touched since the last call.
    pub fn take_touched(&self) -> Vec<u64> {
        self.caches.take_touched()
    }

    /// The parent of node `id` (the root is its own parent).
    pub fn parent_of(&self, id: u64) -> u64 {
        self.nodes().get(id).map_or(ROOT_ID, |n| n.parent())
    }

    /// The entry a resolved name gives, without entering it.
    pub fn entry_of(&self, r: &Resolved) -> Entry {
        let generation = self.nodes().get(r.id).map_or(0, |n| n.generation());
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
