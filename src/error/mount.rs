//! The refusals and failures of mount-point work, phrased for the user,
//! each with a stable [`MountError::kind`] for callers that serialize
//! errors. Defined here, below the engines, so that the library's
//! [`crate::error::Error`] can carry them without importing `mount`.

use std::path::PathBuf;

/// A mount-point operation that was refused or failed, phrased for the
/// user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MountError {
    /// A live vskel mount is at the mount point already.
    #[error(
        "{} is mounted already ({what}); `vskel unmount {}` unmounts it",
        mountpoint.display(),
        mountpoint.display()
    )]
    AlreadyMounted {
        /// The mount point.
        mountpoint: PathBuf,
        /// What is mounted there (`fuse.vskel from SKEL:NAME`).
        what: String,
    },
    /// Another live process serves this view or overlay (it holds the pid
    /// file).
    #[error(
        "{what} is mounted already: {} serves it{}; unmount it first",
        pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "another process".to_string()),
        at.as_ref().map(|m| format!(" at {}", m.display())).unwrap_or_default()
    )]
    AlreadyServed {
        /// What is served (`view "web1"`).
        what: String,
        /// The serving process, if its pid file says.
        pid: Option<u32>,
        /// Where it serves, if its pid file says.
        at: Option<PathBuf>,
    },
    /// Something that is not vskel's (or not answering as a FUSE server)
    /// is mounted at the mount point.
    #[error(
        "{} is a mount point already ({what}{detail}); refusing to mount over it",
        mountpoint.display()
    )]
    Occupied {
        /// The mount point.
        mountpoint: PathBuf,
        /// What is mounted there.
        what: String,
        /// How it answered, if it failed (`, which fails with: ...`).
        detail: String,
    },
    /// The mount at the mount point does not answer (a hung server?).
    #[error(
        "{} is a mount point ({what}) that does not answer within {secs} s \
         (a hung server?); `umount -l {}` detaches it",
        mountpoint.display(),
        mountpoint.display()
    )]
    Hung {
        /// The mount point.
        mountpoint: PathBuf,
        /// What is mounted there.
        what: String,
        /// How long it was given.
        secs: u64,
    },
    /// Stale mounts keep coming back at the mount point.
    #[error(
        "{} still has mounts on it after clearing {cleared} stale ones; look at `findmnt {}`",
        mountpoint.display(),
        mountpoint.display()
    )]
    TooManyStacked {
        /// The mount point.
        mountpoint: PathBuf,
        /// How many were cleared.
        cleared: usize,
    },
    /// A view (or anything) that should be mounted is not.
    #[error("{what} is not mounted{note}")]
    NotMounted {
        /// What (`view "web1"`).
        what: String,
        /// More about it (`, though pid 12 holds ... (still starting?)`).
        note: String,
    },
    /// The path is not a mount point.
    #[error("{} is not a mount point", path.display())]
    NotAMountPoint {
        /// The path.
        path: PathBuf,
    },
    /// A process uses the mount: it cannot be unmounted without `--lazy`.
    #[error(
        "{} is busy: a process has a file open or its working directory there \
         (`fuser -vm {}` shows which); stop it, or `vskel unmount --lazy` to detach \
         the mount now and let it go when its last user leaves",
        mountpoint.display(),
        mountpoint.display()
    )]
    Busy {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// Only root may unmount it.
    #[error("{}: only root can unmount it", mountpoint.display())]
    NotPermitted {
        /// The mount point.
        mountpoint: PathBuf,
    },
    /// The mount there is not vskel's: `umount` is the tool for it.
    #[error("{} is not a vskel mount (it is {what}); use umount", mountpoint.display())]
    NotAVskelMount {
        /// The mount point.
        mountpoint: PathBuf,
        /// What is mounted there.
        what: String,
    },
    /// The vserver named is a tree, not a view: nothing to mount or
    /// unmount.
    #[error(
        "vserver \"{name}\" is a tree at {}, not a view: there is nothing to unmount",
        root.display()
    )]
    NotAView {
        /// The vserver.
        name: String,
        /// Its tree.
        root: PathBuf,
    },
    /// The pid file could not be locked: it keeps being replaced.
    #[error("{}: could not take the lock (the file keeps being replaced)", path.display())]
    PidFileContended {
        /// The pid file.
        path: PathBuf,
    },
}

impl MountError {
    /// A stable name for the kind of error (`already_mounted`, `busy`,
    /// ...), for callers that serialize errors.
    pub fn kind(&self) -> &'static str {
        match self {
            MountError::AlreadyMounted { .. } => "already_mounted",
            MountError::AlreadyServed { .. } => "already_served",
            MountError::Occupied { .. } => "occupied",
            MountError::Hung { .. } => "hung",
            MountError::TooManyStacked { .. } => "too_many_stacked",
            MountError::NotMounted { .. } => "not_mounted",
            MountError::NotAMountPoint { .. } => "not_a_mount_point",
            MountError::Busy { .. } => "busy",
            MountError::NotPermitted { .. } => "not_permitted",
            MountError::NotAVskelMount { .. } => "not_a_vskel_mount",
            MountError::NotAView { .. } => "not_a_view",
            MountError::PidFileContended { .. } => "pid_file_contended",
        }
    }

    /// Whether the user asked for something that cannot be (a usage
    /// error, exit 2) rather than an operation that failed.
    pub fn is_usage(&self) -> bool {
        matches!(self, MountError::NotAView { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_distinct() {
        let path = PathBuf::from("/m");
        let errors = [
            MountError::AlreadyMounted {
                mountpoint: path.clone(),
                what: String::new(),
            },
            MountError::AlreadyServed {
                what: String::new(),
                pid: None,
                at: None,
            },
            MountError::Occupied {
                mountpoint: path.clone(),
                what: String::new(),
                detail: String::new(),
            },
            MountError::Hung {
                mountpoint: path.clone(),
                what: String::new(),
                secs: 1,
            },
            MountError::TooManyStacked {
                mountpoint: path.clone(),
                cleared: 1,
            },
            MountError::NotMounted {
                what: String::new(),
                note: String::new(),
            },
            MountError::NotAMountPoint { path: path.clone() },
            MountError::Busy {
                mountpoint: path.clone(),
            },
            MountError::NotPermitted {
                mountpoint: path.clone(),
            },
            MountError::NotAVskelMount {
                mountpoint: path.clone(),
                what: String::new(),
            },
            MountError::NotAView {
                name: String::new(),
                root: path.clone(),
            },
            MountError::PidFileContended { path },
        ];
        let kinds: std::collections::BTreeSet<_> = errors.iter().map(MountError::kind).collect();
        assert_eq!(kinds.len(), errors.len());
    }
}
