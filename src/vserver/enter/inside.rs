//! The namespaces' side of `enter`/`exec`: run by the hidden
//! `vskel enter-inside` as the first process of the new mount, UTS and
//! PID namespaces `unshare` made (see [`super`]).
//!
//! It makes the mount namespace's propagation private again (so nothing
//! below can reach the host's), sets the hostname, mounts a fresh `/proc`
//! and `/dev` ([`super::dev`]) in the vserver's root, chroots there and
//! runs the command ([`super::init`]).
//!
//! The vserver's tree is hostile: its `proc` and `dev` are opened below
//! its root without following any symlink (`RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`), and each filesystem is attached to the directory
//! so opened (`move_mount` onto the descriptor), never to a path. A
//! symlink or a non-directory there is refused; a missing one is made.
//! Everything below `/dev` is made on vskel's own tmpfs, which the
//! vserver could not have prepared.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags,
};

use crate::error::{Error, Result};
use crate::sys;

/// Exit code when the namespace could not be prepared (as `chroot(1)`'s 125).
pub const EXIT_SETUP: i32 = 125;
/// Exit code when the command was found but could not be run.
pub const EXIT_CANNOT_RUN: i32 = 126;
/// Exit code when the command was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

/// Mode of a `proc` mount point vskel makes (as `create-vs` makes it).
const PROC_MODE: u32 = 0o555;
/// Mode of a `dev` mount point vskel makes.
const DEV_MODE: u32 = 0o755;

/// Prepare the namespaces, chroot into `root` and run `command` there
/// ([`super::init`]; an interactive shell if `shell`); returns the exit
/// code to end with (errors logged).
pub fn enter_and_run(root: &Path, hostname: &str, shell: bool, command: &[OsString]) -> i32 {
    let foreground = shell && super::init::holds_terminal();
    if let Err(e) = prepare(root, hostname) {
        tracing::error!("cannot enter {}: {e}", root.display());
        return EXIT_SETUP;
    }
    super::init::run_command(command, foreground)
}

/// Everything up to the chroot (the working directory is `/` of the
/// vserver when this returns).
fn prepare(root: &Path, hostname: &str) -> Result<()> {
    if !rustix::process::getpid().is_init() {
        return Err(Error::Usage(
            "`vskel enter-inside` runs only as the first process of the namespaces \
             `vskel enter` and `vskel exec` make"
                .into(),
        ));
    }
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| Error::io("make mounts private", "/", e))?;
    rustix::system::sethostname(hostname.as_bytes())
        .map_err(|e| Error::Failed(format!("cannot set the hostname {hostname:?}: {e}")))?;
    let root_fd = sys::open_root(root).map_err(|e| Error::io("open", root, e))?;

    let proc = mount_point(root_fd.as_fd(), root, "proc", PROC_MODE)?;
    let procfs = new_mount(
        "proc",
        &[],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(|e| Error::io("make a proc filesystem for", root.join("proc"), e))?;
    attach(&procfs, &proc).map_err(|e| Error::io("mount proc on", root.join("proc"), e))?;

    let dev = mount_point(root_fd.as_fd(), root, "dev", DEV_MODE)?;
    super::dev::mount_dev(&dev).map_err(|e| Error::io("make /dev in", root.join("dev"), e))?;

    rustix::process::fchdir(&root_fd).map_err(|e| Error::io("change directory to", root, e))?;
    rustix::process::chroot(".").map_err(|e| Error::io("chroot into", root, e))?;
    rustix::process::chdir("/").map_err(|e| Error::io("change directory to / of", root, e))?;
    Ok(())
}

/// The directory `name` right below the vserver's root, opened without
/// following symlinks; made (with `mode`) when missing.
fn mount_point(root_fd: BorrowedFd<'_>, root: &Path, name: &str, mode: u32) -> Result<OwnedFd> {
    let shown = root.join(name);
    let open = || sys::open_dir_beneath(root_fd, Path::new(name));
    let fd = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cname = sys::cname(name.as_ref()).map_err(|e| Error::io("name", &shown, e))?;
            match sys::mkdir_at(root_fd, &cname, mode) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::io("make directory", &shown, e));
                }
                _ => open(),
            }
        }
        other => other,
    };
    fd.map_err(|e| match e.raw_os_error() {
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV) => Error::Failed(format!(
            "{}: not a directory (a symlink?): refusing to mount on it; the vserver's \
             /{name} must be a directory",
            shown.display()
        )),
        _ => Error::io("open", &shown, e),
    })
}

/// A new, detached mount of filesystem type `fstype` with `options`
/// (`key=value`, or a bare flag) and mount attributes `attrs`.
pub(super) fn new_mount(
    fstype: &str,
    options: &[(&str, Option<&str>)],
    attrs: MountAttrFlags,
) -> std::io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (key, value) in options {
        match value {
            Some(value) => rustix::mount::fsconfig_set_string(&fs, *key, *value)?,
            None => rustix::mount::fsconfig_set_flag(&fs, *key)?,
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    Ok(rustix::mount::fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        attrs,
    )?)
}

/// Attach the detached mount `mount` on the directory `target` is open on.
pub(super) fn attach(mount: &OwnedFd, target: &OwnedFd) -> std::io::Result<()> {
    Ok(rustix::mount::move_mount(
        mount,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}
