//! The view: a FUSE filesystem presenting layers as one writable tree,
//! copy-on-write, in kernel overlayfs' on-disk format.
//!
//! Layers, top first: `upper` (writable), then the read-only lowers (for a
//! vserver: rendered static, skel local, skel global). The stack is exactly
//! what kernel overlayfs accepts as
//! `lowerdir=L1:L2:L3,upperdir=U,workdir=W`: whiteouts are 0/0 character
//! devices, opaque directories carry `trusted.overlay.opaque="y"`, renamed
//! lower directories `trusted.overlay.redirect`. Overlay xattrs are hidden
//! from the view's users.

use std::path::PathBuf;

/// The directories a view is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    /// The writable layer.
    pub upper: PathBuf,
    /// The work directory, on the upper's mount: vskel's scratch space
    /// (where copy-up happens first) is its `work/` ([`workdir`]).
    pub work: PathBuf,
    /// The read-only layers, top first.
    pub lowers: Vec<PathBuf>,
}

/// How a view is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServeOptions {
    /// The source shown in /proc/mounts (e.g. `SKEL:NAME`).
    pub fsname: String,
    /// Let users other than the mounter in (`allow_other`); on by default
    /// for vservers, whose users are many.
    pub allow_other: bool,
    /// At most this many worker threads serve requests: they start at one
    /// and are added while requests wait.
    pub threads: usize,
    /// Where to serve the control socket that lets `vskel sync` hold the
    /// view's writes ([`control`]); none for views nobody syncs.
    pub control: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            fsname: "vskel".to_string(),
            allow_other: true,
            threads: default_threads(),
            control: None,
        }
    }
}

/// At most this many worker threads by default: twice the CPUs this
/// process may run on, at least 4 (requests that wait for the disk, such
/// as fsync, leave their CPU to others) and at most 16.
pub fn default_threads() -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (2 * cpus).clamp(4, 16)
}

/// The filesystem type's subtype: mounts show as `fuse.vskel`.
pub const SUBTYPE: &str = "vskel";

pub mod caches;
pub mod control;
pub mod copyup;
pub mod files;
pub mod format;
pub mod fuse;
pub mod gate;
pub mod handles;
pub mod hardlinks;
pub mod killpriv;
pub mod layout;
pub mod listing;
pub mod mutate;
pub mod node;
pub mod options;
pub mod overlay;
pub mod passthrough;
pub mod resolve;
pub mod serve;
pub mod stop;
pub mod types;
pub mod walk;
pub mod workdir;
