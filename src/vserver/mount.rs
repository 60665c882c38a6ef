//! Mounting and unmounting views: [`mount_view`] serves a view vserver's
//! layers at its mount point (in this process or in the background), and
//! [`unmount`] unmounts a view (by vserver name) or any vskel mount (by
//! mount point) and waits for its server to exit.

use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::registry::{self, Kind, Record};
use super::view::{self, View, ViewDirs, fsname};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mount::pidfile::already_served;
use crate::mount::spawn::start_in_background;
use crate::mount::stale::{clear_if_stale, prepare};
use crate::mount::{How, MountError, PidFile, PidOwner, mount_at, normalize, wait_for_exit};
use crate::sync::state::StateFiles;
use crate::validate::validate_name;
use crate::view::ServeOptions;
use crate::view::serve::serve;

/// Mode of the default mount point when it has to be made.
const MOUNTPOINT_MODE: u32 = 0o755;
/// How long to wait for the server to exit after a plain unmount.
pub const SERVER_EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long to look for the server's exit after a lazy unmount (it keeps
/// serving until the last user of the detached mount leaves).
const LAZY_EXIT_WAIT: Duration = Duration::from_secs(1);

/// A mounted view.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mounted {
    /// The vserver.
    pub name: String,
    /// Its skel.
    pub skel: String,
    /// The source in /proc/mounts (`SKEL:NAME`).
    pub fsname: String,
    /// Where it is mounted.
    #[serde(serialize_with = "crate::report_path::path")]
    pub mountpoint: PathBuf,
    /// The serving process.
    pub pid: u32,
    /// Its log file (background servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::report_path::option")]
    pub log: Option<PathBuf>,
}

/// Mount the view of vserver `name` at `at` (default: its `merged/`, made
/// if missing): served in this process until unmounted, or in the
/// background (returning once it is live). A stale mount a dead server
/// left is cleared first, with a warning; a live one is refused.
pub fn mount_view(
    config: &Config,
    name: &str,
    at: Option<&Path>,
    how: How<'_, Mounted>,
) -> Result<Mounted> {
    let view = view::open(config, name)?;
    let mountpoint = match at {
        Some(mp) => normalize(mp)?,
        None => {
            let merged = view.dirs.merged();
            make_mountpoint(&merged)?;
            normalize(&merged)?
        }
    };
    let barrier = || match at {
        // One of the caller's choice (a missing one is reported as such
        // by `prepare`); the default is behind `<root>`'s barrier.
        Some(_) if mountpoint.symlink_metadata().is_ok() => {
            crate::barrier::require_closed_above(&mountpoint)
        }
        _ => Ok(()),
    };
    let what = format!("view \"{name}\"");
    let pid_path = view.dirs.pid_file();
    match PidFile::read(&pid_path)? {
        Some((owner, true)) => return Err(already_served(&what, &owner)),
        // A server that died left its pid file, naming where its (now
        // stale) mount is.
        Some((
            PidOwner {
                mountpoint: Some(old),
                ..
            },
            false,
        )) if old != mountpoint => clear_if_stale(&old, &view.fsname())?,
        _ => {}
    }
    let sync_state = StateFiles::new(config, name);
    let wait_for_sync = || {
        sync_state.lock_waiting(|| {
            info!("waiting for the running sync of {name} to finish before mounting")
        })
    };
    match how {
        How::Foreground {
            readiness,
            on_ready,
        } => {
            // The lock before the mount: of two servers started at once, one wins.
            let _pid_file = PidFile::acquire(&pid_path, &mountpoint, &what)?;
            barrier()?;
            // A sync running now ends before the view is mounted; one started
            // after the mount is live finds it mounted and holds its writes.
            prepare(&mountpoint)?;
            let sync_lock = wait_for_sync()?;
            // The skel's parts are resolved and opened under its lifecycle
            // lock (held until the mount is live), so a split-skel
            // swapping them cannot give the view half of each generation.
            let pin = crate::skel::lifecycle::lock(&view.skel)?;
            let view = view::open(config, name)?;
            refuse_unfinished_upgrade(config, &view)?;
            let report = mounted(&view, &mountpoint, std::process::id(), None);
            serve_here(&view, &mountpoint, (sync_lock, pin), || {
                on_ready(&report);
                readiness.notify();
            })?;
            Ok(report)
        }
        How::Background { global_args } => {
            // Wait here, without the server's start-up timeout; the server
            // takes the lock again.
            refuse_unfinished_upgrade(config, &view)?;
            barrier()?;
            prepare(&mountpoint)?;
            drop(wait_for_sync()?);
            let mut args = global_args;
            args.extend([
                "mount".into(),
                name.into(),
                mountpoint.as_os_str().to_os_string(),
                "--foreground".into(),
            ]);
            let started = start_in_background(
                &args,
                &view.dirs.log_file(),
                &format!("mounting view \"{name}\""),
            )?;
            Ok(mounted(&view, &mountpoint, started.pid, Some(started.log)))
        }
    }
}

/// A view whose `upgrade-vs` was interrupted is part old, part new: it is
/// not mounted until the upgrade is run again.
fn refuse_unfinished_upgrade(config: &Config, view: &View) -> Result<()> {
    let name = &view.record.name;
    match super::upgrade_journal::Journal::new(config, name).load()? {
        Some(begun) => Err(Error::Failed(format!(
            "view \"{name}\" was being upgraded from generation {} to {} when the upgrade \
             stopped: `vskel upgrade-vs {name}` finishes it, then mount it",
            begun.from, begun.to
        ))),
        None => Ok(()),
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
    locks: (File, File),
    on_ready: impl FnOnce(),
) -> Result<()> {
    let options = ServeOptions {
        fsname: view.fsname(),
        control: Some(view.dirs.control_socket()),
        ..ServeOptions::default()
    };
    debug!("serving {:?} at {}", view.layers, mountpoint.display());
    serve(&view.layers, mountpoint, &options, || {
        drop(locks); // live, with its control socket: syncs and splits may start
        on_ready();
    })?;
    info!(
        "view {} unmounted from {}",
        view.record.name,
        mountpoint.display()
    );
    Ok(())
}

/// What was unmounted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unmounted {
    /// The view, when one was unmounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Where it was mounted.
    #[serde(serialize_with = "crate::report_path::path")]
    pub mountpoint: PathBuf,
    /// Detached lazily.
    pub lazy: bool,
    /// The server process, if it was found.
    pub server_pid: Option<u32>,
    /// Whether it has exited (unknown without a server).
    pub server_exited: Option<bool>,
}

/// What the argument names.
enum Target {
    /// A view vserver.
    View(Record),
    /// A mount point.
    Path(PathBuf),
}

fn resolve(config: &Config, target: &str) -> Result<Target> {
    let looks_like_path = target.contains('/') || target == "." || target == "..";
    if !looks_like_path && validate_name("vserver name", target).is_ok() {
        match registry::load(config, target)? {
            Some(record) if record.kind == Kind::View => return Ok(Target::View(record)),
            Some(record) => {
                return Err(MountError::NotAView {
                    name: target.to_string(),
                    root: record.root,
                }
                .into());
            }
            None => {}
        }
    }
    if looks_like_path || Path::new(target).symlink_metadata().is_ok() {
        return Ok(Target::Path(normalize(Path::new(target))?));
    }
    Err(Error::Usage(format!(
        "no view vserver and no mount point named \"{target}\"; `vskel list` shows the vservers"
    )))
}

/// Unmount a view (`target` a vserver name) or the vskel mount at
/// `target` (a mount point: an argument with a '/', or an existing path
/// no view is named after), a view's or an overlay's; plainly (a busy
/// mount is refused) or `lazy` (detached at once, freed when its last
/// user leaves). Then wait up to [`SERVER_EXIT_WAIT`] for its server to
/// exit.
pub fn unmount(config: &Config, target: &str, lazy: bool) -> Result<Unmounted> {
    let (name, mountpoint, owner) = match resolve(config, target)? {
        Target::View(record) => view_mounts(config, &record)?,
        Target::Path(path) => path_mount(config, &path)?,
    };
    crate::mount::stale::unmount(&mountpoint, lazy)?;
    let server_pid = owner.and_then(|h| h.pid);
    let server_exited = match server_pid {
        Some(pid) => {
            let wait = if lazy {
                LAZY_EXIT_WAIT
            } else {
                SERVER_EXIT_WAIT
            };
            let exited = wait_for_exit(pid, wait)?;
            if !exited && !lazy {
                warn!(
                    "the server (pid {pid}) has not exited {} s after the unmount; \
                     it should once its last requests finish (`kill {pid}` stops it)",
                    SERVER_EXIT_WAIT.as_secs()
                );
            }
            Some(exited)
        }
        None => None,
    };
    Ok(Unmounted {
        name,
        mountpoint,
        lazy,
        server_pid,
        server_exited,
    })
}

/// Where the view of `record` is mounted, by what its pid file and the
/// mount table say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ViewMount {
    /// Where a mount of this view (`fuse` from `SKEL:NAME`) is: where
    /// its pid file says (the live server's mount, or the stale one a
    /// dead server left), else, with no live server, its default mount
    /// point. None: not mounted (or a live server still starting).
    pub mountpoint: Option<PathBuf>,
    /// What its pid file says, if there is one.
    pub owner: Option<PidOwner>,
    /// Whether a live process holds that pid file.
    pub live: bool,
}

/// Find the mount of the view of `record` (see [`ViewMount`]). (Views of
/// other vskel setups may show the same `SKEL:NAME`: only these places
/// are looked at.)
pub(crate) fn locate_view(config: &Config, record: &Record) -> Result<ViewMount> {
    let dirs = ViewDirs::new(config, &record.name);
    let source = fsname(record.skel.as_deref().unwrap_or_default(), &record.name);
    let (owner, live) = match PidFile::read(&dirs.pid_file())? {
        Some((owner, live)) => (Some(owner), live),
        None => (None, false),
    };
    let is_this_view = |mp: &Path| -> Result<bool> {
        Ok(mount_at(mp)?.is_some_and(|m| m.is_fuse() && m.source == source))
    };
    let mut mountpoint = None;
    if let Some(mp) = owner.as_ref().and_then(|h| h.mountpoint.clone())
        && is_this_view(&mp)?
    {
        mountpoint = Some(mp);
    }
    if mountpoint.is_none() && !live {
        let merged = normalize(&dirs.merged())?;
        if is_this_view(&merged)? {
            mountpoint = Some(merged);
        }
    }
    Ok(ViewMount {
        mountpoint,
        owner,
        live,
    })
}

/// Where the view of `record` is mounted ([`locate_view`]), and its live
/// server; an error when it is not mounted.
fn view_mounts(
    config: &Config,
    record: &Record,
) -> Result<(Option<String>, PathBuf, Option<PidOwner>)> {
    let name = &record.name;
    let found = locate_view(config, record)?;
    let live = found.live;
    let Some(mountpoint) = found.mountpoint else {
        let note = match found.owner.and_then(|h| h.pid).filter(|_| live) {
            Some(pid) => format!(
                ", though pid {pid} holds {} (still starting?)",
                ViewDirs::new(config, name).pid_file().display()
            ),
            None => String::new(),
        };
        return Err(MountError::NotMounted {
            what: format!("view \"{name}\""),
            note,
        }
        .into());
    };
    Ok((Some(name.clone()), mountpoint, found.owner.filter(|_| live)))
}

/// The vskel mount at `path`, and its server.
fn path_mount(config: &Config, path: &Path) -> Result<(Option<String>, PathBuf, Option<PidOwner>)> {
    let Some(entry) = mount_at(path)? else {
        return Err(MountError::NotAMountPoint {
            path: path.to_path_buf(),
        }
        .into());
    };
    let not_ours = || MountError::NotAVskelMount {
        mountpoint: path.to_path_buf(),
        what: entry.describe(),
    };
    if !entry.may_be_vskel() {
        return Err(not_ours().into());
    }
    // A view's source is SKEL:NAME; its server holds the view's pid file.
    let view = entry
        .source
        .split_once(':')
        .filter(|(_, name)| validate_name("vserver name", name).is_ok())
        .and_then(|(skel, name)| {
            registry::load(config, name)
                .ok()
                .flatten()
                .filter(|r| r.kind == Kind::View && r.skel.as_deref() == Some(skel))
        });
    let (name, pid_file) = match view {
        Some(record) => (
            Some(record.name.clone()),
            ViewDirs::new(config, &record.name).pid_file(),
        ),
        None => (None, crate::mount::overlay::pid_file(path)),
    };
    let owner =
        PidFile::owner(&pid_file)?.filter(|h| h.mountpoint.as_deref().is_none_or(|m| m == path));
    // A plain `fuse` mount is ours only if a view or an overlay server
    // claims it.
    if !entry.is_vskel() && name.is_none() && owner.is_none() {
        return Err(not_ours().into());
    }
    Ok((name, path.to_path_buf(), owner))
}
