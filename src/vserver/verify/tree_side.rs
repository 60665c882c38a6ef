//! A tree vserver's side of `verify`: each global path of its generation
//! should be the skel's inode (directories: a directory of its own). A
//! copy with the recorded content, mode, owner, mtime and xattrs is
//! `broken-off` (`repair` links it again); anything else there, or
//! nothing, is `replaced`. Only a copy whose metadata matches is hashed.
//!
//! Under protection a global symlink, device, FIFO or socket is not
//! shared by link ([`crate::protect::shared_by_link`]): a copy with the
//! recorded target (device number) and metadata is as it should be, one
//! that differs is `replaced` (the vserver's own change, harming no other
//! vserver), and the skel's inode itself there (a tree made before vskel
//! copied them) is `shared-unprotected` (`repair` breaks it off into a
//! copy).
//! The tree is hostile: nothing in it is followed (see [`super::lookup`]).

use std::path::PathBuf;

use super::Problem;
use super::lookup::{Found, Looker};
use super::skel_side::kind_name;
use crate::config::Protect;
use crate::error::{Error, Result};
use crate::generation::{Entry, Generation, Kind, Part};
use crate::protect::shared_by_link;
use crate::sys;
use crate::tree::TreeRoot;
use crate::vserver::upgrade::observe::{self, Against};

/// One finding in a vserver's tree.
#[derive(Debug, Clone)]
pub struct TreeFinding {
    /// The recorded entry.
    pub entry: Entry,
    /// What is wrong.
    pub problem: Problem,
    /// How, for people.
    pub detail: String,
}

/// Check the global paths of `generation` in `tree`, whose global
/// entries are shared by link as `protect` says
/// ([`crate::protect::shared_by_link`]).
pub fn check(
    tree: &TreeRoot,
    generation: &Generation,
    protect: Protect,
) -> Result<Vec<TreeFinding>> {
    let mut looker = Looker::new(tree);
    let mut out = Vec::new();
    let mut blocked: Vec<PathBuf> = Vec::new();
    for e in generation.entries() {
        if e.part != Part::Global || e.path.as_os_str().is_empty() {
            continue;
        }
        if blocked.iter().any(|b| e.path.starts_with(b)) {
            continue;
        }
        let mut found = |problem, detail: String| {
            out.push(TreeFinding {
                entry: e.clone(),
                problem,
                detail,
            })
        };
        let (dir, name, st) = match looker.look(&e.path)? {
            Found::Blocked => {
                blocked.push(e.path.clone());
                found(
                    Problem::Replaced,
                    "a parent directory is missing or not a directory (not followed)".into(),
                );
                continue;
            }
            Found::At { stat: None, .. } => {
                if e.kind == Kind::Dir {
                    blocked.push(e.path.clone());
                }
                found(Problem::Replaced, "removed from the vserver".into());
                continue;
            }
            Found::At {
                dir,
                name,
                stat: Some(st),
            } => (dir, name, st),
        };
        let kind = Kind::of_stat(&st);
        if e.kind == Kind::Dir {
            if kind != Kind::Dir {
                blocked.push(e.path.clone());
                found(
                    Problem::Replaced,
                    format!(
                        "a {} where the skel has a directory (not followed)",
                        kind_name(kind)
                    ),
                );
            }
            continue;
        }
        let linked = shared_by_link(protect, e.kind);
        if (sys::dev_of(&st), sys::ino_of(&st)) == e.inode() {
            if !linked {
                found(
                    Problem::SharedUnprotected,
                    format!(
                        "the skel's {} itself, shared by hard link: no attribute can \
                         protect it, so this vserver's root could change it for the skel \
                         and every vserver sharing it (`vskel repair` gives the vserver a \
                         copy of its own)",
                        kind_name(e.kind)
                    ),
                );
            }
            continue;
        }
        let shown = tree.display(&e.path);
        let copy = observe::is(dir, &name, &st, e, Against::Old)
            .map_err(|x| Error::io("compare", &shown, x))?;
        if copy {
            // Under protection a symlink or device is meant to be a copy.
            if linked {
                found(
                    Problem::BrokenOff,
                    "a copy of the skel's file, not its inode".into(),
                );
            }
        } else if kind != e.kind {
            found(
                Problem::Replaced,
                format!(
                    "a {} where the skel has a {}",
                    kind_name(kind),
                    kind_name(e.kind)
                ),
            );
        } else if linked {
            found(
                Problem::Replaced,
                "a different file than the skel's (content or metadata)".into(),
            );
        } else {
            found(
                Problem::Replaced,
                format!(
                    "a {} of the vserver's own that differs from the skel's (target or \
                     metadata); no other vserver shares it",
                    kind_name(kind)
                ),
            );
        }
    }
    Ok(out)
}
