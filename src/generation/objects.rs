//! The skel's content store: a copy of every global regular file a
//! generation records, named by its BLAKE3 hash
//! (`<skel>/generations/objects/<hex>`, mode 0444), so that `repair` can
//! put back the content of a shared inode that was changed in place.
//!
//! [`keep`] runs while a generation is recorded (under its lock): each
//! hash with no object yet is copied from the skel's file (a reflink
//! where the filesystem has them, else the data: see
//! [`crate::sys::copy_data`]) under a temporary name, hashed again, and
//! renamed to its name only if it holds what the record says. The disk
//! cost is one more copy of the skel's global files (nothing on a
//! filesystem with reflinks, until a file changes); objects are never
//! removed while the skel exists.

use std::ffi::{CStr, CString};
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::entry::{Entry, Hash, Kind, Part};
use crate::error::{Error, Result};
use crate::layout::SkelDirs;
use crate::staging::make_private_dir;
use crate::sys;

/// The store's directory name under `generations/`.
pub const OBJECTS_DIR: &str = "objects";
/// Prefix of an object being written.
const TEMP_PREFIX: &str = ".tmp-";
/// Mode of an object.
const OBJECT_MODE: u32 = 0o444;

/// Whether recording a generation keeps content copies (config
/// `content_store`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Copy each new global file's content into the store.
    Keep,
    /// Leave the store as it is.
    Skip,
}

impl Store {
    /// As the configuration says.
    pub fn of(config: &crate::config::Config) -> Store {
        if config.content_store {
            Store::Keep
        } else {
            Store::Skip
        }
    }
}

/// What [`keep`] added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    /// Objects written.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `<skel>/generations/objects`.
pub fn dir(skel: &SkelDirs) -> PathBuf {
    skel.generations().dir.join(OBJECTS_DIR)
}

/// A hash as 64 lowercase hex digits (the object's name).
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Store every global regular file of `entries` whose hash has no object
/// yet, reading it from the skel's `global/`. The caller holds the
/// generation lock.
pub fn keep(skel: &SkelDirs, entries: &[Entry]) -> Result<Kept> {
    let store = dir(skel);
    make_private_dir(&store)?;
    let store_fd = sys::open_root(&store).map_err(|e| Error::io("open directory", &store, e))?;
    remove_temps(store_fd.as_fd(), &store)?;
    let global_path = skel.global();
    let global = match sys::absent_as_none(sys::open_root(&global_path)) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Ok(Kept::default()),
        Err(e) => return Err(Error::io("open directory", &global_path, e)),
    };
    let mut wanted: Vec<(&Entry, Hash)> = entries
        .iter()
        .filter(|e| e.part == Part::Global && e.kind == Kind::File)
        .filter_map(|e| e.hash.map(|h| (e, h)))
        .collect();
    wanted.sort_unstable_by_key(|w| w.1);
    wanted.dedup_by(|a, b| a.1 == b.1);
    let objects = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    wanted.par_iter().try_for_each(|(e, hash)| -> Result<()> {
        let name = cname(&hex(hash))?;
        if sys::absent_as_none(sys::stat_at(store_fd.as_fd(), &name))
            .map_err(|err| Error::io("stat", store.join(hex(hash)), err))?
            .is_some()
        {
            return Ok(());
        }
        let shown = global_path.join(&e.path);
        match copy_in(global.as_fd(), e, hash, store_fd.as_fd(), &name) {
            Ok(true) => {
                objects.fetch_add(1, Ordering::Relaxed);
                bytes.fetch_add(e.size, Ordering::Relaxed);
            }
            Ok(false) => tracing::debug!(
                "{}: changed while it was recorded; its content is not stored",
                shown.display()
            ),
            Err(err) => return Err(Error::io("store a copy of", shown, err)),
        }
        Ok(())
    })?;
    let kept = Kept {
        objects: objects.into_inner(),
        bytes: bytes.into_inner(),
    };
    if kept.objects > 0 {
        sys::syncfs(store_fd.as_fd()).map_err(|e| Error::io("flush to disk", &store, e))?;
    }
    Ok(kept)
}

/// The object holding content `hash`, open for reading, if the store has
/// it and it still holds that content (checked by hashing it).
pub fn open_checked(skel: &SkelDirs, hash: &Hash) -> Result<Option<OwnedFd>> {
    let store = dir(skel);
    let store_fd = match sys::absent_as_none(sys::open_root(&store)) {
        Ok(Some(fd)) => fd,
        Ok(None) => return Ok(None),
        Err(e) => return Err(Error::io("open directory", &store, e)),
    };
    let shown = store.join(hex(hash));
    let name = cname(&hex(hash))?;
    let Some(fd) = sys::absent_as_none(sys::open_file_read(store_fd.as_fd(), &name))
        .map_err(|e| Error::io("open", &shown, e))?
    else {
        return Ok(None);
    };
    let again =
        sys::open_file_read(store_fd.as_fd(), &name).map_err(|e| Error::io("open", &shown, e))?;
    if hash_of(again).map_err(|e| Error::io("read", &shown, e))? != *hash {
        tracing::warn!(
            "{}: damaged (its content has another hash)",
            shown.display()
        );
        return Ok(None);
    }
    Ok(Some(fd))
}

/// Copy `e` from `global` into the store as `name`; false if the skel's
/// file is not (any more) what `e` records.
fn copy_in(
    global: BorrowedFd<'_>,
    e: &Entry,
    hash: &Hash,
    store: BorrowedFd<'_>,
    name: &CStr,
) -> std::io::Result<bool> {
    let parent = e.path.parent().unwrap_or(Path::new(""));
    let dir = sys::open_dir_beneath(global, parent)?;
    let leaf = sys::cname(e.path.file_name().unwrap_or_default())?;
    let src = match sys::absent_as_none(sys::open_file_read(dir.as_fd(), &leaf))? {
        Some(fd) => fd,
        None => return Ok(false),
    };
    let st = sys::fstat(src.as_fd())?;
    if (sys::dev_of(&st), sys::ino_of(&st)) != e.inode() || st.st_size as u64 != e.size {
        return Ok(false);
    }
    let temp =
        sys::cname(format!("{TEMP_PREFIX}{}{}", hex(hash), sys::unguessable_suffix()?).as_ref())?;
    let written = (|| {
        let dst = sys::create_rw(store, &temp, 0o600)?;
        sys::copy_data(src.as_fd(), dst.as_fd(), e.size)?;
        let copy = sys::open_file_read(store, &temp)?;
        if hash_of(copy)? != *hash {
            return Ok(false);
        }
        sys::fchmod(dst.as_fd(), OBJECT_MODE)?;
        match sys::rename_noreplace(store, &temp, store, name) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
            other => other.map(|()| true),
        }
    })();
    if !matches!(written, Ok(true))
        && let Err(rm) = sys::absent_as_none(sys::unlink_at(store, &temp))
    {
        tracing::warn!("cannot remove a partial object: {rm}");
    }
    written
}

/// Remove objects an interrupted recording left half written.
fn remove_temps(store: BorrowedFd<'_>, shown: &Path) -> Result<()> {
    for entry in sys::read_dir(store).map_err(|e| Error::io("read directory", shown, e))? {
        if entry.name.to_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            sys::absent_as_none(sys::unlink_at(store, &entry.name))
                .map_err(|e| Error::io("remove", shown.join(sys::os_name(&entry.name)), e))?;
        }
    }
    Ok(())
}

fn cname(name: &str) -> Result<CString> {
    sys::cname(name.as_ref()).map_err(|e| Error::io("name", name, e))
}

/// BLAKE3 of an open file's data.
pub fn hash_of(fd: OwnedFd) -> std::io::Result<Hash> {
    let mut file = std::fs::File::from(fd);
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 256 * 1024];
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
