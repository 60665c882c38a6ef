//! `vskel sync` as an op: write a view vserver's current state into its
//! on-disk tree `<root>/<name>`.
//!
//! It opens the view, holds a mounted view's writes for the whole sync
//! (its server still serves readers, so a file being written lands in the
//! tree as it was before or after that write, never torn), drives the
//! sync engine ([`crate::sync::sync_layers`]) over the view's layers, and
//! after the first sync runs the skel's pending post-create scripts
//! against the tree and records that they ran. The tree gets the
//! generation the view shows (it stays on one until `upgrade-vs`; see
//! [`view`]), and a sync keeps that in the vserver's record (for a skel
//! without generations, [`crate::generation::ensure`] records one first).
//! When the view shows another generation than the tree was last synced
//! from, the sync compares everything (a full sync): the incremental
//! manifest only knows what the upper layer changed.

use serde::Serialize;
use tracing::info;

use super::{registry, scripts, view};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::sync::state::StateFiles;
use crate::sync::{Lowers, Synced, sync_layers};
use crate::tokens::Tokens;
use crate::view::overlay::Overlay;

/// What a sync of a view vserver did (or, dry-running, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SyncedView {
    /// The vserver.
    pub name: String,
    /// What the engine did.
    #[serde(flatten)]
    pub tree: Synced,
    /// The view was mounted and its writes were held during the sync.
    pub writes_held: bool,
    /// Post-create scripts that ran (the first sync runs a view's).
    pub scripts: Vec<String>,
    /// The skel generation the tree was synced from (none: a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// The sync's report as one line of text (a dry run lists its changes
/// first), as `vskel sync` prints it.
impl std::fmt::Display for SyncedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl SyncedView {
    fn summary(&self) -> String {
        let v = self;
        let s = &v.tree;
        let mut out = String::new();
        if s.dry_run {
            for change in &s.changes {
                out.push_str(&format!(
                    "would {} /{}\n",
                    change.action,
                    change.path.display()
                ));
            }
        }
        let c = &s.counts;
        let verb = if s.dry_run { "would sync" } else { "synced" };
        let how = match (s.mode, s.replaced) {
            ("full", true) => " (rebuilt beside and swapped in)",
            ("full", false) => " (first sync)",
            _ => "",
        };
        out.push_str(&format!(
            "{verb} {} into {}{how}: {} linked to the skel, {} copied ({} bytes), {} directories made, \
             {} removed, {} directories updated, {} unchanged",
            v.name,
            s.root.display(),
            c.linked,
            c.copied,
            c.bytes,
            c.dirs,
            c.removed,
            c.updated,
            c.unchanged
        ));
        if s.resumed {
            out.push_str("; finished an interrupted sync");
        }
        if v.writes_held {
            out.push_str("; the mounted view's writes were held meanwhile");
        }
        if !v.scripts.is_empty() {
            out.push_str(&format!(
                "; post-create scripts run: {}",
                v.scripts.join(", ")
            ));
        }
        out
    }
}

/// Write view vserver `name` into `<root>/<name>`; with `dry_run`, only
/// report what would change.
pub fn sync_view(
    config: &Config,
    name: &str,
    dry_run: bool,
    progress: &Progress,
) -> Result<SyncedView> {
    crate::validate::validate_name("vserver name", name)?;
    let lock = if dry_run {
        None
    } else {
        Some(StateFiles::new(config, name).lock()?)
    };
    sync_view_holding(config, name, dry_run, progress, lock.as_ref())
}

/// [`sync_view`] for a caller that holds the vserver's lock already
/// (`lock`, from [`StateFiles::lock`]; none for a dry run).
pub(crate) fn sync_view_holding(
    config: &Config,
    name: &str,
    dry_run: bool,
    progress: &Progress,
    _lock: Option<&std::fs::File>,
) -> Result<SyncedView> {
    let view = view::open(config, name)?;
    // The layers are opened under the skel's lifecycle lock, so that a
    // split-skel swapping the skel's parts cannot give this sync half of
    // each generation; once open they are what this sync reads.
    let pin = crate::skel::lifecycle::lock(&view.skel)?;
    let mut view = view::open(config, name)?;
    let overlay = Overlay::open_layers(&view.layers)?;
    drop(pin);
    let state = StateFiles::new(config, name);
    let layout = Layout::new(config);
    let target = layout.vserver(name);
    crate::tree::require_one_filesystem(&[&config.root, &view.global, &layout.state()])?;
    let generation = match view.generation {
        _ if dry_run => None,
        Some(g) => Some(g),
        None => Some(crate::generation::ensure(
            &view.skel.dirs,
            &format!("sync {name}"),
            progress,
            crate::generation::Store::of(config),
        )?),
    };
    // A mounted view's server holds its writes until `held` is dropped.
    let held = view::hold_view(&view::ViewDirs::new(config, name))?;
    let link_layer = view.layers.lowers.iter().position(|l| *l == view.global);
    let synced = view.record.tree_generation.or(view.record.generation);
    let lowers = lowers_since(&view, synced)?;
    let tree = sync_layers(
        config, &overlay, &target, &state, link_layer, &lowers, dry_run, progress,
    )?;
    let writes_held = held.is_some();
    drop(held);
    if generation.is_some()
        && (generation != view.record.generation || generation != view.record.tree_generation)
    {
        view.record.generation = generation;
        view.record.tree_generation = generation;
        registry::save(config, &view.record)?;
    }
    let scripts = if dry_run {
        Vec::new()
    } else {
        run_pending_scripts(config, &view, &target)?
    };
    info!(
        "synced view {name} into {} ({})",
        target.display(),
        tree.mode
    );
    Ok(SyncedView {
        name: name.to_string(),
        tree,
        writes_held,
        scripts,
        generation,
    })
}

/// What changed in the view's skel layers since the tree was synced from
/// generation `synced`: nothing when the view shows that one, the paths of
/// the change lists between them when both are known and recorded, else
/// unknown (the skel was changed in place, or a record predates
/// generations): then the sync compares everything.
fn lowers_since(view: &view::View, synced: Option<u64>) -> Result<Lowers> {
    let (Some(shown), Some(synced)) = (view.generation, synced) else {
        return Ok(Lowers::Unknown);
    };
    if shown == synced {
        return Ok(Lowers::Same);
    }
    if synced > shown {
        return Ok(Lowers::Unknown);
    }
    match crate::generation::changes(&view.skel.dirs, synced, shown) {
        Ok(changes) => {
            let paths: std::collections::BTreeSet<_> =
                changes.into_iter().map(|c| c.path).collect();
            Ok(Lowers::Changed(paths.into_iter().collect()))
        }
        Err(e) => {
            tracing::warn!(
                "the changes of skel {} from generation {synced} to {shown} cannot be read \
                 ({e}): comparing everything",
                view.skel.name
            );
            Ok(Lowers::Unknown)
        }
    }
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
