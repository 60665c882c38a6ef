//! `vskel diff NAME [--stat] [--format json]`.

use super::output::{Format, print};
use crate::config::Config;
use crate::error::Result;
use crate::vserver::diff::{Change, Diffed, Status, Summary, diff};

/// Show what a vserver changed against its skel: the preview before
/// materialising.
///
/// One line per path, as `git status --short` writes them: A (added),
/// M (modified: "content" when its bytes, target or kind differ,
/// "metadata" when its mode, owner, xattrs or mtime do), D (removed),
/// then the path as the vserver sees it and its size in bytes (the
/// skel's for a removed one; "-" for a directory); a summary line last.
/// A removed or added directory is listed with everything below it.
///
/// A view is compared with what it shows with an empty upper layer (its
/// skel's layers of its generation): a whiteout is a removal, an opaque
/// directory removes what its lower layers held, a copy-up is modified
/// (against the lower file it covers) or, if it is the same, not
/// listed. A tree is compared with the skel generation its record names
/// (static files as rendered for it), or with the skel as it is now when
/// it has none; `proc/` is not the skel's and is left out.
///
/// Nothing is written; the exit status is 0 whatever changed. An unknown
/// NAME is a usage error.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The vserver.
    #[arg(value_name = "NAME")]
    name: String,
    /// Only the counts (and bytes), not each path.
    #[arg(long)]
    stat: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let mut diffed = diff(config, &args.name)?;
    if args.stat {
        diffed.changes = None;
    }
    print(args.format, &diffed, || text(&diffed))
}

fn text(d: &Diffed) -> String {
    let mut lines: Vec<String> = d.changes.iter().flatten().map(line).collect();
    lines.push(summary(d));
    lines.join("\n")
}

fn line(c: &Change) -> String {
    let size = c.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let what = match (c.status, c.content, c.metadata) {
        (Status::Modified, true, true) => "  (content, metadata)",
        (Status::Modified, true, false) => "  (content)",
        (Status::Modified, false, true) => "  (metadata)",
        _ => "",
    };
    format!("{} {}  {size}{what}", c.status.letter(), c.path)
}

fn summary(d: &Diffed) -> String {
    let Summary {
        added,
        modified,
        modified_content,
        modified_metadata,
        removed,
        added_bytes,
        modified_bytes,
        removed_bytes,
    } = d.summary;
    let against = match d.generation {
        Some(g) => format!("skel {} generation {g}", d.skel),
        None => format!("skel {} as it is now", d.skel),
    };
    format!(
        "{} against {against}: {added} added ({added_bytes} bytes), {modified} modified \
         ({modified_content} in content, {modified_metadata} in metadata; {modified_bytes} bytes), \
         {removed} removed ({removed_bytes} bytes)",
        d.name
    )
}
