//! Mount points: what is mounted where (`mountinfo`), clearing stale FUSE
//! mounts and refusing live ones, unmounting (`stale`), the pid file a
//! serving process holds and waiting for it to exit (`pidfile`), starting a
//! server in the background (`spawn`), a daemon-started server's
//! lifeline to its daemon (`lifeline`), and the fuse-overlayfs-style overlay
//! of plain directories (`overlay`).
//!
//! An engine: it serves views through `view`, and knows nothing of
//! vservers (their mounts are `vserver::mount`'s) nor of the command line.
//! Its refusals are [`MountError`]s, each with a stable [`MountError::kind`]
//! for callers that serialize them.

pub mod lifeline;
pub mod mountinfo;
pub mod overlay;
pub mod pidfile;
pub mod spawn;
pub mod stale;

pub use mountinfo::{MountEntry, mount_at, normalize};
pub use pidfile::{PidFile, PidOwner, wait_for_exit};
pub use spawn::{How, Readiness};

/// Refusals and failures of mount-point work (defined with the library's
/// error type, which carries them).
pub use crate::error::MountError;
