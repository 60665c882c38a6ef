//! The command line: argument parsing (clap), logging setup, dispatch to
//! one module per subcommand (and to the mount(8) helper, `mount_helper`),
//! and exit codes.

mod build_skel;
mod completions;
mod create_vs;
mod daemon;
mod demo;
mod detach;
mod diff;
mod du;
mod enter;
mod export_skel;
mod export_vs;
mod import_skel;
mod import_vs;
mod legacy;
mod list;
mod manpages;
mod materialize;
mod merge_skel;
mod mount;
mod mount_helper;
mod output;
mod overlay;
mod prompt;
mod remove_skel;
mod remove_vs;
mod repair;
mod revert;
mod rollback_skel;
mod split_skel;
mod status;
mod sync;
mod unify;
mod unmount;
mod upgrade_vs;
mod verify;

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{CONFIG_ENV, Config};
use crate::error::{EXIT_OK, EXIT_USAGE, Error, Result};

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
    Completions(completions::Args),
    CreateVs(create_vs::Args),
    Daemon(daemon::Args),
    Demo(demo::Args),
    Detach(detach::Args),
    Diff(diff::Args),
    Du(du::Args),
    Enter(enter::EnterArgs),
    #[command(hide = true)]
    EnterInside(enter::InsideArgs),
    Exec(enter::ExecArgs),
    ExportSkel(export_skel::Args),
    ExportVs(export_vs::Args),
    ImportSkel(import_skel::Args),
    ImportVs(import_vs::Args),
    List(list::Args),
    Manpages(manpages::Args),
    Materialize(materialize::Args),
    MergeSkel(merge_skel::Args),
    Mount(mount::Args),
    Overlay(overlay::Args),
    RemoveSkel(remove_skel::Args),
    RemoveVs(remove_vs::Args),
    Repair(repair::Args),
    Revert(revert::Args),
    RollbackSkel(rollback_skel::Args),
    SplitSkel(split_skel::Args),
    Status(status::Args),
    Unmount(unmount::Args),
    Sync(sync::Args),
    Unify(unify::Args),
    UpgradeVs(upgrade_vs::Args),
    Verify(verify::Args),
}

/// Run the command line (or the mount(8) helper, when run as
/// `mount.fuse.vskel`); returns the exit code.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    match mount_helper::invoked(&args) {
        Some(helper_args) => mount_helper::main(helper_args),
        None => run_command_line(args),
    }
}

/// Parse `args` (with the program name first) and run the command;
/// returns the exit code.
fn run_command_line(args: Vec<OsString>) -> i32 {
    let args = legacy::rewrite(args);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
        }
    };
    init_logging(cli.quiet);
    match run(&cli) {
        Ok(code) => code,
        Err(e) if output::is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            tracing::error!("{e}");
            e.exit_code()
        }
    }
}

/// Diagnostics to stderr, past the progress display (`progress::LogWriter`).
/// Timestamped, except on a terminal (a person reads them as they come)
/// and under systemd (journald stamps each line, `JOURNAL_STREAM` says
/// so): a view's `mount.log` needs them to tell when. In colour on a
/// terminal, unless `NO_COLOR` is set.
fn init_logging(quiet: bool) {
    let default = if quiet { "error" } else { "info" };
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let terminal = std::io::stderr().is_terminal();
    // https://no-color.org: set and not empty, no colours.
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter::new)
        .with_ansi(terminal && !no_color)
        .with_target(false);
    let _ = if terminal || std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// How this vskel was started, for commands that start it again in the
/// background (`mount`, `overlay`).
#[derive(Debug, Clone, Copy)]
pub struct Invocation<'a> {
    /// `--config`, if given.
    pub config: Option<&'a Path>,
    /// `--quiet`.
    pub quiet: bool,
}

impl Invocation<'_> {
    /// The global options to pass on (the config path made absolute: the
    /// background process runs in `/`).
    pub fn global_args(&self) -> Result<Vec<OsString>> {
        let mut args = Vec::new();
        if let Some(config) = self.config {
            let absolute =
                std::path::absolute(config).map_err(|e| Error::io("resolve", config, e))?;
            args.push(OsString::from("--config"));
            args.push(absolute.into_os_string());
        }
        if self.quiet {
            args.push(OsString::from("--quiet"));
        }
        Ok(args)
    }
}

/// Every command works on the vservers root (closed to everyone but
/// root), mounts, or both: without root it would fail later and less
/// clearly ("no skel named base" for a skel it cannot see).
fn require_root() -> Result<()> {
    if rustix::process::geteuid().is_root() {
        return Ok(());
    }
    Err(Error::Failed(
        "vskel must run as root: its commands work on the vservers root, which only root \
         may read, and mount views; run it as root (e.g. with sudo)"
            .to_string(),
    ))
}

/// Run the command; returns the exit code of a success (`enter` and
/// `exec` pass on their command's).
fn run(cli: &Cli) -> Result<i32> {
    let invocation = Invocation {
        config: cli.config.as_deref(),
        quiet: cli.quiet,
    };
    // These take nothing from the config: overlay its layers from its
    // options, enter-inside its root from `enter`/`exec`, demo has its own
    // (and runs without root too, showing what needs none).
    match &cli.command {
        Command::Overlay(args) => return overlay::run(args, &invocation).map(|()| EXIT_OK),
        Command::Completions(args) => return completions::run(args).map(|()| EXIT_OK),
        Command::Manpages(args) => return manpages::run(args).map(|()| EXIT_OK),
        Command::Demo(args) => return demo::run(args).map(|()| EXIT_OK),
        Command::EnterInside(args) => return Ok(enter::run_inside(args)),
        _ => {}
    }
    require_root()?;
    let config = Config::load(cli.config.as_deref())?;
    if config.files.is_empty() {
        tracing::warn!(
            "no configuration file ({} does not exist): using the defaults: root {}, etc {}, \
             defaults {}, protect \"{}\"",
            crate::config::DEFAULT_CONFIG_PATH,
            config.root.display(),
            config.etc.display(),
            config.defaults.display(),
            config.protect
        );
    }
    // Before anything else reads or writes the vservers root: close it to
    // host users if it is open.
    crate::barrier::enforce(&config)?;
    // Every command first restores immutable attributes a killed run left
    // lifted, and lifts its own only through this (crash-safe) session.
    let _unlock = crate::protect::begin(&config);
    // ... and removes what killed runs left in the staging area (a tree
    // half built, a view directory half removed), whichever command it was.
    if let Err(e) = crate::staging::Staging::remove_abandoned(&config) {
        tracing::warn!("{e}");
    }
    let progress = if cli.quiet {
        crate::progress::Progress::hidden()
    } else {
        crate::progress::Progress::for_terminal()
    };
    // ... and finishes a split-skel a killed run committed (or removes
    // what one killed before its commit left), so no command sees a skel
    // half split. (merge-skel and split-skel do it themselves, under the
    // skel's lock, and report it; so does rollback-skel.)
    if !matches!(
        cli.command,
        Command::MergeSkel(_) | Command::SplitSkel(_) | Command::RollbackSkel(_)
    ) {
        crate::skel::split::finish_interrupted_splits(&config, &progress);
    }
    match &cli.command {
        Command::Enter(args) => return enter::run_enter(&config, args),
        Command::Exec(args) => return enter::run_exec(&config, args),
        _ => {}
    }
    match &cli.command {
        Command::BuildSkel(args) => build_skel::run(&config, args, &progress),
        Command::CreateVs(args) => create_vs::run(&config, args, &progress),
        Command::Daemon(args) => daemon::run(config.clone(), args, &invocation),
        Command::Detach(args) => detach::run(&config, args),
        Command::Diff(args) => diff::run(&config, args),
        Command::Du(args) => du::run(&config, args),
        Command::ExportSkel(args) => export_skel::run(&config, args, &progress),
        Command::ExportVs(args) => export_vs::run(&config, args, &progress),
        Command::ImportSkel(args) => import_skel::run(&config, args, &progress),
        Command::ImportVs(args) => import_vs::run(&config, args, &progress),
        Command::List(args) => list::run(&config, args),
        Command::Materialize(args) => materialize::run(&config, args, &progress),
        Command::MergeSkel(args) => merge_skel::run(&config, args, &progress),
        Command::Mount(args) => mount::run(&config, args, &invocation),
        Command::Overlay(args) => overlay::run(args, &invocation),
        Command::RemoveSkel(args) => remove_skel::run(&config, args),
        Command::RemoveVs(args) => remove_vs::run(&config, args),
        Command::Repair(args) => repair::run(&config, args),
        Command::Revert(args) => revert::run(&config, args),
        Command::RollbackSkel(args) => rollback_skel::run(&config, args, &progress),
        Command::SplitSkel(args) => split_skel::run(&config, args, &progress),
        Command::Status(args) => status::run(&config, args),
        Command::Sync(args) => sync::run(&config, args, &progress),
        Command::Unify(args) => unify::run(&config, args, &progress),
        Command::Unmount(args) => unmount::run(&config, args),
        Command::UpgradeVs(args) => upgrade_vs::run(&config, args, &invocation),
        Command::Verify(args) => verify::run(&config, args),
        Command::Completions(_)
        | Command::Demo(_)
        | Command::Enter(_)
        | Command::EnterInside(_)
        | Command::Exec(_)
        | Command::Manpages(_) => unreachable!("run above"),
    }
    .map(|()| EXIT_OK)
}
