//! Mounting a view and serving it until it is unmounted or the process is
//! told to stop (SIGTERM, SIGINT, SIGHUP: it then unmounts, a busy view
//! detached after a grace period, see [`super::stop`]), with its control
//! socket if asked for.

use std::path::Path;
use std::sync::Arc;

use fuser::{MountOption, SessionACL};
use tracing::{info, warn};

use super::control;
use super::fuse::ViewFs;
use super::gate::WriteGate;
use super::overlay::Overlay;
use super::{LayerSpec, SUBTYPE, ServeOptions};
use crate::error::{Error, Result};

/// Mount the view at `mountpoint` and serve it until it is unmounted or
/// the process gets SIGTERM/SIGINT (then it unmounts; a busy view is
/// detached after a grace period) or SIGHUP (a plain unmount only).
/// `on_ready` is called once the mount is live (after the FUSE handshake)
/// and its control socket listens. A control socket that cannot be served
/// fails the mount (it is unmounted again): a view `vskel sync` cannot
/// hold would be flattened with torn files.
pub fn serve(
    spec: &LayerSpec,
    mountpoint: &Path,
    options: &ServeOptions,
    on_ready: impl FnOnce(),
) -> Result<()> {
    match crate::sys::raise_open_file_limit() {
        Ok(limit) => info!("open-file limit {limit}"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let overlay = Overlay::new(spec)?;
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        MountOption::FSName(options.fsname.clone()),
        // As a kernel option: fuser drops `Subtype` when it calls mount(2) itself.
        MountOption::CUSTOM(format!("subtype={SUBTYPE}")),
        MountOption::DefaultPermissions,
        MountOption::Dev,
        MountOption::Suid,
        MountOption::RW,
    ];
    if options.allow_other {
        config.acl = SessionACL::All;
    }
    // A pool that follows the load: a serial client keeps four workers
    // while the CPUs have room and two while they are busy (there each
    // request woke a different one of a bigger pool, which had to get a
    // CPU); parallel clients get up to `threads`.
    config.max_threads = Some(options.threads.max(1));
    config.clone_fd = true;
    let notifier = Arc::new(std::sync::OnceLock::new());
    let gate = Arc::new(WriteGate::default());
    let view = ViewFs::new(overlay, gate.clone(), notifier.clone());
    let mut session = fuser::Session::new(view, mountpoint, &config)
        .map_err(|e| Error::io("mount the view", mountpoint, e))?;
    let _ = notifier.set(session.notifier());
    // Dropped (the socket file removed) when serving ends, also on error.
    let _control = match &options.control {
        Some(path) => Some(control::listen(path, gate)?),
        None => None,
    };
    // Signals end the serving: each unmounts the view (`stop`).
    let watcher = super::stop::watch(mountpoint, session.unmount_callable())?;
    info!("view mounted at {}", mountpoint.display());
    on_ready();
    let result = session.run();
    watcher.finish();
    result.map_err(|e| Error::io("serve the view", mountpoint, e))
}
