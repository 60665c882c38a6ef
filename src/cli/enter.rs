//! `vskel enter NAME`, `vskel exec NAME -- CMD...`, and the hidden
//! `vskel enter-inside` they run in the new namespaces.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::Config;
use crate::error::Result;
use crate::vserver::enter::{self, LOGIN_SHELL, Session, inside};

/// Run a login shell inside a vserver (util-vserver's `vserver NAME enter`).
///
/// The vserver's own /bin/sh, as a login shell (`/bin/sh -l`), chrooted
/// into its tree, or into its view where it is mounted (`vskel mount NAME`
/// first), in new mount, UTS and PID namespaces: a fresh /proc, a /dev of
/// its own (device nodes, /dev/pts, /dev/shm), and the vserver's hostname
/// (its FQDN; its name when it has none). Nothing mounted there is seen on
/// the host, and every process started inside ends with the shell. Exits
/// with the shell's exit code (128+N when signal N killed it). Needs
/// util-linux's unshare. It is a root shell in a chroot, not a security
/// boundary: the vserver's programs run as the host's root.
#[derive(Debug, clap::Args)]
pub struct EnterArgs {
    /// The vserver.
    name: String,
}

/// Run a command inside a vserver (util-vserver's `vserver NAME exec`).
///
/// As `vskel enter`, but runs CMD (looked up on PATH inside the vserver)
/// instead of a shell: `vskel exec web1 -- apt-get update`. Exits with
/// the command's exit code (128+N when signal N killed it; 125 when the
/// vserver could not be entered, 126 when CMD cannot be run, 127 when it
/// is not found).
#[derive(Debug, clap::Args)]
pub struct ExecArgs {
    /// The vserver.
    name: String,
    /// The command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// The namespaces' side of `enter` and `exec` (not for direct use).
#[derive(Debug, clap::Args)]
pub struct InsideArgs {
    /// The vserver's root as the host sees it.
    #[arg(long)]
    root: PathBuf,
    /// The hostname to set.
    #[arg(long)]
    hostname: String,
    /// The command is an interactive shell: give it the terminal.
    #[arg(long)]
    job_control: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<OsString>,
}

/// `vskel enter`: returns the shell's exit code.
pub fn run_enter(config: &Config, args: &EnterArgs) -> Result<i32> {
    let target = enter::target(config, &args.name)?;
    let shell: Vec<OsString> = LOGIN_SHELL.iter().map(OsString::from).collect();
    enter::run(&target, &shell, Session::Shell)
}

/// `vskel exec`: returns the command's exit code.
pub fn run_exec(config: &Config, args: &ExecArgs) -> Result<i32> {
    let target = enter::target(config, &args.name)?;
    enter::run(&target, &args.command, Session::Command)
}

/// `vskel enter-inside`: returns only on failure, with the exit code.
pub fn run_inside(args: &InsideArgs) -> i32 {
    inside::enter_and_run(&args.root, &args.hostname, args.job_control, &args.command)
}
