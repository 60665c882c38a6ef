//! Stopping a served view on a signal: every SIGTERM and SIGINT tries a
//! plain unmount; a busy view (files open in it, processes working inside)
//! gets a grace period ([`GRACE`], ended at once by another signal), then
//! it is detached (`umount2(MNT_DETACH)`, with a warning): gone from the
//! mount table at once, served until its last user leaves. A service
//! manager's stop thus never ends in SIGKILL and a stale mount. SIGHUP
//! only tries the plain unmount.
//!
//! Only the mount this server made is unmounted: one that is no longer on
//! top at the mount point (detached or unmounted by someone else) is left
//! alone, and so is whatever is mounted there now.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::SessionUnmounter;
use rustix::fs::{AtFlags, CWD, StatxFlags, statx};
use rustix::io::Errno;
use rustix::mount::{UnmountFlags, unmount};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use tracing::{info, warn};

use crate::error::{Error, Result};

/// How long a busy view is given to be left before it is detached.
pub const GRACE: Duration = Duration::from_secs(2);

/// The threads that stop the view on signals; [`Watcher::finish`] ends them.
#[derive(Debug)]
pub struct Watcher {
    signals: Handle,
    threads: Vec<JoinHandle<()>>,
}

/// The mount this server made.
#[derive(Debug)]
struct OwnMount {
    mountpoint: PathBuf,
    /// Its mount ID (`statx`'s `stx_mnt_id`), once the mount is live.
    id: u64,
    /// fuser's unmounter, for the first plain unmount: fuser then forgets
    /// the mount (and does not try again, in vain, once serving ends).
    fuser: Option<SessionUnmounter>,
}

/// What an unmount did.
enum Outcome {
    Unmounted,
    Busy,
    /// The mount is no longer on top at the mount point.
    Gone,
}

impl OwnMount {
    /// The mount now at `mountpoint` (just mounted by this server). Found
    /// without a request to the server (`AT_STATX_DONT_SYNC`), which is
    /// not serving yet.
    fn find(mountpoint: &Path, fuser: SessionUnmounter) -> Result<Self> {
        let id = mount_id_at(mountpoint)
            .map_err(|e| Error::io("find the mount ID of", mountpoint, e))?;
        Ok(OwnMount {
            mountpoint: mountpoint.to_path_buf(),
            id,
            fuser: Some(fuser),
        })
    }

    /// Unmount it, plainly or detached (`lazy`), if it is still on top at
    /// its mount point.
    fn unmount(&mut self, lazy: bool) -> std::io::Result<Outcome> {
        match mount_id_at(&self.mountpoint) {
            Ok(id) if id == self.id => {}
            Ok(_) => return Ok(Outcome::Gone),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Outcome::Gone),
            Err(e) => return Err(e),
        }
        if !lazy && let Some(mut fuser) = self.fuser.take() {
            return match fuser.unmount() {
                Ok(()) => Ok(Outcome::Unmounted),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(Outcome::Busy),
                Err(e) => Err(e),
            };
        }
        let flags = if lazy {
            UnmountFlags::DETACH | UnmountFlags::NOFOLLOW
        } else {
            UnmountFlags::NOFOLLOW
        };
        match unmount(&self.mountpoint, flags) {
            Ok(()) => Ok(Outcome::Unmounted),
            Err(Errno::BUSY) => Ok(Outcome::Busy),
            // Unmounted between the look and the unmount.
            Err(Errno::INVAL) => Ok(Outcome::Gone),
            Err(e) => Err(e.into()),
        }
    }
}

/// The ID of the mount on top at `path`, from the kernel's cached
/// attributes (no FUSE request).
fn mount_id_at(path: &Path) -> std::io::Result<u64> {
    let flags = AtFlags::STATX_DONT_SYNC | AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    let st = statx(CWD, path, flags, StatxFlags::MNT_ID)?;
    if !StatxFlags::from_bits_retain(st.stx_mask).contains(StatxFlags::MNT_ID) {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// Watch for SIGTERM, SIGINT and SIGHUP and stop the view just mounted at
/// `mountpoint` (`unmounter` is its session's) on them, until
/// [`Watcher::finish`].
pub fn watch(mountpoint: &Path, unmounter: SessionUnmounter) -> Result<Watcher> {
    let mut own = OwnMount::find(mountpoint, unmounter)?;
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])
        .map_err(|e| Error::io("install signal handlers", mountpoint, e))?;
    let handle = signals.handle();
    let (sender, received) = mpsc::channel();
    let spawn = |name: &str, work: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(work)
            .map_err(|e| Error::io("start the signal threads", mountpoint, e))
    };
    // One thread takes the signals, the other acts on them: a grace period
    // waits for the next signal or its end.
    let taker = spawn(
        "vskel-signals",
        Box::new(move || {
            for signal in signals.forever() {
                if sender.send(signal).is_err() {
                    break;
                }
            }
        }),
    )?;
    let actor = spawn("vskel-stop", Box::new(move || act(&received, &mut own)));
    let threads = match actor {
        Ok(actor) => vec![taker, actor],
        Err(e) => {
            handle.close();
            if taker.join().is_err() {
                warn!("the signal thread panicked");
            }
            return Err(e);
        }
    };
    Ok(Watcher {
        signals: handle,
        threads,
    })
}

impl Watcher {
    /// Stop watching (serving has ended) and wait for the threads.
    pub fn finish(self) {
        self.signals.close();
        for thread in self.threads {
            if thread.join().is_err() {
                warn!("a signal thread panicked");
            }
        }
    }
}

/// Act on each signal until the signals end.
fn act(signals: &Receiver<i32>, own: &mut OwnMount) {
    let shown = own.mountpoint.display().to_string();
    while let Ok(signal) = signals.recv() {
        info!("signal {signal}: unmounting {shown}");
        match own.unmount(false) {
            Ok(Outcome::Unmounted) => {}
            Ok(Outcome::Gone) => info!("{shown} is no longer mounted by this server"),
            Ok(Outcome::Busy) if signal == SIGHUP => {
                warn!("{shown} is busy (files open or processes inside); still serving it");
            }
            Ok(Outcome::Busy) => {
                warn!(
                    "{shown} is busy (files open or processes inside); detaching it in {} s, \
                     or at once on another SIGTERM or SIGINT",
                    GRACE.as_secs()
                );
                match signals.recv_timeout(GRACE) {
                    Ok(next) => info!("signal {next}: ending the grace period"),
                    Err(RecvTimeoutError::Timeout) => {}
                    // Serving ended meanwhile.
                    Err(RecvTimeoutError::Disconnected) => return,
                }
                detach(own);
            }
            Err(e) => warn!("unmounting {shown}: {e}"),
        }
    }
}

/// End the grace period: a plain unmount if the view was left meanwhile,
/// else detach it.
fn detach(own: &mut OwnMount) {
    let shown = own.mountpoint.display().to_string();
    match own.unmount(false) {
        Ok(Outcome::Busy) => {}
        Ok(Outcome::Unmounted) => return info!("{shown} was left; unmounted"),
        Ok(Outcome::Gone) => return info!("{shown} is no longer mounted by this server"),
        Err(e) => warn!("unmounting {shown}: {e}; detaching it"),
    }
    match own.unmount(true) {
        Ok(Outcome::Unmounted) => warn!(
            "detached the busy view at {shown}: it is gone from the mount table; \
             this server ends once the last file open in it is closed"
        ),
        Ok(Outcome::Gone) => info!("{shown} is no longer mounted by this server"),
        Ok(Outcome::Busy) => warn!("{shown} stays busy; it could not be detached"),
        Err(e) => warn!("detaching {shown}: {e}"),
    }
}
