//! `vskel merge-skel SKEL` (VSkel: `--merge-skel`).

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::skel::merge::merge_skel;

/// Make the temporary vserver <root>/tmp_skel_SKEL from the skel's global/
/// (hard-linked) and local/ (copied), to change the skel with
/// `chroot <root>/tmp_skel_SKEL dpkg -i ...` or `apt-get`; then
/// `vskel split-skel SKEL`. global.bak/ and local.bak/ keep the skel as it
/// was. Refused when the skel is merged already or the name
/// tmp_skel_SKEL is taken.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The skel.
    skel: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let report = merge_skel(config, &args.skel, progress)?;
    progress.finish();
    print(args.format, &report, || {
        format!(
            "merged skel {} (generation {}) into {}: {} global entries linked, {} local \
             entries copied; change it there, then run `vskel split-skel {}`",
            report.skel,
            report.generation,
            report.path.display(),
            report.counts.linked,
            report.counts.copied,
            report.skel
        )
    })
}
