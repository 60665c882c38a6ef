//! What a sync remembers between runs, in `<root>/.vskel/sync/`:
//!
//! * `NAME.manifest`: the stamp (inode, ctime) of every upper-layer entry
//!   as the last completed sync applied it, and the identity of the layers
//!   and the tree it was applied to. The next sync compares the upper
//!   layer with it to find what changed, without walking the skel.
//! * `NAME.journal`: while an incremental sync changes the tree, the paths
//!   it is changing, and (appended, each flushed before use) the random
//!   names it swaps old entries out to inside the tree (see
//!   [`crate::tree::place`]). A sync that finds a journal was interrupted;
//!   it treats those paths as changed, checks them in depth and removes
//!   what is left at those names. No other name is ever taken for a
//!   temporary of vskel's.
//! * `NAME.lock`: the vserver's lock, held while a sync, materialize,
//!   create-vs or remove-vs of it runs (and while its view's server starts),
//!   so no two of them work on one vserver at once. The commands that end
//!   a vserver remove it while holding it; a lock taken on a file that is
//!   no longer at its path is let go and taken again on the new file.
//!
//! Both files are written beside (under a random name, made exclusively and
//! removed again on any error) and renamed into place after an fsync, so a
//! crash leaves the old version or the new one. Nothing here follows a
//! symlink. Paths are stored hex-encoded (a file name may hold any byte
//! but `/` and NUL).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{Layout, SyncFiles};

/// The first line of a manifest of this format.
const MANIFEST_HEADER: &str = "vskel-sync-manifest 1";
/// The first line of a journal of this format.
const JOURNAL_HEADER: &str = "vskel-sync-journal 1";
/// What starts a journal line naming a temporary inside the tree.
const JOURNAL_TEMP: &str = "temp ";
/// Mode of the state files.
const STATE_FILE_MODE: u32 = 0o600;

/// What an interrupted sync left in its journal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Journal {
    /// The paths it was changing.
    pub paths: Vec<PathBuf>,
    /// The random names inside the tree it may have left an entry at.
    pub temps: Vec<PathBuf>,
}

/// Open an existing state file for reading, never through a symlink.
fn open_state_file(path: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// What kind of upper entry a stamp is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampKind {
    /// A directory.
    Dir,
    /// A whiteout (a name the view hides).
    Whiteout,
    /// Anything else.
    Other,
}

/// An upper-layer entry as a sync saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Its inode.
    pub ino: u64,
    /// Its change time (seconds, nanoseconds): any change to the entry's
    /// data, metadata, xattrs or (for a directory) entries moves it.
    pub ctime: (i64, i64),
    /// Its kind.
    pub kind: StampKind,
}

/// The state a completed sync leaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// (dev, ino) of the tree root, the upper root and each lower root:
    /// a manifest of other directories does not describe this tree.
    pub identity: Vec<(u64, u64)>,
    /// When that sync started reading the upper layer (ns since the epoch):
    /// stamps this close to it may hide a change made just after.
    pub started_ns: i128,
    /// Entries in the tree after it.
    pub entries: u64,
    /// The upper layer's entries, by path.
    pub stamps: BTreeMap<PathBuf, Stamp>,
}

/// How close to the start of the sync that recorded it a change time must
/// be to be distrusted: file times come from a clock that lags by up to a
/// scheduler tick, so a change right after the sync read the entry may
/// carry the same time.
const RACY_WINDOW_NS: i128 = 100_000_000;

impl Manifest {
    /// Was `stamp`, recorded in this manifest, possibly followed by a change
    /// its ctime cannot show?
    pub fn is_racy(&self, stamp: &Stamp) -> bool {
        let ctime = i128::from(stamp.ctime.0) * 1_000_000_000 + i128::from(stamp.ctime.1);
        ctime + RACY_WINDOW_NS >= self.started_ns
    }
}

/// The sync state files of vserver `name`.
#[derive(Debug, Clone)]
pub struct StateFiles {
    files: SyncFiles,
}

impl StateFiles {
    /// The state files of `name` under `config`'s state directory.
    pub fn new(config: &Config, name: &str) -> Self {
        StateFiles {
            files: Layout::new(config).sync_files(name),
        }
    }

    /// The manifest's path.
    pub fn manifest_path(&self) -> PathBuf {
        self.files.manifest()
    }

    /// The journal's path.
    pub fn journal_path(&self) -> PathBuf {
        self.files.journal()
    }

    /// Take the lock of this vserver, or fail naming it if another command
    /// (or a mount of its view that is starting) holds it. Released when
    /// the returned file is dropped.
    pub fn lock(&self) -> Result<File> {
        match self.take(false)? {
            Some(file) => Ok(file),
            None => Err(Error::Failed(format!(
                "vserver {name} is busy: a sync, materialize, create-vs or remove-vs of {name} \
                 is running, or its view is being mounted (it holds {}); try again when it ends",
                self.files.lock().display(),
                name = self.files.name,
            ))),
        }
    }

    /// Take the lock, waiting for a running sync to finish (calling
    /// `on_wait` first if it has to wait). A view's server holds it from
    /// before its mount until the mount is live: a sync then either ends
    /// before the view is mounted or finds it mounted and holds its writes.
    pub fn lock_waiting(&self, on_wait: impl FnOnce()) -> Result<File> {
        if let Some(file) = self.take(false)? {
            return Ok(file);
        }
        on_wait();
        self.take(true)?.ok_or_else(|| {
            Error::Failed(format!("{}: lock not taken", self.files.lock().display()))
        })
    }

    /// Is the lock held by someone else right now? (A lock file that does
    /// not exist is held by nobody; none is made.)
    pub fn is_held(&self) -> Result<bool> {
        let path = self.files.lock();
        let file = match File::options().write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let taken = crate::sys::try_lock_exclusive(file.as_fd())
            .map_err(|e| Error::io("lock", &path, e))?;
        Ok(!taken)
    }

    /// Open the lock file and take it (waiting if `wait`), again on the
    /// new file if the one locked was removed meanwhile; `None` when it is
    /// held and `wait` is false.
    fn take(&self, wait: bool) -> Result<Option<File>> {
        crate::staging::make_private_dir(&self.files.dir)?;
        let path = self.files.lock();
        loop {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(STATE_FILE_MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
                .map_err(|e| Error::io("open", &path, e))?;
            if wait {
                crate::sys::lock_exclusive(file.as_fd())
                    .map_err(|e| Error::io("lock", &path, e))?;
            } else if !crate::sys::try_lock_exclusive(file.as_fd())
                .map_err(|e| Error::io("lock", &path, e))?
            {
                return Ok(None);
            }
            let locked =
                crate::sys::fstat(file.as_fd()).map_err(|e| Error::io("stat", &path, e))?;
            match std::fs::symlink_metadata(&path) {
                Ok(now)
                    if std::os::unix::fs::MetadataExt::ino(&now) == crate::sys::ino_of(&locked) =>
                {
                    return Ok(Some(file));
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("stat", &path, e)),
            }
        }
    }

    /// The manifest of the last completed sync, if there is a readable one.
    pub fn load_manifest(&self) -> Result<Option<Manifest>> {
        let path = self.manifest_path();
        let file = match open_state_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        match parse_manifest(BufReader::new(file)) {
            Ok(m) => Ok(Some(m)),
            Err(why) => {
                tracing::warn!(
                    "ignoring {} ({why}); the next sync rebuilds the tree",
                    path.display()
                );
                Ok(None)
            }
        }
    }

    /// Replace the manifest with `manifest`, durably.
    pub fn save_manifest(&self, manifest: &Manifest) -> Result<()> {
        crate::staging::make_private_dir(&self.files.dir)?;
        let mut text = Vec::with_capacity(64 + manifest.stamps.len() * 48);
        writeln!(text, "{MANIFEST_HEADER}").ok();
        let ids: Vec<String> = manifest
            .identity
            .iter()
            .map(|(d, i)| format!("{d}:{i}"))
            .collect();
        writeln!(text, "identity {}", ids.join(" ")).ok();
        writeln!(text, "started {}", manifest.started_ns).ok();
        writeln!(text, "entries {}", manifest.entries).ok();
        for (path, s) in &manifest.stamps {
            let kind = match s.kind {
                StampKind::Dir => 'd',
                StampKind::Whiteout => 'w',
                StampKind::Other => 'f',
            };
            writeln!(
                text,
                "{kind} {} {} {} {}",
                s.ino,
                s.ctime.0,
                s.ctime.1,
                hex(path.as_os_str().as_bytes())
            )
            .ok();
        }
        self.write_durably(&self.manifest_path(), &text)
    }

    /// Remove the manifest, journal and lock (the tree follows no view now).
    pub fn remove_all(&self) -> Result<()> {
        self.remove_sync_state()?;
        self.remove_lock_file()
    }

    /// Remove the manifest and journal, keeping the lock file.
    pub fn remove_sync_state(&self) -> Result<()> {
        remove_if_present(&[self.manifest_path(), self.journal_path()])
    }

    /// Remove the lock file: only as the last step of a command that holds
    /// the lock and ends the vserver (a command taking the lock after it
    /// makes a new file; one waiting on the old file takes the new one).
    pub fn remove_lock_file(&self) -> Result<()> {
        remove_if_present(&[self.files.lock()])
    }

    /// What an interrupted sync was changing, if one was.
    pub fn load_journal(&self) -> Result<Option<Journal>> {
        let path = self.journal_path();
        let file = match open_state_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let mut lines = BufReader::new(file).lines();
        let mut journal = Journal::default();
        if lines.next().and_then(|l| l.ok()).as_deref() != Some(JOURNAL_HEADER) {
            // A journal cut short before its header: nothing was changed yet.
            return Ok(Some(journal));
        }
        for line in lines {
            let line = line.map_err(|e| Error::io("read", &path, e))?;
            // A torn last line: it was not acted on yet.
            if let Some(temp) = line.strip_prefix(JOURNAL_TEMP) {
                if let Some(p) = unhex(temp) {
                    journal.temps.push(PathBuf::from(OsStr::from_bytes(&p)));
                }
            } else if let Some(p) = unhex(&line) {
                journal.paths.push(PathBuf::from(OsStr::from_bytes(&p)));
            }
        }
        Ok(Some(journal))
    }

    /// Record, durably and before it is used, a random name inside the
    /// tree (`rel`) that this sync may leave an entry at if interrupted.
    pub fn note_temp(&self, rel: &Path) -> Result<()> {
        let path = self.journal_path();
        let open = || {
            File::options()
                .append(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&path)
        };
        let mut file = match open() {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.save_journal(&[], &[])?;
                open().map_err(|e| Error::io("open", &path, e))?
            }
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let line = format!("{JOURNAL_TEMP}{}\n", hex(rel.as_os_str().as_bytes()));
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("write", &path, e))
    }

    /// Record, durably, the paths a sync is about to change, and the
    /// temporaries inside the tree not known to be gone yet.
    pub fn save_journal(&self, paths: &[PathBuf], temps: &[PathBuf]) -> Result<()> {
        crate::staging::make_private_dir(&self.files.dir)?;
        let mut text = Vec::with_capacity(32 + paths.len() * 32);
        writeln!(text, "{JOURNAL_HEADER}").ok();
        for p in paths {
            writeln!(text, "{}", hex(p.as_os_str().as_bytes())).ok();
        }
        for t in temps {
            writeln!(text, "{JOURNAL_TEMP}{}", hex(t.as_os_str().as_bytes())).ok();
        }
        self.write_durably(&self.journal_path(), &text)
    }

    /// The sync completed: forget its journal.
    pub fn clear_journal(&self) -> Result<()> {
        let path = self.journal_path();
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("remove", &path, e)),
        }
    }

    fn write_durably(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = crate::sys::open_root(&self.files.dir)
            .map_err(|e| Error::io("open", &self.files.dir, e))?;
        let (temp, out) = crate::tree::place::create_file(dir.as_fd(), None)
            .map_err(|e| Error::io("create a file in", &self.files.dir, e))?;
        let shown = self.files.dir.join(crate::sys::os_name(temp.name()));
        let file = File::from(out);
        crate::sys::fchmod(file.as_fd(), STATE_FILE_MODE)
            .map_err(|e| Error::io("set mode", &shown, e))?;
        let mut out = BufWriter::new(&file);
        out.write_all(data)
            .and_then(|()| out.flush())
            .map_err(|e| Error::io("write", &shown, e))?;
        drop(out);
        file.sync_all().map_err(|e| Error::io("flush", &shown, e))?;
        let name = crate::sys::cname(path.file_name().unwrap_or_default())
            .map_err(|e| Error::io("name", path, e))?;
        crate::sys::rename_replace(dir.as_fd(), temp.name(), dir.as_fd(), &name)
            .map_err(|e| Error::io("rename into place", path, e))?;
        temp.keep();
        crate::sys::fsync(dir.as_fd()).map_err(|e| Error::io("flush", &self.files.dir, e))
    }
}

fn remove_if_present(paths: &[PathBuf]) -> Result<()> {
    for path in paths {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", path, e)),
        }
    }
    Ok(())
}

fn parse_manifest(reader: impl BufRead) -> std::result::Result<Manifest, String> {
    let mut lines = reader.lines();
    let mut next = || -> std::result::Result<String, String> {
        lines.next().ok_or("cut short")?.map_err(|e| e.to_string())
    };
    if next()? != MANIFEST_HEADER {
        return Err("not a manifest of this version".into());
    }
    let identity_line = next()?;
    let identity = identity_line
        .strip_prefix("identity")
        .ok_or("no identity line")?
        .split_whitespace()
        .map(|pair| {
            let (d, i) = pair.split_once(':')?;
            Some((d.parse().ok()?, i.parse().ok()?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("bad identity")?;
    let started_ns = next()?
        .strip_prefix("started ")
        .and_then(|s| s.parse().ok())
        .ok_or("bad start time")?;
    let entries = next()?
        .strip_prefix("entries ")
        .and_then(|s| s.parse().ok())
        .ok_or("bad entry count")?;
    let mut stamps = BTreeMap::new();
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        let fields: Vec<&str> = line.split(' ').collect();
        let [kind, ino, secs, nanos, path] = fields[..] else {
            return Err(format!("bad line {line:?}"));
        };
        let kind = match kind {
            "d" => StampKind::Dir,
            "w" => StampKind::Whiteout,
            "f" => StampKind::Other,
            _ => return Err(format!("bad kind in {line:?}")),
        };
        let parse = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| format!("bad number in {line:?}"))
        };
        let stamp = Stamp {
            ino: ino.parse().map_err(|_| format!("bad inode in {line:?}"))?,
            ctime: (parse(secs)?, parse(nanos)?),
            kind,
        };
        let path = unhex(path).ok_or_else(|| format!("bad path in {line:?}"))?;
        stamps.insert(PathBuf::from(OsStr::from_bytes(&path)), stamp);
    }
    Ok(Manifest {
        identity,
        started_ns,
        entries,
        stamps,
    })
}

fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "-".to_string();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text == "-" {
        return Some(Vec::new());
    }
    if text.is_empty() || text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_any_path_bytes() {
        let mut stamps = BTreeMap::new();
        for (i, p) in [&b""[..], b"etc", b"etc/new\nline", b"bin/\xff\x01 sp"]
            .iter()
            .enumerate()
        {
            stamps.insert(
                PathBuf::from(OsStr::from_bytes(p)),
                Stamp {
                    ino: i as u64 + 7,
                    ctime: (1_700_000_000 + i as i64, 123 * i as i64),
                    kind: [StampKind::Dir, StampKind::Other, StampKind::Whiteout][i % 3],
                },
            );
        }
        let m = Manifest {
            identity: vec![(1, 2), (3, 4)],
            started_ns: 1_700_000_000_123_456_789,
            entries: 42,
            stamps,
        };
        let dir = std::env::temp_dir().join(format!("vskel-manifest-{}", std::process::id()));
        let files = StateFiles {
            files: SyncFiles {
                dir: dir.clone(),
                name: "vs".into(),
            },
        };
        files.save_manifest(&m).unwrap();
        assert_eq!(files.load_manifest().unwrap(), Some(m));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_damaged_manifest_is_ignored_not_trusted() {
        for text in [
            "",
            "vskel-sync-manifest 1\n",
            "other\nidentity 1:2\nstarted 1\nentries 1\n",
            "vskel-sync-manifest 1\nidentity 1:2\nstarted 1\nentries 1\nf 1 2 3\n",
            "vskel-sync-manifest 1\nidentity 1:2\nstarted 1\nentries 1\nf 1 2 3 6\n",
        ] {
            assert!(parse_manifest(text.as_bytes()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn journal_survives_a_torn_last_line() {
        let dir = std::env::temp_dir().join(format!("vskel-journal-{}", std::process::id()));
        let files = StateFiles {
            files: SyncFiles {
                dir: dir.clone(),
                name: "vs".into(),
            },
        };
        files
            .save_journal(&[PathBuf::from("a/b"), PathBuf::new()], &[])
            .unwrap();
        files.note_temp(Path::new("a/.#vskel-12ab")).unwrap();
        let mut text = std::fs::read(files.journal_path()).unwrap();
        text.extend_from_slice(b"temp 6");
        std::fs::write(files.journal_path(), text).unwrap();
        assert_eq!(
            files.load_journal().unwrap(),
            Some(Journal {
                paths: vec![PathBuf::from("a/b"), PathBuf::new()],
                temps: vec![PathBuf::from("a/.#vskel-12ab")],
            })
        );
        files.clear_journal().unwrap();
        assert_eq!(files.load_journal().unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn stamps_near_the_sync_start_are_racy() {
        let m = Manifest {
            started_ns: 10_000_000_000,
            ..Manifest::default()
        };
        let at = |s, n| Stamp {
            ino: 1,
            ctime: (s, n),
            kind: StampKind::Other,
        };
        assert!(m.is_racy(&at(10, 0)));
        assert!(m.is_racy(&at(9, 950_000_000)));
        assert!(!m.is_racy(&at(9, 0)));
    }
}
