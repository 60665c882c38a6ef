//! Mount points in use: probing a mounted filesystem without hanging on
//! it, clearing a stale FUSE mount that a dead server left behind,
//! refusing to mount over a live one, and unmounting.
//!
//! A FUSE mount whose server died (crash, `kill -9`) stays in the mount
//! table; every access to it fails with `ENOTCONN`. Such a mount is
//! detached (`umount2(MNT_DETACH)`) with a warning before a new mount goes
//! to the same place. Whether a server is alive is found out by `statfs()`
//! on the mount point, which always reaches the server (attributes may be
//! cached, statfs is not), in a helper thread so that a hung server cannot
//! hang vskel. Limitation: the kernel answers statfs itself, without asking
//! the server, for a caller that a mount without `allow_other` does not let
//! in; such a mount (someone else's) always looks alive.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use rustix::io::Errno;
use rustix::mount::UnmountFlags;
use tracing::warn;

use super::MountError;
use super::mountinfo::{mount_at, mounts_below, normalize};
use crate::error::{Error, Result};

/// How long a mounted filesystem may take to answer `statfs` before it is
/// called hung.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many mounts stacked on one mount point are cleared at most (each
/// one is probed and detached in turn).
const MAX_STACKED_MOUNTS: usize = 16;

/// What probing a mount point found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// It answered: its server is alive.
    Live,
    /// Its FUSE connection is gone (`ENOTCONN`, `ECONNABORTED`): a stale mount.
    Dead,
    /// Some other error.
    Error(Errno),
    /// No answer within [`PROBE_TIMEOUT`].
    Hung,
}

/// Ask the filesystem mounted at `path` for its statistics, without
/// waiting longer than [`PROBE_TIMEOUT`].
pub fn probe(path: &Path) -> Probe {
    let (tx, rx) = mpsc::channel();
    let owned = path.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("vskel-probe".into())
        .spawn(move || {
            // The receiver may be gone after a timeout; nothing to do then.
            let _ = tx.send(rustix::fs::statfs(&owned).map(|_| ()));
        });
    if let Err(e) = spawned {
        warn!("cannot start a thread to probe {}: {e}", path.display());
        return Probe::Error(Errno::AGAIN);
    }
    match rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(())) => Probe::Live,
        Ok(Err(e)) if is_dead_connection(e) => Probe::Dead,
        Ok(Err(e)) => Probe::Error(e),
        Err(_) => Probe::Hung,
    }
}

fn is_dead_connection(e: Errno) -> bool {
    e == Errno::NOTCONN || e == Errno::CONNABORTED
}

/// Make `mountpoint` (already [`normalize`]d) ready for a new mount: detach
/// stale FUSE mounts there (warning "cleared a stale mount at ..."),
/// refuse a live mount, and check that it is a directory.
pub fn prepare(mountpoint: &Path) -> Result<()> {
    for _ in 0..MAX_STACKED_MOUNTS {
        let entry = mount_at(mountpoint)?;
        let stale_without_entry = entry.is_none()
            && matches!(std::fs::metadata(mountpoint), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
        match entry {
            None if !stale_without_entry => return require_dir(mountpoint),
            None => clear_stale(mountpoint, "a dead FUSE mount")?,
            Some(entry) => match probe(mountpoint) {
                Probe::Dead if entry.is_fuse() => clear_stale(mountpoint, &entry.describe())?,
                Probe::Live if entry.may_be_vskel() => {
                    return Err(MountError::AlreadyMounted {
                        mountpoint: mountpoint.to_path_buf(),
                        what: entry.describe(),
                    }
                    .into());
                }
                Probe::Hung => {
                    return Err(MountError::Hung {
                        mountpoint: mountpoint.to_path_buf(),
                        what: entry.describe(),
                        secs: PROBE_TIMEOUT.as_secs(),
                    }
                    .into());
                }
                probe => {
                    let detail = match probe {
                        Probe::Error(e) => format!(", which fails with: {e}"),
                        _ => String::new(),
                    };
                    return Err(MountError::Occupied {
                        mountpoint: mountpoint.to_path_buf(),
                        what: entry.describe(),
                        detail,
                    }
                    .into());
                }
            },
        }
    }
    Err(MountError::TooManyStacked {
        mountpoint: mountpoint.to_path_buf(),
        cleared: MAX_STACKED_MOUNTS,
    }
    .into())
}

/// Refuse a mount point that is missing or not a directory (usage errors).
fn require_dir(path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Usage(format!(
            "{} is not a directory; a mount point must be one",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "mount point {} does not exist",
            path.display()
        ))),
        Err(e) => Err(Error::io("stat the mount point", path, e)),
    }
}

/// Detach the dead mount at `mountpoint`, with a warning.
fn clear_stale(mountpoint: &Path, what: &str) -> Result<()> {
    detach(mountpoint)?;
    warn!(
        "cleared a stale mount at {} ({what}; its server had died)",
        mountpoint.display()
    );
    Ok(())
}

/// Detach whatever is mounted at `mountpoint` (`umount2(MNT_DETACH)`).
pub fn detach(mountpoint: &Path) -> Result<()> {
    rustix::mount::unmount(mountpoint, UnmountFlags::DETACH | UnmountFlags::NOFOLLOW)
        .map_err(|e| Error::io("detach the mount", mountpoint, e))
}

/// Clear stale FUSE mounts at or below `dir` (warning for each); refuse
/// when a live mount is there. Used before removing a view's directory.
pub fn clear_below(dir: &Path, what: &str) -> Result<()> {
    let dir = normalize(dir)?;
    for entry in mounts_below(&dir)?.into_iter().rev() {
        match probe(&entry.mount_point) {
            Probe::Dead if entry.is_fuse() => {
                clear_stale(&entry.mount_point, &entry.describe())?;
            }
            _ => {
                return Err(Error::Failed(format!(
                    "{what} is still mounted at {} ({}); `vskel unmount {}` unmounts it",
                    entry.mount_point.display(),
                    entry.describe(),
                    entry.mount_point.display()
                )));
            }
        }
    }
    Ok(())
}

/// Detach the mount at `mountpoint` if it is a dead FUSE mount from
/// `source` (with a warning); anything else there is left alone. Used for
/// the mount point a crashed server's pid file names.
pub fn clear_if_stale(mountpoint: &Path, source: &str) -> Result<()> {
    match mount_at(mountpoint)? {
        Some(entry) if entry.is_fuse() && entry.source == source => {
            if probe(mountpoint) == Probe::Dead {
                clear_stale(mountpoint, &entry.describe())?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Unmount `mountpoint`: plainly, or detached (`lazy`: it goes away now
/// and is freed once its last user leaves).
pub fn unmount(mountpoint: &Path, lazy: bool) -> Result<()> {
    let flags = if lazy {
        UnmountFlags::DETACH | UnmountFlags::NOFOLLOW
    } else {
        UnmountFlags::NOFOLLOW
    };
    match rustix::mount::unmount(mountpoint, flags) {
        Ok(()) => Ok(()),
        Err(Errno::BUSY) => Err(MountError::Busy {
            mountpoint: mountpoint.to_path_buf(),
        }
        .into()),
        Err(Errno::INVAL) => Err(MountError::NotAMountPoint {
            path: mountpoint.to_path_buf(),
        }
        .into()),
        Err(Errno::PERM) => Err(MountError::NotPermitted {
            mountpoint: mountpoint.to_path_buf(),
        }
        .into()),
        Err(e) => Err(Error::io("unmount", mountpoint, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_accepts_a_plain_directory_and_refuses_a_live_mount() {
        let dir = tempfile::tempdir().unwrap();
        let mp = normalize(dir.path()).unwrap();
        prepare(&mp).unwrap();
        let file = mp.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(prepare(&file).is_err(), "a file is no mount point");
        // "/" is a live mount of something that is not vskel.
        let err = prepare(Path::new("/")).unwrap_err().to_string();
        assert!(err.contains("refusing to mount over it"), "{err}");
    }
}
