//! The `org.vskel.*` annotation keys vskel writes on manifests and layer
//! descriptors, and the OCI keys it uses.

/// What the image is: `skel` or `vserver` (manifest).
pub const KIND: &str = "org.vskel.kind";
/// The skel's name (manifest).
pub const SKEL: &str = "org.vskel.skel";
/// The skel generation exported (manifest).
pub const GENERATION: &str = "org.vskel.generation";
/// A digest of the skel generation's content, host-independent (manifest).
pub const CONTENT: &str = "org.vskel.content";
/// The vserver's name (manifest of a vserver image).
pub const VSERVER: &str = "org.vskel.vserver";
/// Which part of the skel a layer holds: `global`, `local`, `static`,
/// `meta` or `delta` (layer descriptor).
pub const PART: &str = "org.vskel.part";
/// The top-level paths a global layer holds, comma-separated (layer
/// descriptor, informational).
pub const PATHS: &str = "org.vskel.paths";
/// The tag of a manifest in an image layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The vserver's IP address on the host it was exported from (manifest).
pub const IP: &str = "org.vskel.ip";
/// The vserver's FQDN on the host it was exported from (manifest).
pub const FQDN: &str = "org.vskel.fqdn";
