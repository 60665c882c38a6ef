//! `vskel demo [--keep DIR]`.

use std::path::PathBuf;

use crate::demo::{Options, run as run_demo};
use crate::error::Result;

/// Show the whole loop on a small built-in example tree, in a directory
/// of its own: build a skel, create a tree vserver (change a file, diff
/// it) and a view, mount the view, change files in it, diff, sync and
/// materialize it, printing what each step made.
///
/// Nothing outside that directory is read or written: the demo has its
/// own configuration (every place inside the directory; shared files are
/// not made immutable, so it can simply be removed). The directory is a
/// new one below $TMPDIR (else /tmp) and is removed at the end, and on an
/// error or Ctrl-C too, after the view is unmounted. The view is mounted
/// in the background as `vskel mount` does; where FUSE is not available
/// (not root, no /dev/fuse, the mount fails) the demo says so and shows
/// the rest without the mount. Text output only.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run in DIR (made if missing, else it must be empty) and keep it.
    #[arg(long, value_name = "DIR")]
    keep: Option<PathBuf>,
}

pub fn run(args: &Args) -> Result<()> {
    let options = Options {
        keep: args.keep.clone(),
    };
    run_demo(&options, &mut std::io::stdout().lock())
}
