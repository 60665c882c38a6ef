//! The serving process: the pid file it holds while it serves, and
//! waiting for it to exit.
//!
//! The pid file (`<root>/.views/NAME/mount.pid` for a view) holds the
//! serving process' pid and mount point, and the process keeps an
//! exclusive `flock` on it while it serves: a locked pid file means a live
//! server, an unlocked one is left over from a crash.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tracing::warn;

use super::MountError;
use crate::error::{Error, Result};

/// How often taking the pid file's lock is retried when the file was
/// replaced between opening and locking it.
const PID_LOCK_ATTEMPTS: usize = 8;
/// Mode of a pid file.
const PID_FILE_MODE: u32 = 0o644;

/// has (or never existed).
pub fn wait_for_exit(pid: u32, timeout: Duration) -> Result<bool> {
    let Some(raw) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return Ok(true);
    };
    let pidfd = match pidfd_open(raw, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(Errno::SRCH) => return Ok(true),
        Err(e) => return Err(Error::io("watch", format!("/proc/{pid}"), e)),
    };
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let left = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::io("wait for", format!("/proc/{pid}"), e)),
        }
    }
}

/// Who owns a pid file: the serving process and where it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidOwner {
    /// The serving process (unknown while it is still writing the file).
    pub pid: Option<u32>,
    /// Its mount point.
    pub mountpoint: Option<PathBuf>,
}

/// Parse a pid file's content: `PID\nMOUNTPOINT\n`.
fn parse_pid_file(content: &[u8]) -> PidOwner {
    let mut lines = content.split(|b| *b == b'\n');
    let pid = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse().ok());
    let mountpoint = lines
        .next()
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)));
    PidOwner { pid, mountpoint }
}

/// A pid file held (locked) by this process while it serves; removed on
/// drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: File,
}

impl PidFile {
    /// Take `path` for this process serving `mountpoint`. `what` names the
    /// served thing in the error when another live process holds it.
    pub fn acquire(path: &Path, mountpoint: &Path, what: &str) -> Result<PidFile> {
        for _ in 0..PID_LOCK_ATTEMPTS {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(PID_FILE_MODE)
                .open(path)
                .map_err(|e| Error::io("open", path, e))?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(Errno::WOULDBLOCK) => {
                    let mut content = Vec::new();
                    let _ = file.read_to_end(&mut content);
                    return Err(already_served(what, &parse_pid_file(&content)));
                }
                Err(e) => return Err(Error::io("lock", path, e)),
            }
            // The previous holder may have removed the file between our
            // open and our lock: then ours is a lock on a dead inode.
            let held = file.metadata().map_err(|e| Error::io("stat", path, e))?;
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == held.dev() && now.ino() == held.ino() => {}
                _ => continue,
            }
            file.set_len(0)
                .map_err(|e| Error::io("truncate", path, e))?;
            let mut content = format!("{}\n", std::process::id()).into_bytes();
            content.extend_from_slice(mountpoint.as_os_str().as_bytes());
            content.push(b'\n');
            file.write_all(&content)
                .and_then(|()| file.flush())
                .map_err(|e| Error::io("write", path, e))?;
            return Ok(PidFile {
                path: path.to_path_buf(),
                file,
            });
        }
        Err(MountError::PidFileContended {
            path: path.to_path_buf(),
        }
        .into())
    }

    /// What the pid file at `path` says, and whether its process still
    /// holds it (a file nobody holds was left by a server that died).
    pub fn read(path: &Path) -> Result<Option<(PidOwner, bool)>> {
        let mut file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", path, e)),
        };
        let live = match flock(&file, FlockOperation::NonBlockingLockShared) {
            Ok(()) => false, // unlocked again when `file` is closed
            Err(Errno::WOULDBLOCK) => true,
            Err(e) => return Err(Error::io("lock", path, e)),
        };
        let mut content = Vec::new();
        file.read_to_end(&mut content)
            .map_err(|e| Error::io("read", path, e))?;
        Ok(Some((parse_pid_file(&content), live)))
    }

    /// The live process holding the pid file at `path`, if any.
    pub fn owner(path: &Path) -> Result<Option<PidOwner>> {
        Ok(Self::read(path)?.and_then(|(owner, live)| live.then_some(owner)))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let ours = match (self.file.metadata(), std::fs::symlink_metadata(&self.path)) {
            (Ok(held), Ok(now)) => held.dev() == now.dev() && held.ino() == now.ino(),
            _ => false,
        };
        if ours && let Err(e) = std::fs::remove_file(&self.path) {
            warn!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// The error for "someone else serves this already".
pub fn already_served(what: &str, owner: &PidOwner) -> Error {
    MountError::AlreadyServed {
        what: what.to_string(),
        pid: owner.pid,
        at: owner.mountpoint.clone(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pid_files() {
        let cases: &[(&[u8], Option<u32>, Option<&str>)] = &[
            (b"123\n/mnt/x\n", Some(123), Some("/mnt/x")),
            (b"123\n", Some(123), None),
            (b"", None, None),
            (b"junk\n/m\n", None, Some("/m")),
        ];
        for (content, pid, mp) in cases {
            let owner = parse_pid_file(content);
            assert_eq!(owner.pid, *pid);
            assert_eq!(owner.mountpoint.as_deref(), mp.map(Path::new));
        }
    }

    #[test]
    fn pid_file_lock_is_exclusive_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mount.pid");
        assert_eq!(PidFile::owner(&path).unwrap(), None);
        let held = PidFile::acquire(&path, Path::new("/mnt/x"), "view x").unwrap();
        let owner = PidFile::owner(&path).unwrap().expect("held");
        assert_eq!(owner.pid, Some(std::process::id()));
        assert_eq!(owner.mountpoint.as_deref(), Some(Path::new("/mnt/x")));
        let err = PidFile::acquire(&path, Path::new("/mnt/y"), "view x").unwrap_err();
        assert!(
            err.to_string().contains("view x is mounted already"),
            "{err}"
        );
        drop(held);
        assert!(!path.exists());
        // A left-over file (crash) has no owner and can be taken.
        std::fs::write(&path, "999999\n/mnt/old\n").unwrap();
        assert_eq!(PidFile::owner(&path).unwrap(), None);
        let (left, live) = PidFile::read(&path).unwrap().expect("left over");
        assert!(!live);
        assert_eq!(left.mountpoint.as_deref(), Some(Path::new("/mnt/old")));
        let _again = PidFile::acquire(&path, Path::new("/mnt/z"), "view x").unwrap();
    }

    #[test]
    fn waiting_for_a_gone_process_returns_at_once() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(wait_for_exit(pid, Duration::from_secs(1)).unwrap());
        let mut sleeper = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .unwrap();
        assert!(!wait_for_exit(sleeper.id(), Duration::from_millis(100)).unwrap());
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
    }
}
