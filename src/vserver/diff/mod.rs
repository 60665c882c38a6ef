//! `diff` as an op: what a vserver changed against its skel, the preview
//! before materialising: each path added, modified (in content, metadata
//! or both, [`facts`]) or removed, with its size. Nothing is written.
//!
//! * A view ([`view`]) against what it shows with an empty upper layer:
//!   its skel's layers of its generation under its rendered `static/`.
//!   Only what the upper layer holds is looked at.
//! * A tree ([`tree`]) against the skel generation its record names
//!   (static files as rendered for it), or against the skel as it is now
//!   when the record names none.
//!
//! Paths are as the vserver sees them (`/etc/motd`), sorted; a removed or
//! added directory is listed with everything below it.

pub mod facts;
pub mod tree;
pub mod view;

use serde::Serialize;

use super::registry::{self, Kind as VsKind, Record};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::Kind;
use crate::validate::validate_name;

/// What happened to a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The vserver has it, the skel does not.
    Added,
    /// Both have it; it differs.
    Modified,
    /// The skel has it, the vserver does not.
    Removed,
}

impl Status {
    /// Its letter in text output, as `git status --short` writes it.
    pub fn letter(self) -> char {
        match self {
            Status::Added => 'A',
            Status::Modified => 'M',
            Status::Removed => 'D',
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The path as the vserver sees it (`/etc/motd`).
    pub path: String,
    /// What happened to it.
    pub status: Status,
    /// What it is (removed: what it was).
    pub kind: Kind,
    /// Modified: its content (kind, bytes, target, device number) differs.
    pub content: bool,
    /// Modified: its mode, owner, xattrs or mtime differ.
    pub metadata: bool,
    /// Its size in bytes (removed: the skel's); null for a directory.
    pub size: Option<u64>,
    /// Modified: the skel's size; null for a directory.
    pub old_size: Option<u64>,
}

impl Change {
    /// An added or removed entry of `kind` and `size` at `rel`.
    pub fn whole(status: Status, rel: &std::path::Path, kind: Kind, size: u64) -> Change {
        Change {
            path: shown(rel),
            status,
            kind,
            content: false,
            metadata: false,
            size: (kind != Kind::Dir).then_some(size),
            old_size: None,
        }
    }

    /// The entry at `rel` if `new` differs from `old` (content or
    /// metadata), else none.
    pub fn between(
        rel: &std::path::Path,
        old: &facts::Facts<'_>,
        new: &facts::Facts<'_>,
    ) -> std::io::Result<Option<Change>> {
        Ok(facts::compare(old, new)?.map(|changed| {
            Change::modified(rel, changed, (old.kind, old.size), (new.kind, new.size))
        }))
    }

    /// A modified entry.
    pub fn modified(
        rel: &std::path::Path,
        changed: facts::Changed,
        (old_kind, old_size): (Kind, u64),
        (kind, size): (Kind, u64),
    ) -> Change {
        Change {
            path: shown(rel),
            status: Status::Modified,
            kind,
            content: changed.content,
            metadata: changed.metadata,
            size: (kind != Kind::Dir).then_some(size),
            old_size: (old_kind != Kind::Dir).then_some(old_size),
        }
    }
}

/// `/` + `rel`.
fn shown(rel: &std::path::Path) -> String {
    super::verify::shown(rel)
}

/// How many paths changed, and how many bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Paths added.
    pub added: u64,
    /// Paths modified.
    pub modified: u64,
    /// Of those, in content.
    pub modified_content: u64,
    /// Of those, in metadata.
    pub modified_metadata: u64,
    /// Paths removed.
    pub removed: u64,
    /// Bytes of the added entries.
    pub added_bytes: u64,
    /// Bytes of the modified entries (their size now).
    pub modified_bytes: u64,
    /// Bytes of the removed entries (their size in the skel).
    pub removed_bytes: u64,
}

impl Summary {
    /// The counts of `changes`.
    pub fn of(changes: &[Change]) -> Summary {
        let mut s = Summary::default();
        for c in changes {
            let bytes = c.size.unwrap_or(0);
            match c.status {
                Status::Added => {
                    s.added += 1;
                    s.added_bytes += bytes;
                }
                Status::Modified => {
                    s.modified += 1;
                    s.modified_content += u64::from(c.content);
                    s.modified_metadata += u64::from(c.metadata);
                    s.modified_bytes += bytes;
                }
                Status::Removed => {
                    s.removed += 1;
                    s.removed_bytes += bytes;
                }
            }
        }
        s
    }
}

/// What `diff` found in one vserver.
#[derive(Debug, Clone, Serialize)]
pub struct Diffed {
    /// The vserver.
    pub name: String,
    /// Tree or view.
    pub kind: VsKind,
    /// Its skel.
    pub skel: String,
    /// The skel generation it was compared with (null: with the skel as
    /// it is now, the vserver's record naming none).
    pub generation: Option<u64>,
    /// The counts.
    pub summary: Summary,
    /// Every changed path, sorted (left out with `--stat`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<Change>>,
}

/// Diff vserver `name` against its skel. An unknown name is a usage
/// error.
pub fn diff(config: &Config, name: &str) -> Result<Diffed> {
    let record = named(config, name)?;
    let (skel, generation, mut changes) = match record.kind {
        VsKind::View => view::changes(config, name)?,
        VsKind::Tree => tree::changes(config, &record)?,
        VsKind::Unregistered => {
            return Err(Error::Failed(format!(
                "vserver \"{name}\" has no record of its skel: there is nothing to compare it with"
            )));
        }
    };
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Diffed {
        name: record.name,
        kind: record.kind,
        skel,
        generation,
        summary: Summary::of(&changes),
        changes: Some(changes),
    })
}

/// The record of vserver `name`, complete.
fn named(config: &Config, name: &str) -> Result<Record> {
    validate_name("vserver name", name)?;
    let Some(record) = registry::load(config, name)? else {
        return Err(Error::Usage(format!(
            "no vserver named \"{name}\"; `vskel list` shows the vservers"
        )));
    };
    if record.creating {
        return Err(Error::Failed(format!(
            "vserver \"{name}\" is being created, or its create-vs was interrupted"
        )));
    }
    Ok(record)
}
