//! The library's error type and how each kind maps to an exit code.
//!
//! `Usage` covers everything the user typed or configured wrongly (exit 2);
//! everything else is an operational failure (exit 1).

use std::io;
use std::path::{Path, PathBuf};

mod mount;
pub use mount::MountError;

/// Exit code for success.
pub const EXIT_OK: i32 = 0;
/// Exit code for an operational failure.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code for a usage error (bad arguments, bad config).
pub const EXIT_USAGE: i32 = 2;

/// Everything that can go wrong in vskel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input on the command line: nothing was written.
    #[error("{0}")]
    Usage(String),
    /// The configuration is wrong: names file, line and key.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A system call failed on a path.
    #[error("{path}: {action}: {source}")]
    Io {
        /// What was being done ("open", "rename into place", ...).
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// What the system call said.
        #[source]
        source: io::Error,
    },
    /// A mount-point operation was refused or failed.
    #[error(transparent)]
    Mount(#[from] MountError),
    /// Any other operational failure, already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The process exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) | Error::Config(_) => EXIT_USAGE,
            Error::Mount(e) if e.is_usage() => EXIT_USAGE,
            Error::Io { .. } | Error::Mount(_) | Error::Failed(_) => EXIT_FAILURE,
        }
    }

    /// A stable name for the kind of error (`usage`, `config`, `io`,
    /// `failed`, or a [`MountError::kind`]), for callers
    /// that serialize errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Usage(_) => "usage",
            Error::Config(_) => "config",
            Error::Io { .. } => "io",
            Error::Mount(e) => e.kind(),
            Error::Failed(_) => "failed",
        }
    }

    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: impl AsRef<Path>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            action,
            path: path.as_ref().to_path_buf(),
            source: source.into(),
        }
    }
}

impl From<crate::validate::InvalidInput> for Error {
    fn from(e: crate::validate::InvalidInput) -> Self {
        Error::Usage(e.to_string())
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
