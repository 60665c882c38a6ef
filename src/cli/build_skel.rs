//! `vskel build-skel NAME [--from DIR]`.

use std::path::PathBuf;

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::skel::build::build_skel;

/// Build a new skel from a root tree (default: this host's /).
///
/// bin, lib*, sbin and usr (but usr/local) go to global/ (configurable
/// with `global`), the rest to local/; etc/passwd, shadow, group and
/// gshadow move to static/ beside a tokenised etc/hosts and etc/hostname.
/// proc, sys, dev, run, other mounts, the vservers root and lost+found are
/// never copied; home, root and tmp are made empty; dev/ gets a minimal
/// node set. Copies keep owner, mode, times, xattrs and hard links. The
/// skel appears whole at the end, or not at all.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Name of the new skel.
    name: String,
    /// Root tree to copy.
    #[arg(long, value_name = "DIR", default_value = "/")]
    from: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let report = build_skel(config, &args.name, &args.from, progress)?;
    progress.finish();
    print(args.format, &report, || {
        let c = &report.counts;
        format!(
            "built skel {} in {} from {}: {} files copied ({} bytes), {} directories; \
             {} post-create scripts linked; config file template: {}{}",
            report.skel,
            report.path.display(),
            report.from.display(),
            c.copied,
            c.bytes,
            c.dirs,
            report.scripts.len(),
            report.configfile,
            if report.protected > 0 {
                format!("; {} global files protected", report.protected)
            } else {
                String::new()
            }
        )
    })
}
