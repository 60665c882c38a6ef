//! `du` as an op: the bytes a vserver uses on its own against those it
//! shares with its skel, counted as `du` does (each inode's
//! `st_blocks * 512`, once).
//!
//! * A tree: its own are the inodes that are not the skel's (its
//!   directories, `local/` and `static/` copies, files detached or broken
//!   off, files of its own); it shares the skel's global inodes it links
//!   (those of the generation its record names; without one, those in the
//!   skel's `global/` now). Directories of another filesystem (the mounts
//!   of a running vserver) are not entered.
//! * A view: its own are its upper layer and its rendered `static/`; it
//!   shares the skel's `local/` and `global/` layers it is stacked on
//!   (those of its generation), whatever of them its upper layer hides.
//!
//! A total counts each shared inode once, however many vservers share it.
//! Every tree is walked without following symlinks ([`tally`], the walk
//! `status` counts an upper layer with too): what a vserver can write is
//! hostile.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustix::fs::{FileType, Stat};
use serde::Serialize;

use super::registry::{self, Kind, Record};
use super::view;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Part};
use crate::layout::Layout;
use crate::sys;
use crate::tree::walk::par_walk;
use crate::validate::validate_name;

/// Bytes a `st_blocks` unit stands for.
const BLOCK_BYTES: u64 = 512;

/// An inode: (device, inode number).
pub type Inode = (u64, u64);

/// Whose an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Share {
    /// The vserver's own.
    Own,
    /// Shared with the skel.
    Shared,
}

/// Bytes on disk, by whose they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// The vserver's own.
    pub own: u64,
    /// Shared with the skel.
    pub shared: u64,
}

/// Bytes on disk below `dir` (its `st_blocks * 512`), each inode once
/// across the calls sharing `seen`, as `sort` says whose each inode is
/// (it is called once per inode counted, with its bytes). Walked without
/// following symlinks; with `one_filesystem`, directories on another
/// device than `dir` are counted but not entered. None when `dir` is
/// missing.
pub fn tally(
    dir: &Path,
    seen: &Mutex<HashSet<Inode>>,
    one_filesystem: bool,
    sort: &(dyn Fn(&Stat, u64) -> Share + Sync),
) -> Result<Option<Tally>> {
    let root = match sys::open_root(dir) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("open", dir, e)),
    };
    let own = AtomicU64::new(0);
    let shared = AtomicU64::new(0);
    let count = |st: &Stat| {
        // An inode of one name is met once; only linked ones are looked up.
        if sys::nlink_of(st) > 1 && !seen.lock().insert((sys::dev_of(st), sys::ino_of(st))) {
            return;
        }
        let bytes = u64::try_from(st.st_blocks).unwrap_or(0) * BLOCK_BYTES;
        match sort(st, bytes) {
            Share::Own => own.fetch_add(bytes, Ordering::Relaxed),
            Share::Shared => shared.fetch_add(bytes, Ordering::Relaxed),
        };
    };
    let root_stat = sys::fstat(root.as_fd()).map_err(|e| Error::io("stat", dir, e))?;
    let root_dev = sys::dev_of(&root_stat);
    count(&root_stat);
    let visit = |rel: PathBuf| -> Result<Vec<PathBuf>> {
        let shown = || dir.join(&rel);
        let fd: OwnedFd = match sys::open_dir_beneath(root.as_fd(), &rel) {
            Ok(fd) => fd,
            // Removed (or swapped for a non-directory) while walked.
            Err(e) if is_gone(&e) => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("open", shown(), e)),
        };
        let entries = sys::read_dir(fd.as_fd()).map_err(|e| Error::io("read", shown(), e))?;
        let mut subdirs = Vec::new();
        for entry in entries {
            let st = match sys::stat_at(fd.as_fd(), &entry.name) {
                Ok(st) => st,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", shown(), e)),
            };
            count(&st);
            let other_fs = one_filesystem && sys::dev_of(&st) != root_dev;
            if FileType::from_raw_mode(st.st_mode) == FileType::Directory && !other_fs {
                subdirs.push(rel.join(OsStr::from_bytes(entry.name.as_bytes())));
            }
        }
        Ok(subdirs)
    };
    par_walk(PathBuf::new(), &visit)?;
    Ok(Some(Tally {
        own: own.into_inner(),
        shared: shared.into_inner(),
    }))
}

/// An error saying the entry went away or changed type while walked.
fn is_gone(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
    )
}

/// What one vserver uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The vserver.
    pub name: String,
    /// Tree or view.
    pub kind: Kind,
    /// Its skel.
    pub skel: Option<String>,
    /// Bytes of its own.
    pub own_bytes: u64,
    /// Bytes it shares with its skel.
    pub shared_bytes: u64,
    /// What counting it failed with (its bytes are then what was
    /// counted: none).
    pub error: Option<String>,
}

/// Bytes of every vserver counted: each shared inode once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Total {
    /// Bytes the vservers use of their own, together.
    pub own_bytes: u64,
    /// Bytes they share with their skels, each inode once.
    pub shared_bytes: u64,
}

/// What `vskel du --format json` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuReport {
    /// One entry per vserver.
    pub vservers: Vec<Usage>,
    /// All of them.
    pub total: Total,
}

/// The usage of the vservers `names` names (in that order), or of every
/// one vskel made: an unknown name is a usage error, found before
/// anything is counted.
pub fn du(config: &Config, names: &[String]) -> Result<DuReport> {
    let records: Vec<Record> = if names.is_empty() {
        registry::list(config)?
            .into_iter()
            .filter(|r| !r.creating && matches!(r.kind, Kind::Tree | Kind::View))
            .collect()
    } else {
        names
            .iter()
            .map(|name| named(config, name))
            .collect::<Result<_>>()?
    };
    let mut counter = Counter::default();
    let vservers = records
        .iter()
        .map(|r| {
            let mut usage = Usage {
                name: r.name.clone(),
                kind: r.kind,
                skel: r.skel.clone(),
                own_bytes: 0,
                shared_bytes: 0,
                error: None,
            };
            match counter.usage(config, r) {
                Ok(t) => (usage.own_bytes, usage.shared_bytes) = (t.own, t.shared),
                Err(e) => usage.error = Some(e.to_string()),
            }
            usage
        })
        .collect::<Vec<_>>();
    let total = Total {
        own_bytes: vservers.iter().map(|u| u.own_bytes).sum(),
        shared_bytes: counter.shared.values().sum(),
    };
    Ok(DuReport { vservers, total })
}

fn named(config: &Config, name: &str) -> Result<Record> {
    validate_name("vserver name", name)?;
    match registry::load(config, name)? {
        Some(record) if matches!(record.kind, Kind::Tree | Kind::View) => Ok(record),
        _ => Err(Error::Usage(format!(
            "no vserver named \"{name}\"; `vskel list` shows the vservers"
        ))),
    }
}

/// Counts vservers one after the other, keeping what the total needs.
#[derive(Default)]
struct Counter {
    /// Every shared inode counted, with its bytes.
    shared: HashMap<Inode, u64>,
    /// The inodes (and their bytes) of each skel layer counted.
    layers: HashMap<PathBuf, HashMap<Inode, u64>>,
}

impl Counter {
    fn usage(&mut self, config: &Config, record: &Record) -> Result<Tally> {
        match record.kind {
            Kind::View => self.view(config, record),
            _ => self.tree(config, record),
        }
    }

    fn tree(&mut self, config: &Config, record: &Record) -> Result<Tally> {
        let skel_inodes = self.skel_inodes(config, record)?;
        let seen = Mutex::new(HashSet::new());
        let linked = Mutex::new(HashMap::new());
        let sort = |st: &Stat, bytes: u64| {
            let inode = (sys::dev_of(st), sys::ino_of(st));
            if skel_inodes.contains(&inode) {
                linked.lock().insert(inode, bytes);
                Share::Shared
            } else {
                Share::Own
            }
        };
        let root = Layout::new(config).vserver(&record.name);
        let tally = tally(&root, &seen, true, &sort)?.ok_or_else(|| {
            Error::Failed(format!(
                "the tree of vserver \"{}\" is missing ({})",
                record.name,
                root.display()
            ))
        })?;
        self.shared.extend(linked.into_inner());
        Ok(tally)
    }

    /// The skel's global inodes a tree may share: its generation's, or
    /// without one those of the skel's `global/` now.
    fn skel_inodes(&mut self, config: &Config, record: &Record) -> Result<HashSet<Inode>> {
        let skel = skel_of(config, record)?;
        if let Some(n) = record.generation {
            return Ok(generation::load(&skel.dirs, n)?
                .entries()
                .iter()
                .filter(|e| e.part == Part::Global && e.kind != generation::Kind::Dir)
                .map(|e| e.inode())
                .collect());
        }
        Ok(self.layer(&skel.global())?.keys().copied().collect())
    }

    fn view(&mut self, config: &Config, record: &Record) -> Result<Tally> {
        let view = view::open(config, &record.name)?;
        let seen = Mutex::new(HashSet::new());
        let mut own = 0;
        for dir in [view.dirs.upper(), view.dirs.static_dir()] {
            own += tally(&dir, &seen, true, &|_, _| Share::Own)?.map_or(0, |t| t.own);
        }
        let mut shows: HashMap<Inode, u64> = HashMap::new();
        for lower in view
            .layers
            .lowers
            .iter()
            .filter(|l| **l != view.dirs.static_dir())
        {
            shows.extend(self.layer(lower)?.iter().map(|(i, b)| (*i, *b)));
        }
        let shared = shows.values().sum();
        self.shared.extend(shows);
        Ok(Tally { own, shared })
    }

    /// The inodes of skel layer `dir` with their bytes (counted once per
    /// run).
    fn layer(&mut self, dir: &Path) -> Result<&HashMap<Inode, u64>> {
        if !self.layers.contains_key(dir) {
            let found = Mutex::new(HashMap::new());
            let sort = |st: &Stat, bytes: u64| {
                found
                    .lock()
                    .insert((sys::dev_of(st), sys::ino_of(st)), bytes);
                Share::Shared
            };
            tally(dir, &Mutex::new(HashSet::new()), true, &sort)?;
            self.layers.insert(dir.to_path_buf(), found.into_inner());
        }
        Ok(&self.layers[dir])
    }
}

fn skel_of(config: &Config, record: &Record) -> Result<crate::skel::Skel> {
    let name = record.skel.as_deref().ok_or_else(|| {
        Error::Failed(format!(
            "the record of vserver \"{}\" names no skel",
            record.name
        ))
    })?;
    crate::skel::Skel::open(config, name)
}
