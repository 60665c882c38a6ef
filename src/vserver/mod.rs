//! Vservers: creating them from a skel (as trees or views), listing,
//! syncing and materializing views, upgrading trees to their skel's
//! current generation, verifying and repairing what they share with it,
//! linking a tree's copies of skel files back to the skel's inodes
//! (`unify`), reporting how each is served (`status`), what it changed
//! against its skel (`diff`) and how many bytes it uses of its own
//! (`du`), running commands inside them (`enter`, `exec`), and removing
//! them.

pub mod context;
pub mod create;
pub mod diff;
pub mod du;
pub mod enter;
pub mod materialize;
pub mod mount;
pub mod oci;
pub mod registry;
pub mod remove;
pub mod repair;
pub mod scripts;
pub mod status;
pub mod sync;
pub mod unify;
pub mod upgrade;
pub mod upgrade_journal;
pub mod verify;
pub mod view;
pub mod view_scripts;
