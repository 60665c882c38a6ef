//! `vskel sync NAME [--dry-run]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::sync::{SyncedView, sync_view};

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
/// write.
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
    let synced = sync_view(config, &args.name, args.dry_run, progress)?;
    print(args.format, &synced, || summary(&synced))
}

/// The text report: the changes (dry run: that would be made), then counts.
fn summary(v: &SyncedView) -> String {
    let s = &v.tree;
    let mut out = String::new();
    if s.dry_run {
        for change in &s.changes {
            out.push_str(&format!(
                "would {} /{}\n",
                change.action,
                change.path.display()
            ));
        }
    }
    let c = &s.counts;
    let verb = if s.dry_run { "would sync" } else { "synced" };
    let how = match (s.mode, s.replaced) {
        ("full", true) => " (rebuilt beside and swapped in)",
        ("full", false) => " (first sync)",
        _ => "",
    };
    out.push_str(&format!(
        "{verb} {} into {}{how}: {} linked to the skel, {} copied ({} bytes), {} directories made, \
         {} removed, {} directories updated, {} unchanged",
        v.name,
        s.root.display(),
        c.linked,
        c.copied,
        c.bytes,
        c.dirs,
        c.removed,
        c.updated,
        c.unchanged
    ));
    if s.resumed {
        out.push_str("; finished an interrupted sync");
    }
    if v.writes_held {
        out.push_str("; the mounted view's writes were held meanwhile");
    }
    if !v.scripts.is_empty() {
        out.push_str(&format!(
            "; post-create scripts run: {}",
            v.scripts.join(", ")
        ));
    }
    out
}
