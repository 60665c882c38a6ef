//! `vskel detach NAME PATH...`.

use std::path::PathBuf;

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::upgrade::detach;

/// Give one tree vserver private copies of files it shares with its skel.
///
/// For a vserver that must diverge (a binary patched for it alone): each
/// path becomes a copy with the same content, owner, mode, xattrs and
/// times, writable by the vserver's root, while the skel and the other
/// vservers keep the shared (protected) file. The paths are recorded:
/// `upgrade-vs` keeps them as the vserver's own from then on (a skel
/// change there is a conflict, with the skel's version written beside).
/// `vskel revert NAME PATH` links a path to the skel again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tree vserver.
    name: String,
    /// Paths as the vserver sees them (e.g. /usr/bin/php).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let done = detach(config, &args.name, &args.paths)?;
    print(args.format, &done, || {
        let list = |paths: &[PathBuf]| -> String {
            paths
                .iter()
                .map(|p| format!("/{}", p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = format!("{}: {} private copies made", done.name, done.detached.len());
        if !done.detached.is_empty() {
            out.push_str(&format!(": {}", list(&done.detached)));
        }
        if !done.already_private.is_empty() {
            out.push_str(&format!(
                "\nnot shared with the skel, left as they are: {}",
                list(&done.already_private)
            ));
        }
        out
    })
}
