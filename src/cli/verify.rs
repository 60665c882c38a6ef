//! `vskel verify NAME... | --all [--format json]`.

use super::output::{Format, fail_if_any, print_list};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::verify::{Finding, Request, Verified, verify};

/// Check that the files a skel shares with its vservers are still shared
/// and still as the skel's generation records them.
///
/// For a tree vserver, each global path must be the skel's inode: a copy
/// of it is reported as broken-off (`vskel repair` links it again),
/// anything else as replaced. Under protection symlinks and devices are
/// each vserver's own copies (no attribute can guard a shared one); one
/// still shared by link is shared-unprotected (`vskel repair` copies it). For the skel's inodes (checked once per
/// skel and generation, also for views): changed-in-place (content or
/// metadata no longer what was recorded; every vserver sharing the inode
/// is named), lost-protection (no immutable attribute under
/// protect = "immutable") and missing-in-skel. A file is hashed only when
/// its metadata and ctime cannot vouch for it. Exit status 1 when
/// anything is wrong, 0 when everything is clean.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vservers to verify.
    names: Vec<String>,
    /// Every tree and view vskel made.
    #[arg(long)]
    all: bool,
    /// Output format (json: per vserver, its findings with path, kind,
    /// detail and shared_by).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let request = Request {
        names: args.names.clone(),
        all: args.all,
    };
    let done = verify(config, &request)?;
    print_list(args.format, "vservers", &done, || {
        done.iter().map(summary).collect::<Vec<_>>().join("\n")
    })?;
    fail_if_any(
        done.iter()
            .filter(|v| !v.findings.is_empty())
            .map(|v| v.name.as_str())
            .collect(),
        "verify found problems",
    )
}

fn summary(v: &Verified) -> String {
    let mut out = String::new();
    for f in &v.findings {
        out.push_str(&format!("{}: {}\n", v.name, line(f)));
    }
    let what = match v.kind {
        crate::vserver::registry::Kind::View => {
            " (a view: the skel's side; its writable layer is its own)"
        }
        _ => "",
    };
    out.push_str(&format!(
        "{}: skel {} generation {}: {} global paths checked{what}: {}",
        v.name,
        v.skel,
        v.generation,
        v.checked,
        if v.findings.is_empty() {
            "clean".to_string()
        } else {
            match v.findings.len() {
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        }
    ));
    out
}

/// One finding, for people.
pub fn line(f: &Finding) -> String {
    let mut s = format!("{} {}: {}", f.kind.name(), f.path, f.detail);
    if !f.shared_by.is_empty() {
        s.push_str(&format!(" (shared by {})", f.shared_by.join(", ")));
    }
    s
}
