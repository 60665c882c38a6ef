//! `vskel mount NAME [MOUNTPOINT] [--foreground]`.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{debug, info};

use super::Invocation;
use super::output::{Format, print};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sync::state::StateFiles;
use crate::view::ServeOptions;
use crate::view::daemon_start::{Readiness, start_in_background};
use crate::view::mountpoint::{
    Holder, PidFile, already_served, clear_if_stale, normalize, prepare,
};
use crate::view::serve::serve;
use crate::vserver::view::{self, View};

/// Mode of the default mount point when it has to be made.
const MOUNTPOINT_MODE: u32 = 0o755;

/// Mount a view vserver: its layers shown as one writable, copy-on-write
/// tree.
///
/// NAME must have been made with `vskel create-vs --view`. The layers, top
/// first: <root>/.views/NAME/upper (writable), .views/NAME/static (the
/// skel's static/ rendered), the skel's local/ and global/ (read-only; a
/// file is copied up on its first change, the skel never changes). The
/// mount shows as `fuse.vskel` from `SKEL:NAME` in /proc/mounts.
///
/// Without --foreground the server starts in the background and vskel
/// returns once the mount is live; the server's output goes to
/// .views/NAME/mount.log and it keeps its pid in .views/NAME/mount.pid. A
/// stale mount left by a server that died is cleared first, with a
/// warning; a live one is refused. `vskel unmount NAME`, or SIGTERM to the
/// server, unmounts.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to mount.
    name: String,
    /// Where to mount it [default: <root>/.views/NAME/merged, made if
    /// missing]; a directory above it must be closed to host users (mode
    /// 0700, owned by root), as <root> is.
    mountpoint: Option<PathBuf>,
    /// Serve in this process until unmounted (for systemd units and debugging).
    #[arg(long, short = 'f')]
    foreground: bool,
    /// Where to report readiness (used when vskel starts itself in the background).
    #[arg(long = "ready-fd", value_name = "FD", hide = true)]
    ready_fd: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What was mounted.
#[derive(Debug, Clone, Serialize)]
struct Mounted {
    name: String,
    skel: String,
    fsname: String,
    mountpoint: PathBuf,
    /// The serving process.
    pid: u32,
    /// Its log file (background servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<PathBuf>,
}

impl Mounted {
    fn text(&self) -> String {
        let log = self
            .log
            .as_ref()
            .map(|l| format!(", log {}", l.display()))
            .unwrap_or_default();
        format!(
            "mounted view {} ({}) at {}: server pid {}{log}; `vskel unmount {}` unmounts it",
            self.name,
            self.fsname,
            self.mountpoint.display(),
            self.pid,
            self.name
        )
    }
}

pub fn run(config: &Config, args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    let readiness = Readiness::from_option(args.ready_fd)?;
    let view = view::open(config, &args.name)?;
    let mountpoint = match &args.mountpoint {
        Some(mp) => normalize(mp)?,
        None => {
            let merged = view.dirs.merged();
            make_mountpoint(&merged)?;
            normalize(&merged)?
        }
    };
    let barrier = || match &args.mountpoint {
        // One of the caller's choice (a missing one is reported as such
        // by `prepare`); the default is behind `<root>`'s barrier.
        Some(_) if mountpoint.symlink_metadata().is_ok() => {
            crate::barrier::require_closed_above(&mountpoint)
        }
        _ => Ok(()),
    };
    let what = format!("view \"{}\"", args.name);
    let pid_path = view.dirs.pid_file();
    match PidFile::read(&pid_path)? {
        Some((holder, true)) => return Err(already_served(&what, &holder)),
        // A server that died left its pid file, naming where its (now
        // stale) mount is.
        Some((
            Holder {
                mountpoint: Some(old),
                ..
            },
            false,
        )) if old != mountpoint => clear_if_stale(&old, &view.fsname())?,
        _ => {}
    }
    let sync_state = StateFiles::new(config, &args.name);
    let wait_for_sync = || {
        sync_state.lock_waiting(|| {
            info!(
                "waiting for the running sync of {} to finish before mounting",
                args.name
            )
        })
    };
    if args.foreground {
        // The lock before the mount: of two servers started at once, one wins.
        let _pid_file = PidFile::acquire(&pid_path, &mountpoint, &what)?;
        barrier()?;
        // A sync running now ends before the view is mounted; one started
        // after the mount is live finds it mounted and holds its writes.
        prepare(&mountpoint)?;
        let sync_lock = wait_for_sync()?;
        serve_here(&view, &mountpoint, args.format, readiness, sync_lock)
    } else {
        // Wait here, without the server's start-up timeout; the server
        // takes the lock again.
        barrier()?;
        prepare(&mountpoint)?;
        drop(wait_for_sync()?);
        start(&view, &mountpoint, args.format, invocation)
    }
}

/// Make the default mount point if it is missing. Something already
/// there (even a dead mount, which cannot be looked at) is left to
/// [`prepare`].
fn make_mountpoint(path: &Path) -> Result<()> {
    match std::fs::DirBuilder::new()
        .mode(MOUNTPOINT_MODE)
        .create(path)
    {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::io("make the mount point", path, e))
        }
        _ => Ok(()),
    }
}

fn mounted(view: &View, mountpoint: &Path, pid: u32, log: Option<PathBuf>) -> Mounted {
    Mounted {
        name: view.record.name.clone(),
        skel: view.skel.name.clone(),
        fsname: view.fsname(),
        mountpoint: mountpoint.to_path_buf(),
        pid,
        log,
    }
}

/// Serve in this process until the view is unmounted.
fn serve_here(
    view: &View,
    mountpoint: &Path,
    format: Format,
    readiness: Readiness,
    sync_lock: File,
) -> Result<()> {
    let options = ServeOptions {
        fsname: view.fsname(),
        control: Some(view.dirs.control_socket()),
        ..ServeOptions::default()
    };
    let report = mounted(view, mountpoint, std::process::id(), None);
    debug!("serving {:?} at {}", view.layers, mountpoint.display());
    serve(&view.layers, mountpoint, &options, || {
        drop(sync_lock); // live, with its control socket: syncs may start
        if let Err(e) = print(format, &report, || report.text()) {
            debug!("cannot report the mount on stdout: {e}");
        }
        readiness.notify();
    })?;
    info!(
        "view {} unmounted from {}",
        view.record.name,
        mountpoint.display()
    );
    Ok(())
}

/// Start a foreground server in the background and wait until it is live.
fn start(
    view: &View,
    mountpoint: &Path,
    format: Format,
    invocation: &Invocation<'_>,
) -> Result<()> {
    let mut args = invocation.global_args()?;
    args.extend([
        OsString::from("mount"),
        OsString::from(&view.record.name),
        mountpoint.as_os_str().to_os_string(),
        OsString::from("--foreground"),
    ]);
    let started = start_in_background(
        &args,
        &view.dirs.log_file(),
        &format!("mounting view \"{}\"", view.record.name),
    )?;
    let report = mounted(view, mountpoint, started.pid, Some(started.log));
    print(format, &report, || report.text())
}
