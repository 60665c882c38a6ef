//! `vskel overlay [-f] -o lowerdir=A:B:C,upperdir=U,workdir=W MOUNTPOINT`:
//! fuse-overlayfs' command line, so that tools and test suites written for
//! it can drive vskel's view. The options are `view::options`'; the mount
//! is `mount::overlay`'s.

use std::path::PathBuf;

use clap::ArgAction;
use tracing::debug;

use super::Invocation;
use super::output::{Format, print};
use crate::error::{Error, Result};
use crate::mount::overlay::{OverlayMounted, OverlayRequest, mount_overlay};
use crate::mount::{How, Readiness};
use crate::view::options::parse_options;

/// Mount an overlay of directories, with fuse-overlayfs' command line.
///
/// `vskel overlay -o lowerdir=A:B:C,upperdir=U,workdir=W MOUNTPOINT` shows
/// A over B over C (top first, read-only) under the writable U at
/// MOUNTPOINT, copy-on-write; W is a work directory on U's mount (vskel's
/// scratch space is W/work/, as kernel overlayfs' is; vskel removes only
/// its own scratch entries there). Layers that are the same directory or
/// inside one another are refused. The upper layer is in kernel overlayfs'
/// format. Without -f the server runs in the
/// background and vskel returns once the mount is live (its log and pid
/// file are in /run/vskel/overlay/). `vskel unmount MOUNTPOINT` or
/// `umount MOUNTPOINT` unmounts.
///
/// Options (-o, comma-separated, may repeat; `\,` `\:` `\\` escape):
/// lowerdir=, upperdir=, workdir= (all three needed: read-only overlays are
/// not supported yet), fsname= (the source in /proc/mounts; default the
/// SOURCE given, else vskel-overlay), allow_other (let other users in; always on when root
/// mounts, as with fuse-overlayfs), debug (like -d), threads=N (at most N
/// workers serve requests; a serial client keeps 4 while the CPUs have room
/// and 2 while they are busy, and workers are added while requests of
/// several callers wait; by default twice the CPUs, 4 to 16).
/// Ignored: rw, defaults, suid, dev, exec, async, the atime family, fstab
/// bookkeeping (auto, noauto, nofail, _netdev, user, users, owner, x-*,
/// comment=) and FUSE and fuse-overlayfs tuning (max_read, kernel_cache,
/// attr_timeout, clone_fd, auto_unmount, fast_ino, fsync, threaded,
/// timeout, writeback, noacl, static_nlink, volatile, ...). Refused: ro,
/// nosuid, nodev, noexec, sync, dirsync, uidmapping, gidmapping, squash_*,
/// uid, gid, umask, SELinux contexts, plugins, noxattrs,
/// xattr_permissions, userxattr, allow_root; and any other option.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount options, comma-separated (see above); may be given several times.
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground and serve until unmounted.
    #[arg(short = 'f')]
    foreground: bool,
    /// Like -f (fuse-overlayfs' debug switch; set VSKEL_LOG=debug for details).
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Serve requests on one thread (like -o threads=1).
    #[arg(short = 's')]
    single_thread: bool,
    /// Where to report readiness (used when vskel starts itself in the background).
    #[arg(long = "ready-fd", value_name = "FD", hide = true)]
    ready_fd: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The mount point, after an optional source name (which mount(8)
    /// helpers pass; /proc/mounts shows it, unless fsname= says otherwise).
    #[arg(value_name = "[SOURCE] MOUNTPOINT", num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,
}

/// The report as text.
fn text(mounted: &OverlayMounted) -> String {
    format!(
        "mounted overlay {} at {}: server pid {}",
        mounted.fsname,
        mounted.mountpoint.display(),
        mounted.pid
    )
}

pub fn run(args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    let readiness = Readiness::from_option(args.ready_fd)?;
    let mut options = parse_options(&args.options).map_err(Error::Usage)?;
    for option in &options.ignored {
        debug!("ignoring option {option}");
    }
    let (mountpoint, source) = match args.paths.as_slice() {
        [mountpoint] => (mountpoint, None),
        [source, mountpoint] => (mountpoint, Some(source)),
        _ => return Err(Error::Usage("give [SOURCE] MOUNTPOINT".to_string())),
    };
    // The source is what /proc/mounts shows (unless fsname= says), as
    // sshfs and mergerfs do: `mount -a` and `findmnt --verify` match an
    // fstab line by its source.
    if options.fsname.is_none() {
        options.fsname = source
            .filter(|s| !s.as_os_str().is_empty())
            .map(|s| s.to_string_lossy().into_owned());
    }
    let foreground = args.foreground || args.debug || options.debug;
    let request = OverlayRequest {
        options,
        mountpoint: mountpoint.clone(),
        single_thread: args.single_thread,
        keep_log: std::env::var_os(super::LOG_ENV).is_some(),
    };
    let format = args.format;
    let how = if foreground {
        How::Foreground {
            readiness,
            on_ready: Box::new(move |mounted: &OverlayMounted| {
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
    let mounted = mount_overlay(&request, how)?;
    if foreground {
        return Ok(());
    }
    print(format, &mounted, || text(&mounted))
}
