//! A new view's post-create scripts, run against the view itself: it is
//! mounted at its default mount point for them (served by a thread of this
//! process, with the pid file and locks `vskel mount --foreground` takes),
//! so what they write lands in its upper layer, where the view and every
//! later sync show it. Unmounted again once they have run; a view a script
//! left busy (a process still inside) is detached, with a warning.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::mount::mount_view;
use super::scripts::{self, ScriptFailure};
use crate::config::Config;
use crate::error::{Error, MountError, Result};
use crate::mount::stale::unmount;
use crate::mount::{How, Readiness, normalize};
use crate::tokens::{Tokens, VS_ROOT};

/// What running the scripts in the view came to.
#[derive(Debug)]
pub enum Outcome {
    /// They ran (these, in order).
    Ran(Vec<String>),
    /// One failed (those before it ran).
    Failed(ScriptFailure),
}

/// Mount view vserver `name` at its default mount point, run `list`
/// with `tokens` and `VS_ROOT` that mount point, unmount it. An error
/// when the view cannot be mounted (nothing ran then).
pub fn run_in_view(
    config: &Config,
    name: &str,
    list: &[std::path::PathBuf],
    tokens: &Tokens,
) -> Result<Outcome> {
    let (ready, server) = serve_in_thread(config, name);
    let mountpoint = match ready.recv() {
        Ok(mountpoint) => mountpoint,
        // The server ended without mounting: its error says why.
        Err(_) => {
            return Err(match server.join() {
                Ok(Err(e)) => e,
                Ok(Ok(())) => Error::Failed(format!("the view \"{name}\" was not mounted")),
                Err(_) => Error::Failed(format!("the server of view \"{name}\" panicked")),
            });
        }
    };
    info!(
        "view {name} mounted at {} for its post-create scripts",
        mountpoint.display()
    );
    let mut tokens = tokens.clone();
    tokens.insert(VS_ROOT, mountpoint.to_string_lossy());
    let outcome = match scripts::run_all(list, name, &tokens) {
        Ok(ran) => Outcome::Ran(ran),
        Err(failure) => Outcome::Failed(failure),
    };
    stop(&mountpoint, name, server)?;
    Ok(outcome)
}

/// The view served by a thread; its mount point comes on the channel once
/// the mount is live (the channel closes if it never is).
fn serve_in_thread(
    config: &Config,
    name: &str,
) -> (mpsc::Receiver<std::path::PathBuf>, JoinHandle<Result<()>>) {
    let (send, ready) = mpsc::channel();
    let (config, name) = (config.clone(), name.to_string());
    let server = std::thread::spawn(move || {
        let how = How::Foreground {
            readiness: Readiness::from_option(None)?,
            on_ready: Box::new(move |mounted: &super::mount::Mounted| {
                // The receiver only goes away with the create-vs.
                let _ = send.send(mounted.mountpoint.clone());
            }),
        };
        mount_view(&config, &name, None, how).map(drop)
    });
    (ready, server)
}

/// Unmount the view at `mountpoint` and wait for its server; a busy one
/// (a script left a process inside) is detached, and its server left to
/// end with this process.
fn stop(mountpoint: &Path, name: &str, server: JoinHandle<Result<()>>) -> Result<()> {
    let mountpoint = normalize(mountpoint)?;
    match unmount(&mountpoint, false) {
        // Unmounted already: the server got SIGINT or SIGTERM (a Ctrl-C
        // during the scripts) and unmounted it.
        Ok(()) | Err(Error::Mount(MountError::NotAMountPoint { .. })) => {}
        Err(Error::Mount(MountError::Busy { .. })) => {
            unmount(&mountpoint, true)?;
            warn!(
                "a post-create script of {name} left the view at {} busy (a process still \
                 inside); detached it",
                mountpoint.display()
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    match server.join() {
        Ok(result) => result,
        Err(_) => Err(Error::Failed(format!(
            "the server of view \"{name}\" panicked"
        ))),
    }
}
