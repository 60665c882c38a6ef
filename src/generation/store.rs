//! A skel's generation files on disk (`<skel>/generations/`, paths from
//! [`crate::layout::GenerationFiles`]): finding the current generation,
//! reading a file whole, and writing a new one once.
//!
//! A file is written under a temporary name in the same directory,
//! fsynced, made mode 0444 and renamed to its name with `RENAME_NOREPLACE`
//! (so an existing generation file is never replaced, whoever else
//! writes), then the directory is fsynced. Generation N is complete once
//! `N.record` exists; `N.changes` is written before it, so the current
//! generation (the highest complete one) always has its changes on disk.
//! Recording holds `.lock`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};
use crate::layout::GenerationFiles;
use crate::staging::make_private_dir;
use crate::sys;

/// Mode of every generation file.
pub const FILE_MODE: u32 = 0o444;
/// Prefix of temporary names in the directory.
const TEMP_PREFIX: &str = ".tmp-";

/// The numbers of the complete generations, ascending (none when the
/// directory does not exist).
pub fn numbers(files: &GenerationFiles) -> Result<Vec<u64>> {
    let entries = match std::fs::read_dir(&files.dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", &files.dir, e)),
    };
    let mut numbers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", &files.dir, e))?;
        if let Some(n) = entry
            .file_name()
            .to_str()
            .and_then(GenerationFiles::record_number)
        {
            numbers.push(n);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Take the recording lock (waiting for another recorder), making the
/// directory if needed; released when the file is dropped.
pub fn lock(files: &GenerationFiles) -> Result<File> {
    make_private_dir(&files.dir)?;
    let path = files.lock();
    sys::open_locked(&path).map_err(|e| Error::io("open and lock", &path, e))
}

/// A file's bytes; `None` if it does not exist.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Remove what an interrupted recording left (temporary files, and the
/// changes of generation `next`, which was never completed). The caller
/// holds the lock.
pub fn remove_leftovers(files: &GenerationFiles, next: u64) -> Result<()> {
    let entries =
        std::fs::read_dir(&files.dir).map_err(|e| Error::io("read directory", &files.dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", &files.dir, e))?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            remove_if_present(&entry.path())?;
        }
    }
    remove_if_present(&files.changes(next))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Write `data` as the new file `path` (see the module doc); fails if the
/// name exists.
pub fn write_once(path: &Path, data: &[u8]) -> Result<()> {
    let (dir, name) = crate::staging::split_parent(path)?;
    let suffix = sys::unguessable_suffix().map_err(|e| Error::io("name", path, e))?;
    let tmp_name = format!("{TEMP_PREFIX}{}{suffix}", name.to_string_lossy());
    let tmp = dir.join(&tmp_name);
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(data)?;
        file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
        file.sync_all()?;
        let dir_fd = sys::open_root(dir)?;
        let tmp_c = sys::cname(tmp_name.as_ref())?;
        sys::rename_noreplace(dir_fd.as_fd(), &tmp_c, dir_fd.as_fd(), &name)?;
        sys::fsync(dir_fd.as_fd())
    })();
    if let Err(e) = result {
        if let Err(rm) = remove_if_present(&tmp) {
            tracing::warn!("{rm}");
        }
        return Err(Error::io("write", path, e));
    }
    Ok(())
}
