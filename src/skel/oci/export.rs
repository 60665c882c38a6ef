//! `export-skel SKEL oci:DIR[:TAG]`: write the skel's current generation
//! as an OCI image (see the module above for its shape). The skel is
//! recorded first (a generation is written if it changed since the last
//! one), so the image is what the skel holds now; layers whose content
//! did not change since an earlier export into the same layout keep
//! their digests, and only new blobs count as what a push would upload.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use super::partition::partition;
use super::{KIND_SKEL, META_PREFIX, PART_GLOBAL, PART_LOCAL, PART_META, PART_STATIC};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Generation, Part};
use crate::layout::{CONFIGFILE, POST_CREATE_DIR, SkelDirs};
use crate::oci::annotations as ann;
use crate::oci::layout::WrittenImage;
use crate::oci::{ImageLayout, ImageRef, LayerItem, NewImage, WrittenLayer, write_layer};
use crate::progress::Progress;
use crate::sys;
use crate::tree::TreeRoot;

use super::super::Skel;
use super::super::lifecycle;
use super::super::remove::refuse_merged;

/// What `export-skel` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    /// The skel.
    pub skel: String,
    /// Its generation exported.
    pub generation: u64,
    /// Where: `oci:DIR:TAG`.
    pub image: String,
    /// The manifest's digest.
    pub digest: String,
    /// Layers of the image.
    pub layers: usize,
    /// Layers that were in the layout already (same digest).
    pub layers_reused: usize,
    /// Bytes of all the image's blobs.
    pub total_bytes: u64,
    /// Bytes of blobs that were new to the layout (what a push uploads).
    pub new_bytes: u64,
}

/// A skel generation's layers, written into a layout, and what the
/// manifest says of them.
pub(crate) struct SkelLayers {
    /// Bottom first.
    pub layers: Vec<WrittenLayer>,
    /// `org.vskel.*` manifest annotations of the skel.
    pub annotations: Vec<(String, String)>,
    /// When the generation was made.
    pub made: u64,
}

/// Export skel `name` to `dest` (tag: the generation when none is given).
pub fn export_skel(
    config: &Config,
    name: &str,
    dest: &ImageRef,
    progress: &Progress,
) -> Result<ExportReport> {
    let skel = Skel::open(config, name)?;
    refuse_merged(config, &skel)?;
    let _lock = lifecycle::lock(&skel)?;
    refuse_merged(config, &skel)?;
    progress.start(&format!("recording skel {name}"));
    let n = generation::record(
        &skel.dirs,
        "export-skel",
        progress,
        generation::Store::of(config),
    )?
    .generation;
    let dest = dest.clone().or_tag(n.to_string());
    let layout = ImageLayout::create(&dest.dir)?;
    let skel_layers = write_skel_layers(&layout, &skel, n, progress)?;
    let reused = skel_layers.layers.iter().filter(|l| !l.new).count();
    let count = skel_layers.layers.len();
    let written = write_skel_image(&layout, skel_layers, dest.tag.as_deref().unwrap_or(""))?;
    progress.finish();
    info!("skel {name} generation {n} exported to {dest}");
    Ok(ExportReport {
        skel: name.to_string(),
        generation: n,
        image: dest.to_string(),
        digest: written.digest,
        layers: count,
        layers_reused: reused,
        total_bytes: written.total_bytes,
        new_bytes: written.new_bytes,
    })
}

fn write_skel_image(layout: &ImageLayout, s: SkelLayers, tag: &str) -> Result<WrittenImage> {
    let mut annotations = s.annotations.clone();
    annotations.push((ann::KIND.into(), KIND_SKEL.into()));
    layout.write_image(
        &NewImage {
            layers: s.layers,
            labels: annotations.clone(),
            annotations,
            created: s.made,
            cmd: Some(vec!["/bin/sh".into()]),
        },
        tag,
    )
}

/// Write generation `n` of `skel` (its current one; the caller holds the
/// skel's lifecycle lock) as layers into `layout`.
pub(crate) fn write_skel_layers(
    layout: &ImageLayout,
    skel: &Skel,
    n: u64,
    progress: &Progress,
) -> Result<SkelLayers> {
    let current = generation::current(&skel.dirs)?;
    if current != Some(n) {
        return Err(Error::Failed(format!(
            "skel {} is at generation {}, not {n}: only a skel's current generation can be \
             exported",
            skel.name,
            current.map_or("none".to_string(), |c| c.to_string())
        )));
    }
    let generation = generation::load(&skel.dirs, n)?;
    let mut layers = Vec::new();
    let global = TreeRoot::open(&skel.global())?;
    let owners = package_owners(skel)?;
    let groups = partition(part_entries(&generation, Part::Global), &owners);
    for (i, group) in groups.iter().enumerate() {
        progress.start(&format!(
            "exporting skel {}: global layer {} of {}",
            skel.name,
            i + 1,
            groups.len()
        ));
        let items: Vec<LayerItem> = group.paths.iter().cloned().map(LayerItem::Entry).collect();
        layers.push(write_layer(
            layout,
            &global,
            &items,
            Path::new(""),
            &[
                (ann::PART.into(), PART_GLOBAL.into()),
                (ann::PATHS.into(), paths_note(&group.units)),
            ],
        )?);
        progress.inc(items.len() as u64);
    }
    for (part, dir, label) in [
        (Part::Local, skel.local(), PART_LOCAL),
        (Part::Static, skel.static_dir(), PART_STATIC),
    ] {
        let entries = part_entries(&generation, part);
        if entries.is_empty() {
            continue;
        }
        progress.start(&format!("exporting skel {}: {label}", skel.name));
        let tree = TreeRoot::open(&dir)?;
        let items: Vec<LayerItem> = entries
            .iter()
            .map(|e| LayerItem::Entry(e.path.clone()))
            .collect();
        layers.push(write_layer(
            layout,
            &tree,
            &items,
            Path::new(""),
            &[(ann::PART.into(), label.into())],
        )?);
    }
    layers.push(write_meta_layer(layout, &skel.dirs, n)?);
    Ok(SkelLayers {
        layers,
        annotations: vec![
            (ann::SKEL.into(), skel.name.clone()),
            (ann::GENERATION.into(), n.to_string()),
            (
                ann::CONTENT.into(),
                generation::content_id(generation.entries()),
            ),
        ],
        made: generation.header.made,
    })
}

/// Where dpkg keeps each package's file list, in a part of the skel.
const DPKG_INFO: &str = "var/lib/dpkg/info";
/// The extension of a package's file list.
const DPKG_LIST_EXT: &str = ".list";

/// Which package owns each path (relative, as in a part), from dpkg's
/// file lists in local/ or global/ (none: an empty map). A path two
/// packages list goes to the first by name. The lists are read through
/// directory descriptors, nothing followed.
fn package_owners(skel: &Skel) -> Result<HashMap<PathBuf, String>> {
    let mut owners = HashMap::new();
    for part in [skel.local(), skel.global()] {
        let root = TreeRoot::open(&part)?;
        let info = match root.open_dir(Path::new(DPKG_INFO)) {
            Ok(fd) => fd,
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => return Err(e),
        };
        let shown = root.display(Path::new(DPKG_INFO));
        let mut lists: Vec<(String, std::ffi::CString)> = sys::read_dir(info.as_fd())
            .map_err(|e| Error::io("read directory", &shown, e))?
            .into_iter()
            .filter_map(|d| {
                let name = d.name.to_str().ok()?.to_string();
                let package = name.strip_suffix(DPKG_LIST_EXT)?.to_string();
                Some((package, d.name))
            })
            .collect();
        lists.sort();
        for (package, name) in lists {
            let fd = sys::open_file_read(info.as_fd(), &name)
                .map_err(|e| Error::io("open", shown.join(sys::os_name(&name)), e))?;
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text)
                .map_err(|e| Error::io("read", shown.join(sys::os_name(&name)), e))?;
            for line in text.lines() {
                let rel = line.trim_start_matches('/');
                if !rel.is_empty() {
                    owners
                        .entry(PathBuf::from(rel))
                        .or_insert_with(|| package.clone());
                }
            }
        }
        break;
    }
    Ok(owners)
}

/// The entries of one part (a record is sorted by part, then path).
fn part_entries(generation: &Generation, part: Part) -> &[Entry] {
    let all = generation.entries();
    let start = all.partition_point(|e| e.part < part);
    let end = all.partition_point(|e| e.part <= part);
    &all[start..end]
}

/// The first few unit roots of a layer, for its annotation.
fn paths_note(units: &[PathBuf]) -> String {
    const SHOWN: usize = 8;
    let mut shown: Vec<String> = units
        .iter()
        .take(SHOWN)
        .map(|p| format!("/{}", p.display()))
        .collect();
    if units.len() > SHOWN {
        shown.push(format!("... {} more", units.len() - SHOWN));
    }
    shown.join(",")
}

/// The meta layer: scripts, config file and generation record, under
/// `.vskel/`.
fn write_meta_layer(layout: &ImageLayout, dirs: &SkelDirs, n: u64) -> Result<WrittenLayer> {
    let skel_root = TreeRoot::open(&dirs.dir)?;
    let mut items = Vec::new();
    let scripts = dirs.post_create_dir();
    if scripts.is_dir() {
        let mut at = PathBuf::new();
        for c in Path::new(POST_CREATE_DIR).components() {
            at.push(c);
            items.push(LayerItem::Entry(at.clone()));
        }
        for name in crate::tree::list_names(&scripts)? {
            items.push(LayerItem::Entry(Path::new(POST_CREATE_DIR).join(name)));
        }
    }
    match std::fs::symlink_metadata(dirs.configfile()) {
        Ok(_) => items.push(LayerItem::Entry(PathBuf::from(CONFIGFILE))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", dirs.configfile(), e)),
    }
    let record = dirs.generations().record(n);
    let record_rel = record
        .strip_prefix(&dirs.dir)
        .map_err(|_| Error::Failed(format!("{}: not inside the skel", record.display())))?;
    if let Some(parent) = record_rel.parent() {
        items.push(LayerItem::Entry(parent.to_path_buf()));
    }
    items.push(LayerItem::Entry(record_rel.to_path_buf()));
    write_layer(
        layout,
        &skel_root,
        &items,
        Path::new(META_PREFIX),
        &[(ann::PART.into(), PART_META.into())],
    )
}
