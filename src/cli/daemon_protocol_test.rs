//! `vskel daemon-protocol-test SOCKET` (hidden): serve the control
//! protocol at SOCKET with the test handler (`status` only) until SIGTERM
//! or SIGINT, for tests of the protocol against the real binary.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::info;

use crate::config::Config;
use crate::daemon::{Server, status_handler};
use crate::error::{Error, Result};

/// Serve the control protocol's test handler (for tests).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to make the socket.
    socket: PathBuf,
    /// Close a connection silent this long (milliseconds).
    #[arg(long, default_value_t = 10_000)]
    idle_timeout_ms: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = crate::daemon::server::MAX_CONNECTIONS)]
    max_connections: usize,
}

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Failed(format!("cannot catch signals: {e}")))?;
    let server = Server {
        socket: args.socket.clone(),
        idle_timeout: Duration::from_millis(args.idle_timeout_ms),
        max_connections: args.max_connections,
    };
    let listening = server.listen(Arc::new(status_handler(config.clone())))?;
    info!(
        "serving the control protocol at {}",
        listening.path().display()
    );
    if let Some(signal) = signals.forever().next() {
        info!("signal {signal}: stopping");
    }
    drop(listening);
    Ok(())
}
