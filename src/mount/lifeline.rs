//! A server's lifeline to the daemon that started it: stdin is the read
//! end of a pipe the daemon holds open and never writes to. When the
//! daemon goes (stopped, crashed, killed), the pipe reads EOF and the
//! server stops as on SIGTERM: it unmounts its view and exits, so no
//! server outlives its supervisor unseen.
//!
//! Such a server also ends on a panic (after logging it) instead of
//! serving on with a worker thread gone and its state unknown: the
//! daemon sees it die and starts it again (crash-only).

use std::io::Read;

use rustix::process::{Signal, getpid, kill_process};
use tracing::{error, info, warn};

/// Watch stdin on a thread of its own; on EOF (or a read error) send
/// this process SIGTERM.
pub fn watch_stdin() {
    let spawned = std::thread::Builder::new()
        .name("vskel-lifeline".into())
        .spawn(|| {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin().lock();
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => {
                        info!("the daemon that started this server is gone: stopping");
                        break;
                    }
                    // The daemon never writes: ignore whatever comes.
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        warn!("the lifeline to the daemon failed ({e}): stopping");
                        break;
                    }
                }
            }
            if let Err(e) = kill_process(getpid(), Signal::TERM) {
                warn!("cannot stop this server: {e}");
            }
        });
    if let Err(e) = spawned {
        warn!("no thread to watch the lifeline to the daemon: {e}");
    }
}

/// Make a panic on any thread log and abort the process (see the module
/// doc), rather than end that thread alone.
pub fn abort_on_panic() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        error!("panic: {info}; this server stops (its daemon starts it again)");
        std::process::abort();
    }));
}
