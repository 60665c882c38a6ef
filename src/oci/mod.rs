//! OCI images (image-spec 1.1) of skels and vservers: an image layout on
//! disk (`oci:DIR[:TAG]`), deterministic compressed tar layers written
//! from a tree, and layers read back as hostile input (every blob's
//! digest checked, no entry outside its target, OCI whiteouts applied).
//!
//! Engine: it imports the base floor and `tree`, and
//! knows nothing of skels or vservers; `skel::oci` and `vserver::oci`
//! decide what goes into which layer.

pub mod annotations;
pub mod layer_read;
pub mod layer_write;
pub mod layout;
pub mod reference;
pub mod whiteout;

pub use layer_read::{Applied, Whiteouts, apply_layer};
pub use layer_write::{LayerItem, WrittenLayer, write_layer};
pub use layout::{Image, ImageLayout, NewImage};
pub use reference::ImageRef;
