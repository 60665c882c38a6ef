//! `vskel completions SHELL`: the shell completion script (clap_complete).

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;
use crate::error::{Error, Result};

/// Print the completion script for a shell.
///
/// Completes sub-commands and options. Install, for bash:
/// `vskel completions bash > /etc/bash_completion.d/vskel`; zsh:
/// `vskel completions zsh > /usr/local/share/zsh/site-functions/_vskel`;
/// fish: `vskel completions fish > /etc/fish/completions/vskel.fish`.
/// Or load it into the running shell: `source <(vskel completions bash)`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell (bash, zsh, fish, elvish or powershell).
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: &Args) -> Result<()> {
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "vskel", &mut script);
    use std::io::Write;
    std::io::stdout()
        .write_all(&script)
        .map_err(|e| Error::io("write", "stdout", e))
}
