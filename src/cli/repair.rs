//! `vskel repair NAME... | --all [--format json]`.

use super::output::{Format, fail_if_any, print_list};
use super::verify::line;
use crate::config::Config;
use crate::error::Result;
use crate::vserver::repair::{Repaired, repair};
use crate::vserver::verify::Request;

/// Mend what `vskel verify` finds, where it can be mended.
///
/// A broken-off copy that still has the skel's content, mode, owner and
/// xattrs is linked to the skel's inode again (atomically: a link made
/// beside, renamed over); a symlink or device shared by link under
/// protection is broken off into a private copy; a lost immutable
/// attribute is set again; a
/// shared inode changed in place gets its recorded content back from the
/// skel's content store (in place: it stays the inode every vserver
/// shares), then its recorded owner, mode, xattrs and mtime. What cannot
/// be mended is reported as remaining: a file the vserver replaced is its
/// own now (`vskel revert NAME PATH` resets it). Exit status 1 when
/// anything remains.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vservers to repair.
    names: Vec<String>,
    /// Every tree and view vskel made.
    #[arg(long)]
    all: bool,
    /// Output format (json: per vserver, what was done and what remains).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let request = Request {
        names: args.names.clone(),
        all: args.all,
    };
    let done = repair(config, &request)?;
    print_list(args.format, "vservers", &done, || {
        done.iter().map(summary).collect::<Vec<_>>().join("\n")
    })?;
    fail_if_any(
        done.iter()
            .filter(|r| !r.remaining.is_empty())
            .map(|r| r.name.as_str())
            .collect(),
        "repair left problems",
    )
}

fn summary(r: &Repaired) -> String {
    let mut out = String::new();
    for m in &r.done {
        out.push_str(&format!(
            "{}: repaired {} {}: {}\n",
            r.name,
            m.kind.name(),
            m.path,
            m.action
        ));
    }
    for f in &r.remaining {
        out.push_str(&format!("{}: remains {}\n", r.name, line(f)));
    }
    out.push_str(&format!(
        "{}: {} repaired, {} remaining",
        r.name,
        r.done.len(),
        r.remaining.len()
    ));
    out
}
