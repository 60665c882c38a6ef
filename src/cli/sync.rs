//! `vskel sync NAME [--dry-run]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::sync::sync_view;

/// Write a view's current state into the on-disk tree <root>/NAME.
///
/// Entries the view shows from the skel's global layer become hard links
/// to the skel's inodes; everything else is copied (owner, mode, xattrs,
/// times, hard-link groups); whiteouts become absences.
///
/// The first sync builds the tree beside and puts it in place in one step
/// (<root>/NAME is always the old tree or the new one) and runs the skel's
/// post-create scripts against it. Later syncs are incremental: only what
/// changed in the view's upper layer since the last sync is rewritten, each
/// file replaced by a rename; a sync that was interrupted is finished by
/// the next. A sync with nothing changed changes nothing.
///
/// Works whether or not the view is mounted; while it is, the view's
/// server holds writes for the duration of the sync (reads go on), so a
/// file being written lands in the tree as it was before or after the
/// write. When `vskel daemon` runs, the daemon does the sync.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to sync.
    name: String,
    /// Print what would change, and change nothing.
    #[arg(long, short = 'n')]
    dry_run: bool,
    /// Output format (json: counts linked, copied, dirs, removed, updated,
    /// unchanged, bytes, and the changed paths of an incremental sync).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    if let Some(mut daemon) = crate::daemon::route::running(config)? {
        let reply = daemon.ask(serde_json::json!({
            "cmd": "sync", "vs": args.name, "dry_run": args.dry_run,
        }))?;
        return print(args.format, &reply["report"], || {
            reply["text"].as_str().unwrap_or_default().to_string()
        });
    }
    let synced = sync_view(config, &args.name, args.dry_run, progress)?;
    print(args.format, &synced, || synced.to_string())
}
