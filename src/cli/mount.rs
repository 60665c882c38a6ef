//! `vskel mount NAME [MOUNTPOINT] [--foreground]`.

use std::path::PathBuf;

use tracing::debug;

use super::Invocation;
use super::output::{Format, print};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::mount::{How, Readiness};
use crate::vserver::mount::{Mounted, mount_view};

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
///
/// When `vskel daemon` runs (it listens on `[daemon] socket`), the daemon
/// mounts the view and looks after it (restarting its server should it
/// die); --foreground always serves in this process.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The view vserver to mount.
    name: String,
    /// Where to mount it [default: <root>/.views/NAME/merged, made if
    /// missing]; a directory above it must be closed to host users (mode
    /// 0700, owned by root), as <root> is.
    mountpoint: Option<PathBuf>,
    /// Refuse unless NAME's skel is SKEL (what a mount(8) source
    /// `SKEL:NAME` says; the `mount.fuse.vskel` helper passes it).
    #[arg(long, value_name = "SKEL")]
    skel: Option<String>,
    /// Serve in this process until unmounted (for systemd units and debugging).
    #[arg(long, short = 'f')]
    foreground: bool,
    /// Where to report readiness (used when vskel starts itself in the background).
    #[arg(long = "ready-fd", value_name = "FD", hide = true)]
    ready_fd: Option<i32>,
    /// Stop when stdin reads EOF (the daemon that started this server is gone).
    #[arg(long = "lifeline-stdin", hide = true, requires = "foreground")]
    lifeline_stdin: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

/// Refuse unless view vserver `name` is of skel `skel`.
fn check_skel(config: &Config, name: &str, skel: &str) -> Result<()> {
    let view = crate::vserver::view::open(config, name)?;
    if view.skel.name == skel {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "vserver \"{name}\" is of skel \"{}\", not of skel \"{skel}\": its source is {}",
        view.skel.name,
        view.fsname()
    )))
}

/// The report as text.
fn text(mounted: &Mounted) -> String {
    let log = mounted
        .log
        .as_ref()
        .map(|l| format!(", log {}", l.display()))
        .unwrap_or_default();
    format!(
        "mounted view {} ({}) at {}: server pid {}{log}; `vskel unmount {}` unmounts it",
        mounted.name,
        mounted.fsname,
        mounted.mountpoint.display(),
        mounted.pid,
        mounted.name
    )
}

pub fn run(config: &Config, args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    if let Some(skel) = &args.skel {
        check_skel(config, &args.name, skel)?;
    }
    let readiness = Readiness::from_option(args.ready_fd)?;
    let format = args.format;
    if !args.foreground
        && let Some(mut daemon) = crate::daemon::route::running(config)?
    {
        let at = args
            .mountpoint
            .as_deref()
            .map(crate::mount::normalize)
            .transpose()?;
        let (mounted, _): (Mounted, _) = daemon.report(serde_json::json!({
            "cmd": "mount", "vs": args.name, "at": at,
        }))?;
        return print(format, &mounted, || {
            format!("{} (served by the daemon)", text(&mounted))
        });
    }
    if args.lifeline_stdin {
        crate::mount::lifeline::watch_stdin();
        crate::mount::lifeline::abort_on_panic();
    }
    let how = if args.foreground {
        How::Foreground {
            readiness,
            on_ready: Box::new(move |mounted: &Mounted| {
                if let Err(e) = print(format, mounted, || text(mounted)) {
                    debug!("cannot report the mount on stdout: {e}");
                }
            }),
        }
    } else {
        How::Background {
            global_args: invocation.global_args()?,
        }
    };
    let mounted = mount_view(config, &args.name, args.mountpoint.as_deref(), how)?;
    if args.foreground {
        return Ok(());
    }
    print(format, &mounted, || text(&mounted))
}
