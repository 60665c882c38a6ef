//! Skel generations: what each path of a skel's `global/`, `local/` and
//! `static/` was (kind, mode, owner, size, mtime, xattrs, BLAKE3 content
//! hash, and its inode in the skel) at each recorded change of the skel.
//!
//! Generations are numbered 1, 2, ...; each is written once (mode 0444,
//! atomically and durably, never rewritten) under
//! `<skel>/generations/` as its full record `N.record` and, for N > 1,
//! its changes against N - 1 `N.changes` ([`store`]), so that going from
//! generation O to N reads only the change lists ([`changes()`]). The skel's
//! current generation is its highest complete one ([`current`]).
//!
//! [`record`] scans the skel ([`scan`]; only inodes that changed are
//! hashed again) and writes generation N + 1 only when a path differs
//! from N, keeping a copy of each global file's content ([`objects`]).
//! Engine: it imports no op.

pub mod changes;
pub mod codec;
pub mod content;
pub mod entry;
pub mod objects;
pub mod scan;
pub mod store;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use serde::Serialize;

pub use changes::{Change, changes, own_changes};
pub use codec::Header;
use codec::{Damage, FileType};
pub use content::content_id;
pub use entry::{Entry, Hash, Kind, Part};
pub use objects::Store;

use crate::error::{Error, Result};
use crate::layout::SkelDirs;
use crate::progress::Progress;

/// One generation's full record, looked up by (part, path).
#[derive(Debug, Clone)]
pub struct Generation {
    /// What the record says of itself.
    pub header: Header,
    /// Sorted by (part, path bytes).
    entries: Vec<Entry>,
}

impl Generation {
    /// Its number.
    pub fn number(&self) -> u64 {
        self.header.generation
    }

    /// The entry of `path` in `part`, if the generation has it.
    pub fn entry(&self, part: Part, path: &Path) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| entry::key_cmp(e.key(), (part, path)))
            .ok()
            .map(|i| &self.entries[i])
    }

    /// Every entry, sorted by part, then path bytes.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
}

/// What [`record`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// The skel's current generation now.
    pub generation: u64,
    /// Whether this call wrote it (false: nothing had changed).
    pub new: bool,
    /// Paths that changed against the generation before (all, for the
    /// first one).
    pub changes: u64,
    /// Entries of the generation.
    pub entries: u64,
    /// Regular files and symlinks hashed by this scan.
    pub hashed: u64,
}

/// The skel's current generation (its highest complete one), if any.
pub fn current(skel: &SkelDirs) -> Result<Option<u64>> {
    Ok(store::numbers(&skel.generations())?.last().copied())
}

/// Every complete generation of the skel, ascending.
pub fn list(skel: &SkelDirs) -> Result<Vec<u64>> {
    store::numbers(&skel.generations())
}

/// Scan the skel and record generation N + 1 if anything differs from its
/// current generation N (or generation 1 if it has none). `made_by` names
/// the command, for the record; `store` says whether the content of its
/// global files is kept too ([`objects`]).
pub fn record(
    skel: &SkelDirs,
    made_by: &str,
    progress: &Progress,
    store: Store,
) -> Result<Recorded> {
    let files = skel.generations();
    let _lock = store::lock(&files)?;
    let previous = match current(skel)? {
        Some(n) => Some(load(skel, n)?),
        None => None,
    };
    let scanned = scan::scan(skel, previous.as_ref(), progress)?;
    // The content `repair` restores a shared inode from; a store that
    // cannot be written costs that, not the generation.
    if store == Store::Keep
        && let Err(e) = objects::keep(skel, &scanned.entries)
    {
        tracing::warn!("the content store of the skel is incomplete: {e}");
    }
    let changes = changes::diff(
        previous.as_ref().map_or(&[], |p| p.entries()),
        &scanned.entries,
    );
    if let Some(previous) = &previous
        && changes.is_empty()
    {
        return Ok(Recorded {
            generation: previous.number(),
            new: false,
            changes: 0,
            entries: previous.header.entries,
            hashed: scanned.hashed,
        });
    }
    let number = previous.as_ref().map_or(1, |p| p.number() + 1);
    let header = Header {
        generation: number,
        follows: previous.as_ref().map(Generation::number),
        made: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        made_by: made_by.to_string(),
        entries: scanned.entries.len() as u64,
        bytes: scanned
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum(),
        changes: changes.len() as u64,
    };
    store::remove_leftovers(&files, number)?;
    if previous.is_some() {
        let lines: Vec<String> = changes
            .iter()
            .flat_map(|c| {
                let old = c
                    .old
                    .as_ref()
                    .map(|e| format!("o\t{}", codec::encode_entry(e)));
                let new = c
                    .new
                    .as_ref()
                    .map(|e| format!("n\t{}", codec::encode_entry(e)));
                old.into_iter().chain(new)
            })
            .collect();
        store::write_once(
            &files.changes(number),
            &codec::encode_file(FileType::Changes, &header, &lines),
        )?;
    }
    let lines: Vec<String> = scanned.entries.iter().map(codec::encode_entry).collect();
    store::write_once(
        &files.record(number),
        &codec::encode_file(FileType::Record, &header, &lines),
    )?;
    Ok(Recorded {
        generation: number,
        new: true,
        changes: header.changes,
        entries: header.entries,
        hashed: scanned.hashed,
    })
}

/// The current generation, recording one first if the skel has none yet
/// (a skel built before generations existed).
pub fn ensure(skel: &SkelDirs, made_by: &str, progress: &Progress, store: Store) -> Result<u64> {
    match current(skel)? {
        Some(n) => Ok(n),
        None => Ok(record(skel, made_by, progress, store)?.generation),
    }
}

/// Generation `n`'s full record.
pub fn load(skel: &SkelDirs, n: u64) -> Result<Generation> {
    let path = skel.generations().record(n);
    let text = read_existing(&path, n)?;
    let damaged = |d: Damage| damaged(&path, d);
    let (header, lines) = codec::decode_file(FileType::Record, &text).map_err(damaged)?;
    check_header(&header, n, lines.len()).map_err(damaged)?;
    let entries = lines
        .into_par_iter()
        .map(codec::decode_entry)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(damaged)?;
    if entries
        .windows(2)
        .any(|w| entry::key_cmp(w[0].key(), w[1].key()) != std::cmp::Ordering::Less)
    {
        return Err(damaged(Damage("entries out of order or repeated".into())));
    }
    Ok(Generation { header, entries })
}

/// Generation `n`'s header only (cheap: for listings).
pub fn header(skel: &SkelDirs, n: u64) -> Result<Header> {
    // The whole file is read to check it; its entries are not decoded.
    let path = skel.generations().record(n);
    let text = read_existing(&path, n)?;
    let (header, lines) =
        codec::decode_file(FileType::Record, &text).map_err(|d| damaged(&path, d))?;
    check_header(&header, n, lines.len()).map_err(|d| damaged(&path, d))?;
    Ok(header)
}

pub(crate) fn read_existing(path: &Path, n: u64) -> Result<Vec<u8>> {
    store::read(path)?.ok_or_else(|| {
        Error::Failed(format!(
            "{}: generation {n} is not recorded (no such file)",
            path.display()
        ))
    })
}

fn check_header(header: &Header, n: u64, lines: usize) -> std::result::Result<(), Damage> {
    if header.generation != n {
        return Err(Damage(format!(
            "says it is generation {}, expected {n}",
            header.generation
        )));
    }
    if header.entries != lines as u64 {
        return Err(Damage(format!(
            "the header counts {} entries, the file has {lines}",
            header.entries
        )));
    }
    Ok(())
}

pub(crate) fn damaged(path: &Path, d: Damage) -> Error {
    Error::Failed(format!(
        "{}: damaged generation file: {}",
        path.display(),
        d.0
    ))
}
