//! Vservers as OCI images: `export-vs` writes a vserver as its skel
//! generation's image plus one `delta` layer of what it changed;
//! `import-vs` makes it again on another host.
//!
//! * The delta is what `vskel diff` finds in the vserver's tree against
//!   its skel generation (a view is synced first, so its tree is what it
//!   shows): every added or modified entry with all its parent
//!   directories (so their metadata travels too), and an OCI whiteout for
//!   each removed path (a removed directory once, not what was in it). A
//!   renamed directory is a whiteout of the old name and the new one whole.
//!   Static files the vserver did not change are not in it: they are
//!   rendered again on the new host, for its IP address and FQDN.
//! * Import brings in the skel generation when the host lacks it
//!   ([`crate::skel::oci::import`]: a new skel, or a new generation of
//!   the skel of that name), then makes the vserver as a view whose upper
//!   layer is the delta in kernel overlayfs' format (whiteouts as 0/0
//!   devices), with a new context ID and its static files rendered for the
//!   new IP and FQDN; the post-create scripts ran on the first host and
//!   do not run again. Without `--view` the view is then materialised:
//!   a tree whose unchanged global files are the local skel's inodes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use super::create::{CreateRequest, create_view_vs_filled};
use super::diff::{Status, tree as diff_tree};
use super::registry::{self, Kind};
use super::{materialize, remove, sync};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation;
use crate::layout::Layout;
use crate::oci::annotations as ann;
use crate::oci::{ImageLayout, ImageRef, LayerItem, NewImage, Whiteouts, apply_layer, write_layer};
use crate::progress::Progress;
use crate::skel::Skel;
use crate::skel::oci::export::write_skel_layers;
use crate::skel::oci::import::{ImportReport, annotation, import_skel_image, open_layout};
use crate::skel::oci::{KIND_VSERVER, PART_DELTA};
use crate::tree::TreeRoot;
use crate::validate::{Loopback, validate_name};

/// What `export-vs` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct VsExportReport {
    /// The vserver.
    pub vserver: String,
    /// Its skel and generation.
    pub skel: String,
    /// The skel generation.
    pub generation: u64,
    /// Where: `oci:DIR:TAG`.
    pub image: String,
    /// The manifest's digest.
    pub digest: String,
    /// Paths added or modified (with their parent directories).
    pub entries: usize,
    /// Paths removed (whiteouts).
    pub removed: usize,
    /// Bytes of the delta layer's blob.
    pub delta_bytes: u64,
    /// Bytes of all the image's blobs.
    pub total_bytes: u64,
    /// Bytes of blobs that were new to the layout.
    pub new_bytes: u64,
}

/// Export vserver `name` to `dest` (tag: the vserver's name when none
/// is given).
pub fn export_vs(
    config: &Config,
    name: &str,
    dest: &ImageRef,
    progress: &Progress,
) -> Result<VsExportReport> {
    validate_name("vserver name", name)?;
    let Some(mut record) = registry::load(config, name)? else {
        return Err(Error::Usage(format!(
            "no vserver named \"{name}\"; `vskel list` shows the vservers"
        )));
    };
    match record.kind {
        Kind::Tree => {}
        Kind::View => {
            progress.start(&format!("syncing view {name}"));
            sync::sync_view(config, name, false, progress)?;
            record = registry::load(config, name)?.ok_or_else(|| {
                Error::Failed(format!("the record of vserver \"{name}\" went away"))
            })?;
            record.generation = record.tree_generation.or(record.generation);
        }
        Kind::Unregistered => {
            return Err(Error::Failed(format!(
                "vserver \"{name}\" has no record of its skel: it cannot be exported"
            )));
        }
    }
    let skel_name = record.skel.clone().ok_or_else(|| {
        Error::Failed(format!(
            "the record of vserver \"{name}\" names no skel: it cannot be exported"
        ))
    })?;
    let skel = Skel::open(config, &skel_name)?;
    let _lock = crate::skel::lifecycle::lock(&skel)?;
    let current = generation::current(&skel.dirs)?;
    let on = record.generation;
    if on.is_none() || on != current {
        return Err(Error::Failed(format!(
            "vserver \"{name}\" is on generation {} of skel {skel_name}, which is at {}: \
             `vskel upgrade-vs {name}` first (an image carries the skel's current generation)",
            on.map_or("none".into(), |g| g.to_string()),
            current.map_or("none".into(), |g| g.to_string()),
        )));
    }
    let n = on.unwrap_or_default();
    progress.start(&format!("comparing {name} with skel {skel_name}"));
    let (_, _, changes) = diff_tree::changes(config, &record)?;
    let (items, entries, removed) = delta_items(&changes);

    let dest = dest.clone().or_tag(name);
    let layout = ImageLayout::create(&dest.dir)?;
    let mut skel_layers = write_skel_layers(&layout, &skel, n, progress)?;
    progress.start(&format!("exporting {name}'s changes"));
    let tree = TreeRoot::open(&Layout::new(config).vserver(name))?;
    let delta = write_layer(
        &layout,
        &tree,
        &items,
        Path::new(""),
        &[(ann::PART.into(), PART_DELTA.into())],
    )?;
    let delta_bytes = delta.descriptor.size();
    skel_layers.layers.push(delta);
    let mut annotations = skel_layers.annotations.clone();
    annotations.push((ann::KIND.into(), KIND_VSERVER.into()));
    annotations.push((ann::VSERVER.into(), name.to_string()));
    if let Some(ip) = &record.ip {
        annotations.push((ann::IP.into(), ip.clone()));
    }
    if let Some(fqdn) = &record.fqdn {
        annotations.push((ann::FQDN.into(), fqdn.clone()));
    }
    let written = layout.write_image(
        &NewImage {
            layers: skel_layers.layers,
            labels: annotations.clone(),
            annotations,
            created: skel_layers.made,
            cmd: Some(vec!["/bin/sh".into()]),
        },
        dest.tag.as_deref().unwrap_or(name),
    )?;
    progress.finish();
    info!("vserver {name} exported to {dest}");
    Ok(VsExportReport {
        vserver: name.to_string(),
        skel: skel_name,
        generation: n,
        image: dest.to_string(),
        digest: written.digest,
        entries,
        removed,
        delta_bytes: delta_bytes as u64,
        total_bytes: written.total_bytes,
        new_bytes: written.new_bytes,
    })
}

/// The delta layer's items for `changes` (sorted by path): every added or
/// modified path, one whiteout per removed subtree, and the parents of
/// both.
/// Returns the items and the counts of entries and whiteouts.
fn delta_items(changes: &[super::diff::Change]) -> (Vec<LayerItem>, usize, usize) {
    let mut entries: BTreeSet<PathBuf> = BTreeSet::new();
    let mut removed: Vec<PathBuf> = Vec::new();
    for c in changes {
        let rel = PathBuf::from(c.path.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            continue; // the root's metadata is the new host's
        }
        if c.status == Status::Removed && removed.iter().any(|r| rel.starts_with(r)) {
            continue; // inside a removed directory: gone with it
        }
        // The parents go too, so their metadata (a removal changed their
        // times) travels with what changed in them.
        for a in rel.ancestors().skip(1) {
            if !a.as_os_str().is_empty() {
                entries.insert(a.to_path_buf());
            }
        }
        match c.status {
            Status::Removed => removed.push(rel),
            Status::Added | Status::Modified => {
                entries.insert(rel);
            }
        }
    }
    let (n_entries, n_removed) = (entries.len(), removed.len());
    let mut items: Vec<LayerItem> = entries.into_iter().map(LayerItem::Entry).collect();
    items.extend(removed.into_iter().map(LayerItem::Whiteout));
    (items, n_entries, n_removed)
}

/// What `import-vs` made.
#[derive(Debug, Clone, Serialize)]
pub struct VsImportReport {
    /// The vserver.
    pub vserver: String,
    /// How it exists now: a tree or a view.
    pub kind: Kind,
    /// Its context ID on this host.
    pub context: u32,
    /// Its IP address and FQDN on this host.
    pub ip: String,
    /// Its FQDN on this host.
    pub fqdn: String,
    /// What became of its skel.
    pub skel: ImportReport,
    /// Entries of its own changes unpacked.
    pub entries: u64,
    /// Whiteouts of its own changes.
    pub whiteouts: u64,
}

/// Options of `import-vs` besides the image and the name.
#[derive(Debug, Clone)]
pub struct VsImportOptions {
    /// Its IP address here (default: the one it had).
    pub ip: Option<String>,
    /// Its FQDN here (default: the one it had).
    pub fqdn: Option<String>,
    /// Keep it a view (default: a tree).
    pub view: bool,
    /// Accept a loopback IP address.
    pub loopback: Loopback,
    /// Accept an IP address another vserver has.
    pub shared_ip: bool,
}

/// Import the vserver image `src` as vserver `name`.
pub fn import_vs(
    config: &Config,
    src: &ImageRef,
    name: &str,
    options: &VsImportOptions,
    progress: &Progress,
) -> Result<VsImportReport> {
    validate_name("vserver name", name)?;
    if registry::load(config, name)?.is_some() {
        return Err(Error::Usage(format!(
            "a vserver named \"{name}\" exists already; remove it or choose another name"
        )));
    }
    let layout = open_layout(src)?;
    let image = layout.read_image(src.tag.as_deref())?;
    if annotation(&image, ann::KIND) != Some(KIND_VSERVER) {
        return Err(Error::Usage(format!(
            "{src} is not a vserver image (its {} is not \"{KIND_VSERVER}\"): a skel image \
             is imported with `vskel import-skel`",
            ann::KIND
        )));
    }
    let skel_name = annotation(&image, ann::SKEL)
        .ok_or_else(|| Error::Failed(format!("{src}: the manifest names no skel ({})", ann::SKEL)))?
        .to_string();
    let ip = options
        .ip
        .clone()
        .or_else(|| annotation(&image, ann::IP).map(str::to_string))
        .ok_or_else(|| Error::Usage(format!("{src} names no IP address: give --ip")))?;
    let fqdn = options
        .fqdn
        .clone()
        .or_else(|| annotation(&image, ann::FQDN).map(str::to_string))
        .ok_or_else(|| Error::Usage(format!("{src} names no FQDN: give --fqdn")))?;
    let request = CreateRequest {
        skel: skel_name.clone(),
        name: name.to_string(),
        fqdn: fqdn.clone(),
        ip: ip.clone(),
        loopback: options.loopback,
        shared_ip: options.shared_ip,
    };
    let delta_index = image
        .manifest
        .layers()
        .iter()
        .position(|d| {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(ann::PART))
                .map(String::as_str)
                == Some(PART_DELTA)
        })
        .ok_or_else(|| Error::Failed(format!("{src}: the image has no {PART_DELTA} layer")))?;
    let delta = image.manifest.layers()[delta_index].clone();
    let diff_id = image
        .config
        .rootfs()
        .diff_ids()
        .get(delta_index)
        .cloned()
        .ok_or_else(|| Error::Failed(format!("{src}: the config lists too few layer digests")))?;
    // The delta is checked whole before anything is written: a damaged
    // one must not leave a skel imported for nothing.
    let mut blob = layout.open_blob(&delta)?;
    std::io::copy(&mut blob, &mut std::io::sink()).map_err(|e| {
        Error::Failed(format!(
            "{src}: the vserver's layer {} is damaged: {e}",
            delta.digest()
        ))
    })?;
    drop(blob);
    let skel_report = import_skel_image(
        config,
        &layout,
        &image,
        &src.to_string(),
        &skel_name,
        progress,
    )?;

    let applied = std::cell::RefCell::new(crate::oci::Applied::default());
    let fill = |upper: &TreeRoot| -> Result<()> {
        progress.start(&format!("unpacking {name}'s changes"));
        *applied.borrow_mut() = apply_layer(
            &layout,
            &delta,
            &diff_id,
            upper,
            Path::new(""),
            Whiteouts::KernelOverlay,
        )?;
        Ok(())
    };
    let created = create_view_vs_filled(config, &request, progress, Some(&fill))?;
    let mut kind = Kind::View;
    if !options.view {
        if let Err(e) = materialize::materialize(config, name, progress) {
            warn!("making {name} a tree failed: {e}; removing what the import made");
            if let Err(r) = remove::remove_vs(config, name, false) {
                warn!("could not remove the half-imported vserver {name}: {r}");
            }
            return Err(e);
        }
        kind = Kind::Tree;
    }
    progress.finish();
    let applied = applied.into_inner();
    info!("vserver {name} imported from {src}");
    Ok(VsImportReport {
        vserver: name.to_string(),
        kind,
        context: created.context,
        ip,
        fqdn,
        skel: skel_report,
        entries: applied.entries,
        whiteouts: applied.whiteouts,
    })
}
