//! Skels as OCI images: `export-skel` writes a skel generation as an
//! image ([`export`]), `import-skel` builds a skel, or a new generation of
//! one, from an image ([`import`]).
//!
//! The image of generation N of skel S (tag N by default):
//! * global/ as up to 64 layers ([`partition`]), then local/, then
//!   static/, each layer's descriptor annotated `org.vskel.part`; applied
//!   in that order they are the merged skel, so the image runs under
//!   podman too;
//! * a last `meta` layer with `.vskel/scripts/post-create-vs/*`,
//!   `.vskel/configfile` and `.vskel/generations/N.record`;
//! * manifest annotations `org.vskel.kind = skel`, `org.vskel.skel`,
//!   `org.vskel.generation` and `org.vskel.content` (the generation's
//!   host-independent content id, [`crate::generation::content_id`]).

pub mod export;
pub mod import;
pub mod partition;

pub use export::{ExportReport, export_skel};
pub use import::{ImportReport, import_skel};

/// The `org.vskel.part` of global/ layers.
pub const PART_GLOBAL: &str = "global";
/// The `org.vskel.part` of the local/ layer.
pub const PART_LOCAL: &str = "local";
/// The `org.vskel.part` of the static/ layer.
pub const PART_STATIC: &str = "static";
/// The `org.vskel.part` of the scripts, config file and record layer.
pub const PART_META: &str = "meta";
/// The `org.vskel.part` of a vserver's own changes.
pub const PART_DELTA: &str = "delta";
/// Where the meta layer's files are in the image.
pub const META_PREFIX: &str = ".vskel";
/// `org.vskel.kind` of a skel image.
pub const KIND_SKEL: &str = "skel";
/// `org.vskel.kind` of a vserver image.
pub const KIND_VSERVER: &str = "vserver";
