//! `vskel remove-vs NAME`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::remove::remove_vs;

/// Remove a vserver: its tree, config file, context link and record.
///
/// The skel is never touched: files the vserver shared with it just lose
/// one name. The tree vanishes from the vservers root at once, whole. A
/// view's directory (<root>/.views/NAME: upper, static, ...) goes too; a
/// mounted view is refused (`vskel unmount NAME` first), a stale mount
/// left by a dead server is cleared with a warning. A directory vskel has
/// no record of is refused unless --force-unregistered is given.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver to remove.
    name: String,
    /// Remove <root>/NAME (or <root>/.views/NAME) even though vskel has no
    /// record of a vserver NAME: a tree another tool made. Without it such
    /// a directory is refused.
    #[arg(long, visible_alias = "force")]
    force_unregistered: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let removed = remove_vs(config, &args.name, args.force_unregistered)?;
    print(args.format, &removed, || {
        let mut parts = Vec::new();
        if let Some(root) = &removed.root {
            parts.push(format!("tree {}", root.display()));
        }
        if let Some(view) = &removed.view_dir {
            parts.push(format!("view {}", view.display()));
        }
        if let Some(conf) = &removed.config_file {
            parts.push(format!("config {}", conf.display()));
        }
        if let Some(id) = removed.context {
            parts.push(format!("context {id}"));
        }
        format!("removed vserver {}: {}", removed.name, parts.join(", "))
    })
}
