//! `vskel sync NAME`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::sync::sync_view;

/// Write a view's current state into the on-disk tree <root>/NAME.
///
/// Entries the view shows from the skel's global layer become hard links
/// to the skel's inodes; everything else is copied (owner, mode, xattrs,
/// times, hard-link groups); whiteouts become absences. The tree is built
/// beside and put in place in one step: <root>/NAME is always the old tree
/// or the new one. The first sync of a view runs the skel's post-create
/// scripts against the tree. Works whether or not the view is mounted
/// (while mounted, files being written during the sync may be copied
/// half-written: unmount first for a consistent tree).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to sync.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let synced = sync_view(config, &args.name, progress)?;
    print(args.format, &synced, || {
        let c = &synced.counts;
        format!(
            "synced {} into {}{}: {} entries hard-linked to the skel, {} copied ({} bytes), \
             {} directories{}",
            synced.name,
            synced.root.display(),
            if synced.replaced {
                " (replacing the old tree)"
            } else {
                ""
            },
            c.linked,
            c.copied,
            c.bytes,
            c.dirs,
            if synced.scripts.is_empty() {
                String::new()
            } else {
                format!("; post-create scripts run: {}", synced.scripts.join(", "))
            }
        )
    })
}
