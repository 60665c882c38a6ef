//! Lifting the immutable attribute for one link or unlink, crash-safely.
//!
//! Linux refuses to link or unlink an immutable inode, so with
//! `protect = "immutable"` vskel clears `+i` on a skel's global file for
//! that one call and sets it again ([`lift`], [`Lifted`]). A run killed in
//! between would leave the shared file writable by every vserver's root,
//! for good. So before a run lifts its first flag it records, durably,
//! which trees it may lift flags in: every skel's `global/`, by name and
//! the device and inode of its root, in `<state>/unlocked/<random>.scope`
//! (written beside, fsynced, renamed into place, the directory fsynced).
//!
//! The run holds an exclusive `flock` on its record for as long as it
//! lives. The kernel drops a `flock` with the process that held it
//! (SIGKILL included), so a record whose lock is free belongs to a run
//! that is gone: [`scan`] hands those to its caller (the protection module's recovery),
//! which sets the flags again. A run removes its own record at the end
//! ([`Session`]'s drop) if every flag it lifted was set again (or its
//! inode lost its last name); otherwise it leaves the record for the next
//! command.
//!
//! One record per run, not one per file: a durable write costs an fsync
//! (about 190 µs here, so 0.9 s more for the 4,671 global files of the
//! Debian skel, whose `create-vs` takes 0.2 s); recovery walks the
//! recorded skels instead, which happens only after a crash.
//!
//! Where records go is process-wide state ([`Session::start`]): flags are
//! lifted deep in the tree copier and remover, which every command uses.
//! Lifting a flag with no session is refused. `<state>/unlocked/.lock`
//! keeps [`scan`] from seeing a record that is still being written.

use parking_lot::Mutex;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::layout::GLOBAL;
use crate::sys;
use crate::validate::validate_name;

/// The first line of a record of this format.
const HEADER: &str = "vskel-unlock 1";
/// Extension of a complete record.
const RECORD_EXT: &str = ".scope";
/// Extension of a record being written.
const PARTIAL_EXT: &str = ".tmp";
/// The directory lock: held while a record is written or records are scanned.
const DIR_LOCK: &str = ".lock";
/// Mode of the records directory (vservers must not write there).
const DIR_MODE: u32 = 0o700;
/// Mode of a record.
const RECORD_MODE: u32 = 0o600;

/// A skel named in a record: its name and the (device, inode) of its
/// `global/`.
pub type SkelId = (String, u64, u64);

/// The process's session: where records go, and its record once written.
struct Active {
    /// `<state>/unlocked`.
    dir: PathBuf,
    /// `<root>/.skel`.
    skels: PathBuf,
    /// This run's record, once it lifted a flag.
    record: Option<(File, PathBuf)>,
    /// A lifted flag could not be set again.
    failed: bool,
}

static ACTIVE: Mutex<Option<Active>> = Mutex::new(None);

fn active() -> parking_lot::MutexGuard<'static, Option<Active>> {
    ACTIVE.lock()
}

/// The run's permission to lift flags; its drop ends it.
#[derive(Debug)]
pub struct Session {
    _private: (),
}

impl Session {
    /// Let this process lift flags, recording them under `dir` (mode
    /// 0700, made when needed); the skels are the directories in `skels`.
    pub fn start(dir: PathBuf, skels: PathBuf) -> Session {
        *active() = Some(Active {
            dir,
            skels,
            record: None,
            failed: false,
        });
        Session { _private: () }
    }

    /// End the session: remove the record if nothing is left lifted.
    /// Returns whether a record was left for recovery.
    pub fn end(self) -> bool {
        take_and_close()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        take_and_close();
    }
}

/// Close the session (once); whether a record was left for recovery.
fn take_and_close() -> bool {
    let Some(active) = active().take() else {
        return false;
    };
    let Some((file, path)) = active.record else {
        return false;
    };
    if active.failed {
        warn!(
            "an immutable attribute lifted by this run could not be set again; {} is left \
             for the next vskel command to restore",
            path.display()
        );
        return true;
    }
    let removed = std::fs::remove_file(&path).and_then(|()| fsync_dir(&active.dir));
    drop(file);
    match removed {
        Ok(()) => false,
        Err(e) => {
            warn!("cannot remove {}: {e}", path.display());
            true
        }
    }
}

/// A flag lifted by [`lift`]. Set it again with [`Lifted::restore`], or
/// [`Lifted::release`] it when the inode has no name left; dropped, it is
/// set again too.
#[derive(Debug)]
#[must_use = "a lifted immutable attribute must be set again"]
pub struct Lifted<'a> {
    fd: BorrowedFd<'a>,
    done: bool,
}

impl Lifted<'_> {
    /// Set the immutable attribute again.
    pub fn restore(mut self) -> io::Result<()> {
        self.done = true;
        set_again(self.fd)
    }

    /// The inode has no name left (it was unlinked): nothing to protect.
    pub fn release(mut self) {
        self.done = true;
    }
}

impl Drop for Lifted<'_> {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = set_again(self.fd)
        {
            warn!("cannot set the immutable attribute again: {e}");
        }
    }
}

fn set_again(fd: BorrowedFd<'_>) -> io::Result<()> {
    let result = sys::set_immutable(fd, true).map(|_| ());
    if result.is_err()
        && let Some(active) = active().as_mut()
    {
        active.failed = true;
    }
    result
}

/// Clear the immutable attribute of the open file `fd`, recording first
/// (durably, once per run) that this run lifts flags. `None`: the flag was
/// not set (nothing to lift; another run may have lifted it and sets it
/// again itself).
pub fn lift(fd: BorrowedFd<'_>) -> io::Result<Option<Lifted<'_>>> {
    if !sys::is_immutable(fd)? {
        return Ok(None);
    }
    arm()?;
    if !sys::set_immutable(fd, false)? {
        return Ok(None);
    }
    Ok(Some(Lifted { fd, done: false }))
}

/// Make sure this run's record is on disk.
fn arm() -> io::Result<()> {
    let mut guard = active();
    let Some(active) = guard.as_mut() else {
        return Err(io::Error::other(
            "refusing to lift the immutable attribute: this run keeps no record of the \
             flags it lifts (internal error)",
        ));
    };
    if active.record.is_none() {
        active.record = Some(write_record(&active.dir, &active.skels)?);
    }
    Ok(())
}

/// Write a record naming every skel's `global/`; returns it open and locked.
fn write_record(dir: &Path, skels: &Path) -> io::Result<(File, PathBuf)> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let dir_fd = sys::open_root(dir)?;
    let _dir_lock = lock_dir(dir_fd.as_fd())?;
    let suffix = sys::unguessable_suffix()?;
    let partial = cname(&format!("{suffix}{PARTIAL_EXT}"))?;
    let complete = format!("{suffix}{RECORD_EXT}");
    let file = File::from(sys::create_file(dir_fd.as_fd(), &partial, RECORD_MODE)?);
    if !sys::try_lock_exclusive(file.as_fd())? {
        return Err(io::Error::other(
            "a record just made is locked by another process",
        ));
    }
    let written = (|| {
        let mut text = format!("{HEADER}\npid {}\n", std::process::id());
        for (name, dev, ino) in skel_roots(skels)? {
            text.push_str(&format!("skel {name} {dev} {ino}\n"));
        }
        (&file).write_all(text.as_bytes())?;
        file.sync_all()?;
        sys::rename_noreplace(dir_fd.as_fd(), &partial, dir_fd.as_fd(), &cname(&complete)?)?;
        rustix::fs::fsync(&dir_fd)?;
        Ok(())
    })();
    if let Err(e) = written {
        if let Err(e2) = sys::unlink_at(dir_fd.as_fd(), &partial) {
            warn!(
                "cannot remove {}: {e2}",
                dir.join(partial_name(&partial)).display()
            );
        }
        return Err(e);
    }
    Ok((file, dir.join(complete)))
}

fn partial_name(name: &CString) -> String {
    name.to_string_lossy().into_owned()
}

/// (name, dev, ino) of every skel's `global/` (none if there are no skels).
fn skel_roots(skels: &Path) -> io::Result<Vec<SkelId>> {
    let skels_fd = match sys::open_root(skels) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in sys::read_dir(skels_fd.as_fd())? {
        let Some(name) = entry
            .name
            .to_str()
            .ok()
            .filter(|n| validate_name("skel", n).is_ok())
        else {
            continue;
        };
        match sys::open_dir_beneath(skels_fd.as_fd(), &Path::new(name).join(GLOBAL)) {
            Ok(global) => {
                let st = sys::fstat(global.as_fd())?;
                out.push((name.to_string(), sys::dev_of(&st), sys::ino_of(&st)));
            }
            // Not a skel (no global/), or a symlink: nothing of ours to lift.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Take the records directory's lock (waiting), held while the returned
/// descriptor lives.
fn lock_dir(dir: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let lock = rustix::fs::openat(
        dir,
        DIR_LOCK,
        rustix::fs::OFlags::RDWR
            | rustix::fs::OFlags::CREATE
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::from_raw_mode(RECORD_MODE),
    )?;
    sys::lock_exclusive(lock.as_fd())?;
    Ok(lock)
}

fn cname(name: &str) -> io::Result<CString> {
    sys::cname(name.as_ref())
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A record left by a run that is gone, locked by us while it lives.
#[derive(Debug)]
pub struct Orphan {
    /// The record's path.
    pub path: PathBuf,
    /// The skels it names: (name, dev, ino of its `global/`); empty for a
    /// record that was never completed (its run lifted nothing). `None`:
    /// the record is damaged, so it may stand for any skel.
    pub skels: Option<Vec<SkelId>>,
    _lock: File,
}

impl Orphan {
    /// Every flag it stood for is set again: remove it.
    pub fn done(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)?;
        match self.path.parent() {
            Some(dir) => fsync_dir(dir),
            None => Ok(()),
        }
    }
}

/// What [`scan`] found.
#[derive(Debug)]
pub enum Scan {
    /// No record of a run that is gone.
    Clean,
    /// A live run may be lifting flags now: recovery waits for a later
    /// command (it would set flags that run is about to use).
    Busy,
    /// Records of runs that are gone.
    Orphans(Vec<Orphan>),
}

/// Look for records left by runs that are gone (see the module docs).
pub fn scan(dir: &Path) -> io::Result<Scan> {
    let dir_fd = match sys::open_root(dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Scan::Clean),
        Err(e) => return Err(e),
    };
    let _dir_lock = lock_dir(dir_fd.as_fd())?;
    let mut orphans = Vec::new();
    for entry in sys::read_dir(dir_fd.as_fd())? {
        let name = entry.name.to_string_lossy().into_owned();
        let complete = name.ends_with(RECORD_EXT);
        if !complete && !name.ends_with(PARTIAL_EXT) {
            continue;
        }
        let file = File::from(sys::open_file_read(dir_fd.as_fd(), &entry.name)?);
        if !sys::try_lock_exclusive(file.as_fd())? {
            return Ok(Scan::Busy);
        }
        let path = dir.join(&name);
        let skels = if complete {
            match parse(&file) {
                Ok(skels) => Some(skels),
                Err(why) => {
                    warn!(
                        "{}: damaged record ({why}); it may stand for any skel",
                        path.display()
                    );
                    None
                }
            }
        } else {
            Some(Vec::new())
        };
        orphans.push(Orphan {
            path,
            skels,
            _lock: file,
        });
    }
    Ok(if orphans.is_empty() {
        Scan::Clean
    } else {
        Scan::Orphans(orphans)
    })
}

fn parse(file: &File) -> Result<Vec<SkelId>, String> {
    let mut lines = BufReader::new(file).lines();
    let header = lines.next().transpose().map_err(|e| e.to_string())?;
    if header.as_deref() != Some(HEADER) {
        return Err("not a record of this version".into());
    }
    let mut skels = Vec::new();
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["pid", _] => {}
            ["skel", name, dev, ino] if validate_name("skel", name).is_ok() => {
                let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad line {line:?}"));
                skels.push((name.to_string(), num(dev)?, num(ino)?));
            }
            _ => return Err(format!("bad line {line:?}")),
        }
    }
    Ok(skels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_parse_and_damage_is_refused() {
        let dir = std::env::temp_dir().join(format!("vskel-unlock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cases: &[(&str, Option<Vec<SkelId>>)] = &[
            ("vskel-unlock 1\npid 7\n", Some(vec![])),
            (
                "vskel-unlock 1\npid 7\nskel deb 1 2\nskel b.2 3 4\n",
                Some(vec![("deb".into(), 1, 2), ("b.2".into(), 3, 4)]),
            ),
            ("", None),
            ("vskel-unlock 2\n", None),
            ("vskel-unlock 1\nskel ../x 1 2\n", None),
            ("vskel-unlock 1\nskel deb 1\n", None),
            ("vskel-unlock 1\nskel deb x 2\n", None),
        ];
        for (i, (text, want)) in cases.iter().enumerate() {
            let path = dir.join(format!("{i}"));
            std::fs::write(&path, text).unwrap();
            let got = parse(&File::open(&path).unwrap()).ok();
            assert_eq!(&got, want, "{text:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
