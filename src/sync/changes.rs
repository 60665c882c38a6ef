//! What changed in a view since its last sync: the upper layer is the
//! change set, so only it is walked (never the skel), and its entries'
//! stamps are compared with the manifest the last sync left.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use super::state::{Manifest, Stamp, StampKind};
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::view::format;
use crate::view::node::child_path;

/// The stamp of every entry of the upper layer, the root (`""`) included.
pub fn upper_stamps(upper: &TreeRoot) -> Result<BTreeMap<PathBuf, Stamp>> {
    let mut stamps = BTreeMap::new();
    let root = sys::fstat(upper.fd()).map_err(|e| Error::io("stat", upper.path(), e))?;
    stamps.insert(PathBuf::new(), stamp_of(&root));
    walk(upper, upper.fd(), Path::new(""), &mut stamps)?;
    Ok(stamps)
}

fn walk(
    upper: &TreeRoot,
    dir: BorrowedFd<'_>,
    rel: &Path,
    stamps: &mut BTreeMap<PathBuf, Stamp>,
) -> Result<()> {
    let entries = sys::read_dir(dir).map_err(|e| Error::io("read", upper.display(rel), e))?;
    for entry in entries {
        let path = child_path(rel, sys::os_name(&entry.name));
        let st = match sys::stat_at(dir, &entry.name) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(Error::io("stat", upper.display(&path), e)),
        };
        let stamp = stamp_of(&st);
        stamps.insert(path.clone(), stamp);
        if stamp.kind == StampKind::Dir {
            let sub = sys::open_subdir(dir, &entry.name)
                .map_err(|e| Error::io("open directory", upper.display(&path), e))?;
            walk(upper, sub.as_fd(), &path, stamps)?;
        }
    }
    Ok(())
}

#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn stamp_of(st: &Stat) -> Stamp {
    let kind = if format::is_whiteout(st) {
        StampKind::Whiteout
    } else if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory {
        StampKind::Dir
    } else {
        StampKind::Other
    };
    Stamp {
        ino: sys::ino_of(st),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        kind,
    }
}

/// The paths whose view state may differ from what the last sync wrote:
/// upper entries that are new or changed (or whose stamp the manifest
/// cannot vouch for), and entries the upper layer no longer has. Sorted
/// so that a directory comes before what it holds.
pub fn changed_paths(old: &Manifest, now: &BTreeMap<PathBuf, Stamp>) -> BTreeSet<PathBuf> {
    let mut changed = BTreeSet::new();
    for (path, stamp) in now {
        match old.stamps.get(path) {
            Some(was) if was == stamp && !old.is_racy(was) => {}
            _ => {
                changed.insert(path.clone());
            }
        }
    }
    for path in old.stamps.keys() {
        if !now.contains_key(path) {
            changed.insert(path.clone());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(ino: u64, secs: i64) -> Stamp {
        Stamp {
            ino,
            ctime: (secs, 0),
            kind: StampKind::Other,
        }
    }

    #[test]
    fn new_changed_replaced_and_vanished_entries_are_changes() {
        let old = Manifest {
            started_ns: 100_000_000_000,
            stamps: [
                ("same", stamp(1, 10)),
                ("touched", stamp(2, 10)),
                ("replaced", stamp(3, 10)),
                ("gone", stamp(4, 10)),
                ("racy", stamp(5, 100)),
            ]
            .into_iter()
            .map(|(p, s)| (PathBuf::from(p), s))
            .collect(),
            ..Manifest::default()
        };
        let now: BTreeMap<PathBuf, Stamp> = [
            ("same", stamp(1, 10)),
            ("touched", stamp(2, 11)),
            ("replaced", stamp(9, 10)),
            ("new", stamp(6, 10)),
            ("racy", stamp(5, 100)),
        ]
        .into_iter()
        .map(|(p, s)| (PathBuf::from(p), s))
        .collect();
        let changed: Vec<_> = changed_paths(&old, &now).into_iter().collect();
        let want: Vec<PathBuf> = ["gone", "new", "racy", "replaced", "touched"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(changed, want);
    }

    #[test]
    fn parents_sort_before_what_they_hold() {
        let set: BTreeSet<PathBuf> = ["a/b", "a", "a-b", "a/b/c", ""]
            .iter()
            .map(PathBuf::from)
            .collect();
        let order: Vec<_> = set.iter().map(|p| p.to_str().unwrap()).collect();
        assert_eq!(order, ["", "a", "a/b", "a/b/c", "a-b"]);
    }
}
