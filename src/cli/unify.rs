//! `vskel unify NAME [--dry-run] [--ignore-mtime] [--format json]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::progress::Progress;
use crate::vserver::unify::{Request, Unified, unify};

/// Hard-link a tree vserver's copies of its skel's global files to the
/// skel's inodes (util-vserver's vunify).
///
/// A file is linked when it is identical to the skel's global file at the
/// same path: same content (BLAKE3), mode, owner, xattrs and mtime. Only
/// the paths of the skel generation the vserver was made or last upgraded
/// from are candidates, and only while the skel still has the inode that
/// generation recorded. Each file is replaced atomically (one rename);
/// the tree's content and metadata stay as they were, only inodes become
/// shared. Where the skel's file already has as many links as the
/// filesystem allows, the copy is kept (counted). Views are refused.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The tree vserver.
    name: String,
    /// Compare and report the files and bytes that would be reclaimed;
    /// write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Link files whose mtime alone differs too. This changes the tree:
    /// such a file takes the skel's mtime.
    #[arg(long)]
    ignore_mtime: bool,
    /// Output format (json: the counts and every path linked).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args, progress: &Progress) -> Result<()> {
    let request = Request {
        name: args.name.clone(),
        dry_run: args.dry_run,
        ignore_mtime: args.ignore_mtime,
    };
    let done = unify(config, &request, progress)?;
    print(args.format, &done, || summary(&done))
}

fn summary(u: &Unified) -> String {
    let mut out = String::new();
    if u.dry_run {
        for p in &u.paths {
            out.push_str(&format!("would link /{}\n", p.display()));
        }
    }
    let (linked, reclaimed) = if u.dry_run {
        ("would link", "would reclaim")
    } else {
        ("linked", "reclaimed")
    };
    out.push_str(&format!(
        "unify {} (skel {}, generation {}): {linked} {} files to the skel, {reclaimed} {} bytes; \
         {} already shared, {} kept as copies (too many links), {} different, {} absent, \
         {} skel files changed since, {} changed while compared; {} candidates",
        u.name,
        u.skel,
        u.generation,
        u.linked,
        u.bytes_reclaimed,
        u.already_shared,
        u.emlink_copies,
        u.different,
        u.absent,
        u.skel_changed,
        u.changed_meanwhile,
        u.candidates,
    ));
    out
}
