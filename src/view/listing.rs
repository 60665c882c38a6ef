//! Merged directory listings: upper names first, then the lower layers'
//! in order, each hidden by a whiteout, an opaque directory or the same
//! name above; readdir offsets are hashes of the names, so a listing
//! resumed after the directory changed neither skips nor repeats a name.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;

use super::format;
use super::overlay::Overlay;
use super::types::{DirInfo, Entry, Errno, Listed, OpResult, errno};
use crate::sys;

/// The entries of a cookie-sorted listing that come after readdir offset
/// `offset`.
pub fn entries_after(list: &[Listed], offset: u64) -> &[Listed] {
    let start = list.partition_point(|item| item.cookie <= offset);
    &list[start..]
}

/// Readdir offsets 1 and 2 are `.` and `..`; cookies start above.
pub const FIRST_COOKIE: u64 = 3;

/// The readdir cookie of a name (stable across mounts; 63 bits, as the
/// kernel's offsets are signed).
pub fn cookie_of(name: &OsStr) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    (hasher.finish() >> 1).max(FIRST_COOKIE)
}

impl Overlay {
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
            let last = lower.at.len().saturating_sub(1);
            for (i, (layer, path)) in lower.at.iter().enumerate() {
                let cached = self.caches.dirs.get_or_open(dir.id, layer + 1, || {
                    sys::absent_as_none(self.lower_dir(*layer, path))
                });
                let Some(fd) = cached.map_err(errno)? else {
                    continue;
                };
                let dev = self.lowers[*layer].dev();
                self.list_layer(fd.as_fd(), Some(dev), &mut seen, &mut out)?;
                // An opaque directory hides the layers below (the last one
                // has none: no need to ask).
                if i < last && format::is_opaque(fd.as_fd()).map_err(errno)? {
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
                let st = match sys::absent_as_none(sys::stat_at(fd, &entry.name)).map_err(errno)? {
                    Some(st) => st,
                    None => continue, // gone meanwhile
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
        let _shared = self.tree.read();
        self.caches.listing(id, || {
            let dir = self.dir_info(id)?;
            self.list(&dir)
        })
    }

    /// For readdirplus: the entries of directory node `dir` after readdir
    /// offset `offset`, resolved, each offered to `add`, which answers
    /// whether it took it (a reply that is full takes no more). Every entry
    /// taken is entered in the node table: the kernel now holds a lookup
    /// of it. A name removed since the listing was taken is skipped.
    pub fn list_plus(
        &self,
        dir: u64,
        offset: u64,
        mut add: impl FnMut(&Listed, &Entry) -> bool,
    ) -> OpResult<()> {
        let list = self.listing(dir)?;
        let mut resolver = self.resolver(dir)?;
        for item in entries_after(&list, offset) {
            let resolved = match resolver.resolve(&item.name) {
                Ok(r) => r,
                Err(e) if e == Errno::NOENT => continue,
                Err(e) => return Err(e),
            };
            let entry = self.entry_of(&resolved);
            if !add(item, &entry) {
                break;
            }
            self.enter_resolved(dir, &item.name, resolved);
        }
        Ok(())
    }
}
