//! Scanning a skel's three parts into the entries of a new generation,
//! in parallel (one rayon task per directory, every access relative to an
//! open directory, no symlink followed).
//!
//! A regular file or symlink is hashed again only when its (dev, ino,
//! size, mtime) differ from the previous generation's entry, or, outside
//! `global/`, its ctime does: package work replaces files by rename (new
//! inodes) and nothing edits a shared inode in place, while every vserver
//! linked to or removed from a global inode changes that inode's ctime,
//! so in `global/` a ctime alone would re-hash the whole part after each
//! `create-vs`. Xattrs are read again whenever the ctime changed.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rayon::prelude::*;
use rustix::fs::{FileType, Stat};

use super::Generation;
use super::entry::{Entry, Hash, Kind, Part};
use crate::error::{Error, Result};
use crate::layout::SkelDirs;
use crate::progress::Progress;
use crate::sys;
use crate::tree::meta::PERMISSION_BITS;
use crate::tree::walk::par_walk;

/// Read size when hashing a file.
const HASH_CHUNK: usize = 256 * 1024;

/// What a scan found.
pub struct Scanned {
    /// Every entry, sorted by (part, path bytes).
    pub entries: Vec<Entry>,
    /// Regular files and symlinks hashed (not taken from the previous
    /// generation).
    pub hashed: u64,
}

/// Scan every part of `skel` that exists, reusing `previous`'s hashes
/// where the inode is unchanged.
pub fn scan(
    skel: &SkelDirs,
    previous: Option<&Generation>,
    progress: &Progress,
) -> Result<Scanned> {
    let found = Mutex::new(Vec::new());
    let hashed = AtomicU64::new(0);
    for part in Part::ALL {
        let root_path = skel.dir.join(part.dir_name());
        let root = match sys::absent_as_none(sys::open_root(&root_path)) {
            Ok(Some(fd)) => fd,
            Ok(None) => continue, // older skels may lack local/ or static/
            Err(e) => return Err(Error::io("open directory", &root_path, e)),
        };
        let scanner = Scanner {
            part,
            root_path: &root_path,
            previous,
            progress,
            found: &found,
            hashed: &hashed,
        };
        let st = sys::fstat(root.as_fd()).map_err(|e| Error::io("stat", &root_path, e))?;
        let entry = scanner.dir_entry(root.as_fd(), PathBuf::new(), &st)?;
        found.lock().push(entry);
        par_walk((PathBuf::new(), root), &|(rel, fd): (PathBuf, OwnedFd)| {
            scanner.visit(&rel, fd.as_fd())
        })?;
    }
    let mut entries = found.into_inner();
    entries.sort_unstable_by(|a, b| super::entry::key_cmp(a.key(), b.key()));
    Ok(Scanned {
        entries,
        hashed: hashed.into_inner(),
    })
}

struct Scanner<'a> {
    part: Part,
    root_path: &'a Path,
    previous: Option<&'a Generation>,
    progress: &'a Progress,
    found: &'a Mutex<Vec<Entry>>,
    hashed: &'a AtomicU64,
}

impl Scanner<'_> {
    fn err(&self, action: &'static str, rel: &Path, e: std::io::Error) -> Error {
        Error::io(action, self.root_path.join(rel), e)
    }

    /// One directory: an entry for each child (in parallel: a directory
    /// of big files is hashed on every core); its subdirectories next.
    fn visit(&self, rel: &Path, dir: BorrowedFd<'_>) -> Result<Vec<(PathBuf, OwnedFd)>> {
        let children = sys::read_dir(dir).map_err(|e| self.err("read directory", rel, e))?;
        let done: Vec<Option<(Entry, Option<OwnedFd>)>> = children
            .par_iter()
            .map(|child| self.child(rel, dir, &child.name))
            .collect::<Result<_>>()?;
        let mut entries = Vec::with_capacity(done.len());
        let mut subdirs = Vec::new();
        for (entry, sub) in done.into_iter().flatten() {
            if let Some(sub) = sub {
                subdirs.push((entry.path.clone(), sub));
            }
            entries.push(entry);
        }
        self.progress.inc(entries.len() as u64);
        self.found.lock().extend(entries);
        Ok(subdirs)
    }

    /// The entry of `name` in `dir`, and an open descriptor of it if it is
    /// a directory; none if it is gone since the listing.
    fn child(
        &self,
        rel: &Path,
        dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<Option<(Entry, Option<OwnedFd>)>> {
        let path = rel.join(sys::os_name(name));
        let st = match sys::absent_as_none(sys::stat_at(dir, name)) {
            Ok(Some(st)) => st,
            Ok(None) => return Ok(None),
            Err(e) => return Err(self.err("stat", &path, e)),
        };
        if FileType::from_raw_mode(st.st_mode as _) == FileType::Directory {
            let sub =
                sys::open_subdir(dir, name).map_err(|e| self.err("open directory", &path, e))?;
            let st = sys::fstat(sub.as_fd()).map_err(|e| self.err("stat", &path, e))?;
            let entry = self.dir_entry(sub.as_fd(), path, &st)?;
            Ok(Some((entry, Some(sub))))
        } else {
            Ok(Some((self.other_entry(dir, name, path, &st)?, None)))
        }
    }

    fn dir_entry(&self, fd: BorrowedFd<'_>, path: PathBuf, st: &Stat) -> Result<Entry> {
        let mut entry = from_stat(self.part, path, st);
        entry.xattrs = match self.reusable(&entry) {
            Some(old) if old.ctime == entry.ctime => old.xattrs.clone(),
            _ => xattrs_of(sys::flist_xattrs(fd), |n| sys::fget_xattr(fd, n))
                .map_err(|e| self.err("read xattrs", &entry.path, e))?,
        };
        Ok(entry)
    }

    fn other_entry(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        path: PathBuf,
        st: &Stat,
    ) -> Result<Entry> {
        let mut entry = from_stat(self.part, path, st);
        if let Some(old) = self.reusable(&entry) {
            if old.ctime == entry.ctime {
                return Ok(old.clone());
            }
            let keep_hash = self.part == Part::Global;
            if keep_hash || !matches!(entry.kind, Kind::File | Kind::Symlink) {
                entry.hash = old.hash;
                entry.xattrs = self.xattrs_at(dir, name, &entry)?;
                return Ok(entry);
            }
        }
        match entry.kind {
            Kind::File => {
                let fd =
                    sys::open_file_read(dir, name).map_err(|e| self.err("open", &entry.path, e))?;
                let st = sys::fstat(fd.as_fd()).map_err(|e| self.err("stat", &entry.path, e))?;
                // What was opened is what is recorded (the name may have
                // been replaced since the stat).
                entry = from_stat(self.part, entry.path, &st);
                entry.xattrs = xattrs_of(sys::flist_xattrs(fd.as_fd()), |n| {
                    sys::fget_xattr(fd.as_fd(), n)
                })
                .map_err(|e| self.err("read xattrs", &entry.path, e))?;
                if entry.kind == Kind::File {
                    entry.hash = Some(hash_file(fd).map_err(|e| self.err("read", &entry.path, e))?);
                }
                self.hashed.fetch_add(1, Ordering::Relaxed);
            }
            Kind::Symlink => {
                let target = sys::readlink_at(dir, name)
                    .map_err(|e| self.err("read link", &entry.path, e))?;
                entry.hash = Some(*blake3::hash(target.as_bytes()).as_bytes());
                entry.xattrs = self.xattrs_at(dir, name, &entry)?;
                self.hashed.fetch_add(1, Ordering::Relaxed);
            }
            _ => entry.xattrs = self.xattrs_at(dir, name, &entry)?,
        }
        Ok(entry)
    }

    fn xattrs_at(
        &self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        entry: &Entry,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let path = sys::proc_path(dir, name);
        xattrs_of(sys::llist_xattrs(&path), |n| sys::lget_xattr(&path, n))
            .map_err(|e| self.err("read xattrs", &entry.path, e))
    }

    /// The previous generation's entry, when it is the same inode with
    /// the same size and mtime (its hash, and with the same ctime its
    /// xattrs, can be taken over).
    fn reusable(&self, fresh: &Entry) -> Option<&Entry> {
        let old = self.previous?.entry(fresh.part, &fresh.path)?;
        (old.kind == fresh.kind
            && old.inode() == fresh.inode()
            && old.size == fresh.size
            && old.mtime == fresh.mtime)
            .then_some(old)
    }
}

/// An entry's metadata from a `stat` result (no xattrs, no hash).
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn from_stat(part: Part, path: PathBuf, st: &Stat) -> Entry {
    let kind = Kind::of_stat(st);
    Entry {
        part,
        path,
        kind,
        mode: st.st_mode as u32 & PERMISSION_BITS,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        size: st.st_size as u64,
        mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        rdev: if matches!(kind, Kind::Char | Kind::Block) {
            st.st_rdev as u64
        } else {
            0
        },
        dev: sys::dev_of(st),
        ino: sys::ino_of(st),
        xattrs: Vec::new(),
        hash: None,
    }
}

/// Xattrs as (name, value), sorted by name; one removed between the list
/// and the read is left out.
fn xattrs_of(
    names: std::io::Result<Vec<std::ffi::CString>>,
    get: impl Fn(&CStr) -> std::io::Result<Vec<u8>>,
) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in names? {
        match get(&name) {
            Ok(value) => out.push((name.into_bytes(), value)),
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort();
    Ok(out)
}

/// BLAKE3 of an open file's data.
fn hash_file(fd: OwnedFd) -> std::io::Result<Hash> {
    let mut file = std::fs::File::from(fd);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(*hasher.finalize().as_bytes())
}
