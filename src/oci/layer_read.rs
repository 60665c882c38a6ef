//! Reading one layer into a directory, as hostile input: the blob's
//! digest and size are checked (and its uncompressed digest against the
//! config's `diff_id`), every name is checked before anything is made
//! (no absolute name, no `..`, nothing through a symlink or a
//! non-directory; a hard link only to an earlier non-directory entry
//! inside the target; a symlink whose relative target climbs above the
//! target's root is refused, an absolute one is taken as inside it), and
//! only regular files, directories, symlinks, hard links, devices and
//! FIFOs are accepted. OCI whiteouts are applied ([`Whiteouts`]).
//!
//! The caller unpacks into a staging directory it throws away on error,
//! so a refused or damaged layer leaves nothing behind.

use std::path::Path;

use ocidir::oci_spec::image::Descriptor;
use serde::Serialize;

use super::layout::ImageLayout;
use crate::error::{Error, Result};
use crate::tree::TreeRoot;

/// What to do with a whiteout or an opaque marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Remove what it names from the target (an image's root
    /// filesystem is being built: layers are applied one over another).
    Remove,
    /// Write it in kernel overlayfs' format (a character device 0/0; the
    /// `trusted.overlay.opaque` xattr), for a view's upper layer.
    KernelOverlay,
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// Entries made (files, directories, links, devices).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
}

/// Unpack the layer `desc` of `layout` into `target`. `diff_id` is the
/// config's digest of the uncompressed tar. Only entries under `prefix`
/// are taken (with the prefix stripped; an entry elsewhere is refused);
/// `prefix` may be empty. Existing entries of the target at an entry's
/// path are replaced by a new inode (never written through: a hard-linked
/// file keeps its other names' content). Directories get their times
/// after everything in them is made.
pub fn apply_layer(
    layout: &ImageLayout,
    desc: &Descriptor,
    diff_id: &str,
    target: &TreeRoot,
    prefix: &Path,
    whiteouts: Whiteouts,
) -> Result<Applied> {
    let _ = (layout, desc, diff_id, target, prefix, whiteouts);
    Err(Error::Failed("not built yet".into()))
}
