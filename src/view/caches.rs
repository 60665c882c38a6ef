//! What the overlay core caches between requests, in one place with one
//! rule: anything cached may describe the view before a change, so every
//! change of the view ([`Caches::begin_change`]) makes the listings stale,
//! and a change that moves, removes or copies up a directory
//! ([`Caches::dirs_changed`]) also drops the open layer directories.
//!
//! * [`DirCache`]: recently used layer directories, opened by lookups and
//!   reused by the lookups and listings that follow in the same
//!   directory; sized from the open-file limit;
//! * recent merged listings, valid for one view version;
//! * the nodes whose attributes changed as a side effect of a change (the
//!   kernel's cached copies are then invalidated by the adapter).

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use super::types::Listed;

/// A listing of directory node `.0` taken at view version `.1`.
type CachedListing = (u64, u64, Arc<Vec<Listed>>);

/// Directory listings kept (a listing is read in several replies; the
/// kernel keeps what it read in its own cache).
const LISTING_CACHE: usize = 16;

/// Everything the core caches (see the module doc).
#[derive(Debug)]
pub struct Caches {
    /// Recently used layer directories.
    pub(super) dirs: DirCache,
    /// Counts changes of the view (listings cached before are stale).
    version: AtomicU64,
    /// Recent directory listings.
    listings: Mutex<Vec<CachedListing>>,
    /// A directory changed identity during the current change.
    dirs_changed: AtomicBool,
    /// Nodes whose attributes changed as a side effect (a directory copied
    /// up becomes a merged one).
    touched: Mutex<Vec<u64>>,
}

impl Caches {
    /// Empty caches; the directory cache sized for `open_file_limit`.
    pub fn new(open_file_limit: u64) -> Caches {
        Caches {
            dirs: DirCache::sized_for(open_file_limit),
            version: AtomicU64::new(0),
            listings: Mutex::new(Vec::new()),
            dirs_changed: AtomicBool::new(false),
            touched: Mutex::new(Vec::new()),
        }
    }

    /// A change of the view begins or ends: cached listings are stale, and
    /// cached directories too if a directory changed meanwhile.
    pub fn begin_change(&self) {
        self.version.fetch_add(1, Ordering::AcqRel);
        if self.dirs_changed.swap(false, Ordering::AcqRel) {
            self.dirs.invalidate();
        }
    }

    /// A directory was renamed, removed or copied up: cached layer
    /// directories may be wrong now, and again when the change ends.
    pub fn dirs_changed(&self) {
        self.dirs_changed.store(true, Ordering::Release);
        self.dirs.invalidate();
    }

    /// The listing of directory node `id`, cached at the current version,
    /// or made by `list` and kept.
    pub fn listing<E>(
        &self,
        id: u64,
        list: impl FnOnce() -> Result<Vec<Listed>, E>,
    ) -> Result<Arc<Vec<Listed>>, E> {
        let version = self.version.load(Ordering::Acquire);
        {
            let cache = self.listings.lock();
            if let Some((_, _, list)) = cache.iter().find(|(d, v, _)| *d == id && *v == version) {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(list()?);
        let mut cache = self.listings.lock();
        cache.retain(|(_, v, _)| *v == version);
        if cache.len() >= LISTING_CACHE {
            cache.remove(0);
        }
        cache.push((id, version, list.clone()));
        Ok(list)
    }

    /// Node `id`'s attributes changed behind the kernel's back.
    pub fn node_touched(&self, id: u64) {
        self.touched.lock().push(id);
    }

    /// The nodes touched since the last call.
    pub fn take_touched(&self) -> Vec<u64> {
        std::mem::take(&mut *self.touched.lock())
    }
}

/// Slot of the upper layer in the directory cache (lower layer `i` is
/// slot `i + 1`).
pub(super) const UPPER_SLOT: usize = 0;

/// The share of the open-file limit the directory cache may hold (the
/// rest is for open files, passthrough backings and the session).
const DIR_CACHE_SHARE: u64 = 4;

/// Bounds of the directory cache's size, whatever the limit.
const DIR_CACHE_MIN: usize = 16;
/// See [`DIR_CACHE_MIN`].
const DIR_CACHE_MAX: usize = 16 * 1024;

/// Recently used layer directories of view directories, so that lookups
/// in one directory do not walk its path in every layer again. Emptied at
/// every change of the view (a directory renamed, removed or copied up
/// must not be served from a stale descriptor).
#[derive(Debug)]
pub struct DirCache {
    inner: Mutex<DirCacheInner>,
    /// Directories kept at most: a tree of any size is walked with at most
    /// this many open.
    capacity: usize,
}

#[derive(Debug, Default)]
struct DirCacheInner {
    map: HashMap<(u64, usize), Option<Arc<OwnedFd>>>,
}

impl DirCache {
    /// A cache sized from the open-file limit in force: a share of it, so
    /// that the cache alone never runs the server out of descriptors.
    pub fn sized_for(open_file_limit: u64) -> DirCache {
        let share = usize::try_from(open_file_limit / DIR_CACHE_SHARE).unwrap_or(usize::MAX);
        DirCache {
            inner: Mutex::default(),
            capacity: share.clamp(DIR_CACHE_MIN, DIR_CACHE_MAX),
        }
    }

    /// The directory of node `id` in layer slot `slot`, opened by `open`
    /// if not cached (`None`: the layer has no such directory). A failed
    /// open (out of descriptors, say) is not cached: the next call tries
    /// again.
    pub(super) fn get_or_open(
        &self,
        id: u64,
        slot: usize,
        open: impl FnOnce() -> io::Result<Option<OwnedFd>>,
    ) -> io::Result<Option<Arc<OwnedFd>>> {
        {
            let inner = self.inner.lock();
            if let Some(hit) = inner.map.get(&(id, slot)) {
                return Ok(hit.clone());
            }
        }
        let opened = open()?.map(Arc::new);
        let mut inner = self.inner.lock();
        if inner.map.len() >= self.capacity {
            inner.map.clear();
        }
        inner.map.insert((id, slot), opened.clone());
        Ok(opened)
    }

    /// Keep `fd`, the directory of node `id` in layer slot `slot`, unless
    /// one is kept already.
    pub(super) fn put(&self, id: u64, slot: usize, fd: OwnedFd) {
        let mut inner = self.inner.lock();
        if inner.map.len() >= self.capacity {
            inner.map.clear();
        }
        inner
            .map
            .entry((id, slot))
            .or_insert_with(|| Some(Arc::new(fd)));
    }

    /// Forget everything (the view changed).
    pub fn invalidate(&self) {
        let mut inner = self.inner.lock();
        inner.map.clear();
    }
}
