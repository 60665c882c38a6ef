//! The command line: argument parsing (clap), logging setup, dispatch to
//! one module per subcommand, and exit codes.

mod build_skel;
mod create_vs;
mod legacy;
mod list;
mod output;
mod prompt;
mod remove_vs;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{CONFIG_ENV, Config};
use crate::error::{EXIT_OK, EXIT_USAGE, Result};

/// Environment variable holding the log filter (e.g. `debug`).
pub const LOG_ENV: &str = "VSKEL_LOG";

/// vskel: virtual-server templates ("skels") and the vservers made from them.
///
/// A skel holds global/ (hard-linked into every vserver), local/ (copied),
/// static/ (copied with %%VS_NAME%%-style tokens replaced), post-create
/// scripts and a config-file template. Results go to stdout, diagnostics
/// to stderr (set VSKEL_LOG=debug for more). Exit codes: 0 success,
/// 1 failure, 2 usage error.
#[derive(Debug, Parser)]
#[command(name = "vskel", version, max_term_width = 100)]
pub struct Cli {
    /// Configuration file [default: /etc/vskel/vskel.toml; drop-ins in its conf.d/]
    #[arg(long, short = 'c', global = true, env = CONFIG_ENV, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Only errors on stderr, no warnings and no progress display.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    BuildSkel(build_skel::Args),
    CreateVs(create_vs::Args),
    List(list::Args),
    RemoveVs(remove_vs::Args),
}

/// Run the command line; returns the exit code.
pub fn main() -> i32 {
    let args = legacy::rewrite(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    init_logging(cli.quiet);
    match run(&cli) {
        Ok(()) => EXIT_OK,
        Err(e) if output::is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

fn init_logging(quiet: bool) {
    let default = if quiet { "error" } else { "info" };
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}

fn run(cli: &Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let progress = if cli.quiet {
        crate::progress::Progress::hidden()
    } else {
        crate::progress::Progress::for_terminal()
    };
    match &cli.command {
        Command::BuildSkel(args) => build_skel::run(&config, args, &progress),
        Command::CreateVs(args) => create_vs::run(&config, args, &progress),
        Command::List(args) => list::run(&config, args),
        Command::RemoveVs(args) => remove_vs::run(&config, args),
    }
}
