//! The one way two entries are compared: does a copy already hold what its
//! source holds (owner, mode, mtime, size, device number, xattrs, a
//! symlink's target, and as asked a regular file's bytes and link count)?
//!
//! Entries are reached by name in an open directory and never followed;
//! a regular file's bytes are compared only while both names still hold
//! regular files (names of a live tree may change under us).

use std::ffi::CStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FileType, Stat};

use super::meta::Meta;
use crate::sys;

/// One side of a comparison: `name` in `dir`, whose `stat` the caller has.
#[derive(Debug, Clone, Copy)]
pub struct Side<'a> {
    /// The directory holding it.
    pub dir: BorrowedFd<'a>,
    /// Its name there.
    pub name: &'a CStr,
    /// Its `stat`.
    pub stat: &'a Stat,
}

/// What [`same_entry`] compares besides type, owner, mode, mtime, size,
/// device number, xattrs and a symlink's target.
#[derive(Clone, Copy)]
pub struct CompareSpec<'a> {
    /// Which of the source's xattrs count (the copy's all do: an xattr the
    /// copy has and the source is not meant to differs).
    pub keep_xattr: &'a dyn Fn(&[u8]) -> bool,
    /// Compare regular files' bytes.
    pub content: bool,
    /// Compare link counts.
    pub links: bool,
}

/// Does `copy` hold what `source` holds, as `spec` says? A symlink's mode
/// is not compared (it has none of its own).
pub fn same_entry(source: Side<'_>, copy: Side<'_>, spec: &CompareSpec<'_>) -> io::Result<bool> {
    let want = Meta::from_stat(source.stat);
    let have = Meta::from_stat(copy.stat);
    let same_meta = want.file_type == have.file_type
        && want.uid == have.uid
        && want.gid == have.gid
        && (want.mode == have.mode || want.file_type == FileType::Symlink)
        && want.times.mtime == have.times.mtime
        && want.size == have.size
        && want.rdev == have.rdev
        && (!spec.links || want.nlink == have.nlink);
    if !same_meta {
        return Ok(false);
    }
    let kind = want.file_type;
    let mut want_x = want.with_xattrs_at(source.dir, source.name)?.xattrs;
    want_x.retain(|(name, _)| (spec.keep_xattr)(name.to_bytes()));
    let mut have_x = have.with_xattrs_at(copy.dir, copy.name)?.xattrs;
    want_x.sort();
    have_x.sort();
    if want_x != have_x {
        return Ok(false);
    }
    match kind {
        FileType::Symlink => Ok(
            sys::readlink_at(source.dir, source.name)? == sys::readlink_at(copy.dir, copy.name)?
        ),
        FileType::RegularFile if spec.content => {
            same_content(source.dir, source.name, copy.dir, copy.name)
        }
        _ => Ok(true),
    }
}

/// Do two regular files hold the same bytes?
pub fn same_content(
    a_dir: BorrowedFd<'_>,
    a: &CStr,
    b_dir: BorrowedFd<'_>,
    b: &CStr,
) -> io::Result<bool> {
    let fa = sys::open_file_read(a_dir, a)?;
    let fb = sys::open_file_read(b_dir, b)?;
    // Names of a live tree may change under us: compare only what is
    // still a regular file on both sides.
    for fd in [&fa, &fb] {
        if Meta::from_stat(&sys::fstat(fd.as_fd())?).file_type != FileType::RegularFile {
            return Ok(false);
        }
    }
    let mut fa = std::fs::File::from(fa);
    let mut fb = std::fs::File::from(fb);
    let mut ba = vec![0u8; 1 << 16];
    let mut bb = vec![0u8; 1 << 16];
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Read until `buf` is full or the file ends; the bytes read.
fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn side_of(dir: &OwnedFd, name: &CStr) -> Stat {
        sys::stat_at(dir.as_fd(), name).unwrap()
    }

    #[test]
    fn tells_a_copy_from_a_changed_one() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        std::fs::write(a.join("f"), b"same").unwrap();
        xattr::set(a.join("f"), "user.private", b"x").unwrap();
        let (ad, bd) = (sys::open_root(&a).unwrap(), sys::open_root(&b).unwrap());
        let keep = |name: &[u8]| name != b"user.private";
        let copied = crate::tree::entry::CopySpec {
            keep_xattr: &keep,
            extra_xattrs: &[],
            transform: None,
        };
        crate::tree::entry::copy_entry(ad.as_fd(), c"f", bd.as_fd(), Some(c"f"), &copied)
            .unwrap()
            .made
            .keep();
        let spec = CompareSpec {
            keep_xattr: &keep,
            content: true,
            links: true,
        };
        let same = |spec: &CompareSpec<'_>| {
            let (sa, sb) = (side_of(&ad, c"f"), side_of(&bd, c"f"));
            same_entry(
                Side {
                    dir: ad.as_fd(),
                    name: c"f",
                    stat: &sa,
                },
                Side {
                    dir: bd.as_fd(),
                    name: c"f",
                    stat: &sb,
                },
                spec,
            )
            .unwrap()
        };
        assert!(same(&spec), "a copy is the same");
        // Same size and times, other bytes: only the content tells.
        let times = sys::fstat(sys::open_file_read(bd.as_fd(), c"f").unwrap().as_fd()).unwrap();
        std::fs::write(b.join("f"), b"diff").unwrap();
        let t = crate::tree::meta::Meta::from_stat(&times).times;
        sys::futimens(sys::open_file_read(bd.as_fd(), c"f").unwrap().as_fd(), t).unwrap();
        assert!(!same(&spec), "other bytes differ");
        assert!(same(&CompareSpec {
            content: false,
            ..spec
        }));
        // An xattr the copy has and the source is not meant to: differs.
        std::fs::write(b.join("f"), b"same").unwrap();
        sys::futimens(sys::open_file_read(bd.as_fd(), c"f").unwrap().as_fd(), t).unwrap();
        assert!(same(&spec));
        xattr::set(b.join("f"), "user.private", b"x").unwrap();
        assert!(!same(&spec), "an xattr the source does not give differs");
        xattr::remove(b.join("f"), "user.private").unwrap();
        // Another name of the copy: only the link count tells.
        std::fs::hard_link(b.join("f"), b.join("g")).unwrap();
        assert!(!same(&spec));
        assert!(same(&CompareSpec {
            links: false,
            ..spec
        }));
    }
}
