//! `rollback-skel`: give a skel back the global/ and local/ of an earlier
//! generation, as a new generation (generations never change once
//! recorded, so going back is one more step forward whose content is the
//! old one's).
//!
//! The earlier generation's parts are its kept tree,
//! `generations/G.tree/{global,local}` (split-skel keeps the generation
//! before the current one, and every one a view uses). They are
//! hard-linked into one tree in a staging directory and split back into
//! the skel exactly as `split-skel` splits the temporary vserver
//! ([`super::split::split_from`]): the skel keeps its inode for every
//! entry that did not change, a changed entry gets generation G's inode
//! again, and the swap is as atomic and crash-safe as a split. static/
//! is never touched (merge-skel and split-skel never change it either).
//! Vservers follow with `upgrade-vs`: a tree's changed paths are linked
//! to G's inodes again.

use serde::Serialize;

use super::Skel;
use super::lifecycle::{self, exists};
use super::split::split_from;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation;
use crate::layout::{GLOBAL, LOCAL};
use crate::progress::Progress;
use crate::staging::{Staging, make_private_dir};
use crate::tree::TreeRoot;
use crate::tree::copy::{CopyOptions, Everything, How, Target, copy_tree};

/// What `rollback-skel` did.
#[derive(Debug, Clone, Serialize)]
pub struct RollbackReport {
    /// The skel.
    pub skel: String,
    /// The generation it was on.
    pub from: u64,
    /// The generation whose parts it took back.
    pub to: u64,
    /// The generation recorded for it now (its content is `to`'s).
    pub generation: u64,
    /// Entries put back or replaced.
    pub put: u64,
    /// Entries removed.
    pub removed: u64,
    /// Directories made.
    pub dirs: u64,
}

/// Give skel `name` the global/ and local/ of generation `to` (default:
/// the one before its current generation) as a new generation.
pub fn rollback_skel(
    config: &Config,
    name: &str,
    to: Option<u64>,
    progress: &Progress,
) -> Result<RollbackReport> {
    let skel = Skel::open(config, name)?;
    refuse_merged(config, &skel)?; // before the lock writes its file
    let _lock = lifecycle::lock(&skel)?;
    super::split::recover(config, &skel, progress)?;
    refuse_merged(config, &skel)?;
    let current = generation::current(&skel.dirs)?.ok_or_else(|| {
        Error::Usage(format!(
            "skel \"{name}\" has no recorded generation yet: there is nothing to roll back to"
        ))
    })?;
    let to = match to {
        Some(g) => g,
        None if current > 1 => current - 1,
        None => {
            return Err(Error::Usage(format!(
                "skel \"{name}\" is on its first generation: there is nothing to roll back to"
            )));
        }
    };
    if to == 0 || to >= current {
        return Err(Error::Usage(format!(
            "--to {to}: skel \"{name}\" is on generation {current}; roll back to an earlier one \
             (1 to {})",
            current - 1
        )));
    }
    let kept = skel.dirs.generations().tree(to);
    for part in [GLOBAL, LOCAL] {
        if !exists(&kept.join(part))? {
            return Err(Error::Usage(format!(
                "the parts of generation {to} of skel \"{name}\" are not kept ({} is missing): \
                 split-skel keeps the generation before the current one and those views use",
                kept.join(part).display()
            )));
        }
    }
    let staging = Staging::create(config, &format!("rollback-{name}"))?;
    let tree = staging.path().join("tree");
    make_private_dir(&tree)?;
    progress.start(&format!("rolling skel {name} back to generation {to}"));
    for part in [GLOBAL, LOCAL] {
        copy_tree(
            &TreeRoot::open(&kept.join(part))?,
            &[Target {
                tree: TreeRoot::open(&tree)?,
                how: How::Link,
            }],
            &Everything,
            CopyOptions {
                protect: config.protect,
                progress,
            },
        )?;
    }
    let split = split_from(config, &skel, &TreeRoot::open(&tree)?, progress)?;
    staging.discard()?;
    Ok(RollbackReport {
        skel: skel.name,
        from: current,
        to,
        generation: split.generation,
        put: split.put,
        removed: split.removed,
        dirs: split.dirs,
    })
}

fn refuse_merged(config: &Config, skel: &Skel) -> Result<()> {
    if lifecycle::is_merged(config, skel)? {
        return Err(Error::Usage(format!(
            "skel \"{}\" is merged: split it first (`vskel split-skel {}`), then roll back",
            skel.name, skel.name
        )));
    }
    Ok(())
}
