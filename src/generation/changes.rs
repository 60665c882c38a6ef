//! What changed between generations: the change list a new generation
//! is written with (`diff`), reading one generation's list
//! ([`own_changes`]), and folding the lists of a span of generations into
//! one change per path ([`changes`]), all without loading a full record.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::codec::{self, Damage, FileType};
use super::entry::{self, Entry, Part};
use super::{damaged, read_existing};
use crate::error::{Error, Result};
use crate::layout::SkelDirs;

/// What changed at one path between two generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The part.
    pub part: Part,
    /// The path in it.
    pub path: PathBuf,
    /// The entry in the older generation (none: added).
    pub old: Option<Entry>,
    /// The entry in the newer one (none: removed).
    pub new: Option<Entry>,
}

/// Generation `n`'s own changes against `n - 1`.
pub fn own_changes(skel: &SkelDirs, n: u64) -> Result<Vec<Change>> {
    let files = skel.generations();
    let path = files.changes(n);
    let text = read_existing(&path, n)?;
    let damaged = |d: Damage| damaged(&path, d);
    let (header, lines) = codec::decode_file(FileType::Changes, &text).map_err(damaged)?;
    if header.generation != n || header.follows != Some(n - 1) {
        return Err(damaged(Damage(format!(
            "says it is generation {} after {:?}, expected {n} after {}",
            header.generation,
            header.follows,
            n - 1
        ))));
    }
    let mut changes: Vec<Change> = Vec::with_capacity(header.changes as usize);
    for line in lines {
        let (side, rest) = match line {
            [side @ (b'o' | b'n'), b'\t', rest @ ..] => (*side, rest),
            _ => return Err(damaged(Damage("a change line without o/n".into()))),
        };
        let e = codec::decode_entry(rest).map_err(damaged)?;
        let pairs_with_last = side == b'n'
            && changes.last().is_some_and(|c| {
                c.new.is_none() && c.old.as_ref().is_some_and(|o| o.key() == e.key())
            });
        if pairs_with_last {
            if let Some(last) = changes.last_mut() {
                last.new = Some(e);
            }
            continue;
        }
        if let Some(last) = changes.last()
            && entry::key_cmp((last.part, &last.path), e.key()) != std::cmp::Ordering::Less
        {
            return Err(damaged(Damage("changes out of order or repeated".into())));
        }
        let (old, new) = if side == b'o' {
            (Some(e.clone()), None)
        } else {
            (None, Some(e.clone()))
        };
        changes.push(Change {
            part: e.part,
            path: e.path,
            old,
            new,
        });
    }
    if changes.len() as u64 != header.changes {
        return Err(damaged(Damage(format!(
            "the header counts {} changes, the file has {}",
            header.changes,
            changes.len()
        ))));
    }
    Ok(changes)
}

/// The changes between generations `from` and `to`, one per path (the
/// chain of change lists folded; a path changed and changed back is left
/// out). With `from > to` the changes run backwards (`old` is `from`'s).
/// Reads only the change lists.
pub fn changes(skel: &SkelDirs, from: u64, to: u64) -> Result<Vec<Change>> {
    if from > to {
        let mut back = changes(skel, to, from)?;
        for c in &mut back {
            std::mem::swap(&mut c.old, &mut c.new);
        }
        return Ok(back);
    }
    if from == 0 {
        return Err(Error::Failed(format!(
            "{}: there is no generation 0",
            skel.generations().dir.display()
        )));
    }
    let mut folded: BTreeMap<(Part, OsString), Change> = BTreeMap::new();
    for n in from + 1..=to {
        for change in own_changes(skel, n)? {
            let key = (change.part, change.path.as_os_str().to_owned());
            match folded.get_mut(&key) {
                Some(seen) => {
                    if !same_side(&seen.new, &change.old) {
                        return Err(Error::Failed(format!(
                            "{}: its old entry of {} is not generation {}'s",
                            skel.generations().changes(n).display(),
                            change.path.display(),
                            n - 1
                        )));
                    }
                    seen.new = change.new;
                }
                None => {
                    folded.insert(key, change);
                }
            }
        }
    }
    let mut out: Vec<Change> = folded
        .into_values()
        .filter(|c| !same_side(&c.old, &c.new))
        .collect();
    out.sort_by(|a, b| {
        a.part.cmp(&b.part).then_with(|| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        })
    });
    Ok(out)
}

fn same_side(a: &Option<Entry>, b: &Option<Entry>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.same_as(b),
        _ => false,
    }
}

/// The changes from `old` to `new` (both sorted by key).
pub(super) fn diff(old: &[Entry], new: &[Entry]) -> Vec<Change> {
    use std::cmp::Ordering;
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        let order = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => entry::key_cmp(o.key(), n.key()),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let (o, n) = match order {
            Ordering::Less => {
                i += 1;
                (Some(&old[i - 1]), None)
            }
            Ordering::Greater => {
                j += 1;
                (None, Some(&new[j - 1]))
            }
            Ordering::Equal => {
                i += 1;
                j += 1;
                (Some(&old[i - 1]), Some(&new[j - 1]))
            }
        };
        if let (Some(o), Some(n)) = (o, n)
            && o.same_as(n)
        {
            continue;
        }
        let key = o.or(n).map(|e| (e.part, e.path.clone()));
        if let Some((part, path)) = key {
            out.push(Change {
                part,
                path,
                old: o.cloned(),
                new: n.cloned(),
            });
        }
    }
    out
}
