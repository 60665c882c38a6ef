//! The sync engine: write the merged tree of a layer stack into an
//! on-disk tree (for a vserver, `<root>/<name>`, which a kernel vserver
//! context runs from). It knows layers, trees and its state files, not
//! vservers: opening a view, holding its writes and running its scripts
//! is the op's (`vserver::sync`).
//!
//! The first sync (or one that finds no usable manifest) builds the tree
//! beside, in the staging area, and puts it in place in one step: renamed
//! in, or exchanged with an old tree (`RENAME_EXCHANGE`), so the target
//! is always the old tree or the new one. A sync killed half-way leaves a
//! staging directory, which the next run removes, and the old tree.
//!
//! Later syncs are incremental ([`apply`]): the upper layer is the change
//! set. Its entries' stamps are compared with the manifest the last sync
//! left ([`state`]), and only the paths that changed are brought to what
//! the view shows, each entry made in a private staging directory and
//! renamed over the old one ([`crate::tree::place`]); the skel is never
//! walked. The paths are journalled first, so a sync killed half-way is
//! finished by the next one (which also clears its temporary files).

pub mod apply;
pub mod changes;
pub mod state;
pub mod writer;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::staging::{Staging, split_parent};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::remove::remove_tree_at;
use crate::view::overlay::Overlay;
use apply::{Applier, Depth, is_opaque, is_redirected};
use state::{Manifest, StampKind, StateFiles};
use writer::{Change, Scratch, SyncCounts, Writer, flatten};

/// What a sync of a layer stack did (or, dry-running, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Synced {
    /// The tree written.
    #[serde(serialize_with = "crate::report_path::path")]
    pub root: PathBuf,
    /// `full` (tree built beside and swapped in) or `incremental`.
    pub mode: &'static str,
    /// Whether a tree was there before.
    pub replaced: bool,
    /// Nothing was written (`--dry-run`).
    pub dry_run: bool,
    /// The last sync had been interrupted; this one finished its work.
    pub resumed: bool,
    /// What was done.
    pub counts: SyncCounts,
    /// The paths changed (incremental syncs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
}

/// What changed in the lower layers since the last sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lowers {
    /// Nothing: they are the layers the manifest was written against.
    Same,
    /// They are other directories, and exactly these paths (relative to
    /// the layers' roots) differ from what the last sync saw (a new skel
    /// generation's change list): compared beside the upper layer's
    /// changes.
    Changed(Vec<PathBuf>),
    /// Unknown: only a full comparison is true.
    Unknown,
}

/// Write the merged tree of `overlay` into `target`, incrementally when
/// `state` holds a manifest of the tree there and `lowers` says what
/// changed below, else in full (built beside and put in place in one
/// step): the manifest records what the upper layer changed, so once the
/// lower layers changed in an unknown way only a full comparison is true.
/// Entries shown from lower layer `link_layer` become hard links to its
/// inodes. With `dry_run`, only report what would change. The caller
/// holds the lock of `state` (none needed for a dry run) and keeps the
/// layers from changing meanwhile.
#[allow(clippy::too_many_arguments)] // each is one input of one call site
pub fn sync_layers(
    config: &Config,
    overlay: &Overlay,
    target: &Path,
    state: &StateFiles,
    link_layer: Option<usize>,
    lowers: &Lowers,
    dry_run: bool,
    progress: &Progress,
) -> Result<Synced> {
    let tree = match TreeRoot::open(target) {
        Ok(tree) => Some(tree),
        Err(_) if target.symlink_metadata().is_err() => None,
        Err(e) => return Err(e),
    };
    let manifest = match &tree {
        Some(tree) => state.load_manifest()?.filter(|m| match lowers {
            Lowers::Same => m.identity == identity(tree, overlay),
            // The tree and the upper layer must be the same; the
            // lowers are new directories.
            Lowers::Changed(_) => {
                let now = identity(tree, overlay);
                m.identity.len() == now.len() && m.identity[..2] == now[..2]
            }
            Lowers::Unknown => false,
        }),
        None => None,
    };
    match (tree, manifest) {
        (Some(tree), Some(manifest)) => {
            let below = match lowers {
                Lowers::Changed(paths) => paths.as_slice(),
                _ => &[],
            };
            incremental(
                overlay, &tree, &manifest, below, state, link_layer, config, dry_run, progress,
            )
        }
        (tree, _) => full(
            config,
            overlay,
            tree.is_some(),
            target,
            state,
            link_layer,
            dry_run,
            progress,
        ),
    }
}

/// Build the tree beside and put it in place.
#[allow(clippy::too_many_arguments)]
fn full(
    config: &Config,
    overlay: &Overlay,
    replaced: bool,
    target: &Path,
    state: &StateFiles,
    link_layer: Option<usize>,
    dry_run: bool,
    progress: &Progress,
) -> Result<Synced> {
    let mut synced = Synced {
        root: target.to_path_buf(),
        mode: "full",
        replaced,
        dry_run,
        resumed: false,
        counts: SyncCounts::default(),
        changes: Vec::new(),
    };
    progress.start(&format!("syncing {}", target.display()));
    if dry_run {
        // Nothing is written: any directory serves as the destination.
        let nowhere = TreeRoot::open(&config.root)?;
        synced.counts = flatten(
            overlay,
            &nowhere,
            link_layer,
            config.protect,
            true,
            progress,
        )?;
        progress.finish();
        return Ok(synced);
    }
    let started_ns = now_ns();
    let stamps = changes::upper_stamps(overlay.upper_layer())?;
    let staging = Staging::create(config, &format!("sync-{}", file_name(target)))?;
    let tree_dir = staging.path().join("tree");
    std::fs::create_dir(&tree_dir).map_err(|e| Error::io("make directory", &tree_dir, e))?;
    let into = TreeRoot::open(&tree_dir)?;
    synced.counts = flatten(overlay, &into, link_layer, config.protect, false, progress)?;
    sys::syncfs(into.fd()).map_err(|e| Error::io("flush to disk", &tree_dir, e))?;
    drop(into);

    let (parent, target_name) = split_parent(target)?;
    let parent_fd = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
    let staging_fd = sys::open_root(staging.path())
        .map_err(|e| Error::io("open directory", staging.path(), e))?;
    // The manifest describes the new tree only once it is in place.
    state.clear_journal()?;
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
                target,
                std::io::Error::from(e),
            )
        })?;
        // What is in staging now is the old tree.
        remove_tree_at(staging_fd.as_fd(), c"tree")
            .map_err(|e| Error::io("remove the old tree", staging.path(), e))?;
    } else {
        sys::rename_noreplace(staging_fd.as_fd(), c"tree", parent_fd.as_fd(), &target_name)
            .map_err(|e| Error::io("rename into place", target, e))?;
    }
    staging.discard()?;
    let tree = TreeRoot::open(target)?;
    let c = &synced.counts;
    state.save_manifest(&Manifest {
        identity: identity(&tree, overlay),
        started_ns,
        entries: c.linked + c.copied + c.dirs,
        stamps,
    })?;
    progress.finish();
    Ok(synced)
}

/// Bring the paths that changed since the last sync (in the upper layer,
/// and `below` in the lower layers) up to date in place.
#[allow(clippy::too_many_arguments)]
fn incremental(
    overlay: &Overlay,
    tree: &TreeRoot,
    manifest: &Manifest,
    below: &[PathBuf],
    state: &StateFiles,
    link_layer: Option<usize>,
    config: &Config,
    dry_run: bool,
    progress: &Progress,
) -> Result<Synced> {
    let started_ns = now_ns();
    let now = changes::upper_stamps(overlay.upper_layer())?;
    let mut changed = changes::changed_paths(manifest, &now);
    let journal = state.load_journal()?;
    let resumed = journal.is_some();
    let journal = journal.unwrap_or_default();
    let journalled: std::collections::HashSet<PathBuf> = journal.paths.iter().cloned().collect();
    changed.extend(journalled.iter().cloned());
    changed.extend(below.iter().cloned());
    let below: std::collections::HashSet<&PathBuf> = below.iter().collect();
    let changed: Vec<PathBuf> = changed.into_iter().collect();
    if !dry_run && (!changed.is_empty() || !journal.temps.is_empty()) {
        // The temporaries of an interrupted run stay recorded until gone.
        state.save_journal(&changed, &journal.temps)?;
    }
    progress.start(&format!("syncing {} changed paths", changed.len()));
    // Every entry is made in a private directory and then installed.
    let scratch = if dry_run || changed.is_empty() {
        None
    } else {
        let staging = Staging::create(config, &format!("sync-{}", file_name(tree.path())))?;
        let fd = sys::open_root(staging.path())
            .map_err(|e| Error::io("open directory", staging.path(), e))?;
        Some((staging, fd))
    };
    let mut writer = Writer::new(overlay, tree, link_layer, config.protect, progress).atomic(
        scratch.as_ref().map(|(_, fd)| Scratch {
            dir: fd.as_fd(),
            state,
        }),
    );
    writer.dry_run = dry_run;
    let mut applier = Applier::new(writer);
    for temp in &journal.temps {
        applier.clean_temporary(temp)?;
    }
    let upper = overlay.upper_layer().fd();
    for path in &changed {
        let depth = match now.get(path) {
            Some(stamp) if stamp.kind == StampKind::Dir => {
                let new_dir = manifest
                    .stamps
                    .get(path)
                    .is_none_or(|was| was.ino != stamp.ino || was.kind != StampKind::Dir);
                if !new_dir {
                    Depth::Own
                } else if (resumed && journalled.contains(path)) || is_redirected(upper, path) {
                    Depth::All
                } else if is_opaque(upper, path) {
                    Depth::Listing
                } else {
                    Depth::Own
                }
            }
            Some(_) => Depth::Own,
            // Changed in the lowers, which list every path that changed.
            None if below.contains(path)
                && !manifest.stamps.contains_key(path)
                && !(resumed && journalled.contains(path)) =>
            {
                Depth::Own
            }
            // The upper layer dropped it: what shows now may be lower content.
            None => Depth::All,
        };
        applier.apply(path, depth)?;
    }
    applier.finish()?;
    let net = applier.net_entries;
    let Applier { w, .. } = applier;
    let mut counts = w.counts;
    let changes = w.changes.unwrap_or_default();
    if let Some((staging, fd)) = scratch {
        drop(fd);
        staging.discard()?;
    }
    let entries = (manifest.entries as i64 + net).max(0) as u64;
    let touched = counts.linked + counts.copied + counts.dirs + counts.updated;
    counts.unchanged = entries.saturating_sub(touched);
    if !dry_run {
        if !changed.is_empty() {
            sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
        }
        state.save_manifest(&Manifest {
            identity: identity(tree, overlay),
            started_ns,
            entries,
            stamps: now,
        })?;
        state.clear_journal()?;
    }
    progress.finish();
    Ok(Synced {
        root: tree.path().to_path_buf(),
        mode: "incremental",
        replaced: true,
        dry_run,
        resumed,
        counts,
        changes,
    })
}

/// What a manifest must have been written against to describe this tree.
fn identity(tree: &TreeRoot, overlay: &Overlay) -> Vec<(u64, u64)> {
    [tree, overlay.upper_layer()]
        .into_iter()
        .chain(overlay.lower_layers())
        .map(|t| {
            sys::fstat(t.fd())
                .map(|st| (sys::dev_of(&st), sys::ino_of(&st)))
                .unwrap_or((0, 0))
        })
        .collect()
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
