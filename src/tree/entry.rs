//! The one way an entry other than a directory is copied: a regular file
//! (its data through [`sys::copy_data`], which keeps holes), a symlink, a
//! device node, FIFO or socket, with owner, mode, times and the xattrs a
//! [`CopySpec`] keeps; a regular file's data may instead pass through
//! the spec's `transform` (token rendering of `static/`).
//!
//! The copy is made exclusively and its metadata set through a descriptor
//! of what was made, never its name ([`super::place`]); it comes back as a
//! [`Temp`], removed on drop unless the caller keeps or installs it. Where
//! it is made (at its name, under a random one, in a private directory)
//! and what happens to it then (installed in a live tree, renamed out of a
//! work directory, hard-link groups) is the caller's policy.

use std::ffi::CStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::FileType;

use super::meta::Meta;
use super::place::{self, Temp};
use crate::sys;

/// A rewrite of a regular file's data (whole input to whole output).
pub type Transform<'a> = dyn Fn(&[u8]) -> Vec<u8> + 'a;

/// What a copy keeps of the source's xattrs and adds to them, and how a
/// regular file's data is copied.
#[derive(Clone, Copy)]
pub struct CopySpec<'a> {
    /// Is the source's xattr of this name copied?
    pub keep_xattr: &'a dyn Fn(&[u8]) -> bool,
    /// Xattrs set on the copy besides the source's.
    pub extra_xattrs: &'a [(&'a CStr, &'a [u8])],
    /// A regular file's data rewritten by this (read whole, written whole)
    /// instead of copied as it is; `None` copies it extent by extent.
    pub transform: Option<&'a Transform<'a>>,
}

impl CopySpec<'_> {
    /// Every xattr of the source, nothing added.
    pub const ALL: CopySpec<'static> = CopySpec {
        keep_xattr: &|_| true,
        extra_xattrs: &[],
        transform: None,
    };
}

/// What [`copy_entry`] made.
#[derive(Debug)]
pub struct Copied<'d> {
    /// The copy (removed on drop unless kept or installed).
    pub made: Temp<'d>,
    /// The source's metadata as given to the copy (xattrs as kept).
    pub meta: Meta,
    /// Bytes of file data copied.
    pub bytes: u64,
}

/// Copy `src_name` in `src_dir` (not a directory) as `dst_name` (or a
/// random name) in `dst_dir`, owner, mode, xattrs (as `spec` says) and
/// times included. Fails on an existing `dst_name`, on a directory, and
/// on a source that changes type while it is copied.
pub fn copy_entry<'d>(
    src_dir: BorrowedFd<'_>,
    src_name: &CStr,
    dst_dir: BorrowedFd<'d>,
    dst_name: Option<&CStr>,
    spec: &CopySpec<'_>,
) -> io::Result<Copied<'d>> {
    let st = sys::stat_at(src_dir, src_name)?;
    let kind = Meta::from_stat(&st).file_type;
    match kind {
        FileType::Directory => Err(io::Error::other("a directory is no entry to copy")),
        FileType::RegularFile => {
            let src = sys::open_file_read(src_dir, src_name)?;
            let meta = kept(
                Meta::from_stat(&sys::fstat(src.as_fd())?).with_xattrs(src.as_fd())?,
                spec,
            );
            if meta.file_type != FileType::RegularFile {
                return Err(io::Error::other("no longer a regular file in its layer"));
            }
            let (made, out) = place::create_file(dst_dir, dst_name)?;
            let bytes = match spec.transform {
                None => {
                    sys::copy_data(src.as_fd(), out.as_fd(), meta.size)?;
                    meta.size
                }
                Some(transform) => {
                    let mut input = Vec::with_capacity(meta.size as usize);
                    std::fs::File::from(src).read_to_end(&mut input)?;
                    let output = transform(&input);
                    std::fs::File::from(out.try_clone()?).write_all(&output)?;
                    output.len() as u64
                }
            };
            meta.apply_to_fd(out.as_fd())?;
            let meta = Meta {
                size: bytes,
                ..meta
            };
            Ok(Copied { made, meta, bytes })
        }
        kind => {
            let meta = kept(
                Meta::from_stat(&st).with_xattrs_at(src_dir, src_name)?,
                spec,
            );
            let (made, handle) = if kind == FileType::Symlink {
                let target = sys::readlink_at(src_dir, src_name)?;
                place::make_symlink(dst_dir, dst_name, &target)?
            } else {
                place::make_special(dst_dir, dst_name, kind, meta.mode, meta.rdev)?
            };
            meta.apply_to_handle(handle.as_fd())?;
            Ok(Copied {
                made,
                meta,
                bytes: 0,
            })
        }
    }
}

/// `meta` with only the xattrs `spec` keeps, and those it adds.
fn kept(mut meta: Meta, spec: &CopySpec<'_>) -> Meta {
    meta.xattrs
        .retain(|(name, _)| (spec.keep_xattr)(name.to_bytes()));
    for (name, value) in spec.extra_xattrs {
        meta.xattrs.push(((*name).to_owned(), value.to_vec()));
    }
    meta
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn dir_fd(path: &std::path::Path) -> std::os::fd::OwnedFd {
        sys::open_root(path).expect("open dir")
    }

    #[test]
    fn copies_a_sparse_file_with_its_metadata_and_kept_xattrs_only() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        let file = std::fs::File::create(src.join("f")).unwrap();
        file.set_len(1 << 20).unwrap(); // one hole
        std::os::unix::fs::FileExt::write_at(&file, b"end", (1 << 20) - 3).unwrap();
        drop(file);
        std::fs::set_permissions(src.join("f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        xattr::set(src.join("f"), "user.keep", b"1").unwrap();
        xattr::set(src.join("f"), "user.drop", b"2").unwrap();
        let (s, d) = (dir_fd(&src), dir_fd(&dst));
        let keep = |name: &[u8]| name != b"user.drop";
        let extra = [(c"user.added", &b"3"[..])];
        let spec = CopySpec {
            keep_xattr: &keep,
            extra_xattrs: &extra,
            transform: None,
        };
        let copied = copy_entry(s.as_fd(), c"f", d.as_fd(), Some(c"f"), &spec).unwrap();
        assert_eq!(copied.bytes, 1 << 20);
        copied.made.keep();
        let (a, b) = (
            std::fs::metadata(src.join("f")).unwrap(),
            std::fs::metadata(dst.join("f")).unwrap(),
        );
        assert_eq!(b.mode() & 0o7777, 0o640);
        assert_eq!((b.mtime(), b.mtime_nsec()), (a.mtime(), a.mtime_nsec()));
        assert_eq!(
            std::fs::read(dst.join("f")).unwrap(),
            std::fs::read(src.join("f")).unwrap()
        );
        assert!(b.blocks() < a.size() / 512, "the hole was kept");
        assert_eq!(
            xattr::get(dst.join("f"), "user.keep").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(xattr::get(dst.join("f"), "user.drop").unwrap(), None);
        assert_eq!(
            xattr::get(dst.join("f"), "user.added").unwrap(),
            Some(b"3".to_vec())
        );
        // Made exclusively: an existing name is refused, and kept intact.
        let again = copy_entry(s.as_fd(), c"f", d.as_fd(), Some(c"f"), &CopySpec::ALL);
        assert_eq!(again.unwrap_err().raw_os_error(), Some(libc::EEXIST));
    }

    #[test]
    fn copies_a_symlink_and_a_fifo_and_refuses_a_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        std::fs::create_dir(&src).unwrap();
        std::fs::create_dir(&dst).unwrap();
        std::os::unix::fs::symlink("../somewhere", src.join("l")).unwrap();
        std::fs::create_dir(src.join("d")).unwrap();
        let (s, d) = (dir_fd(&src), dir_fd(&dst));
        sys::mknod_at(s.as_fd(), c"p", FileType::Fifo, 0o604, 0).unwrap();
        for name in [c"l", c"p"] {
            copy_entry(s.as_fd(), name, d.as_fd(), Some(name), &CopySpec::ALL)
                .unwrap()
                .made
                .keep();
        }
        assert_eq!(
            std::fs::read_link(dst.join("l")).unwrap(),
            std::path::Path::new("../somewhere")
        );
        let p = std::fs::symlink_metadata(dst.join("p")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&p.file_type()));
        assert_eq!(p.mode() & 0o7777, 0o604);
        assert!(copy_entry(s.as_fd(), c"d", d.as_fd(), Some(c"d"), &CopySpec::ALL).is_err());
        assert!(!dst.join("d").exists());
        // A copy under a random name that is not kept is removed.
        let temp = copy_entry(s.as_fd(), c"l", d.as_fd(), None, &CopySpec::ALL).unwrap();
        drop(temp);
        assert_eq!(std::fs::read_dir(&dst).unwrap().count(), 2);
    }
}
