//! `vskel sync`: write a view's current state into the on-disk tree
//! `<root>/<name>` that a kernel vserver context runs from.
//!
//! The tree is built beside, in the staging area, from the view's layers
//! (whether or not the view is mounted) and then put in place in one
//! step: renamed in on the first sync, exchanged with the old tree
//! (`RENAME_EXCHANGE`) later, so `<root>/<name>` is always the old tree or
//! the new one, never half of either; the old one is then deleted. A
//! sync killed half-way leaves only a staging directory, which the next
//! run removes, and the old tree.
//!
//! What this first version does not do yet (DESIGN.md section 6 asks for
//! it): work incrementally (a later sync rebuilds the whole tree), and
//! hold the view's writes while it reads a mounted view.

pub mod flatten;
pub mod materialize;

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;
use tracing::info;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::staging::{Staging, split_parent};
use crate::sys;
use crate::tokens::Tokens;
use crate::tree::TreeRoot;
use crate::tree::remove::remove_tree_at;
use crate::view::overlay::Overlay;
use crate::vserver::{registry, scripts, view};
use flatten::{FlattenCounts, flatten};

/// What a sync did.
#[derive(Debug, Clone, Serialize)]
pub struct Synced {
    /// The vserver.
    pub name: String,
    /// The tree written.
    pub root: PathBuf,
    /// Whether a tree was there before (replaced) or not (first sync).
    pub replaced: bool,
    /// What the flatten did.
    pub counts: FlattenCounts,
    /// Post-create scripts that ran (the first sync runs a view's).
    pub scripts: Vec<String>,
}

/// Write view vserver `name` into `<root>/<name>`.
pub fn sync_view(config: &Config, name: &str, progress: &Progress) -> Result<Synced> {
    let view = view::open(config, name)?;
    let overlay = Overlay::open_layers(&view.layers)?;
    let global = view.skel.global();
    let link_layer = view.layers.lowers.iter().position(|l| *l == global);
    let target = config.vserver_dir(name);
    crate::tree::require_one_filesystem(&[&config.root, &global, &config.state_dir()])?;

    let staging = Staging::create(config, &format!("sync-{name}"))?;
    let tree_dir = staging.path().join("tree");
    std::fs::create_dir(&tree_dir).map_err(|e| Error::io("make directory", &tree_dir, e))?;
    let into = TreeRoot::open(&tree_dir)?;
    progress.start(&format!("syncing {name}"));
    let counts = flatten(&overlay, &into, link_layer, config.protect, progress)?;
    sys::syncfs(into.fd()).map_err(|e| Error::io("flush to disk", &tree_dir, e))?;
    drop(into);

    let (parent, target_name) = split_parent(&target)?;
    let parent_fd = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
    let staging_fd = sys::open_root(staging.path())
        .map_err(|e| Error::io("open directory", staging.path(), e))?;
    let replaced = target.symlink_metadata().is_ok();
    if replaced {
        rustix::fs::renameat_with(
            staging_fd.as_fd(),
            c"tree",
            parent_fd.as_fd(),
            &target_name,
            rustix::fs::RenameFlags::EXCHANGE,
        )
        .map_err(|e| {
            Error::io(
                "exchange with the old tree",
                &target,
                std::io::Error::from(e),
            )
        })?;
        // What is in staging now is the old tree.
        remove_tree_at(staging_fd.as_fd(), c"tree")
            .map_err(|e| Error::io("remove the old tree", staging.path(), e))?;
    } else {
        sys::rename_noreplace(staging_fd.as_fd(), c"tree", parent_fd.as_fd(), &target_name)
            .map_err(|e| Error::io("rename into place", &target, e))?;
    }
    staging.discard()?;
    progress.finish();
    info!("synced view {name} into {}", target.display());

    let ran = run_pending_scripts(config, &view, &target)?;
    Ok(Synced {
        name: name.to_string(),
        root: target,
        replaced,
        counts,
        scripts: ran,
    })
}

/// The first sync of a view runs its post-create scripts (they need the
/// vserver's files), against the tree.
fn run_pending_scripts(
    config: &Config,
    view: &view::View,
    tree: &std::path::Path,
) -> Result<Vec<String>> {
    if !view.record.post_create_pending {
        return Ok(Vec::new());
    }
    let record = &view.record;
    let tokens = Tokens::for_vserver(
        &record.name,
        record.ip.as_deref().unwrap_or(""),
        record.fqdn.as_deref().unwrap_or(""),
        record.context.unwrap_or(0),
        tree,
        &view.skel.name,
        &config.tokens,
    );
    let list = scripts::scripts_in(&view.skel.post_create_dir())?;
    let ran = scripts::run_all(&list, &record.name, &tokens).map_err(|failure| {
        Error::Failed(format!(
            "post-create script {} of skel {} failed ({}) after syncing {}: {}",
            failure.script,
            view.skel.name,
            failure.status,
            tree.display(),
            failure.stderr_tail
        ))
    })?;
    let mut updated = record.clone();
    updated.post_create_pending = false;
    registry::save(config, &updated)?;
    Ok(ran)
}
