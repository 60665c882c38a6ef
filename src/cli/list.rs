//! `vskel list [--skels] [--format json]`.
//!
//! `--skels` also counts each skel's immutable global files (one `statx`
//! each), warns when a protected skel has files without the flag, and
//! shows each skel's current generation, its size and which vservers use
//! which generation.

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::warn;

use super::output::{Format, aligned, print, print_list};
use crate::config::{Config, Protect};
use crate::error::Result;
use crate::generation;
use crate::layout::Layout;
use crate::protect::{SkelProtection, skel_protection};
use crate::skel::list_skels;
use crate::vserver::registry::{self, Kind, Record};
use crate::vserver::status::mount_state;

/// List the vservers (or, with --skels, the skels).
///
/// Each vserver with its context, kind, state (a view: mounted, unmounted
/// or stale, its server gone), skel, the skel generation it is on, FQDN and
/// IP.
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
    /// Each skel's generations.
    generations: Vec<SkelGenerations>,
}

/// A skel's current generation and the vservers of each generation.
#[derive(Serialize)]
struct SkelGenerations {
    skel: String,
    /// The current generation; none: not recorded yet.
    current: Option<u64>,
    /// Entries of the current generation.
    entries: Option<u64>,
    /// Bytes of regular-file data of the current generation.
    bytes: Option<u64>,
    /// The vservers made or last synced from each generation, newest
    /// generation first, then those of no known generation.
    vservers: Vec<GenerationUse>,
}

/// The vservers made or last synced from one generation.
#[derive(Serialize)]
struct GenerationUse {
    /// The generation; none: records made before generations.
    generation: Option<u64>,
    vservers: Vec<String>,
}

fn skel_generations(config: &Config, name: &str, records: &[Record]) -> Result<SkelGenerations> {
    let dirs = Layout::new(config).skel(name);
    let current = generation::current(&dirs)?;
    let header = match current {
        Some(n) => match generation::header(&dirs, n) {
            Ok(header) => Some(header),
            Err(e) => {
                warn!("skel {name}: {e}");
                None
            }
        },
        None => None,
    };
    let mut by_generation: BTreeMap<std::cmp::Reverse<Option<u64>>, Vec<String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.skel.as_deref() == Some(name)) {
        by_generation
            .entry(std::cmp::Reverse(r.generation))
            .or_default()
            .push(r.name.clone());
    }
    Ok(SkelGenerations {
        skel: name.to_string(),
        current,
        entries: header.as_ref().map(|h| h.entries),
        bytes: header.as_ref().map(|h| h.bytes),
        vservers: by_generation
            .into_iter()
            .map(|(std::cmp::Reverse(generation), vservers)| GenerationUse {
                generation,
                vservers,
            })
            .collect(),
    })
}

/// What a skel line says of its generations.
fn generations_text(g: &SkelGenerations) -> String {
    let mut text = match (g.current, g.entries, g.bytes) {
        (None, ..) => "generation: not recorded yet".to_string(),
        (Some(n), Some(entries), Some(bytes)) => {
            format!("generation {n}: {entries} entries, {bytes} bytes")
        }
        (Some(n), ..) => format!("generation {n}: damaged record"),
    };
    for used in &g.vservers {
        let label = match used.generation {
            Some(n) => format!("generation {n}"),
            None => "generation unknown".to_string(),
        };
        text.push_str(&format!("; {label}: {}", used.vservers.join(", ")));
    }
    text
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
        let records = registry::list(config)?;
        let generations = names
            .iter()
            .map(|name| skel_generations(config, name, &records))
            .collect::<Result<Vec<_>>>()?;
        let skels = Skels {
            skels: names,
            protection,
            generations,
        };
        return print(args.format, &skels, || {
            skels_table(config, &skels.protection, &skels.generations)
        });
    }
    let records = registry::list(config)?;
    let listed: Vec<Listed<'_>> = records
        .iter()
        .map(|record| {
            let state = mount_state(config, record);
            if let Some(error) = &state.error {
                warn!("view {}: {error}", record.name);
            }
            Listed {
                record,
                mounted: state.mounted,
                stale: state.stale,
            }
        })
        .collect();
    print_list(args.format, "vservers", &listed, || table(&listed))
}

/// One vserver of `list`: its record, and for a view whether it is
/// mounted and whether that mount is stale.
#[derive(Serialize)]
struct Listed<'a> {
    #[serde(flatten)]
    record: &'a Record,
    #[serde(skip_serializing_if = "Option::is_none")]
    mounted: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale: Option<bool>,
}

/// One skel a line: its name, then (for a protected skel, or one with
/// immutable files) how many of its global files are immutable, then its
/// generations.
fn skels_table(
    config: &Config,
    skels: &[SkelProtection],
    generations: &[SkelGenerations],
) -> String {
    skels
        .iter()
        .zip(generations)
        .map(|(p, g)| {
            let generations = generations_text(g);
            if config.protect == Protect::Immutable || p.immutable > 0 {
                format!(
                    "{}  immutable: {} of {} global files  {generations}",
                    p.skel, p.immutable, p.global_files
                )
            } else {
                format!("{}  {generations}", p.skel)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn table(listed: &[Listed<'_>]) -> String {
    let dash = || "-".to_string();
    let rows: Vec<[String; 8]> = listed
        .iter()
        .map(|l| {
            let r = l.record;
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
                match (l.mounted, l.stale) {
                    (_, Some(true)) => "stale",
                    (Some(true), _) => "mounted",
                    (Some(false), _) => "unmounted",
                    _ => "-",
                }
                .to_string(),
                r.skel.clone().unwrap_or_else(dash),
                r.generation.map(|g| g.to_string()).unwrap_or_else(dash),
                r.fqdn.clone().unwrap_or_else(dash),
                r.ip.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    aligned(
        [
            "NAME", "CONTEXT", "KIND", "STATE", "SKEL", "GEN", "FQDN", "IP",
        ],
        &rows,
    )
}
