//! `vskel list [--skels] [--format json]`.

use serde::Serialize;

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::skel::list_skels;
use crate::vserver::registry::{self, Kind, Record};

/// List the vservers (or, with --skels, the skels).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// List the skels instead.
    #[arg(long)]
    skels: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Serialize)]
struct Skels {
    skels: Vec<String>,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    if args.skels {
        let skels = Skels {
            skels: list_skels(config)?,
        };
        return print(args.format, &skels, || skels.skels.join("\n"));
    }
    let records = registry::list(config)?;
    print(args.format, &records, || table(&records))
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
