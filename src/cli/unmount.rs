//! `vskel unmount NAME|MOUNTPOINT [--lazy]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use tracing::warn;

use super::output::{Format, print};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::validate::validate_name;
use crate::view::mountpoint::{Holder, PidFile, mount_at, normalize, unmount, wait_for_exit};
use crate::vserver::registry::{self, Kind, Record};
use crate::vserver::view::{ViewDirs, fsname};

/// How long to wait for the server to exit after a plain unmount.
pub const SERVER_EXIT_WAIT: Duration = Duration::from_secs(10);
/// How long to look for the server's exit after a lazy unmount (it keeps
/// serving until the last user of the detached mount leaves).
const LAZY_EXIT_WAIT: Duration = Duration::from_secs(1);

/// Unmount a view (by vserver name) or a vskel mount (by mount point).
///
/// NAME unmounts the view where its server mounted it; a MOUNTPOINT (an
/// argument with a '/', or an existing path no view is named after)
/// unmounts the vskel mount there, a view's or an overlay's. Then vskel
/// waits up to 10 s for the server process to exit. A busy mount (a
/// process has a file open or its working directory in it) is refused:
/// stop what uses it, or give --lazy to detach the mount at once; it is
/// freed, and its server exits, when its last user leaves.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver, or the mount point.
    #[arg(value_name = "NAME|MOUNTPOINT")]
    target: String,
    /// Detach the mount even if it is busy; it goes when its last user leaves.
    #[arg(long, short = 'l')]
    lazy: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// What was unmounted.
#[derive(Debug, Clone, Serialize)]
struct Unmounted {
    /// The view, when one was unmounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// Where it was mounted.
    mountpoint: PathBuf,
    /// Detached lazily.
    lazy: bool,
    /// The server process, if it was found.
    server_pid: Option<u32>,
    /// Whether it has exited (unknown without a server).
    server_exited: Option<bool>,
}

impl Unmounted {
    fn text(&self) -> String {
        let what = match &self.name {
            Some(name) => format!("view {name} from "),
            None => String::new(),
        };
        let server = match (self.server_pid, self.server_exited) {
            (Some(pid), Some(true)) => format!("; server pid {pid} exited"),
            (Some(pid), _) if self.lazy => {
                format!("; server pid {pid} serves until the last user leaves")
            }
            (Some(pid), _) => format!("; server pid {pid} is still running"),
            _ => String::new(),
        };
        format!(
            "{}unmounted {what}{}{server}",
            if self.lazy { "lazily " } else { "" },
            self.mountpoint.display()
        )
    }
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
                return Err(Error::Usage(format!(
                    "vserver \"{target}\" is a tree at {}, not a view: there is nothing to unmount",
                    record.root.display()
                )));
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

pub fn run(config: &Config, args: &Args) -> Result<()> {
    let (name, mountpoint, holder) = match resolve(config, &args.target)? {
        Target::View(record) => view_mounts(config, &record)?,
        Target::Path(path) => path_mount(config, &path)?,
    };
    unmount(&mountpoint, args.lazy)?;
    let server_pid = holder.and_then(|h| h.pid);
    let server_exited = match server_pid {
        Some(pid) => {
            let wait = if args.lazy {
                LAZY_EXIT_WAIT
            } else {
                SERVER_EXIT_WAIT
            };
            let exited = wait_for_exit(pid, wait)?;
            if !exited && !args.lazy {
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
    let report = Unmounted {
        name,
        mountpoint,
        lazy: args.lazy,
        server_pid,
        server_exited,
    };
    print(args.format, &report, || report.text())
}

/// Where the view of `record` is mounted, and its server: where its pid
/// file says (the live server's mount, or the stale one a dead server
/// left), else its default mount point. (Views of other vskel setups may
/// show the same `SKEL:NAME`: only these places are looked at.)
fn view_mounts(
    config: &Config,
    record: &Record,
) -> Result<(Option<String>, PathBuf, Option<Holder>)> {
    let name = &record.name;
    let dirs = ViewDirs::new(config, name);
    let source = fsname(record.skel.as_deref().unwrap_or_default(), name);
    let (holder, live) = match PidFile::read(&dirs.pid_file())? {
        Some((holder, live)) => (Some(holder), live),
        None => (None, false),
    };
    let is_this_view = |mp: &Path| -> Result<bool> {
        Ok(mount_at(mp)?.is_some_and(|m| m.is_fuse() && m.source == source))
    };
    let mut mountpoint = None;
    if let Some(mp) = holder.as_ref().and_then(|h| h.mountpoint.clone())
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
    let Some(mountpoint) = mountpoint else {
        return Err(Error::Failed(
            match holder.and_then(|h| h.pid).filter(|_| live) {
                Some(pid) => format!(
                    "view \"{name}\" is not mounted, though pid {pid} holds {} (still starting?)",
                    dirs.pid_file().display()
                ),
                None => format!("view \"{name}\" is not mounted"),
            },
        ));
    };
    Ok((Some(name.clone()), mountpoint, holder.filter(|_| live)))
}

/// The vskel mount at `path`, and its server.
fn path_mount(config: &Config, path: &Path) -> Result<(Option<String>, PathBuf, Option<Holder>)> {
    let Some(entry) = mount_at(path)? else {
        return Err(Error::Failed(format!(
            "{} is not a mount point",
            path.display()
        )));
    };
    let not_ours = || {
        Error::Failed(format!(
            "{} is not a vskel mount (it is {}); use umount",
            path.display(),
            entry.describe()
        ))
    };
    if !entry.may_be_vskel() {
        return Err(not_ours());
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
        None => (None, super::overlay::pid_file(path)),
    };
    let holder =
        PidFile::holder(&pid_file)?.filter(|h| h.mountpoint.as_deref().is_none_or(|m| m == path));
    // A plain `fuse` mount is ours only if a view or an overlay server
    // claims it.
    if !entry.is_vskel() && name.is_none() && holder.is_none() {
        return Err(not_ours());
    }
    Ok((name, path.to_path_buf(), holder))
}
