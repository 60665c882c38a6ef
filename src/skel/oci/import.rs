//! `import-skel oci:DIR[:TAG] NAME`: build skel NAME, or a new
//! generation of it, from a skel image (or the skel layers of a vserver
//! image).
//!
//! The image is hostile input. Every layer is unpacked by the OCI engine
//! ([`crate::oci::apply_layer`]: digests checked, no entry outside its
//! part) into a staging skel, part by part as the layers' `org.vskel.part`
//! says; the meta layer's scripts and config file are put in place and
//! its generation record is the check: the staged skel, scanned as a
//! generation is, must hold exactly what the record says (and so what
//! the manifest's content id says), or nothing is kept. Directory times
//! are set from the record last (a later layer writing into a directory
//! changes its time).
//!
//! A new skel is protected, its first generation recorded and the staging
//! directory renamed into place, whole or not at all. An existing skel
//! whose current generation has the image's content id is left as it is;
//! otherwise the staged global/ and local/ are split into it as
//! `split-skel` splits its temporary vserver (unchanged entries keep the
//! skel's inodes, new paths are placed by the configured rules), static/,
//! the scripts and the config file are replaced, and a new generation is
//! recorded, which `upgrade-vs` follows.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::info;

use super::{
    KIND_SKEL, KIND_VSERVER, META_PREFIX, PART_DELTA, PART_GLOBAL, PART_LOCAL, PART_META,
    PART_STATIC,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Kind, Part};
use crate::layout::{Layout, SkelDirs};
use crate::oci::annotations as ann;
use crate::oci::{Image, ImageLayout, ImageRef, Whiteouts, apply_layer};
use crate::progress::Progress;
use crate::staging::{Staging, make_private_dir};
use crate::tree::copy::{CopyOptions, Everything, How, Target, copy_tree};
use crate::tree::{TreeRoot, require_one_filesystem};
use crate::{protect, sys};

use super::super::Skel;
use super::super::build::{publish_new_skel, write_configfile};
use super::super::lifecycle::{self, exists};
use super::super::remove::refuse_merged;
use super::super::split::split_from;

/// What `import-skel` did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// The skel.
    pub skel: String,
    /// Where from.
    pub image: String,
    /// The image's manifest digest.
    pub digest: String,
    /// The generation the image holds (its number on the exporting host).
    pub image_generation: u64,
    /// The skel's generation now, on this host.
    pub generation: u64,
    /// `new` (a skel made), `generation` (a new generation of an
    /// existing skel) or `unchanged` (the skel held that content already).
    pub result: ImportResult,
    /// Layers unpacked.
    pub layers: usize,
    /// Entries unpacked.
    pub entries: u64,
    /// Bytes of file data unpacked.
    pub bytes: u64,
}

/// What an import made of the skel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImportResult {
    /// A new skel.
    New,
    /// A new generation of the skel.
    Generation,
    /// Nothing: the skel's current generation has the image's content.
    Unchanged,
}

/// Import the skel image `src` as skel `name`.
pub fn import_skel(
    config: &Config,
    src: &ImageRef,
    name: &str,
    progress: &Progress,
) -> Result<ImportReport> {
    Skel::named(config, name)?; // a bad name is refused before anything is read
    let layout = open_layout(src)?;
    let image = layout.read_image(src.tag.as_deref())?;
    let kind = annotation(&image, ann::KIND);
    if kind != Some(KIND_SKEL) && kind != Some(KIND_VSERVER) {
        return Err(Error::Usage(format!(
            "{src} is not a vskel image (no {} annotation of \"{KIND_SKEL}\"): unpack its root \
             filesystem with `skopeo`/`umoci` and make a skel of it with `vskel build-skel`",
            ann::KIND
        )));
    }
    import_skel_image(config, &layout, &image, &src.to_string(), name, progress)
}

/// The image layout `src` names; a directory that does not exist is a
/// usage error.
pub(crate) fn open_layout(src: &ImageRef) -> Result<ImageLayout> {
    match std::fs::symlink_metadata(&src.dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
            "{src}: {} does not exist",
            src.dir.display()
        ))),
        _ => ImageLayout::open(&src.dir),
    }
}

/// A manifest annotation of `image`.
pub(crate) fn annotation<'a>(image: &'a Image, key: &str) -> Option<&'a str> {
    image
        .manifest
        .annotations()
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Does the current generation of skel `name` hold `content`?
pub(crate) fn has_content(config: &Config, name: &str, content: &str) -> Result<Option<u64>> {
    let skel = Skel::named(config, name)?;
    if !exists(&skel.dirs.dir)? {
        return Ok(None);
    }
    let Some(n) = generation::current(&skel.dirs)? else {
        return Ok(None);
    };
    let generation = generation::load(&skel.dirs, n)?;
    Ok((generation::content_id(generation.entries()) == content).then_some(n))
}

/// Import the skel layers of `image` (read from `layout`) as skel `name`.
pub(crate) fn import_skel_image(
    config: &Config,
    layout: &ImageLayout,
    image: &Image,
    shown: &str,
    name: &str,
    progress: &Progress,
) -> Result<ImportReport> {
    let skel = Skel::named(config, name)?;
    let image_generation: u64 = annotation(image, ann::GENERATION)
        .and_then(|g| g.parse().ok())
        .ok_or_else(|| {
            Error::Failed(format!(
                "{shown}: the manifest has no {} annotation with the skel generation",
                ann::GENERATION
            ))
        })?;
    let content = annotation(image, ann::CONTENT)
        .ok_or_else(|| {
            Error::Failed(format!(
                "{shown}: the manifest has no {} annotation",
                ann::CONTENT
            ))
        })?
        .to_string();
    let mut report = ImportReport {
        skel: name.to_string(),
        image: shown.to_string(),
        digest: image.digest.clone(),
        image_generation,
        generation: 0,
        result: ImportResult::New,
        layers: 0,
        entries: 0,
        bytes: 0,
    };
    let existing = exists(&skel.dirs.dir)?;
    let _lock = if existing {
        let skel = Skel::open(config, name)?;
        refuse_merged(config, &skel)?;
        let lock = lifecycle::lock(&skel)?;
        super::super::split::recover(config, &skel, progress)?;
        refuse_merged(config, &skel)?;
        if let Some(n) = has_content(config, name, &content)? {
            report.generation = n;
            report.result = ImportResult::Unchanged;
            return Ok(report);
        }
        Some(lock)
    } else {
        None
    };
    protect::check_supported(config.protect)?;
    let skels_dir = Layout::new(config).skels();
    make_private_dir(&skels_dir)?;
    require_one_filesystem(&[&config.root, &skels_dir, &Layout::new(config).state()])?;

    let staging = Staging::create(config, &format!("import-{name}"))?;
    let built = SkelDirs {
        dir: staging.path().to_path_buf(),
    };
    // The meta layer and, for a new generation, the merged parts to split.
    let scratch = Staging::create(config, &format!("import-{name}-scratch"))?;
    let meta = scratch.path().join("meta");
    for dir in [
        built.global(),
        built.local(),
        built.static_dir(),
        meta.clone(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("make directory", &dir, e))?;
    }
    unpack(layout, image, shown, &built, &meta, &mut report, progress)?;
    let carried = SkelDirs { dir: meta.clone() };
    let record = generation::load(&carried, image_generation).map_err(|e| {
        Error::Failed(format!(
            "{shown}: the image's generation record is missing or damaged: {e}"
        ))
    })?;
    place_meta(config, &built, &meta)?;
    restore_dir_times(&built, record.entries())?;
    progress.start(&format!("checking skel {name} against its record"));
    let scanned = generation::scan::scan(&built, None, progress)?.entries;
    check_against_record(shown, &scanned, record.entries(), &content)?;

    if existing {
        let skel = Skel::open(config, name)?;
        report.generation = new_generation(config, &skel, &built, scratch.path(), progress)?;
        report.result = ImportResult::Generation;
        staging.discard()?;
    } else {
        let global = TreeRoot::open(&built.global())?;
        report.generation =
            publish_new_skel(config, &skel, staging, &global, "import-skel", progress)?.1;
    }
    scratch.discard()?;
    progress.finish();
    info!(
        "skel {name} generation {} imported from {shown}",
        report.generation
    );
    Ok(report)
}

/// Unpack every skel layer of `image` into `built` (meta into `meta`).
fn unpack(
    layout: &ImageLayout,
    image: &Image,
    shown: &str,
    built: &SkelDirs,
    meta: &Path,
    report: &mut ImportReport,
    progress: &Progress,
) -> Result<()> {
    let diff_ids = image.config.rootfs().diff_ids();
    let layers = image.manifest.layers();
    if diff_ids.len() != layers.len() {
        return Err(Error::Failed(format!(
            "{shown}: the config lists {} layer digests for {} layers",
            diff_ids.len(),
            layers.len()
        )));
    }
    for (i, desc) in layers.iter().enumerate() {
        let part = desc
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ann::PART))
            .map(String::as_str);
        let (dir, prefix) = match part {
            Some(PART_GLOBAL) => (built.global(), ""),
            Some(PART_LOCAL) => (built.local(), ""),
            Some(PART_STATIC) => (built.static_dir(), ""),
            Some(PART_META) => (meta.to_path_buf(), META_PREFIX),
            Some(PART_DELTA) => continue,
            other => {
                return Err(Error::Failed(format!(
                    "{shown}: layer {} ({}) has {} {:?}, not one of global, local, static, \
                     meta, delta",
                    i + 1,
                    desc.digest(),
                    ann::PART,
                    other.unwrap_or("(none)")
                )));
            }
        };
        progress.start(&format!("unpacking layer {} of {}", i + 1, layers.len()));
        let applied = apply_layer(
            layout,
            desc,
            diff_ids[i].as_str(),
            &TreeRoot::open(&dir)?,
            Path::new(prefix),
            Whiteouts::Remove,
        )?;
        report.layers += 1;
        report.entries += applied.entries;
        report.bytes += applied.bytes;
        progress.inc(applied.entries);
    }
    Ok(())
}

/// Move the meta layer's scripts and config file into the staged skel
/// (the built-in or default config file when the image has none).
fn place_meta(config: &Config, built: &SkelDirs, meta: &Path) -> Result<()> {
    let meta_dirs = SkelDirs {
        dir: meta.to_path_buf(),
    };
    // scripts/ moves whole, with its times.
    let (from, to) = (scripts_dir(&meta_dirs), scripts_dir(built));
    if exists(&from)? {
        std::fs::rename(&from, &to).map_err(|e| Error::io("move", &from, e))?;
    }
    let post_create = built.post_create_dir();
    std::fs::create_dir_all(&post_create)
        .map_err(|e| Error::io("make directory", &post_create, e))?;
    let from = meta_dirs.configfile();
    match std::fs::symlink_metadata(&from) {
        Ok(m) if m.is_file() => {
            std::fs::rename(&from, built.configfile()).map_err(|e| Error::io("move", &from, e))?
        }
        Ok(_) => {
            return Err(Error::Failed(format!(
                "the image's config file {} is not a regular file",
                from.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_configfile(config, &built.configfile())?;
        }
        Err(e) => return Err(Error::io("stat", &from, e)),
    }
    Ok(())
}

/// A skel's `scripts/` (the parent of its post-create scripts).
fn scripts_dir(dirs: &SkelDirs) -> PathBuf {
    let post_create = dirs.post_create_dir();
    post_create
        .parent()
        .map_or_else(|| post_create.clone(), Path::to_path_buf)
}

/// Give every directory the times its record says (a later layer writing
/// into a directory changed them).
fn restore_dir_times(built: &SkelDirs, entries: &[Entry]) -> Result<()> {
    let mut roots: Vec<(Part, TreeRoot)> = Vec::new();
    for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
        if roots.last().is_none_or(|(part, _)| *part != e.part) {
            // Entries are sorted by part: each part's root is opened once.
            roots.push((e.part, TreeRoot::open(&built.dir.join(e.part.dir_name()))?));
        }
        let root = &roots[roots.len() - 1].1;
        let is_root = e.path.as_os_str().is_empty();
        let opened;
        let fd = if is_root {
            root.fd()
        } else {
            opened = root.open_dir(&e.path)?;
            opened.as_fd()
        };
        if is_root {
            // The part's root is in no layer: all of its metadata.
            sys::fchown(fd, e.uid, e.gid)
                .and_then(|()| sys::fchmod(fd, e.mode))
                .map_err(|err| Error::io("set owner and mode of", root.path(), err))?;
        }
        let times = sys::Times {
            atime: e.mtime,
            mtime: e.mtime,
        };
        sys::futimens(fd, times)
            .map_err(|err| Error::io("set times of", root.display(&e.path), err))?;
    }
    Ok(())
}

/// The staged skel must be what the image's record (and content id) say.
fn check_against_record(
    shown: &str,
    scanned: &[Entry],
    record: &[Entry],
    content: &str,
) -> Result<()> {
    let recorded_id = generation::content_id(record);
    if recorded_id != content {
        return Err(Error::Failed(format!(
            "{shown}: the image's generation record does not match its {} annotation",
            ann::CONTENT
        )));
    }
    if generation::content_id(scanned) == recorded_id {
        return Ok(());
    }
    let first = scanned
        .iter()
        .zip(record)
        .find(|(a, b)| !a.same_content(b))
        .map(|(a, b)| {
            format!(
                "{}/{} (image record: {}/{})",
                a.part.dir_name(),
                a.path.display(),
                b.part.dir_name(),
                b.path.display()
            )
        })
        .unwrap_or_else(|| {
            format!(
                "{} entries unpacked, {} recorded, or a hard-link group differs",
                scanned.len(),
                record.len()
            )
        });
    Err(Error::Failed(format!(
        "{shown}: what the layers hold differs from the image's generation record, first at \
         {first}; nothing was imported"
    )))
}

/// Make the staged skel a new generation of `skel`: global/ and local/
/// split in (unchanged entries keep the skel's inodes), static/, scripts
/// and config file replaced. Returns the generation recorded.
fn new_generation(
    config: &Config,
    skel: &Skel,
    built: &SkelDirs,
    staging: &Path,
    progress: &Progress,
) -> Result<u64> {
    let tree: PathBuf = staging.join("tree");
    make_private_dir(&tree)?;
    for part in [built.global(), built.local()] {
        copy_tree(
            &TreeRoot::open(&part)?,
            &[Target {
                tree: TreeRoot::open(&tree)?,
                how: How::Link,
            }],
            &Everything,
            CopyOptions {
                protect: crate::config::Protect::None,
                progress,
            },
        )?;
    }
    replace_dir(&built.static_dir(), &skel.static_dir())?;
    replace_dir(&scripts_dir(built), &scripts_dir(&skel.dirs))?;
    std::fs::rename(built.configfile(), skel.configfile())
        .map_err(|e| Error::io("replace", skel.configfile(), e))?;
    split_from(config, skel, &TreeRoot::open(&tree)?, progress)?;
    Ok(generation::record(
        &skel.dirs,
        "import-skel",
        progress,
        generation::Store::of(config),
    )?
    .generation)
}

/// Put directory `new` at `old`'s place (swapped by one rename), then
/// remove what was there.
fn replace_dir(new: &Path, old: &Path) -> Result<()> {
    if !exists(old)? {
        std::fs::rename(new, old).map_err(|e| Error::io("move", new, e))?;
        return Ok(());
    }
    let (new_parent, new_name) = crate::staging::split_parent(new)?;
    let (old_parent, old_name) = crate::staging::split_parent(old)?;
    let np = sys::open_root(new_parent).map_err(|e| Error::io("open", new_parent, e))?;
    let op = sys::open_root(old_parent).map_err(|e| Error::io("open", old_parent, e))?;
    sys::rename_exchange(np.as_fd(), &new_name, op.as_fd(), &old_name)
        .map_err(|e| Error::io("swap in", old, e))?;
    crate::tree::remove::remove_tree_at(np.as_fd(), &new_name)
        .map_err(|e| Error::io("remove", new, e))?;
    Ok(())
}
