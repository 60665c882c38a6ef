//! Context IDs: one fixed number per vserver, allocated atomically.
//!
//! `<etc>/contexts/nextid` holds the next ID to try; `<etc>/contexts/<id>`
//! is a symlink to the vserver's root and marks the ID as taken (these
//! paths come from [`crate::layout::ContextFiles`]). Allocation
//! holds an exclusive `flock` on `<etc>/contexts/.lock`, skips IDs that are
//! taken, creates the symlink before letting go of the lock (so a
//! concurrent run can never pick the same ID) and rewrites `nextid`
//! atomically (write beside under an unguessable name, rename).
//!
//! A run killed half-way can leave a link behind, and its temporary file.
//! Each allocation, under the lock, first removes temporary files of
//! `nextid` and of relinks, and every link the caller calls stale (one
//! that no vserver owns: see `vserver::create`), wherever it is in the
//! range: an ID a killed run took is taken back by the next allocation.
//! Relinking (materialize) takes the same lock.

use std::fs::{self, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::{ContextFiles, NEXTID};
use crate::sys;
use crate::validate::{CONTEXT_MAX, CONTEXT_MIN};

/// What a relink's temporary link is called after its `.<id>`.
const RELINK_TMP: &str = ".new";

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

/// Take the allocation lock of `contexts` (made if missing), waiting.
fn lock(contexts: &Path) -> Result<fs::File> {
    fs::create_dir_all(contexts).map_err(|e| Error::io("make directory", contexts, e))?;
    let lock_path = ContextFiles::new(contexts).lock();
    sys::open_locked(&lock_path).map_err(|e| Error::io("open and lock", &lock_path, e))
}

/// Reserve the next free context ID at or after `nextid` (or `start` when
/// there is no `nextid`), linking `<contexts>/<id>` to `vserver_root`.
///
/// First, every link `<id> -> target` for which `is_stale(id, target)`
/// says no vserver owns it is removed (with a warning), and leftover
/// temporary files go.
pub fn allocate(
    contexts: &Path,
    start: u32,
    vserver_root: &Path,
    is_stale: impl Fn(u32, &Path) -> bool,
) -> Result<Reservation> {
    let _lock = lock(contexts)?;
    remove_leftovers(contexts, NEXTID);
    reclaim(contexts, is_stale)?;

    let files = ContextFiles::new(contexts);
    let nextid_path = files.nextid();
    let first = match fs::read_to_string(&nextid_path) {
        Ok(text) => parse_nextid(&text)
            .map_err(|msg| Error::Failed(format!("{}: {msg}", nextid_path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => start,
        Err(e) => return Err(Error::io("read", &nextid_path, e)),
    };
    let taken = |id: u32| files.link(id).symlink_metadata().is_ok();
    let id = first_free(first, taken).ok_or_else(|| {
        Error::Failed(format!(
            "no free context ID left in {CONTEXT_MIN}..={CONTEXT_MAX} ({} is full)",
            contexts.display()
        ))
    })?;
    let link = files.link(id);
    symlink(vserver_root, &link).map_err(|e| Error::io("symlink", &link, e))?;
    let reservation = Reservation {
        id,
        link,
        kept: false,
    };
    write_atomically(&nextid_path, format!("{}\n", next_after(id)).as_bytes())?;
    Ok(reservation)
    // the lock is released when `_lock` is closed here
}

/// Remove every ID link that `is_stale` says no vserver owns, and the
/// temporary links of interrupted relinks (called with the lock held).
fn reclaim(contexts: &Path, is_stale: impl Fn(u32, &Path) -> bool) -> Result<()> {
    let entries = fs::read_dir(contexts).map_err(|e| Error::io("read directory", contexts, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", contexts, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if is_relink_temporary(name) {
            remove_quietly(&path);
            continue;
        }
        let Some(id) = name.parse::<u32>().ok().filter(|id| id.to_string() == name) else {
            continue;
        };
        let is_link = entry.file_type().map(|t| t.is_symlink()).unwrap_or(false);
        if !is_link {
            continue; // not ours
        }
        let target = match fs::read_link(&path) {
            Ok(target) => target,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read link", &path, e)),
        };
        if is_stale(id, &target) {
            tracing::warn!(
                "context ID {id} ({} -> {}) belongs to no vserver (an interrupted run left it); \
                 taking it back",
                path.display(),
                target.display()
            );
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &path, e)),
            }
        }
    }
    Ok(())
}

/// `.<id>.new<suffix>`: a relink's temporary link.
fn is_relink_temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|rest| rest.split_once(RELINK_TMP))
        .is_some_and(|(id, suffix)| {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !suffix.is_empty()
                && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
}

/// Point `<contexts>/<id>` at `target`, replacing the link atomically
/// (under the allocation lock).
pub fn relink(contexts: &Path, id: u32, target: &Path) -> Result<()> {
    let _lock = lock(contexts)?;
    let link = ContextFiles::new(contexts).link(id);
    if fs::read_link(&link).ok().as_deref() == Some(target) {
        return Ok(());
    }
    let suffix = sys::unguessable_suffix().map_err(|e| Error::io("name", contexts, e))?;
    let tmp = contexts.join(format!(".{id}{RELINK_TMP}{suffix}"));
    symlink(target, &tmp).map_err(|e| Error::io("symlink", &tmp, e))?;
    if let Err(e) = fs::rename(&tmp, &link) {
        remove_quietly(&tmp);
        return Err(Error::io("replace", &link, e));
    }
    Ok(())
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

/// The context IDs whose links in `contexts` point at one of `roots`.
pub fn find_links(contexts: &Path, roots: &[&Path]) -> Vec<u32> {
    let Ok(entries) = fs::read_dir(contexts) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| {
            let id: u32 = entry.file_name().to_str()?.parse().ok()?;
            let target = fs::read_link(entry.path()).ok()?;
            roots.contains(&target.as_path()).then_some(id)
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// The context ID whose link in `contexts` points at `vserver_root`.
pub fn find_link(contexts: &Path, vserver_root: &Path) -> Option<u32> {
    find_links(contexts, &[vserver_root]).into_iter().next()
}

/// Replace `path` with `data` atomically and durably: write beside under
/// an unguessable name (`.<name>.tmp<suffix>`, made exclusively, never
/// through a symlink), flush, rename, flush the directory.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    write_beside(path, data, true)
}

/// Like [`write_atomically`], but fail (`EEXIST`) if `path` exists.
pub fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    write_beside(path, data, false)
}

fn write_beside(path: &Path, data: &[u8], replace: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let (dir, name) = crate::staging::split_parent(path)?;
    let suffix = sys::unguessable_suffix().map_err(|e| Error::io("name", path, e))?;
    let tmp_name = format!(".{}.tmp{suffix}", name.to_string_lossy());
    let tmp = dir.join(&tmp_name);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        let dir_fd = sys::open_root(dir)?;
        let tmp_c = sys::cname(tmp_name.as_ref())?;
        if replace {
            sys::rename_replace(dir_fd.as_fd(), &tmp_c, dir_fd.as_fd(), &name)?;
        } else {
            sys::rename_noreplace(dir_fd.as_fd(), &tmp_c, dir_fd.as_fd(), &name)?;
        }
        rustix::fs::fsync(&dir_fd).map_err(std::io::Error::from)
    })();
    if let Err(e) = result {
        remove_quietly(&tmp);
        return Err(Error::io("write", path, e));
    }
    Ok(())
}

/// Remove the temporary files [`write_atomically`] of `<dir>/<base>` left
/// (a run killed half-way). Call it only where nothing else writes that
/// file now (under the lock that serialises its writers).
pub fn remove_leftovers(dir: &Path, base: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let prefix = format!(".{base}.tmp");
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_ours = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .is_some_and(|suffix| {
                !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit())
            });
        if is_ours {
            tracing::debug!(
                "removing {}, left by an interrupted run",
                entry.path().display()
            );
            remove_quietly(&entry.path());
        }
    }
}

/// Remove a file whose removal is tidying up; a failure is a warning.
fn remove_quietly(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!("cannot remove {}: {e}", path.display()),
    }
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
    fn relink_temporaries_are_told_apart() {
        for (name, want) in [
            (".50.new0a1b", true),
            (".50.new1234", true),
            (".50.new", false),
            ("50", false),
            (".x.new12", false),
            (".50.newzz", false),
            (".nextid.tmp12", false),
        ] {
            assert_eq!(is_relink_temporary(name), want, "{name}");
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
