//! `vskel list [--skels] [--format json]`.
//!
//! `--skels` also counts each skel's immutable global files (one `statx`
//! each) and warns when a protected skel has files without the flag.

use serde::Serialize;
use tracing::warn;

use super::output::{Format, print};
use crate::config::{Config, Protect};
use crate::error::Result;
use crate::layout::Layout;
use crate::protect::{SkelProtection, skel_protection};
use crate::skel::list_skels;
use crate::vserver::registry::{self, Kind, Record};

/// List the vservers (or, with --skels, the skels).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List the skels instead, with how many of their global files are
    /// immutable (a warning names protected skels with files that are not).
    #[arg(long)]
    skels: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct Skels {
    skels: Vec<String>,
    /// How each skel's global files are protected.
    protection: Vec<SkelProtection>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    if args.skels {
        let names = list_skels(config)?;
        let protection = names
            .iter()
            .map(|name| skel_protection(config, name))
            .collect::<Result<Vec<_>>>()?;
        for p in protection
            .iter()
            .filter(|p| p.has_lost_flags(config.protect))
        {
            let shown: Vec<String> = p.lacking.iter().map(|l| l.display().to_string()).collect();
            warn!(
                "skel {}: {} of its {} global files lack the immutable attribute (e.g. {}); \
                 every vserver's root can change them. Set it with `chattr +i` on each file of {}",
                p.skel,
                p.global_files - p.immutable,
                p.global_files,
                shown.join(", "),
                Layout::new(config).skel(&p.skel).global().display()
            );
        }
        let skels = Skels {
            skels: names,
            protection,
        };
        return print(args.format, &skels, || {
            skels_table(config, &skels.protection)
        });
    }
    let records = registry::list(config)?;
    print(args.format, &records, || table(&records))
}

/// One skel a line; a protected skel (or one with immutable files) also
/// says how many of its global files are immutable.
fn skels_table(config: &Config, skels: &[SkelProtection]) -> String {
    skels
        .iter()
        .map(|p| {
            if config.protect == Protect::Immutable || p.immutable > 0 {
                format!(
                    "{}  immutable: {} of {} global files",
                    p.skel, p.immutable, p.global_files
                )
            } else {
                p.skel.clone()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn table(records: &[Record]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                r.context.map(|c| c.to_string()).unwrap_or_else(dash),
                match r.kind {
                    _ if r.creating => "incomplete",
                    Kind::Tree => "tree",
                    Kind::View => "view",
                    Kind::Unregistered => "unregistered",
                }
                .to_string(),
                r.skel.clone().unwrap_or_else(dash),
                r.fqdn.clone().unwrap_or_else(dash),
                r.ip.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    let header = ["NAME", "CONTEXT", "KIND", "SKEL", "FQDN", "IP"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    std::iter::once(&header)
        .chain(&rows)
        .map(|row| {
            row.iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
