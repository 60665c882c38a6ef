//! The control socket server: accepts connections on its own thread,
//! refuses peers that are not root and connections beyond a bound, and
//! serves each accepted connection on a thread of its own (so a slow or
//! silent client never holds up the others), answering requests with the
//! daemon's [`Handler`].

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tracing::{debug, warn};

use super::connection::{self, send};
use super::protocol::{Handler, encode, error_reply};
use super::socket::{bind, peer_uid};
use crate::error::Result;
use crate::served_socket::ServedSocket;

/// How long a client may take to send a request (or stay silent between
/// requests) before its connection is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are told the server is busy.
pub const MAX_CONNECTIONS: usize = 128;
/// How long a refusal may take to send.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed accept (e.g. out of descriptors) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Where and how to serve the control socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The socket's path.
    pub socket: PathBuf,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

impl Server {
    /// A server at `socket` with the default limits.
    pub fn new(socket: impl Into<PathBuf>) -> Server {
        Server {
            socket: socket.into(),
            idle_timeout: IDLE_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        }
    }

    /// Bind the socket (see [`super::socket::bind`]) and serve it with
    /// `handler` until the returned [`Listening`] is dropped.
    pub fn listen(&self, handler: Arc<dyn Handler>) -> Result<Listening> {
        let path = &self.socket;
        let active = Arc::new(AtomicUsize::new(0));
        let limits = self.clone();
        ServedSocket::start(
            bind(path)?,
            path,
            "vskel-daemon-accept",
            move |listener, stopping| {
                Accept {
                    listener,
                    stopping,
                    handler,
                    active,
                    limits,
                }
                .run()
            },
        )
    }
}

/// A served control socket; dropping it stops accepting and removes the
/// socket file (connections being served finish on their own threads).
pub type Listening = ServedSocket;

/// What the accepting thread works with.
struct Accept {
    listener: Arc<UnixListener>,
    stopping: Arc<AtomicBool>,
    handler: Arc<dyn Handler>,
    /// Connections being served.
    active: Arc<AtomicUsize>,
    limits: Server,
}

impl Accept {
    fn run(self) {
        let shown = self.limits.socket.display().to_string();
        loop {
            let accepted = self.listener.accept();
            if self.stopping.load(Ordering::Acquire) {
                return;
            }
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    warn!("{shown}: accept: {e}");
                    std::thread::sleep(ACCEPT_RETRY);
                    continue;
                }
            };
            match peer_uid(&stream) {
                Ok(0) => {}
                Ok(uid) => {
                    warn!("{shown}: refused a connection from uid {uid}");
                    refuse(
                        &stream,
                        &format!("root only: uid {uid} may not use this socket"),
                    );
                    continue;
                }
                Err(e) => {
                    warn!("{shown}: no peer credentials, connection refused: {e}");
                    refuse(&stream, "root only: the peer's credentials are unknown");
                    continue;
                }
            }
            let Some(slot) = Slot::take(&self.active, self.limits.max_connections) else {
                debug!("{shown}: busy, a connection refused");
                refuse(
                    &stream,
                    &format!(
                        "busy: {} connections are being served; try again",
                        self.limits.max_connections
                    ),
                );
                continue;
            };
            let handler = self.handler.clone();
            let idle = self.limits.idle_timeout;
            let spawned = std::thread::Builder::new()
                .name("vskel-daemon-conn".into())
                .spawn(move || {
                    let _slot = slot;
                    connection::serve(&stream, &*handler, idle);
                });
            if let Err(e) = spawned {
                warn!("{shown}: no thread for a connection: {e}");
            }
        }
    }
}

/// One error line, then the connection closes (when `stream` drops).
fn refuse(stream: &UnixStream, message: &str) {
    let sent = stream
        .set_write_timeout(Some(REFUSAL_TIMEOUT))
        .and_then(|()| send(stream, &encode(&error_reply(message))));
    if let Err(e) = sent {
        debug!("could not send a refusal: {e}");
    }
}

/// A place among the connections served at once, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    /// A place if fewer than `max` are taken.
    fn take(active: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(active.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
