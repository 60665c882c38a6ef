//! What one entry is, for `diff`, and how two of them differ: in content
//! (its kind, a regular file's bytes, a symlink's target, a device
//! number) or in metadata (mode, owner, xattrs, and a non-directory's
//! mtime when its content is the same), or both.
//!
//! An entry is either on disk (a name in an open directory, never
//! followed: a vserver's tree and a view's upper layer are hostile) or as
//! a skel generation recorded it (its content by BLAKE3 hash). Bytes are
//! read only when the sizes match. A directory's mtime is left out: it
//! follows what the directory holds, and those entries are reported
//! themselves. The overlay's own xattrs (`trusted.overlay.*`) are the
//! view's bookkeeping, never compared.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{FileType, Stat};

use crate::generation::{Entry, Hash, Kind};
use crate::sys;
use crate::tree::compare::same_content;
use crate::tree::meta::{Meta, PERMISSION_BITS};
use crate::view::format;
use crate::vserver::upgrade::observe;

/// Where an entry's content is.
#[derive(Debug, Clone, Copy)]
pub enum Data<'a> {
    /// On disk: `name` in `dir`.
    At {
        /// The directory holding it.
        dir: BorrowedFd<'a>,
        /// Its name there.
        name: &'a CStr,
    },
    /// As recorded: BLAKE3 of a file's bytes or a symlink's target (none
    /// for other kinds).
    Hash(Option<Hash>),
    /// Not known (a rendered file whose source changed since it was
    /// recorded): the same content when the mtimes are the same.
    Unknown,
}

/// One entry, as compared.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// What it is.
    pub kind: Kind,
    /// Permission bits incl. setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: (i64, i64),
    /// Size in bytes.
    pub size: u64,
    /// Device number of a device node (0 otherwise).
    pub rdev: u64,
    /// Xattrs but the overlay's, sorted.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Its content.
    pub data: Data<'a>,
}

impl<'a> Facts<'a> {
    /// `name` in `dir`, whose `stat` the caller has.
    #[allow(clippy::unnecessary_cast)] // field widths differ per architecture
    pub fn on_disk(dir: BorrowedFd<'a>, name: &'a CStr, st: &Stat) -> io::Result<Self> {
        let kind = Kind::of_stat(st);
        let meta = Meta::from_stat(st).with_xattrs_at(dir, name)?;
        let xattrs = meta
            .xattrs
            .into_iter()
            .map(|(n, v)| (n.into_bytes(), v))
            .collect();
        Ok(Facts {
            kind,
            mode: st.st_mode as u32 & PERMISSION_BITS,
            uid: st.st_uid as u32,
            gid: st.st_gid as u32,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            size: st.st_size as u64,
            rdev: if matches!(kind, Kind::Char | Kind::Block) {
                st.st_rdev as u64
            } else {
                0
            },
            xattrs: without_private(xattrs),
            data: Data::At { dir, name },
        })
    }

    /// A generation's entry.
    pub fn recorded(e: &Entry) -> Facts<'static> {
        Facts {
            kind: e.kind,
            mode: e.mode,
            uid: e.uid,
            gid: e.gid,
            mtime: e.mtime,
            size: e.size,
            rdev: e.rdev,
            xattrs: without_private(e.xattrs.clone()),
            data: Data::Hash(e.hash),
        }
    }
}

fn without_private(mut xattrs: Vec<(Vec<u8>, Vec<u8>)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    xattrs.retain(|(n, _)| !format::is_private_xattr(n));
    xattrs.sort();
    xattrs
}

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// Its kind, bytes, target or device number.
    pub content: bool,
    /// Its mode, owner, xattrs or (content unchanged) mtime.
    pub metadata: bool,
}

/// How `new` differs from `old`; `None` when it does not.
pub fn compare(old: &Facts<'_>, new: &Facts<'_>) -> io::Result<Option<Changed>> {
    let content = !same_content_of(old, new)?;
    let dir = old.kind == Kind::Dir && new.kind == Kind::Dir;
    let symlinks = old.kind == Kind::Symlink && new.kind == Kind::Symlink;
    let metadata = (!symlinks && old.mode != new.mode)
        || old.uid != new.uid
        || old.gid != new.gid
        || old.xattrs != new.xattrs
        || (!dir && !content && old.mtime != new.mtime);
    Ok((content || metadata).then_some(Changed { content, metadata }))
}

fn same_content_of(old: &Facts<'_>, new: &Facts<'_>) -> io::Result<bool> {
    if old.kind != new.kind {
        return Ok(false);
    }
    match old.kind {
        Kind::File if old.size != new.size => Ok(false),
        Kind::File | Kind::Symlink => same_data(old, new),
        Kind::Char | Kind::Block => Ok(old.rdev == new.rdev),
        Kind::Dir | Kind::Fifo | Kind::Socket => Ok(true),
    }
}

fn same_data(old: &Facts<'_>, new: &Facts<'_>) -> io::Result<bool> {
    let file = old.kind == Kind::File;
    match (old.data, new.data) {
        (Data::Unknown, _) | (_, Data::Unknown) => Ok(old.mtime == new.mtime),
        (Data::Hash(a), Data::Hash(b)) => Ok(a.is_some() && a == b),
        (Data::Hash(h), Data::At { dir, name }) | (Data::At { dir, name }, Data::Hash(h)) => {
            Ok(h.is_some() && h == hash_at(dir, name, file)?)
        }
        (Data::At { dir: a, name: an }, Data::At { dir: b, name: bn }) if file => {
            same_content(a, an, b, bn)
        }
        (Data::At { dir: a, name: an }, Data::At { dir: b, name: bn }) => {
            Ok(sys::readlink_at(a, an)? == sys::readlink_at(b, bn)?)
        }
    }
}

/// BLAKE3 of the regular file (`file`) or symlink `name` in `dir`; none
/// when a regular file is no longer one.
fn hash_at(dir: BorrowedFd<'_>, name: &CStr, file: bool) -> io::Result<Option<Hash>> {
    if !file {
        let target = sys::readlink_at(dir, name)?;
        return Ok(Some(*blake3::hash(target.as_bytes()).as_bytes()));
    }
    let fd = sys::open_file_read(dir, name)?;
    if FileType::from_raw_mode(sys::fstat(fd.as_fd())?.st_mode as _) != FileType::RegularFile {
        return Ok(None);
    }
    observe::hash(fd).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64, hash: u8) -> Facts<'static> {
        Facts {
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: (1, 0),
            size,
            rdev: 0,
            xattrs: Vec::new(),
            data: Data::Hash(Some([hash; 32])),
        }
    }

    #[test]
    fn tells_content_from_metadata() {
        let base = file(3, 1);
        // (what, the entry now, (content, metadata) changed)
        type Case = (&'static str, Facts<'static>, Option<(bool, bool)>);
        let cases: Vec<Case> = vec![
            ("same", file(3, 1), None),
            ("other bytes", file(3, 2), Some((true, false))),
            ("other size", file(4, 1), Some((true, false))),
            (
                "chmod",
                Facts {
                    mode: 0o600,
                    ..file(3, 1)
                },
                Some((false, true)),
            ),
            (
                "touch",
                Facts {
                    mtime: (2, 0),
                    ..file(3, 1)
                },
                Some((false, true)),
            ),
            (
                "written (mtime follows content)",
                Facts {
                    mtime: (2, 0),
                    ..file(3, 2)
                },
                Some((true, false)),
            ),
            (
                "written and chowned",
                Facts {
                    uid: 7,
                    ..file(3, 2)
                },
                Some((true, true)),
            ),
            (
                "an xattr",
                Facts {
                    xattrs: vec![(b"user.a".to_vec(), b"1".to_vec())],
                    ..file(3, 1)
                },
                Some((false, true)),
            ),
            (
                "a directory now",
                Facts {
                    kind: Kind::Dir,
                    data: Data::Hash(None),
                    ..file(3, 1)
                },
                Some((true, false)),
            ),
        ];
        for (what, new, want) in cases {
            let got = compare(&base, &new)
                .unwrap()
                .map(|c| (c.content, c.metadata));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn a_directory_mtime_is_no_change() {
        let dir = |mtime| Facts {
            kind: Kind::Dir,
            mtime,
            data: Data::Hash(None),
            ..file(0, 0)
        };
        assert_eq!(compare(&dir((1, 0)), &dir((9, 0))).unwrap(), None);
    }

    #[test]
    fn overlay_xattrs_are_not_compared() {
        let mut e = Facts::recorded(&crate::generation::Entry {
            part: crate::generation::Part::Local,
            path: "f".into(),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: (1, 0),
            ctime: (1, 0),
            rdev: 0,
            dev: 0,
            ino: 0,
            xattrs: vec![(b"trusted.overlay.vskel.origin".to_vec(), b"1:2".to_vec())],
            hash: Some([1; 32]),
        });
        assert!(e.xattrs.is_empty());
        e.xattrs = Vec::new();
        assert_eq!(compare(&file(3, 1), &e).unwrap(), None);
    }
}
