//! Context IDs: one fixed number per vserver, allocated atomically.
//!
//! `<etc>/contexts/nextid` holds the next ID to try; `<etc>/contexts/<id>`
//! is a symlink to the vserver's root and marks the ID as taken. Allocation
//! holds an exclusive `flock` on `<etc>/contexts/.lock`, skips IDs that are
//! taken, creates the symlink before letting go of the lock (so a
//! concurrent run can never pick the same ID) and rewrites `nextid`
//! atomically (write beside, rename).

use std::fs::{self, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::sys;
use crate::validate::{CONTEXT_MAX, CONTEXT_MIN};

/// File holding the next ID to try.
pub const NEXTID: &str = "nextid";
/// Lock file serialising allocations.
const LOCK: &str = ".lock";

/// A context ID reserved for a vserver; released on drop unless kept.
#[derive(Debug)]
pub struct Reservation {
    /// The ID.
    pub id: u32,
    /// The `<etc>/contexts/<id>` symlink.
    pub link: PathBuf,
    kept: bool,
}

impl Reservation {
    /// Keep the reservation (the vserver exists now).
    pub fn keep(mut self) -> u32 {
        self.kept = true;
        self.id
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = fs::remove_file(&self.link)
        {
            tracing::warn!(
                "could not release context link {}: {e}",
                self.link.display()
            );
        }
    }
}

/// Reserve the next free context ID at or after `nextid` (or `start` when
/// there is no `nextid`), linking `<contexts>/<id>` to `vserver_root`.
///
/// A link whose target does not exist is a reservation; `is_abandoned`
/// says whether the run that made it is gone (killed half-way), in which
/// case the ID is taken over (with a warning).
pub fn allocate(
    contexts: &Path,
    start: u32,
    vserver_root: &Path,
    is_abandoned: impl Fn(&Path) -> bool,
) -> Result<Reservation> {
    fs::create_dir_all(contexts).map_err(|e| Error::io("make directory", contexts, e))?;
    let lock_path = contexts.join(LOCK);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io("open", &lock_path, e))?;
    sys::lock_exclusive(lock.as_fd()).map_err(|e| Error::io("lock", &lock_path, e))?;

    let nextid_path = contexts.join(NEXTID);
    let first = match fs::read_to_string(&nextid_path) {
        Ok(text) => parse_nextid(&text)
            .map_err(|msg| Error::Failed(format!("{}: {msg}", nextid_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => start,
        Err(e) => return Err(Error::io("read", &nextid_path, e)),
    };
    let taken = |id: u32| {
        let link = contexts.join(id.to_string());
        if link.symlink_metadata().is_err() {
            return false;
        }
        match fs::read_link(&link) {
            Ok(target) if target.symlink_metadata().is_err() && is_abandoned(&target) => {
                tracing::warn!(
                    "context ID {id} was reserved for {} by a run that did not finish; reusing it",
                    target.display()
                );
                if let Err(e) = fs::remove_file(&link) {
                    tracing::warn!("cannot remove {}: {e}", link.display());
                    return true;
                }
                false
            }
            _ => true,
        }
    };
    let id = first_free(first, taken).ok_or_else(|| {
        Error::Failed(format!(
            "no free context ID left in {CONTEXT_MIN}..={CONTEXT_MAX} ({} is full)",
            contexts.display()
        ))
    })?;
    let link = contexts.join(id.to_string());
    symlink(vserver_root, &link).map_err(|e| Error::io("symlink", &link, e))?;
    let reservation = Reservation {
        id,
        link,
        kept: false,
    };
    write_atomically(&nextid_path, format!("{}\n", next_after(id)).as_bytes())?;
    Ok(reservation)
    // the lock is released when `lock` is closed here
}

/// Parse the content of `nextid`: one number, surrounding blanks allowed.
pub fn parse_nextid(text: &str) -> std::result::Result<u32, String> {
    let trimmed = text.trim();
    let id: u32 = trimmed
        .parse()
        .map_err(|_| format!("expected one context ID, found {trimmed:?}"))?;
    Ok(id.clamp(CONTEXT_MIN, CONTEXT_MAX + 1))
}

/// The first ID from `first` on (wrapping at the top of the range) for
/// which `taken` is false.
pub fn first_free(first: u32, taken: impl Fn(u32) -> bool) -> Option<u32> {
    let span = CONTEXT_MAX - CONTEXT_MIN + 1;
    let first = if (CONTEXT_MIN..=CONTEXT_MAX).contains(&first) {
        first
    } else {
        CONTEXT_MIN
    };
    (0..span)
        .map(|i| CONTEXT_MIN + (first - CONTEXT_MIN + i) % span)
        .find(|id| !taken(*id))
}

/// The ID `nextid` names after `id` was taken (wrapping to the bottom).
pub fn next_after(id: u32) -> u32 {
    if id >= CONTEXT_MAX {
        CONTEXT_MIN
    } else {
        id + 1
    }
}

/// The context ID whose link in `contexts` points at `vserver_root`.
pub fn find_link(contexts: &Path, vserver_root: &Path) -> Option<u32> {
    let entries = fs::read_dir(contexts).ok()?;
    entries.flatten().find_map(|entry| {
        let id: u32 = entry.file_name().to_str()?.parse().ok()?;
        (fs::read_link(entry.path()).ok()? == vserver_root).then_some(id)
    })
}

/// Replace `path` with `data` atomically: write beside, flush, rename.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_file_name(format!(
        ".{}.tmp{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("write", path, e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nextid() {
        let cases: &[(&str, Result<u32, ()>)] = &[
            ("50\n", Ok(50)),
            ("  7 ", Ok(7)),
            ("0", Ok(CONTEXT_MIN)),
            ("60000", Ok(CONTEXT_MAX + 1)),
            ("", Err(())),
            ("x", Err(())),
            ("5 6", Err(())),
        ];
        for (text, want) in cases {
            assert_eq!(parse_nextid(text).map_err(|_| ()), *want, "{text:?}");
        }
    }

    #[test]
    fn finds_the_first_free_id_and_wraps() {
        assert_eq!(first_free(50, |_| false), Some(50));
        assert_eq!(first_free(50, |id| id < 53), Some(53));
        assert_eq!(
            first_free(CONTEXT_MAX, |id| id == CONTEXT_MAX),
            Some(CONTEXT_MIN)
        );
        assert_eq!(first_free(CONTEXT_MAX + 1, |_| false), Some(CONTEXT_MIN));
        assert_eq!(first_free(50, |_| true), None);
        assert_eq!(next_after(50), 51);
        assert_eq!(next_after(CONTEXT_MAX), CONTEXT_MIN);
    }
}
