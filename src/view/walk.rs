//! The merged-tree walk: the core drives a [`TreeSink`] over everything
//! the view shows below a directory, each entry resolved through the
//! layers exactly as the FUSE view resolves it (whiteouts, opaque and
//! redirected directories included), with the layer that shows it.
//!
//! The walk resolves from the layers, not from the node table: it enters
//! nothing and needs no mount. Its consumers (the sync writer today, an
//! export tomorrow) decide what to make of each entry.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

use super::node::child_path;
use super::overlay::Overlay;
use super::types::{DirInfo, Resolved};
use super::types::{Errno, Layer, split};
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;

/// One entry the view shows, as a walk hands it to its sink.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Its path in the view.
    pub rel: &'a Path,
    /// Its name in the view.
    pub name: &'a CStr,
    /// What it resolved to.
    pub resolved: &'a Resolved,
    /// The layer that shows it.
    pub shown: Layer,
    /// Its path in that layer (other than `rel` below a redirect).
    pub layer_path: &'a Path,
    /// The directory of that layer holding it.
    pub layer_dir: BorrowedFd<'a>,
}

impl Entry<'_> {
    /// Its name in the layer that shows it.
    pub fn layer_name(&self) -> Result<std::ffi::CString> {
        sys::cname(split(self.layer_path).1).map_err(|e| Error::io("name", self.rel, e))
    }

    /// Is it a directory?
    pub fn is_dir(&self) -> bool {
        self.resolved.found.kind == FileType::Directory
    }
}

/// What a walk is driven into. For a directory the walk calls
/// [`TreeSink::dir`], then walks what it shows, then [`TreeSink::end_dir`];
/// for anything else [`TreeSink::leaf`].
pub trait TreeSink {
    /// A directory, before what it shows.
    fn dir(&mut self, entry: &Entry<'_>) -> Result<()>;
    /// A non-directory.
    fn leaf(&mut self, entry: &Entry<'_>) -> Result<()>;
    /// A directory, after what it shows.
    fn end_dir(&mut self, entry: &Entry<'_>) -> Result<()>;
}

impl Resolved {
    /// The layer that shows it, and its path there (`rel`: its path in the
    /// view).
    pub fn shown(&self, rel: &Path) -> (Layer, PathBuf) {
        match (&self.found.upper, &self.found.lower) {
            (true, _) | (false, None) => (Layer::Upper, rel.to_path_buf()),
            (false, Some(lower)) => (Layer::Lower(lower.top_layer()), lower.path().to_path_buf()),
        }
    }

    /// It as a directory shown at `path`, to resolve names in.
    pub fn as_dir(&self, path: PathBuf) -> DirInfo {
        DirInfo {
            id: self.id,
            path,
            upper: self.found.upper,
            lower: self.found.lower.clone(),
        }
    }
}

impl Overlay {
    /// The tree of the layer `shown` names.
    pub fn layer_tree(&self, shown: Layer) -> &TreeRoot {
        match shown {
            Layer::Upper => self.upper_layer(),
            Layer::Lower(i) => self.lower_layer(i),
        }
    }

    /// Drive `sink` over everything the view shows below directory `from`
    /// (not `from` itself), depth first. A name gone between the listing
    /// and its resolution is skipped.
    pub fn walk(&self, from: &DirInfo, sink: &mut dyn TreeSink) -> Result<()> {
        let listing = self
            .list(from)
            .map_err(|e| Error::io("list", &from.path, e))?;
        // The layer directories holding this directory's entries, one per
        // layer, opened on first use.
        let mut layer_dirs: HashMap<Layer, OwnedFd> = HashMap::new();
        for item in listing {
            let rel = child_path(&from.path, &item.name);
            let r = match self.resolve(from, &item.name) {
                Ok(r) => r,
                Err(e) if e == Errno::NOENT => continue, // gone meanwhile
                Err(e) => return Err(Error::io("resolve", &rel, e)),
            };
            let (shown, layer_path) = r.shown(&rel);
            if let Slot::Vacant(slot) = layer_dirs.entry(shown) {
                slot.insert(self.layer_tree(shown).open_dir(split(&layer_path).0)?);
            }
            let name = sys::cname(&item.name).map_err(|e| Error::io("name", &rel, e))?;
            let entry = Entry {
                rel: &rel,
                name: &name,
                resolved: &r,
                shown,
                layer_path: &layer_path,
                layer_dir: layer_dirs[&shown].as_fd(),
            };
            if entry.is_dir() {
                sink.dir(&entry)?;
                self.walk(&r.as_dir(rel.clone()), sink)?;
                sink.end_dir(&entry)?;
            } else {
                sink.leaf(&entry)?;
            }
        }
        Ok(())
    }
}
