//! Mount points of views and overlays: what is mounted where (from
//! `/proc/self/mountinfo`), clearing a stale FUSE mount that a dead server
//! left behind, refusing to mount over a live one, unmounting, waiting for
//! a server to exit, and the pid file a serving process holds.
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
//!
//! The pid file (`<root>/.views/NAME/mount.pid` for a view) holds the
//! serving process' pid and mount point, and the process keeps an
//! exclusive `flock` on it while it serves: a locked pid file means a live
//! server, an unlocked one is left over from a crash.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{FlockOperation, flock};
use rustix::io::Errno;
use rustix::mount::UnmountFlags;
use rustix::process::{Pid, PidfdFlags, pidfd_open};
use tracing::{debug, warn};

use super::SUBTYPE;
use crate::error::{Error, Result};

/// The mount table of this process' mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";
/// How long a mounted filesystem may take to answer `statfs` before it is
/// called hung.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How many mounts stacked on one mount point are cleared at most (each
/// one is probed and detached in turn).
const MAX_STACKED_MOUNTS: usize = 16;
/// How often taking the pid file's lock is retried when the file was
/// replaced between opening and locking it.
const PID_LOCK_ATTEMPTS: usize = 8;
/// Mode of a pid file.
const PID_FILE_MODE: u32 = 0o644;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's ID.
    pub id: u32,
    /// The parent mount's ID.
    pub parent: u32,
    /// The filesystem's device (major, minor).
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// Filesystem type, with subtype (`fuse.vskel`, `ext4`).
    pub fstype: String,
    /// The mount's source (for a vskel view: `SKEL:NAME`).
    pub source: String,
}

impl MountEntry {
    /// Is this a FUSE mount (of any server)?
    pub fn is_fuse(&self) -> bool {
        is_fuse_type(&self.fstype)
    }

    /// Is this a vskel mount (a view or an overlay) by its type?
    pub fn is_vskel(&self) -> bool {
        self.fstype == vskel_fstype()
    }

    /// Could this be a vskel mount? Its type is `fuse.vskel`, or plain
    /// `fuse`: a server mounting with `mount(2)` directly (as root) may not
    /// pass the subtype on, and then only the source tells.
    pub fn may_be_vskel(&self) -> bool {
        self.is_vskel() || self.fstype == PLAIN_FUSE
    }

    /// `fuse.vskel from SKEL:NAME`, for messages.
    pub fn describe(&self) -> String {
        format!("{} from {}", self.fstype, self.source)
    }
}

/// The type of a FUSE mount made without a subtype.
pub const PLAIN_FUSE: &str = "fuse";

/// The filesystem type vskel's mounts show: `fuse.vskel`.
pub fn vskel_fstype() -> String {
    format!("fuse.{SUBTYPE}")
}

/// Is `fstype` a FUSE filesystem type (`fuse`, `fuse.*`, `fuseblk`)?
pub fn is_fuse_type(fstype: &str) -> bool {
    fstype == "fuse" || fstype == "fuseblk" || fstype.starts_with("fuse.")
}

/// Parse the text of a mountinfo file; lines that do not parse are left
/// out (with a debug message).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| {
            let entry = parse_line(line);
            if entry.is_none() {
                debug!("unreadable mountinfo line: {line}");
            }
            entry
        })
        .collect()
}

fn parse_line(line: &str) -> Option<MountEntry> {
    // id parent major:minor root mount_point options [optional...] - fstype source super_options
    let (before, after) = line.split_once(" - ")?;
    let mut fields = before.split(' ');
    let id = fields.next()?.parse().ok()?;
    let parent = fields.next()?.parse().ok()?;
    let (major, minor) = fields.next()?.split_once(':')?;
    let dev = (major.parse().ok()?, minor.parse().ok()?);
    let _root = fields.next()?;
    let mount_point = PathBuf::from(OsString::from_vec(unescape_octal(fields.next()?)));
    let mut rest = after.split(' ');
    let fstype = String::from_utf8_lossy(&unescape_octal(rest.next()?)).into_owned();
    let source = String::from_utf8_lossy(&unescape_octal(rest.next()?)).into_owned();
    Some(MountEntry {
        id,
        parent,
        dev,
        mount_point,
        fstype,
        source,
    })
}

/// Undo the kernel's `\ooo` octal escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            if let Ok(byte) = u8::try_from(value) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// Every mount of this mount namespace, in mount order.
pub fn mounts() -> Result<Vec<MountEntry>> {
    let text = std::fs::read_to_string(MOUNTINFO).map_err(|e| Error::io("read", MOUNTINFO, e))?;
    Ok(parse_mountinfo(&text))
}

/// The mount on top at `path` (already [`normalize`]d), if `path` is a
/// mount point.
pub fn mount_at(path: &Path) -> Result<Option<MountEntry>> {
    Ok(mounts()?.into_iter().rfind(|m| m.mount_point == path))
}

/// The mounts at or below `dir` (already [`normalize`]d).
pub fn mounts_below(dir: &Path) -> Result<Vec<MountEntry>> {
    Ok(mounts()?
        .into_iter()
        .filter(|m| m.mount_point.starts_with(dir))
        .collect())
}

/// `path` made absolute the way the mount table spells it: its parent
/// resolved (symlinks, `..`), its last component left as it is, so that a
/// dead mount at `path` itself is never touched.
pub fn normalize(path: &Path) -> Result<PathBuf> {
    let absolute = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
    let (Some(parent), Some(name)) = (absolute.parent(), absolute.file_name()) else {
        // "/" or a path ending in "..": nothing to keep unresolved.
        return absolute
            .canonicalize()
            .map_err(|e| Error::io("resolve", path, e));
    };
    let parent = parent
        .canonicalize()
        .map_err(|e| Error::io("resolve the directory holding the mount point", parent, e))?;
    Ok(parent.join(name))
}

/// What a mounted filesystem answered.
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
                    return Err(Error::Failed(format!(
                        "{} is mounted already ({}); `vskel unmount {}` unmounts it",
                        mountpoint.display(),
                        entry.describe(),
                        mountpoint.display()
                    )));
                }
                Probe::Hung => {
                    return Err(Error::Failed(format!(
                        "{} is a mount point ({}) that does not answer within {} s \
                         (a hung server?); `umount -l {}` detaches it",
                        mountpoint.display(),
                        entry.describe(),
                        PROBE_TIMEOUT.as_secs(),
                        mountpoint.display()
                    )));
                }
                probe => {
                    let detail = match probe {
                        Probe::Error(e) => format!(", which fails with: {e}"),
                        _ => String::new(),
                    };
                    return Err(Error::Failed(format!(
                        "{} is a mount point already ({}{detail}); refusing to mount over it",
                        mountpoint.display(),
                        entry.describe()
                    )));
                }
            },
        }
    }
    Err(Error::Failed(format!(
        "{} still has mounts on it after clearing {MAX_STACKED_MOUNTS} stale ones; \
         look at `findmnt {}`",
        mountpoint.display(),
        mountpoint.display()
    )))
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
        Err(Errno::BUSY) => Err(Error::Failed(format!(
            "{} is busy: a process has a file open or its working directory there \
             (`fuser -vm {}` shows which); stop it, or `vskel unmount --lazy` to detach \
             the mount now and let it go when its last user leaves",
            mountpoint.display(),
            mountpoint.display()
        ))),
        Err(Errno::INVAL) => Err(Error::Failed(format!(
            "{} is not a mount point",
            mountpoint.display()
        ))),
        Err(Errno::PERM) => Err(Error::Failed(format!(
            "{}: only root can unmount it",
            mountpoint.display()
        ))),
        Err(e) => Err(Error::io("unmount", mountpoint, e)),
    }
}

/// Wait until process `pid` has exited, at most `timeout`; true when it
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

/// Who holds a pid file: the serving process and where it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The serving process (unknown while it is still writing the file).
    pub pid: Option<u32>,
    /// Its mount point.
    pub mountpoint: Option<PathBuf>,
}

/// Parse a pid file's content: `PID\nMOUNTPOINT\n`.
fn parse_pid_file(content: &[u8]) -> Holder {
    let mut lines = content.split(|b| *b == b'\n');
    let pid = lines
        .next()
        .and_then(|l| std::str::from_utf8(l).ok())
        .and_then(|l| l.trim().parse().ok());
    let mountpoint = lines
        .next()
        .filter(|l| !l.is_empty())
        .map(|l| PathBuf::from(std::ffi::OsStr::from_bytes(l)));
    Holder { pid, mountpoint }
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
        Err(Error::Failed(format!(
            "{}: could not take the lock (the file keeps being replaced)",
            path.display()
        )))
    }

    /// What the pid file at `path` says, and whether its process still
    /// holds it (a file nobody holds was left by a server that died).
    pub fn read(path: &Path) -> Result<Option<(Holder, bool)>> {
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
    pub fn holder(path: &Path) -> Result<Option<Holder>> {
        Ok(Self::read(path)?.and_then(|(holder, live)| live.then_some(holder)))
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
pub fn already_served(what: &str, holder: &Holder) -> Error {
    let pid = holder
        .pid
        .map(|p| format!("pid {p}"))
        .unwrap_or_else(|| "another process".to_string());
    let at = holder
        .mountpoint
        .as_ref()
        .map(|m| format!(" at {}", m.display()))
        .unwrap_or_default();
    Error::Failed(format!(
        "{what} is mounted already: {pid} serves it{at}; unmount it first"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
36 22 0:45 / /vservers/.views/web1/merged rw,nosuid,nodev,relatime shared:7 - fuse.vskel base:web1 rw,user_id=0,group_id=0,allow_other
37 22 0:46 / /mnt/with\\040space rw - fuse.fuse-overlayfs fuse-overlayfs rw
38 22 0:47 /sub /mnt/back\\134slash rw master:3 shared:9 - tmpfs tmp\\040fs rw
garbage line
";
        let entries = parse_mountinfo(text);
        let expected = [
            (22, 1, (8, 1), "/", "ext4", "/dev/sda1"),
            (
                36,
                22,
                (0, 45),
                "/vservers/.views/web1/merged",
                "fuse.vskel",
                "base:web1",
            ),
            (
                37,
                22,
                (0, 46),
                "/mnt/with space",
                "fuse.fuse-overlayfs",
                "fuse-overlayfs",
            ),
            (38, 22, (0, 47), "/mnt/back\\slash", "tmpfs", "tmp fs"),
        ];
        assert_eq!(entries.len(), expected.len(), "{entries:#?}");
        for (entry, (id, parent, dev, mp, fstype, source)) in entries.iter().zip(expected) {
            assert_eq!(entry.id, id);
            assert_eq!(entry.parent, parent);
            assert_eq!(entry.dev, dev);
            assert_eq!(entry.mount_point, Path::new(mp));
            assert_eq!(entry.fstype, fstype);
            assert_eq!(entry.source, source);
        }
    }

    #[test]
    fn unescapes_octal() {
        let cases: &[(&str, &[u8])] = &[
            ("plain", b"plain"),
            ("a\\040b", b"a b"),
            ("tab\\011", b"tab\t"),
            ("nl\\012x", b"nl\nx"),
            ("bs\\134", b"bs\\"),
            ("short\\04", b"short\\04"),
            ("notoctal\\089", b"notoctal\\089"),
            ("toolarge\\777", b"toolarge\\777"),
        ];
        for (input, expected) in cases {
            assert_eq!(unescape_octal(input), *expected, "{input}");
        }
    }

    #[test]
    fn fuse_types() {
        let cases = [
            ("fuse", true),
            ("fuseblk", true),
            ("fuse.vskel", true),
            ("fuse.fuse-overlayfs", true),
            ("fusectl", false),
            ("overlay", false),
            ("ext4", false),
        ];
        for (fstype, expected) in cases {
            assert_eq!(is_fuse_type(fstype), expected, "{fstype}");
        }
    }

    #[test]
    fn parses_pid_files() {
        let cases: &[(&[u8], Option<u32>, Option<&str>)] = &[
            (b"123\n/mnt/x\n", Some(123), Some("/mnt/x")),
            (b"123\n", Some(123), None),
            (b"", None, None),
            (b"junk\n/m\n", None, Some("/m")),
        ];
        for (content, pid, mp) in cases {
            let holder = parse_pid_file(content);
            assert_eq!(holder.pid, *pid);
            assert_eq!(holder.mountpoint.as_deref(), mp.map(Path::new));
        }
    }

    #[test]
    fn pid_file_lock_is_exclusive_and_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mount.pid");
        assert_eq!(PidFile::holder(&path).unwrap(), None);
        let held = PidFile::acquire(&path, Path::new("/mnt/x"), "view x").unwrap();
        let holder = PidFile::holder(&path).unwrap().expect("held");
        assert_eq!(holder.pid, Some(std::process::id()));
        assert_eq!(holder.mountpoint.as_deref(), Some(Path::new("/mnt/x")));
        let err = PidFile::acquire(&path, Path::new("/mnt/y"), "view x").unwrap_err();
        assert!(
            err.to_string().contains("view x is mounted already"),
            "{err}"
        );
        drop(held);
        assert!(!path.exists());
        // A left-over file (crash) is not a holder and can be taken.
        std::fs::write(&path, "999999\n/mnt/old\n").unwrap();
        assert_eq!(PidFile::holder(&path).unwrap(), None);
        let (left, live) = PidFile::read(&path).unwrap().expect("left over");
        assert!(!live);
        assert_eq!(left.mountpoint.as_deref(), Some(Path::new("/mnt/old")));
        let _again = PidFile::acquire(&path, Path::new("/mnt/z"), "view x").unwrap();
    }

    #[test]
    fn normalize_keeps_the_last_component() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::os::unix::fs::symlink(&real, real.join("link")).unwrap();
        let got = normalize(&real.join("link").join("missing")).unwrap();
        assert_eq!(got, real.join("missing"));
        assert!(normalize(&real.join("no-such-dir/x")).is_err());
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
