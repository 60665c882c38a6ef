//! What an upgrade decides for each path that changed between a vserver's
//! generation O and the skel's current one N: the effective entries of
//! the two generations at the path (the topmost part holding it, as
//! `create-vs` layers them: static over local over global), and, with what
//! the vserver has there now (V), one [`Action`] (the table).

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::Result;
use crate::generation::{self, Change, Entry, Generation, Kind, Part};
use crate::layout::SkelDirs;

/// What is done at one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// V is O, N differs: N put in place.
    Take,
    /// V is O and absent, N added it: N put in place.
    Add,
    /// V is O, N removed it: removed.
    Remove,
    /// V differs from O, N is O: V kept.
    Keep,
    /// V equals N already (global entries linked to N's inode).
    Converge,
    /// V, O and N all differ (or a type changed): the strategy decides.
    Conflict,
}

/// The effective entries of O and N at one path.
#[derive(Debug, Clone)]
pub struct Span {
    /// The path, relative to the vserver's root.
    pub path: PathBuf,
    /// O's entry (none: O has no such path).
    pub old: Option<Entry>,
    /// N's entry.
    pub new: Option<Entry>,
}

/// The paths whose effective entry differs between O and N, sorted, with
/// both entries. Reads only the change lists, and N's full record only
/// when a changed part uncovers an unchanged one below it.
pub fn spans(skel: &SkelDirs, from: u64, to: u64) -> Result<Vec<Span>> {
    let changes = generation::changes(skel, from, to)?;
    let mut by_path: std::collections::BTreeMap<Vec<u8>, Vec<Change>> = Default::default();
    for c in changes {
        use std::os::unix::ffi::OsStrExt;
        by_path
            .entry(c.path.as_os_str().as_bytes().to_vec())
            .or_default()
            .push(c);
    }
    let mut record: Option<Generation> = None;
    let mut out = Vec::new();
    for changed in by_path.into_values() {
        let path = changed[0].path.clone();
        let (mut old, mut new): (Option<Option<Entry>>, Option<Option<Entry>>) = (None, None);
        for part in [Part::Static, Part::Local, Part::Global] {
            if old.is_some() && new.is_some() {
                break;
            }
            let (o, n) = match changed.iter().find(|c| c.part == part) {
                Some(c) => (c.old.clone(), c.new.clone()),
                None => {
                    if !in_skel(skel, part, &path) {
                        continue;
                    }
                    if old.is_none() && new.is_none() {
                        // An unchanged part above every change: it shows.
                        old = Some(None);
                        new = Some(None);
                        break;
                    }
                    if record.is_none() {
                        record = Some(generation::load(skel, to)?);
                    }
                    let e = record.as_ref().and_then(|r| r.entry(part, &path).cloned());
                    (e.clone(), e)
                }
            };
            if old.is_none() && o.is_some() {
                old = Some(o);
            }
            if new.is_none() && n.is_some() {
                new = Some(n);
            }
        }
        let (old, new) = (old.flatten(), new.flatten());
        let same = match (&old, &new) {
            (None, None) => true,
            (Some(o), Some(n)) => o.same_as(n),
            _ => false,
        };
        if !same {
            out.push(Span { path, old, new });
        }
    }
    Ok(out)
}

fn in_skel(skel: &SkelDirs, part: Part, path: &Path) -> bool {
    let root = match part {
        Part::Global => skel.global(),
        Part::Local => skel.local(),
        Part::Static => skel.static_dir(),
    };
    root.join(path).symlink_metadata().is_ok()
}

/// How V compares with O and with N.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// V is O (both absent counts).
    pub is_old: bool,
    /// V equals N (both absent counts).
    pub is_new: bool,
    /// V's kind, if V exists.
    pub kind: Option<Kind>,
}

/// The table.
pub fn decide(span: &Span, seen: Seen) -> Action {
    let kind_of = |e: &Option<Entry>| e.as_ref().map(|e| e.kind);
    let (o, n, v) = (kind_of(&span.old), kind_of(&span.new), seen.kind);
    let type_change =
        |a: Option<Kind>, b: Option<Kind>| matches!((a, b), (Some(a), Some(b)) if a != b);
    if seen.is_new {
        return Action::Converge;
    }
    let unchanged = match (&span.old, &span.new) {
        (None, None) => true,
        (Some(o), Some(n)) => o.same_content(n),
        _ => false,
    };
    if unchanged && !seen.is_old {
        return Action::Keep;
    }
    if type_change(o, n) || type_change(o, v) || (o.is_none() && type_change(n, v)) {
        return Action::Conflict;
    }
    if seen.is_old {
        return match (&span.old, &span.new) {
            (_, None) => Action::Remove,
            (None, Some(_)) => Action::Add,
            _ => Action::Take,
        };
    }
    Action::Conflict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind) -> Entry {
        Entry {
            part: Part::Global,
            path: "a".into(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 0,
            mtime: (0, 0),
            ctime: (0, 0),
            rdev: 0,
            dev: 0,
            ino: 1,
            xattrs: Vec::new(),
            hash: None,
        }
    }

    #[test]
    fn the_table() {
        let f = Some(entry(Kind::File));
        let d = Some(entry(Kind::Dir));
        let g = Some(Entry {
            size: 1,
            ..entry(Kind::File)
        });
        let span = |old: &Option<Entry>, new: &Option<Entry>| Span {
            path: "a".into(),
            old: old.clone(),
            new: new.clone(),
        };
        let seen = |is_old, is_new, kind| Seen {
            is_old,
            is_new,
            kind,
        };
        let file = Some(Kind::File);
        assert_eq!(decide(&span(&f, &g), seen(true, false, file)), Action::Take);
        assert_eq!(
            decide(&span(&None, &f), seen(true, false, None)),
            Action::Add
        );
        assert_eq!(
            decide(&span(&f, &None), seen(true, false, file)),
            Action::Remove
        );
        assert_eq!(
            decide(&span(&f, &g), seen(false, true, file)),
            Action::Converge
        );
        assert_eq!(
            decide(&span(&f, &g), seen(false, false, file)),
            Action::Conflict
        );
        assert_eq!(
            decide(&span(&f, &None), seen(false, false, file)),
            Action::Conflict
        );
        assert_eq!(
            decide(&span(&f, &d), seen(true, false, file)),
            Action::Conflict
        );
        assert_eq!(
            decide(&span(&f, &f), seen(false, false, file)),
            Action::Keep
        );
        assert_eq!(
            decide(&span(&f, &g), seen(false, false, Some(Kind::Dir))),
            Action::Conflict
        );
    }
}
