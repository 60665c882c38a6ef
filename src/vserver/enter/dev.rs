//! The `/dev` of an entered vserver: a fresh tmpfs (vservers have no
//! `/dev` of their own: `build-skel` leaves it out) holding the usual
//! device nodes, the `/proc/self/fd` links, a new `devpts` instance at
//! `/dev/pts` (with `/dev/ptmx` pointing into it) and a tmpfs at
//! `/dev/shm`, as container runtimes make it.
//!
//! Everything is made relative to the new tmpfs' root descriptor, on a
//! filesystem nobody else has seen yet.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{FileType, Mode};
use rustix::mount::MountAttrFlags;

use super::inside::{attach, new_mount};
use crate::sys;

/// The character devices made: name, major, minor (all mode 0666).
const DEVICES: &[(&CStr, u32, u32)] = &[
    (c"null", 1, 3),
    (c"zero", 1, 5),
    (c"full", 1, 7),
    (c"random", 1, 8),
    (c"urandom", 1, 9),
    (c"tty", 5, 0),
];
/// Mode of the device nodes.
const DEVICE_MODE: u32 = 0o666;
/// The symlinks made: name, target.
const LINKS: &[(&CStr, &CStr)] = &[
    (c"ptmx", c"pts/ptmx"),
    (c"fd", c"/proc/self/fd"),
    (c"stdin", c"/proc/self/fd/0"),
    (c"stdout", c"/proc/self/fd/1"),
    (c"stderr", c"/proc/self/fd/2"),
];
/// Mode of `/dev/pts` and `/dev/shm` as mount points.
const SUBDIR_MODE: u32 = 0o755;
/// Size limit of the `/dev` tmpfs (it holds nodes and links only).
const DEV_SIZE: &str = "64k";

/// Mount the `/dev` described above on the directory `target` is open on.
pub fn mount_dev(target: &OwnedFd) -> std::io::Result<()> {
    let dev = new_mount(
        "tmpfs",
        &[("mode", Some("0755")), ("size", Some(DEV_SIZE))],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    attach(&dev, target)?;
    // Modes exactly as given below, whatever the caller's umask.
    let umask = rustix::process::umask(Mode::empty());
    let made = populate(&dev);
    rustix::process::umask(umask);
    made
}

fn populate(dev: &OwnedFd) -> std::io::Result<()> {
    let dir = dev.as_fd();
    for (name, major, minor) in DEVICES {
        let rdev = rustix::fs::makedev(*major, *minor);
        sys::mknod_at(dir, name, FileType::CharacterDevice, DEVICE_MODE, rdev)?;
    }
    for (name, target) in LINKS {
        sys::symlink_at(target, dir, name)?;
    }
    sys::mkdir_at(dir, c"pts", SUBDIR_MODE)?;
    let pts = sys::open_subdir(dir, c"pts")?;
    let devpts = new_mount(
        "devpts",
        &[
            ("newinstance", None),
            ("ptmxmode", Some("0666")),
            ("mode", Some("0620")),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )?;
    attach(&devpts, &pts)?;
    sys::mkdir_at(dir, c"shm", SUBDIR_MODE)?;
    let shm_dir = sys::open_subdir(dir, c"shm")?;
    let shm = new_mount(
        "tmpfs",
        &[("mode", Some("1777"))],
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    attach(&shm, &shm_dir)
}
