//! A filesystem of its own for tests that fill the disk: a size-limited
//! tmpfs holding a whole vskel setup (root, skels, views and state must be
//! on one filesystem), unmounted when dropped.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{MountGuard, Setup};

/// A mounted size-limited tmpfs. Drop every [`Setup`] in it first (declare
/// it after this).
pub struct SmallFs {
    /// Where it is mounted.
    pub path: PathBuf,
    // Dropped in this order: unmount, then remove the mount point.
    _mount: MountGuard,
    _dir: TempDir,
}

impl SmallFs {
    /// Mount a tmpfs of `mib` MiB (the caller must be root).
    pub fn new(mib: u64) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vskel-smallfs-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("temp dir");
        let path = dir.path().join("fs");
        fs::create_dir(&path).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={mib}m,mode=0755"))
            .arg("vskel-smallfs")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs on {}", path.display());
        SmallFs {
            _mount: MountGuard(path.clone()),
            path,
            _dir: dir,
        }
    }

    /// A vskel setup inside this filesystem.
    pub fn setup(&self, extra: &str) -> Setup {
        Setup::new_in(&self.path, extra)
    }

    /// Bytes an unprivileged writer could still write.
    pub fn free_bytes(&self) -> u64 {
        free_bytes(&self.path)
    }
}

/// Bytes available on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    let st = rustix::fs::statvfs(path).unwrap();
    st.f_bavail * st.f_frsize
}
