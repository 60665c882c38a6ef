//! `vskel manpages DIR`: man pages for vskel and each sub-command
//! (clap_mangen), written from the same text as `--help`.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::Cli;
use crate::error::{Error, Result};

/// Write man pages: vskel.1, and vskel-COMMAND.1 for each sub-command.
///
/// DIR is made if missing; pages already there are replaced. Install:
/// `vskel manpages /usr/local/share/man/man1 && mandb -q`; read one
/// without installing: `man -l DIR/vskel.1`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to write the pages.
    dir: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    std::fs::create_dir_all(&args.dir).map_err(|e| Error::io("make directory", &args.dir, e))?;
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    write_pages(&command, &args.dir, &mut pages)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} man pages written to {}",
        pages.len(),
        args.dir.display()
    )
    .map_err(|e| Error::io("write", "stdout", e))
}

/// The page of `command`, then those of its visible sub-commands.
fn write_pages(command: &clap::Command, dir: &Path, pages: &mut Vec<PathBuf>) -> Result<()> {
    let man = clap_mangen::Man::new(command.clone());
    let page = man
        .generate_to(dir)
        .map_err(|e| Error::io("write", dir.join(man.get_filename()), e))?;
    pages.push(page);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir, pages)?;
    }
    Ok(())
}
