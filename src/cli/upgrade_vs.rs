//! `vskel upgrade-vs NAME... | --all [--skel SKEL] [--plan] [--strategy S] [--format json]`.

use super::Invocation;
use super::output::{Format, print_list};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::upgrade::{Request, Strategy, Upgraded, upgrade_vs};

/// Bring vservers (trees and views) to their skel's current generation.
///
/// Only the paths that changed in the skel since the vserver's generation
/// are looked at. Where the vserver's entry is still the old skel version,
/// the new one is put in place (global files hard-linked to the new skel
/// inode, local copied, static re-rendered); where the vserver changed it
/// and the skel did not, it is kept; where both changed it differently
/// (or a type changed), the strategy decides: keep-local keeps the
/// vserver's and writes the skel's beside it as PATH.vskel-new, take-new
/// puts the skel's in place and keeps the vserver's as PATH.vskel-old,
/// fail changes nothing. Each entry is replaced atomically; an
/// interrupted upgrade is finished by running it again.
///
/// A view stays on its generation until it is upgraded: then the files of
/// its writable layer that shadow a changed skel file are decided the same
/// way (a copy the vserver never changed gives way to the skel's), and a
/// mounted view is unmounted (refused while in use) and mounted again.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vservers to upgrade.
    names: Vec<String>,
    /// Every vserver (of --skel, if given).
    #[arg(long)]
    all: bool,
    /// Only vservers of this skel.
    #[arg(long)]
    skel: Option<String>,
    /// List every decision and write nothing.
    #[arg(long)]
    plan: bool,
    /// What to do where the vserver and the skel both changed a path.
    #[arg(long, value_enum, default_value_t)]
    strategy: StrategyArg,
    /// Output format (json: per vserver, counts and paths of each decision).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

#[derive(Debug, Clone, Copy, Default, clap::ValueEnum)]
enum StrategyArg {
    /// Keep the vserver's; write the skel's as PATH.vskel-new.
    #[default]
    KeepLocal,
    /// Take the skel's; keep the vserver's as PATH.vskel-old.
    TakeNew,
    /// Change nothing if any path conflicts.
    Fail,
}

pub fn run(config: &Config, args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    let request = Request {
        remount_args: invocation.global_args()?,
        names: args.names.clone(),
        all: args.all,
        skel: args.skel.clone(),
        plan: args.plan,
        strategy: match args.strategy {
            StrategyArg::KeepLocal => Strategy::KeepLocal,
            StrategyArg::TakeNew => Strategy::TakeNew,
            StrategyArg::Fail => Strategy::Fail,
        },
    };
    let done = upgrade_vs(config, &request)?;
    print_list(args.format, "vservers", &done, || {
        done.iter().map(summary).collect::<Vec<_>>().join("\n")
    })
}

fn summary(u: &Upgraded) -> String {
    let mut out = String::new();
    let verb = if u.plan { "would " } else { "" };
    let d = &u.paths;
    for (label, list) in [
        ("take", &d.taken),
        ("keep", &d.kept),
        ("converge", &d.converged),
        ("add", &d.added),
        ("remove", &d.removed),
        ("conflict", &d.conflicting),
    ] {
        for p in list {
            out.push_str(&format!("{verb}{label} /{}\n", p.display()));
        }
    }
    let counts: Vec<String> = d.counts().iter().map(|(n, c)| format!("{c} {n}")).collect();
    let target = if u.plan { "planned" } else { "upgraded" };
    out.push_str(&format!(
        "{target} {} (skel {}) from generation {} to {}{}: {}",
        u.name,
        u.skel,
        u.from,
        if u.plan { u.from } else { u.to },
        if u.resumed {
            ", finishing an interrupted upgrade"
        } else {
            ""
        },
        counts.join(", ")
    ));
    if !d.conflicting.is_empty() && !u.plan {
        out.push_str(&format!("; conflicts resolved by {}", u.strategy.name()));
    }
    out
}
