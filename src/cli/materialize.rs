//! `vskel materialize NAME`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::materialize::materialize;

/// Make a view an ordinary on-disk vserver: unmount it if mounted, sync it
/// into <root>/NAME, record it as a tree (its context link points at the
/// tree) and remove its view directory (upper, work, rendered static).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to materialize.
    name: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let done = materialize(config, &args.name, progress)?;
    print(args.format, &done, || {
        let unmounted = done
            .unmounted
            .as_ref()
            .map(|m| format!(" (unmounted {} first)", m.display()))
            .unwrap_or_default();
        match &done.sync {
            Some(sync) => format!(
                "materialized {} into {}{unmounted}: {} entries hard-linked to the skel, {} \
                 copied; removed {}",
                done.name,
                done.root.display(),
                sync.tree.counts.linked,
                sync.tree.counts.copied,
                done.view_dir.display()
            ),
            None => format!(
                "finished the interrupted materialize of {} into {}{unmounted}: removed {}",
                done.name,
                done.root.display(),
                done.view_dir.display()
            ),
        }
    })
}
