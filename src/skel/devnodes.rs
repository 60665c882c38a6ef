//! The minimal `/dev` a skel carries: the usual character devices, `pts/`,
//! `shm/` and the `fd`/`std*` symlinks into `/proc/self/fd`.

use std::ffi::CStr;
use std::os::fd::BorrowedFd;

use rustix::fs::FileType;
use tracing::warn;

use crate::sys;

/// A character device: name, major, minor, mode.
struct CharDev {
    name: &'static CStr,
    major: u32,
    minor: u32,
    mode: u32,
}

/// The character devices of a minimal `/dev` (Linux's device numbers).
const CHAR_DEVICES: &[CharDev] = &[
    CharDev {
        name: c"null",
        major: 1,
        minor: 3,
        mode: 0o666,
    },
    CharDev {
        name: c"zero",
        major: 1,
        minor: 5,
        mode: 0o666,
    },
    CharDev {
        name: c"full",
        major: 1,
        minor: 7,
        mode: 0o666,
    },
    CharDev {
        name: c"random",
        major: 1,
        minor: 8,
        mode: 0o666,
    },
    CharDev {
        name: c"urandom",
        major: 1,
        minor: 9,
        mode: 0o666,
    },
    CharDev {
        name: c"tty",
        major: 5,
        minor: 0,
        mode: 0o666,
    },
    CharDev {
        name: c"ptmx",
        major: 5,
        minor: 2,
        mode: 0o666,
    },
];

/// Directories of a minimal `/dev`, with their modes.
const DIRS: &[(&CStr, u32)] = &[(c"pts", 0o755), (c"shm", 0o1777)];

/// Symlinks of a minimal `/dev`.
const SYMLINKS: &[(&CStr, &CStr)] = &[
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
];

/// Fill the empty directory `dev` with the minimal node set, owned by
/// root. Without the privilege to make device nodes they are left out with
/// a warning (an unprivileged test skel); returns how many were left out.
pub fn populate(dev: BorrowedFd<'_>) -> std::io::Result<usize> {
    let mut left_out = 0;
    for node in CHAR_DEVICES {
        let rdev = rustix::fs::makedev(node.major, node.minor);
        match sys::mknod_at(dev, node.name, FileType::CharacterDevice, node.mode, rdev) {
            Ok(()) => sys::chmod_at(dev, node.name, node.mode)?,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && !sys::is_root() => {
                left_out += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if left_out > 0 {
        warn!("not root: {left_out} device nodes of the skel's /dev were left out");
    }
    for (name, mode) in DIRS {
        sys::mkdir_at(dev, name, *mode)?;
        sys::chmod_at(dev, name, *mode)?; // mkdir applies the umask
    }
    for (name, target) in SYMLINKS {
        sys::symlink_at(target, dev, name)?;
    }
    Ok(left_out)
}
