//! `vskel daemon`.

use super::Invocation;
use crate::config::Config;
use crate::error::{Error, Result};

/// Serve every configured view and keep them served (for systemd:
/// mount-helpers/vskeld.service).
///
/// Runs in the foreground until SIGTERM or SIGINT. At start it listens on
/// the control socket (`[daemon] socket`, default /run/vskel/vskel.sock,
/// mode 0600, root only) and mounts each view `[daemon] views` names
/// (default ["*"]: every registered view) at its default mount point, each
/// served by a child `vskel mount NAME --foreground` that it supervises: a
/// server that dies is logged and started again with a backoff (1 s
/// doubling to 60 s) while the other views go on; a stale mount a dead
/// server left is cleared first, with a warning. Once every view was tried
/// it tells systemd READY=1, then keeps a STATUS= line ("serving 99 of 100
/// views; failing: web7").
///
/// While it runs, `vskel mount`, `unmount`, `sync`, `materialize` and
/// `status` go through it, so a view has one server. SIGHUP (or the
/// `reload` command) re-reads the configuration: views added are mounted,
/// views removed unmounted. SIGTERM/SIGINT: every view is unmounted (a
/// busy one detached lazily, with a warning) and the daemon exits 0. If
/// the daemon dies, its servers unmount their views and exit (they hold a
/// pipe to it). The protocol is in the README ("The control socket").
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Listen here instead of `[daemon] socket` (a second daemon, tests;
    /// the command line looks for the daemon at `[daemon] socket` only).
    #[arg(long, value_name = "PATH")]
    socket: Option<std::path::PathBuf>,
    /// Close a client connection silent this long (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    idle_timeout_ms: u64,
    /// Client connections served at once; more are told the daemon is busy.
    #[arg(long, value_name = "N", default_value_t = crate::daemon::server::MAX_CONNECTIONS)]
    max_connections: usize,
}

pub fn run(mut config: Config, args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    if let Some(socket) = &args.socket {
        config.daemon.socket =
            std::path::absolute(socket).map_err(|e| Error::io("resolve", socket, e))?;
    }
    let config_path = invocation
        .config
        .map(std::path::absolute)
        .transpose()
        .map_err(|e| Error::io("resolve", "the --config path", e))?;
    let started = crate::daemon::service::Started {
        config_path,
        global_args: invocation.global_args()?,
        server: crate::daemon::Server {
            socket: config.daemon.socket.clone(),
            idle_timeout: std::time::Duration::from_millis(args.idle_timeout_ms),
            max_connections: args.max_connections,
        },
    };
    crate::daemon::service::run(config, started)
}
