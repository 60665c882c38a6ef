//! `vskel split-skel SKEL` (VSkel: `--split-skel`).

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::skel::split::split_skel;

/// Turn the temporary vserver <root>/tmp_skel_SKEL back into the skel with
/// the configured `global` rules, keeping the skel's inode for every entry
/// that did not change; record the skel's new generation and remove the
/// temporary vserver. static/ is never touched. Atomic: an interrupted
/// split is finished by the next split-skel or merge-skel.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The skel.
    skel: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let report = split_skel(config, &args.skel, progress)?;
    // The generation trees no view uses any more go (the one before the
    // current stays): without views, every split would keep one more.
    let skel = crate::skel::Skel::open(config, &args.skel)?;
    for gone in crate::vserver::view::prune_kept_generations(config, &skel)? {
        tracing::info!("removed {}: no view uses it", gone.display());
    }
    progress.finish();
    print(args.format, &report, || {
        format!(
            "split skel {}: generation {}; {} entries added or replaced, {} removed, {} \
             directories made",
            report.skel, report.generation, report.put, report.removed, report.dirs
        )
    })
}
