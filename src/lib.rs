//! vskel: virtual-server templates ("skels").
//!
//! A skel holds `global/` (hard-linked into every vserver), `local/`
//! (copied), `static/` (copied with `%%TOKENS%%` replaced), post-create
//! scripts and a config-file template. This library builds skels and
//! creates, lists and removes vservers made from them; the `vskel` binary
//! is a thin command line over it.

// Every public item says what it is (the floors below are a library the
// daemon and tests use, not only the CLI's insides).
#![warn(missing_docs)]

pub mod barrier;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod error;
pub mod example;
pub mod generation;
pub mod layout;
pub mod mount;
pub mod oci;
pub mod progress;
pub mod protect;
pub mod report_path;
pub mod served_socket;
pub mod skel;
pub mod staging;
pub mod sync;
pub mod sys;
pub mod tokens;
pub mod tree;
pub mod validate;
pub mod view;
pub mod vserver;

pub use error::{Error, Result};
