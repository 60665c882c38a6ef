//! The skel's side of `verify`: each global entry of a generation is
//! looked up in the skel's `global/` for that generation and compared
//! with its record. Missing there, or another inode: `missing-in-skel`.
//! The recorded inode with other mode, owner, size, mtime or device
//! number, or (regular files) other xattrs or content: `changed-in-place`.
//! A regular file lacking the immutable attribute under
//! `protect = "immutable"`: `lost-protection`.
//!
//! A regular file is hashed only when the [`Cache`] cannot vouch for it
//! (same ctime as when it was last found as recorded).

use std::os::fd::AsFd;

use super::Problem;
use super::cache::Cache;
use super::lookup::{Found, Looker};
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::generation::objects::hash_of;
use crate::generation::{Entry, Generation, Kind, Part};
use crate::sys;
use crate::tree::TreeRoot;

/// One finding on the skel's side.
#[derive(Debug, Clone)]
pub struct SkelFinding {
    /// The recorded entry.
    pub entry: Entry,
    /// What is wrong.
    pub problem: Problem,
    /// How, for people.
    pub detail: String,
}

/// Check every global entry of `generation` against `global` (the skel's
/// `global/` for it).
pub fn check(
    generation: &Generation,
    global: &TreeRoot,
    protect: Protect,
    cache: &mut Cache,
) -> Result<Vec<SkelFinding>> {
    let mut looker = Looker::new(global);
    let mut out: Vec<SkelFinding> = Vec::new();
    let number = generation.number();
    for e in generation.entries() {
        if e.part != Part::Global || e.path.as_os_str().is_empty() {
            continue;
        }
        if out
            .iter()
            .any(|f| f.problem == Problem::MissingInSkel && e.path.starts_with(&f.entry.path))
        {
            continue; // below a directory already reported
        }
        let mut found = |problem, detail: String| {
            out.push(SkelFinding {
                entry: e.clone(),
                problem,
                detail,
            })
        };
        let shown = global.display(&e.path);
        let (dir, name, st) = match looker.look(&e.path)? {
            Found::Blocked => {
                found(
                    Problem::MissingInSkel,
                    "a parent directory is missing from the skel".into(),
                );
                continue;
            }
            Found::At { stat: None, .. } => {
                found(
                    Problem::MissingInSkel,
                    format!("the skel has no such path (generation {number} records one)"),
                );
                continue;
            }
            Found::At {
                dir,
                name,
                stat: Some(st),
            } => (dir, name, st),
        };
        let kind = Kind::of_stat(&st);
        if kind != e.kind {
            found(
                Problem::MissingInSkel,
                format!(
                    "the skel has a {} here, generation {number} records a {}",
                    kind_name(kind),
                    kind_name(e.kind)
                ),
            );
            continue;
        }
        if kind == Kind::Dir {
            continue;
        }
        let inode = (sys::dev_of(&st), sys::ino_of(&st));
        if inode != e.inode() {
            found(
                Problem::MissingInSkel,
                format!(
                    "the skel's file here is not the inode generation {number} records \
                     (the skel was changed without a new generation)"
                ),
            );
            continue;
        }
        let mut differs = metadata_differences(&st, e);
        if differs.is_empty() && kind == Kind::File {
            let ctime = ctime_of(&st);
            let vouched = e.hash.is_some_and(|h| cache.vouches(inode, ctime, &h));
            if !vouched {
                match content_differences(dir, &name, e)
                    .map_err(|x| Error::io("read", &shown, x))?
                {
                    Ok(ctime) => {
                        if let Some(h) = e.hash {
                            cache.note(inode, ctime, h);
                        }
                    }
                    Err(what) => differs.push(what),
                }
            }
        }
        if !differs.is_empty() {
            cache.forget(inode);
            found(Problem::ChangedInPlace, differs.join(", "));
        }
        if protect == Protect::Immutable && kind == Kind::File && !immutable(dir, &name, &shown)? {
            found(
                Problem::LostProtection,
                "the immutable attribute is not set".into(),
            );
        }
    }
    Ok(out)
}

/// How `st`'s metadata differs from `e`'s.
#[allow(clippy::unnecessary_cast)]
fn metadata_differences(st: &rustix::fs::Stat, e: &Entry) -> Vec<String> {
    let mut out = Vec::new();
    let mode = st.st_mode as u32 & 0o7777;
    if mode != e.mode {
        out.push(format!("mode {mode:04o}, recorded {:04o}", e.mode));
    }
    if (st.st_uid as u32, st.st_gid as u32) != (e.uid, e.gid) {
        out.push(format!(
            "owner {}:{}, recorded {}:{}",
            st.st_uid, st.st_gid, e.uid, e.gid
        ));
    }
    if e.kind == Kind::File && st.st_size as u64 != e.size {
        out.push(format!("size {}, recorded {}", st.st_size, e.size));
    }
    if (st.st_mtime as i64, st.st_mtime_nsec as i64) != e.mtime {
        out.push("modification time differs from the record".into());
    }
    if matches!(e.kind, Kind::Char | Kind::Block) && st.st_rdev as u64 != e.rdev {
        out.push("device number differs from the record".into());
    }
    out
}

/// Compare a regular file's xattrs and content with `e`: `Ok(ctime)`, the
/// ctime it had throughout, when they match; `Err(what)` when not (or
/// when it changed while it was read).
fn content_differences(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    e: &Entry,
) -> std::io::Result<std::result::Result<(i64, i64), String>> {
    let fd = sys::open_file_read(dir, name)?;
    let before = sys::fstat(fd.as_fd())?;
    if (sys::dev_of(&before), sys::ino_of(&before)) != e.inode() {
        return Ok(Err("replaced while it was checked".into()));
    }
    let mut xattrs = Vec::new();
    for n in sys::flist_xattrs(fd.as_fd())? {
        match sys::fget_xattr(fd.as_fd(), &n) {
            Ok(v) => xattrs.push((n.into_bytes(), v)),
            Err(x) if x.raw_os_error() == Some(libc::ENODATA) => {}
            Err(x) => return Err(x),
        }
    }
    xattrs.sort();
    if xattrs != e.xattrs {
        return Ok(Err("extended attributes differ from the record".into()));
    }
    let reader = sys::open_file_read(dir, name)?;
    if Some(hash_of(reader)?) != e.hash {
        return Ok(Err("content differs from the record".into()));
    }
    let after = sys::fstat(fd.as_fd())?;
    if ctime_of(&after) != ctime_of(&before) {
        return Ok(Err("changed while it was checked".into()));
    }
    Ok(Ok(ctime_of(&after)))
}

/// A stat's ctime.
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn ctime_of(st: &rustix::fs::Stat) -> (i64, i64) {
    (st.st_ctime as i64, st.st_ctime_nsec as i64)
}

/// Is the immutable attribute set on `name` in `dir`?
fn immutable(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::CStr,
    shown: &std::path::Path,
) -> Result<bool> {
    match sys::immutable_at(dir, name).map_err(|e| Error::io("stat", shown, e))? {
        Some(set) => Ok(set),
        None => {
            let fd = sys::open_file_read(dir, name).map_err(|e| Error::io("open", shown, e))?;
            sys::is_immutable(fd.as_fd()).map_err(|e| Error::io("read attributes of", shown, e))
        }
    }
}

/// A kind's name, for people.
pub fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::File => "regular file",
        Kind::Dir => "directory",
        Kind::Symlink => "symlink",
        Kind::Char => "character device",
        Kind::Block => "block device",
        Kind::Fifo => "FIFO",
        Kind::Socket => "socket",
    }
}
