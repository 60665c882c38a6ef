//! `vskel revert NAME PATH...`.

use std::path::PathBuf;

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::upgrade::revert;

/// Reset paths of a tree vserver to its skel's current version.
///
/// Global entries are hard-linked to the skel's inode again, local ones
/// copied, static ones re-rendered with the vserver's tokens; a directory
/// gets the skel's owner, mode and times (what it holds is left alone).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tree vserver.
    name: String,
    /// Paths as the vserver sees them (e.g. /etc/motd).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let done = revert(config, &args.name, &args.paths)?;
    print(args.format, &done, || {
        let paths: Vec<String> = done
            .paths
            .iter()
            .map(|p| format!("/{}", p.display()))
            .collect();
        format!(
            "reverted {} to skel generation {}: {}",
            done.name,
            done.generation,
            paths.join(", ")
        )
    })
}
