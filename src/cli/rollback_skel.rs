//! `vskel rollback-skel SKEL [--to G]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::skel::rollback::rollback_skel;

/// Give a skel back the global/ and local/ of an earlier generation (by
/// default the one before its current one), recorded as a new
/// generation; vservers follow with `vskel upgrade-vs`. Works on a kept
/// generation tree: split-skel keeps the generation before the current
/// one, and every one a view uses. static/ is left as it is. Atomic and
/// crash-safe as split-skel is.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The skel.
    skel: String,
    /// The generation to go back to [default: the one before the current].
    #[arg(long, value_name = "G")]
    to: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let report = rollback_skel(config, &args.skel, args.to, progress)?;
    let skel = crate::skel::Skel::open(config, &args.skel)?;
    for gone in crate::vserver::view::prune_kept_generations(config, &skel)? {
        tracing::info!("removed {}: no view uses it", gone.display());
    }
    progress.finish();
    print(args.format, &report, || {
        format!(
            "rolled skel {} back from generation {} to the parts of generation {}: now \
             generation {}; {} entries put back or replaced, {} removed, {} directories made \
             (`vskel upgrade-vs --all --skel {}` brings its vservers along)",
            report.skel,
            report.from,
            report.to,
            report.generation,
            report.put,
            report.removed,
            report.dirs,
            report.skel
        )
    })
}
