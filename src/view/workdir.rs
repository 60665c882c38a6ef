//! The view's scratch space: `WORKDIR/work/`, where copy-ups are built and
//! removed entries are taken apart before they show (kernel overlayfs and
//! fuse-overlayfs keep their scratch space in the same place).
//!
//! vskel deletes only what it recognisably made there: entries named
//! [`SCRATCH_PREFIX`]`...` (its scratch names), left by a server that was
//! killed. Anything else (in `work/`, or in the work directory itself) is
//! someone else's: it is left alone, with a warning. Earlier versions kept
//! their scratch entries directly in the work directory, so those are
//! cleared there too.
//!
//! A serving view holds an exclusive `flock` on `work/` for as long as it
//! runs: a second server on the same work directory is refused (after a
//! short wait, for a lock just released) instead of deleting the first
//! one's scratch entries under it.

use std::ffi::{CStr, OsString};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use tracing::warn;

use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::remove::remove_tree_at;

/// The scratch directory inside the work directory.
pub const SCRATCH_DIR: &CStr = c"work";
/// What every scratch name vskel makes starts with (`Overlay::work_name`).
pub const SCRATCH_PREFIX: &[u8] = b"#vskel-";
/// Mode of a new scratch directory (nobody else has anything to do there).
const SCRATCH_MODE: u32 = 0o700;
/// What kernel overlayfs keeps beside `work/` in a work directory it
/// mounted with: left alone without a warning.
const KERNEL_ENTRIES: &[&CStr] = &[c"index", c"incompat"];
/// How long [`prepare`] waits for the lock of a work directory that was
/// just released.
const LOCK_PATIENCE: Duration = Duration::from_millis(500);
/// How often it tries.
const LOCK_RETRY: Duration = Duration::from_millis(10);

/// What [`prepare`] left alone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Foreign {
    /// Entries vskel did not make, relative to the work directory.
    pub entries: Vec<OsString>,
}

/// Make (if missing), lock and clean the scratch directory of the work
/// directory `work`; returns it as a tree, locked for as long as it is
/// open, and what was left alone (each entry also logged as a warning).
pub fn prepare(work: &TreeRoot) -> Result<(TreeRoot, Foreign)> {
    let mut foreign = Foreign::default();
    let scratch_path = work.path().join(sys::os_name(SCRATCH_DIR));
    clean(
        work,
        work.path(),
        &mut foreign,
        &[&[SCRATCH_DIR], KERNEL_ENTRIES].concat(),
    )?;
    match sys::mkdir_at(work.fd(), SCRATCH_DIR, SCRATCH_MODE) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(Error::io("make directory", &scratch_path, e));
        }
        _ => {}
    }
    // Never a symlink (O_NOFOLLOW), and on the work directory's filesystem.
    let scratch = work.subtree(Path::new(sys::os_name(SCRATCH_DIR)))?;
    if scratch.dev() != work.dev() {
        return Err(Error::Usage(format!(
            "{} is another filesystem mounted in the work directory; unmount it",
            scratch_path.display()
        )));
    }
    if !lock_within(&scratch, LOCK_PATIENCE)? {
        return Err(in_use_error(work));
    }
    clean(&scratch, work.path(), &mut foreign, &[])?;
    Ok((scratch, foreign))
}

/// Take the scratch directory's lock, trying again until `patience` has
/// passed: a lock is held by an open file description, and a server that
/// just stopped may still be held for a moment (a process forked by any
/// thread keeps a copy of every descriptor until it execs), so a restart
/// right after a stop is not refused.
fn lock_within(scratch: &TreeRoot, patience: Duration) -> Result<bool> {
    let deadline = Instant::now() + patience;
    loop {
        let locked = sys::try_lock_exclusive(scratch.fd())
            .map_err(|e| Error::io("lock", scratch.path(), e))?;
        if locked || Instant::now() >= deadline {
            return Ok(locked);
        }
        std::thread::sleep(LOCK_RETRY);
    }
}

/// The error for a work directory a running server uses.
pub fn in_use_error(work: &TreeRoot) -> Error {
    Error::Usage(format!(
        "workdir={} is in use by another running overlay; give each overlay a \
         work directory of its own",
        work.path().display()
    ))
}

/// Is the scratch directory of the work directory `work` locked by a
/// running server (a quick look before starting one; [`prepare`] decides)?
pub fn in_use(work: &TreeRoot) -> Result<bool> {
    let scratch = match work.subtree(Path::new(sys::os_name(SCRATCH_DIR))) {
        Ok(scratch) => scratch,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let free =
        sys::try_lock_exclusive(scratch.fd()).map_err(|e| Error::io("lock", scratch.path(), e))?;
    Ok(!free) // a lock taken here goes with `scratch`
}

/// Remove vskel's scratch entries from `dir`; note (and warn about) every
/// other entry except those in `keep`.
fn clean(dir: &TreeRoot, work: &Path, foreign: &mut Foreign, keep: &[&CStr]) -> Result<()> {
    let entries = sys::read_dir(dir.fd()).map_err(|e| Error::io("read", dir.path(), e))?;
    for entry in entries {
        if keep.contains(&entry.name.as_c_str()) {
            continue;
        }
        let name = sys::os_name(&entry.name);
        let path = dir.path().join(name);
        if entry.name.to_bytes().starts_with(SCRATCH_PREFIX) {
            remove_tree_at(dir.fd().as_fd(), &entry.name)
                .map_err(|e| Error::io("remove the scratch entry", &path, e))?;
        } else {
            warn!(
                "{} was not made by vskel; it is left alone (vskel removes only its own \
                 scratch entries from a work directory)",
                path.display()
            );
            let rel = path.strip_prefix(work).unwrap_or(&path);
            foreign.entries.push(rel.as_os_str().to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn only_scratch_entries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        fs::write(w.join("notes.txt"), "mine").unwrap();
        fs::create_dir_all(w.join("#vskel-1-2/deep")).unwrap();
        fs::write(w.join("#vskel-1-2/deep/f"), "old scratch").unwrap();
        fs::create_dir_all(w.join("work/#vskel-3-4")).unwrap();
        fs::write(w.join("work/#vskel-5-6"), "scratch").unwrap();
        fs::write(w.join("work/#17"), "kernel overlayfs' scratch").unwrap();
        fs::create_dir(w.join("index")).unwrap();
        let work = TreeRoot::open(w).unwrap();
        let (scratch, foreign) = prepare(&work).unwrap();
        assert_eq!(scratch.path(), w.join("work"));
        let mut left: Vec<_> = foreign.entries.iter().map(|e| e.to_owned()).collect();
        left.sort();
        assert_eq!(left, ["notes.txt", "work/#17"]);
        assert_eq!(fs::read_to_string(w.join("notes.txt")).unwrap(), "mine");
        assert!(w.join("work/#17").exists());
        assert!(w.join("index").is_dir());
        for gone in ["#vskel-1-2", "work/#vskel-3-4", "work/#vskel-5-6"] {
            assert!(!w.join(gone).exists(), "{gone} kept");
        }
    }

    #[test]
    fn scratch_names_carry_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for layer in ["up", "wk", "low"] {
            fs::create_dir(dir.path().join(layer)).unwrap();
        }
        let spec = crate::view::LayerSpec {
            upper: dir.path().join("up"),
            work: dir.path().join("wk"),
            lowers: vec![dir.path().join("low")],
        };
        let overlay = crate::view::overlay::Overlay::new(&spec).unwrap();
        for _ in 0..3 {
            let name = overlay.work_name();
            assert!(name.to_bytes().starts_with(SCRATCH_PREFIX), "{name:?}");
        }
        assert!(dir.path().join("wk/work").is_dir());
    }

    #[test]
    fn a_second_server_on_one_work_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let work = TreeRoot::open(dir.path()).unwrap();
        assert!(!in_use(&work).unwrap());
        let (first, _) = prepare(&work).unwrap();
        assert!(in_use(&work).unwrap());
        let err = prepare(&work).unwrap_err().to_string();
        assert!(err.contains("in use by another running overlay"), "{err}");
        drop(first);
        assert!(!in_use(&work).unwrap());
        prepare(&work).unwrap();
    }

    #[test]
    fn a_symlinked_scratch_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        fs::write(elsewhere.path().join("#vskel-1-1"), "not in the work dir").unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join("work")).unwrap();
        let work = TreeRoot::open(dir.path()).unwrap();
        assert!(prepare(&work).is_err());
        assert!(elsewhere.path().join("#vskel-1-1").exists());
    }
}
