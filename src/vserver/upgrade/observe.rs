//! What a vserver has at a path (V), read from its live, hostile tree
//! without following any symlink, and how it compares with a generation's
//! entry: a global entry is V when V is its skel inode; otherwise kind,
//! mode and owner must match, then size, mtime and device number, and
//! only then are V's xattrs read and its content hashed. A `static/`
//! entry is rendered with the vserver's tokens, so its recorded size and
//! hash are not V's: V is O's when kind, mode, owner and mtime match (the
//! rendering of O is not on disk any more), and V equals N when its bytes
//! are N rendered. Directories compare by kind, mode and owner. The
//! overlay's own xattrs (`trusted.overlay.*`, a view's upper layer
//! bookkeeping) are never compared.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::Stat;

use crate::error::{Error, Result};
use crate::generation::{Entry, Kind, Part};
use crate::sys;
use crate::tokens::{Tokens, render};
use crate::tree::TreeRoot;
use crate::view::format;

/// V at one path.
pub enum Here {
    /// Its parent is there; V is `stat` (none: absent).
    At {
        /// The parent directory.
        dir: OwnedFd,
        /// V's name in it.
        name: CString,
        /// V, if present.
        stat: Option<Stat>,
    },
    /// A parent is missing, not a directory, or a symlink.
    Blocked,
}

/// Look `rel` up in the vserver's tree.
pub fn look(tree: &TreeRoot, rel: &Path) -> Result<Here> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let Some(name) = rel.file_name() else {
        return Ok(Here::Blocked);
    };
    let dir = match sys::open_dir_beneath(tree.fd(), parent) {
        Ok(dir) => dir,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV)
            ) =>
        {
            return Ok(Here::Blocked);
        }
        Err(e) => return Err(Error::io("open", tree.display(parent), e)),
    };
    let name = sys::cname(name).map_err(|e| Error::io("name", rel, e))?;
    let stat = sys::absent_as_none(sys::stat_at(dir.as_fd(), &name))
        .map_err(|e| Error::io("stat", tree.display(rel), e))?;
    Ok(Here::At { dir, name, stat })
}

/// A stat's kind.
pub fn kind_of(st: &Stat) -> Kind {
    Kind::of_stat(st)
}

/// How an entry is compared.
#[derive(Clone, Copy)]
pub enum Against<'a> {
    /// As O: a static entry by its metadata.
    Old,
    /// As N: a static entry by its rendering (the skel's file, tokens).
    New(&'a Path, &'a Tokens),
}

/// Is V (`st`, `name` in `dir`) the entry `e`?
#[allow(clippy::unnecessary_cast)]
pub fn is(
    dir: BorrowedFd<'_>,
    name: &CString,
    st: &Stat,
    e: &Entry,
    how: Against<'_>,
) -> std::io::Result<bool> {
    if kind_of(st) != e.kind {
        return Ok(false);
    }
    if e.part == Part::Global
        && e.kind != Kind::Dir
        && (sys::dev_of(st), sys::ino_of(st)) == e.inode()
    {
        return Ok(true);
    }
    let mode = st.st_mode as u32 & 0o7777;
    if mode != e.mode || st.st_uid as u32 != e.uid || st.st_gid as u32 != e.gid {
        return Ok(false);
    }
    if e.kind == Kind::Dir {
        return Ok(true);
    }
    let mtime = (st.st_mtime as i64, st.st_mtime_nsec as i64);
    if e.part == Part::Static && e.kind == Kind::File {
        return match how {
            Against::Old => Ok(mtime == e.mtime),
            Against::New(skel_file, tokens) => {
                let want = render(&std::fs::read(skel_file)?, tokens).bytes;
                Ok(st.st_size as u64 == want.len() as u64 && read_all(dir, name)? == want)
            }
        };
    }
    if st.st_size as u64 != e.size || mtime != e.mtime || st.st_rdev as u64 != e.rdev {
        return Ok(false);
    }
    match e.kind {
        Kind::File => {
            let fd = sys::open_file_read(dir, name)?;
            if sys::ino_of(&sys::fstat(fd.as_fd())?) != sys::ino_of(st) {
                return Ok(false);
            }
            let recorded: Vec<_> = e
                .xattrs
                .iter()
                .filter(|(n, _)| !format::is_private_xattr(n))
                .cloned()
                .collect();
            if xattrs(fd.as_fd())? != recorded {
                return Ok(false);
            }
            Ok(Some(hash(fd)?) == e.hash)
        }
        Kind::Symlink => {
            let target = sys::readlink_at(dir, name)?;
            Ok(Some(*blake3::hash(target.as_bytes()).as_bytes()) == e.hash)
        }
        _ => Ok(true),
    }
}

fn xattrs(fd: BorrowedFd<'_>) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for n in sys::flist_xattrs(fd)? {
        if format::is_private_xattr(n.as_bytes()) {
            continue; // a view's overlay bookkeeping, not the file's
        }
        let value = sys::fget_xattr(fd, &n)?;
        out.push((n.into_bytes(), value));
    }
    out.sort();
    Ok(out)
}

/// BLAKE3 of an open file's data.
pub fn hash(fd: OwnedFd) -> std::io::Result<[u8; 32]> {
    let mut hasher = blake3::Hasher::new();
    let mut file = std::fs::File::from(fd);
    std::io::copy(&mut file, &mut hasher)?;
    Ok(*hasher.finalize().as_bytes())
}

fn read_all(dir: BorrowedFd<'_>, name: &CString) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::from(sys::open_file_read(dir, name)?).read_to_end(&mut out)?;
    Ok(out)
}
