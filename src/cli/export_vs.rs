//! `vskel export-vs NAME oci:DIR[:TAG]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::oci::ImageRef;
use crate::progress::Progress;
use crate::vserver::oci::export_vs;

/// Write a vserver as an OCI image: its skel generation's layers (as
/// export-skel writes them, so a registry holds them once for all its
/// vservers) plus one layer of what the vserver changed (what `vskel diff`
/// shows; removals as OCI whiteouts). A view is synced first. The
/// vserver must be on its skel's current generation (`vskel upgrade-vs`).
/// The default tag is the vserver's name.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver.
    name: String,
    /// Where: oci:DIR[:TAG].
    #[arg(value_name = "oci:DIR[:TAG]")]
    dest: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let dest = ImageRef::parse(&args.dest)?;
    let report = export_vs(config, &args.name, &dest, progress)?;
    print(args.format, &report, || {
        format!(
            "exported vserver {} (skel {} generation {}) to {} ({}): {} changed entries, {} \
             removed, delta {} bytes; {} bytes in all, {} of them new",
            report.vserver,
            report.skel,
            report.generation,
            report.image,
            report.digest,
            report.entries,
            report.removed,
            report.delta_bytes,
            report.total_bytes,
            report.new_bytes
        )
    })
}
