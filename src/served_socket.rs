//! A listening Unix socket served by an accepting thread, and its end:
//! dropping a [`ServedSocket`] shuts the listener down (a blocked
//! `accept()` then fails and the thread returns), joins the thread and
//! removes the socket file, only if the file at the path is still the one
//! bound. Used by a view's control socket and the daemon's.

use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use tracing::{debug, warn};

use crate::error::{Error, Result};

/// A socket being served; see the module doc.
#[derive(Debug)]
pub struct ServedSocket {
    path: PathBuf,
    /// The socket file bound, to remove only ours.
    file: (u64, u64),
    listener: Arc<UnixListener>,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServedSocket {
    /// Serve `listener`, bound at `path`, on a thread named `name` running
    /// `accept(listener, stopping)` (it returns once `stopping` is set and
    /// an accept fails).
    pub fn start(
        listener: UnixListener,
        path: &Path,
        name: &str,
        accept: impl FnOnce(Arc<UnixListener>, Arc<AtomicBool>) + Send + 'static,
    ) -> Result<ServedSocket> {
        let bound =
            std::fs::symlink_metadata(path).map_err(|e| Error::io("stat the socket", path, e))?;
        let listener = Arc::new(listener);
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = {
            let (listener, stopping) = (listener.clone(), stopping.clone());
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || accept(listener, stopping))
                .map_err(|e| Error::io("start the accepting thread for", path, e))?
        };
        debug!("socket listening at {}", path.display());
        Ok(ServedSocket {
            path: path.to_path_buf(),
            file: (bound.dev(), bound.ino()),
            listener,
            stopping,
            thread: Some(thread),
        })
    }

    /// Where the socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ServedSocket {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // A shut down listening socket makes a blocked accept() fail.
        if let Err(e) = rustix::net::shutdown(self.listener.as_fd(), rustix::net::Shutdown::Both) {
            warn!("stopping the socket {}: {e}", self.path.display());
        } else if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the accepting thread of {} panicked", self.path.display());
        }
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.file => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("could not remove {}: {e}", self.path.display());
                }
            }
            _ => debug!("{} is no longer ours", self.path.display()),
        }
    }
}
