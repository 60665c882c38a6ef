//! The control socket of a serving view: lets another process (a `vskel
//! sync` flattening the mounted view) hold the view's writes.
//!
//! Protocol, one line each way over a Unix stream socket:
//!
//! ```text
//! client: hold       server: held       (all changes in flight are done,
//!                                        new ones wait)
//! client: release    server: released   (changes go on)
//! anything else      server: error ...
//! ```
//!
//! A hold lasts until `release` or until the connection ends for any
//! reason, so a sync killed with SIGKILL never leaves the view frozen.
//! Only peers running as root or as the server's own user are served
//! (peer credentials), and the socket file is mode 0600.
//!
//! `sun_path` holds 107 bytes: a longer socket path is bound and
//! connected through `/proc/self/fd/N/NAME` of its opened directory, so a
//! deep vservers root never leaves a view without its control socket.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{debug, info, warn};

use super::gate::WriteGate;
use crate::error::{Error, Result};
use crate::served_socket::ServedSocket;

/// Asks for a hold.
pub const HOLD: &str = "hold";
/// The answer once the hold is in place.
pub const HELD: &str = "held";
/// Ends a hold.
pub const RELEASE: &str = "release";
/// The answer once the hold is over.
pub const RELEASED: &str = "released";

/// Mode of the socket file: connecting needs write permission on it.
const SOCKET_MODE: u32 = 0o600;
/// Longest path `sun_path` takes (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;
/// Longest request line read (the requests are a few bytes).
const MAX_LINE: u64 = 256;
/// How long a client waits for `held` (the server first waits for the
/// writes in flight, which are usually short).
pub const HOLD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long dropping a [`Hold`] waits for `released`.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a failed accept (e.g. out of descriptors) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// A listening control socket; dropping it stops accepting and removes
/// the socket file (holds already granted end with their connections).
pub type ControlServer = ServedSocket;

/// Serve the control socket at `path` for `gate`: a stale socket file
/// there is replaced (one server per path is the caller's business, as
/// the view's pid file lock ensures).
pub fn listen(path: &Path, gate: Arc<WriteGate>) -> Result<ControlServer> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)
            .map_err(|e| Error::io("remove the stale control socket", path, e))?,
        Ok(_) => {
            return Err(Error::Failed(format!(
                "{}: exists and is not a socket; not replacing it with the view's control socket",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("stat", path, e)),
    }
    let listener = {
        let (short, _dir) = short_path(path)?;
        UnixListener::bind(&short).map_err(|e| Error::io("bind the control socket", path, e))?
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| Error::io("chmod the control socket", path, e))?;
    let shown = path.display().to_string();
    ServedSocket::start(
        listener,
        path,
        "vskel-control",
        move |listener, stopping| accept_loop(&listener, &stopping, &gate, &shown),
    )
}

fn accept_loop(listener: &UnixListener, stopping: &AtomicBool, gate: &Arc<WriteGate>, shown: &str) {
    loop {
        let accepted = listener.accept();
        if stopping.load(Ordering::Acquire) {
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
        if !peer_allowed(&stream, shown) {
            continue; // dropping it closes it
        }
        let gate = gate.clone();
        let name = shown.to_string();
        let spawned = std::thread::Builder::new()
            .name("vskel-control-conn".into())
            .spawn(move || {
                if let Err(e) = serve_client(stream, &gate) {
                    debug!("{name}: control connection: {e}");
                }
            });
        if let Err(e) = spawned {
            warn!("{shown}: no thread for a control connection: {e}");
        }
    }
}

/// Root and the server's own user may hold the view; others are refused.
fn peer_allowed(stream: &UnixStream, shown: &str) -> bool {
    match rustix::net::sockopt::socket_peercred(stream) {
        Ok(cred) if cred.uid.is_root() || cred.uid == rustix::process::getuid() => true,
        Ok(cred) => {
            warn!(
                "{shown}: refused a control connection from uid {} (pid {})",
                cred.uid.as_raw(),
                cred.pid.as_raw_nonzero()
            );
            false
        }
        Err(e) => {
            warn!("{shown}: no peer credentials, connection refused: {e}");
            false
        }
    }
}

/// Answer one client's requests until it goes away.
fn serve_client(stream: UnixStream, gate: &WriteGate) -> std::io::Result<()> {
    let out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut hold = None;
    loop {
        let mut line = String::new();
        if (&mut lines).take(MAX_LINE).read_line(&mut line)? == 0 {
            if hold.is_some() {
                info!("a control client left without release: its hold ends");
            }
            return Ok(()); // EOF: a hold ends with the connection
        }
        let answer = match line.trim_end_matches('\n') {
            HOLD => {
                if hold.is_none() {
                    hold = Some(gate.hold());
                    debug!("view writes held");
                }
                HELD.to_string()
            }
            RELEASE => {
                if hold.take().is_some() {
                    debug!("view writes released");
                }
                RELEASED.to_string()
            }
            other => format!("error unknown request {other:?}"),
        };
        send_line(&out, &answer)?;
    }
}

/// A hold on a serving view's writes; dropping it releases them (as does
/// the end of this process, however it ends).
///
/// While it lasts, changes through the view wait: the holder must not
/// write through the mount itself (it would wait for itself).
#[derive(Debug)]
pub struct Hold {
    path: PathBuf,
    lines: BufReader<UnixStream>,
    released: bool,
}

/// Hold the writes of the view served at control socket `path`: returns
/// once every change in flight is done and new ones wait. `Ok(None)` when
/// no server listens there (no socket file, or a stale one).
pub fn hold(path: &Path) -> Result<Option<Hold>> {
    let stream = {
        let (short, _dir) = match short_path(path) {
            Ok(short) => short,
            Err(_) if !path.parent().is_some_and(Path::exists) => return Ok(None),
            Err(e) => return Err(e),
        };
        match UnixStream::connect(&short) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io("connect to the view's control socket", path, e)),
        }
    };
    let mut hold = Hold {
        path: path.to_path_buf(),
        lines: BufReader::new(stream),
        released: true,
    };
    hold.ask(HOLD, HELD, HOLD_TIMEOUT)?;
    hold.released = false;
    Ok(Some(hold))
}

impl Hold {
    /// Where the view's control socket is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// End the hold, reporting a failure (dropping the hold ends it too).
    pub fn release(mut self) -> Result<()> {
        self.released = true;
        self.ask(RELEASE, RELEASED, RELEASE_TIMEOUT)
    }

    /// Send `request`, wait up to `timeout` for `expected`.
    fn ask(&mut self, request: &str, expected: &str, timeout: Duration) -> Result<()> {
        let failed = |what: String| {
            Error::Failed(format!(
                "{}: view control socket: {what}",
                self.path.display()
            ))
        };
        let closed = || {
            failed(format!(
                "the server closed the connection on {request:?} \
                 (only root and the server's user may hold a view)"
            ))
        };
        let stream = self.lines.get_ref();
        let sent = stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .and_then(|()| send_line(stream, request));
        match sent {
            Ok(()) => {}
            Err(e) if is_closed(&e) => return Err(closed()),
            Err(e) => {
                return Err(Error::io(
                    "write to the view's control socket",
                    &self.path,
                    e,
                ));
            }
        }
        let mut line = String::new();
        match (&mut self.lines).take(MAX_LINE).read_line(&mut line) {
            Ok(0) => Err(closed()),
            Err(e) if is_closed(&e) => Err(closed()),
            Ok(_) if line.trim_end_matches('\n') == expected => Ok(()),
            Ok(_) => Err(failed(format!(
                "asked {request:?}, got {:?}",
                line.trim_end()
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(failed(format!(
                    "no answer to {request:?} within {} s",
                    timeout.as_secs()
                )))
            }
            Err(e) => Err(Error::io("read the view's control socket", &self.path, e)),
        }
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        // Closing the connection would end the hold too; asking says when.
        if let Err(e) = self.ask(RELEASE, RELEASED, RELEASE_TIMEOUT) {
            warn!("releasing the view: {e}");
        }
    }
}

/// Send `text` and a newline (without SIGPIPE if the peer is gone).
fn send_line(stream: &UnixStream, text: &str) -> std::io::Result<()> {
    let line = format!("{text}\n");
    let mut rest = line.as_bytes();
    while !rest.is_empty() {
        match rustix::net::send(stream, rest, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The error says the other end closed the connection.
fn is_closed(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
    )
}

/// `path` in a form `bind`/`connect` take: itself if it fits in
/// `sun_path`, else `/proc/self/fd/N/NAME` through its directory opened
/// as N (kept open by the returned descriptor while the path is used).
fn short_path(path: &Path) -> Result<(PathBuf, Option<OwnedFd>)> {
    if path.as_os_str().len() <= SUN_PATH_MAX {
        return Ok((path.to_path_buf(), None));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::Failed(format!(
            "{}: not a socket path",
            path.display()
        )));
    };
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| Error::io("open the control socket's directory", dir, e))?;
    let mut short = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    short.push(name);
    if short.as_os_str().len() > SUN_PATH_MAX {
        return Err(Error::Failed(format!(
            "{}: the socket's name is too long for a Unix socket ({} bytes at most)",
            path.display(),
            SUN_PATH_MAX
        )));
    }
    Ok((short, Some(fd)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// How long "does not happen" is watched for.
    const BLOCKED: Duration = Duration::from_millis(200);

    /// Whether a change can run now (it would wait during a hold).
    fn can_change(gate: &Arc<WriteGate>) -> bool {
        let (tx, rx) = mpsc::channel();
        let g = gate.clone();
        let t = std::thread::spawn(move || {
            let _w = g.write();
            let _ = tx.send(());
        });
        let done = rx.recv_timeout(BLOCKED).is_ok();
        if !done {
            // Let it finish once the test ends its hold.
            std::mem::drop(t);
        } else {
            t.join().unwrap();
        }
        done
    }

    fn socket_in(dir: &Path, depth: usize) -> PathBuf {
        let mut path = dir.to_path_buf();
        for _ in 0..depth {
            path.push("a-rather-long-directory-name-to-pass-sun-path");
        }
        std::fs::create_dir_all(&path).unwrap();
        path.join("control.sock")
    }

    #[test]
    fn hold_release_and_drop() {
        let dir = tempfile::tempdir().unwrap();
        for depth in [0, 3] {
            let path = socket_in(dir.path(), depth);
            assert_eq!(path.as_os_str().len() > SUN_PATH_MAX, depth > 0);
            let gate = Arc::new(WriteGate::default());
            let server = listen(&path, gate.clone()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, SOCKET_MODE);
            let held = hold(&path).unwrap().expect("a live server");
            assert!(!can_change(&gate), "a change ran during the hold");
            held.release().unwrap();
            assert!(can_change(&gate));
            let held = hold(&path).unwrap().unwrap();
            drop(held);
            assert!(can_change(&gate));
            drop(server);
            assert!(!path.exists(), "the socket file outlived its server");
            assert!(hold(&path).unwrap().is_none());
        }
    }

    #[test]
    fn a_closed_connection_ends_its_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let gate = Arc::new(WriteGate::default());
        let _server = listen(&path, gate.clone()).unwrap();
        let mut raw = UnixStream::connect(&path).unwrap();
        raw.write_all(b"hold\n").unwrap();
        let mut reply = String::new();
        BufReader::new(raw.try_clone().unwrap())
            .read_line(&mut reply)
            .unwrap();
        assert_eq!(reply, "held\n");
        assert!(!can_change(&gate));
        drop(raw);
        // The server notices the end of the connection shortly.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !can_change(&gate) {
            assert!(
                std::time::Instant::now() < deadline,
                "the hold outlived its client"
            );
        }
    }

    #[test]
    fn only_root_and_the_servers_user_may_hold() {
        if !rustix::process::getuid().is_root() {
            eprintln!("skipped: needs root to connect as another user");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("control.sock");
        let gate = Arc::new(WriteGate::default());
        let _server = listen(&path, gate.clone()).unwrap();
        // The mode keeps others out before the peer check does.
        let as_nobody = |path: PathBuf| {
            std::thread::spawn(move || {
                // This thread only (the raw syscall, not glibc's setuid).
                let nobody = rustix::process::Uid::from_raw(NOBODY);
                rustix::thread::set_thread_res_gid(
                    rustix::process::Gid::from_raw(NOBODY),
                    rustix::process::Gid::from_raw(NOBODY),
                    rustix::process::Gid::from_raw(NOBODY),
                )
                .unwrap();
                rustix::thread::set_thread_res_uid(nobody, nobody, nobody).unwrap();
                hold(&path).map(|h| h.is_some())
            })
            .join()
            .unwrap()
        };
        let err = as_nobody(path.clone()).unwrap_err().to_string();
        assert!(err.contains("Permission denied"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = as_nobody(path.clone()).unwrap_err().to_string();
        assert!(err.contains("closed the connection"), "{err}");
        assert!(can_change(&gate), "a refused peer got a hold");
    }

    /// The uid and gid of `nobody`.
    const NOBODY: u32 = 65534;

    #[test]
    fn unknown_requests_get_an_error_and_no_socket_means_no_server() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        assert!(hold(&path).unwrap().is_none(), "no socket file");
        assert!(
            hold(&dir.path().join("gone/control.sock"))
                .unwrap()
                .is_none()
        );
        // A stale socket file (nobody listens) is no server either, and a
        // new server replaces it.
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        assert!(hold(&path).unwrap().is_none(), "a stale socket");
        let gate = Arc::new(WriteGate::default());
        let _server = listen(&path, gate).unwrap();
        let raw = UnixStream::connect(&path).unwrap();
        let mut lines = BufReader::new(raw.try_clone().unwrap());
        (&raw).write_all(b"freeze\n").unwrap();
        let mut reply = String::new();
        lines.read_line(&mut reply).unwrap();
        assert!(reply.starts_with("error "), "{reply:?}");
        // Something else at the path is left alone.
        let other = dir.path().join("file");
        std::fs::write(&other, "x").unwrap();
        let gate = Arc::new(WriteGate::default());
        assert!(listen(&other, gate).is_err());
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "x");
    }
}
