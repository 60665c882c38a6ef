//! Kernel overlayfs' on-disk format, which the view's upper layer uses so
//! that the kernel can mount the same upper and `sync` can flatten it.
//!
//! * whiteout: a character device 0/0 hides the same name in lower layers;
//! * opaque directory: `trusted.overlay.opaque = "y"` hides all lower
//!   content of that directory;
//! * redirect: `trusted.overlay.redirect = "/old/path"` on a renamed
//!   directory says where its lower content lives;
//! * origin: vskel's own `trusted.overlay.vskel.origin = "<dev>:<ino>"` on a
//!   copied-up file names the lower inode it came from, so the view keeps
//!   reporting that inode number (kernel overlayfs ignores and hides every
//!   `trusted.overlay.*` name it does not know).

use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use crate::sys;

/// Marks a directory whose lower content is hidden.
pub const OPAQUE_XATTR: &CStr = c"trusted.overlay.opaque";
/// Where a renamed directory's lower content lives.
pub const REDIRECT_XATTR: &CStr = c"trusted.overlay.redirect";
/// The lower inode a copied-up file came from (vskel's own).
pub const ORIGIN_XATTR: &CStr = c"trusted.overlay.vskel.origin";
/// Every overlay-private xattr starts with this; hidden from users.
pub const PRIVATE_PREFIX: &[u8] = b"trusted.overlay.";
/// The value of `trusted.overlay.opaque` on an opaque directory.
pub const OPAQUE_YES: &[u8] = b"y";

/// Is this `stat` a whiteout (character device 0/0)?
#[allow(clippy::unnecessary_cast)]
pub fn is_whiteout(st: &Stat) -> bool {
    is_whiteout_kind(FileType::from_raw_mode(st.st_mode as _), st.st_rdev)
}

/// Would an entry of this type and device number be a whiteout?
pub fn is_whiteout_kind(kind: FileType, rdev: u64) -> bool {
    kind == FileType::CharacterDevice && rdev == 0
}

/// Is this xattr name overlay-private (hidden from the view's users)?
pub fn is_private_xattr(name: &[u8]) -> bool {
    name.starts_with(PRIVATE_PREFIX)
}

/// Make a whiteout `name` in `dir`.
pub fn make_whiteout(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    sys::mknod_at(dir, name, FileType::CharacterDevice, 0, 0)
}

/// Read an xattr of an open directory; `None` when absent.
fn get_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    match sys::fget_xattr(fd, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Is the open directory opaque?
pub fn is_opaque(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_xattr(dir, OPAQUE_XATTR)?.is_some_and(|v| v == OPAQUE_YES))
}

/// Mark the open directory opaque.
pub fn set_opaque(dir: BorrowedFd<'_>) -> io::Result<()> {
    sys::fset_xattr(dir, OPAQUE_XATTR, OPAQUE_YES)
}

/// Where a renamed directory's lower content is, for the layers below the
/// one whose directory carries the redirect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redirect {
    /// A path from each layer's root (`/a/b`, as vskel and the kernel write
    /// for a move between directories).
    Absolute(PathBuf),
    /// Another name in the same parent (as the kernel writes for a rename
    /// within one directory).
    Relative(OsString),
}

/// The redirect of the open directory, if it has one.
pub fn redirect_of(dir: BorrowedFd<'_>) -> io::Result<Option<Redirect>> {
    let Some(value) = get_xattr(dir, REDIRECT_XATTR)? else {
        return Ok(None);
    };
    Ok(Some(match value.strip_prefix(b"/") {
        Some(absolute) => Redirect::Absolute(PathBuf::from(OsStr::from_bytes(absolute))),
        None => Redirect::Relative(OsStr::from_bytes(&value).to_os_string()),
    }))
}

/// The redirect of the open directory, as a path relative to the layer
/// roots (`None` without one). `parent_lower` resolves a relative redirect.
pub fn redirect(dir: BorrowedFd<'_>, parent_lower: Option<&Path>) -> io::Result<Option<PathBuf>> {
    Ok(redirect_of(dir)?.map(|r| match r {
        Redirect::Absolute(path) => path,
        Redirect::Relative(name) => parent_lower.unwrap_or(Path::new("")).join(name),
    }))
}

/// Set an absolute redirect (`/` + `lower_path`) on the open directory.
pub fn set_redirect(dir: BorrowedFd<'_>, lower_path: &Path) -> io::Result<()> {
    let mut value = b"/".to_vec();
    value.extend_from_slice(lower_path.as_os_str().as_bytes());
    sys::fset_xattr(dir, REDIRECT_XATTR, &value)
}

/// The origin `(dev, ino)` recorded on a copied-up file (by path through
/// `/proc/self/fd`, without opening it).
pub fn origin_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<(u64, u64)>> {
    match sys::lget_xattr(&sys::proc_path(dir, name), ORIGIN_XATTR) {
        Ok(value) => Ok(parse_origin(&value)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse `"<dev>:<ino>"`.
pub fn parse_origin(value: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (dev, ino) = text.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Format an origin value.
pub fn format_origin(dev: u64, ino: u64) -> String {
    format!("{dev}:{ino}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_round_trips_and_rejects_junk() {
        assert_eq!(
            parse_origin(format_origin(2049, 77).as_bytes()),
            Some((2049, 77))
        );
        for junk in [&b""[..], b"1", b"a:b", b"1:", b":2", b"1:2:3"] {
            assert_eq!(parse_origin(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn private_xattrs_are_the_overlay_ones() {
        let cases: &[(&[u8], bool)] = &[
            (b"trusted.overlay.opaque", true),
            (b"trusted.overlay.vskel.origin", true),
            (b"trusted.overlayx", false),
            (b"user.overlay.opaque", false),
            (b"security.capability", false),
        ];
        for (name, want) in cases {
            assert_eq!(is_private_xattr(name), *want, "{name:?}");
        }
    }
}
