//! The values the parts of the overlay core pass each other and their
//! callers: the errno and result of an operation, a node's attributes and
//! entry, which layer shows something, what a name resolved to, and small
//! helpers on names and paths. A leaf: it uses no other part of the core
//! but the node table's records.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{FileType, Stat};
pub use rustix::io::Errno;

use super::node::{Found, Lower};
use crate::sys;

/// Longest name a directory entry may have.
pub const NAME_MAX: usize = 255;
/// Result of a view operation: the errno a caller gets (rustix's, so the
/// core stands on its own; the FUSE adapter translates).
pub type OpResult<T> = Result<T, Errno>;

/// The attributes of a node: the `stat` of what shows it, under the node's
/// ID (its inode number in the view).
#[derive(Debug, Clone, Copy)]
pub struct Attrs {
    /// The node ID.
    pub id: u64,
    /// `stat` of the layer entry that shows the node.
    pub stat: Stat,
    /// A directory merged from more than one layer: its link count is not
    /// known (shown as 1, as overlayfs does).
    pub merged_dir: bool,
}

/// An entry for the kernel: attributes, generation, how long to trust it.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// Attributes.
    pub attr: Attrs,
    /// Generation of the node ID.
    pub generation: u64,
    /// How long the kernel may cache it.
    pub ttl: Duration,
}

/// Which layer an entry of the view lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layer {
    /// The writable layer.
    Upper,
    /// Read-only layer `i` (0 = top; never written through the view).
    Lower(usize),
}

/// An `io::Error` as the errno the caller gets (`EIO` for one that has
/// none).
pub fn errno(e: io::Error) -> Errno {
    Errno::from_io_error(&e).unwrap_or(Errno::IO)
}

/// A name as a C string, refusing names the kernel would not send.
pub fn cname(name: &OsStr) -> OpResult<CString> {
    if name.len() > NAME_MAX {
        return Err(Errno::NAMETOOLONG);
    }
    sys::cname(name).map_err(errno)
}

/// Split a relative path into its parent and final name.
pub fn split(path: &Path) -> (&Path, &OsStr) {
    (
        path.parent().unwrap_or(Path::new("")),
        path.file_name().unwrap_or_default(),
    )
}

/// The attributes of node `id`, shown by `st`.
pub fn attr(id: u64, st: &Stat, merged_dir: bool) -> Attrs {
    Attrs {
        id,
        stat: *st,
        merged_dir,
    }
}

/// A name found through the layers, not yet entered in the node table.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The view inode number (node ID).
    pub id: u64,
    /// Where it is.
    pub found: Found,
    /// `stat` of what is shown (upper if there, else the top lower).
    pub stat: Stat,
    /// The shown directory merges more than one layer.
    pub merged: bool,
}

/// What is known of a directory node.
#[derive(Debug, Clone)]
pub struct DirInfo {
    /// Node ID.
    pub id: u64,
    /// Path in the view (and the upper layer).
    pub path: PathBuf,
    /// Exists in the upper layer.
    pub upper: bool,
    /// Lower content.
    pub lower: Option<Lower>,
}

impl DirInfo {
    /// The directory as seen from its lower layers only (to resolve a name
    /// the upper layer is known not to have).
    pub fn lower_only(&self) -> DirInfo {
        DirInfo {
            upper: false,
            ..self.clone()
        }
    }
}

/// One name in a merged directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The name.
    pub name: OsString,
    /// Its type.
    pub kind: FileType,
    /// Its inode number in the view, when the listing knows it (lower
    /// entries); `None` for upper entries, which are resolved when asked.
    pub ino: Option<u64>,
    /// Its readdir offset: a hash of the name, so that a listing resumed
    /// after the directory changed neither skips nor repeats a name.
    pub cookie: u64,
}
