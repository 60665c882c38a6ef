//! Vservers: creating them from a skel (as trees or views), listing and
//! removing them.

pub mod context;
pub mod create;
pub mod mount;
pub mod registry;
pub mod remove;
pub mod scripts;
pub mod view;
