//! `vskel du [NAME...] [--format json]`.

use super::output::{Format, aligned, fail_if_any, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::du::{DuReport, du};
use crate::vserver::registry::Kind;

/// Show the bytes each vserver uses on its own against those it shares
/// with its skel.
///
/// Counted as du(1) does (each inode's blocks, once). A tree's own bytes
/// are what is not its skel's: its directories, copies of local/ and
/// static/ files, files detached or broken off, its own files; it shares
/// the skel's global files it is hard-linked to. A view's own bytes are
/// its upper layer and its rendered static layer; it shares the skel's
/// local/ and global/ it is stacked on. Without NAME: every vserver, and
/// a total that counts each shared file once. An unknown NAME is a usage
/// error; a vserver that cannot be counted is reported (exit status 1).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vservers to count [default: every one].
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let report = du(config, &args.names)?;
    print(args.format, &report, || {
        table(&report, args.names.is_empty())
    })?;
    let failed = report
        .vservers
        .iter()
        .filter(|u| u.error.is_some())
        .map(|u| u.name.as_str())
        .collect();
    fail_if_any(failed, "could not count")
}

/// One vserver a line, in aligned columns; the total last.
fn table(report: &DuReport, with_total: bool) -> String {
    let mut rows: Vec<[String; 6]> = report
        .vservers
        .iter()
        .map(|u| {
            [
                u.name.clone(),
                match u.kind {
                    Kind::View => "view",
                    _ => "tree",
                }
                .to_string(),
                u.skel.clone().unwrap_or_else(|| "-".into()),
                u.own_bytes.to_string(),
                u.shared_bytes.to_string(),
                u.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    if with_total {
        rows.push([
            "total".into(),
            String::new(),
            String::new(),
            report.total.own_bytes.to_string(),
            report.total.shared_bytes.to_string(),
            String::new(),
        ]);
    }
    aligned(["NAME", "KIND", "SKEL", "OWN", "SHARED", "ERROR"], &rows)
}
