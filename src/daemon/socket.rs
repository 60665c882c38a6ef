//! The control socket file: made in a directory only root can write
//! (created 0700 when missing), bound and set to mode 0600 before it
//! listens (so no one connects while it is still open to others), a
//! stale socket file replaced only when nothing answers on it, and peers
//! checked by their credentials (`SO_PEERCRED`).

use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::error::{Error, Result};

/// Mode of the socket file: connecting needs write permission on it.
pub const SOCKET_MODE: u32 = 0o600;
/// Mode of the socket's directory when it has to be made.
pub const DIR_MODE: u32 = 0o700;
/// Longest path `sun_path` takes (108 bytes with its NUL).
const SUN_PATH_MAX: usize = 107;
/// Connections waiting to be accepted.
const BACKLOG: i32 = 128;

/// Listen at `path`: its directory made (0700) if missing and refused if
/// others may write to it; a socket file nothing listens on replaced; a
/// live one (another server) or any other file there refused.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if path.as_os_str().len() > SUN_PATH_MAX {
        return Err(Error::Failed(format!(
            "{}: too long for a Unix socket path ({SUN_PATH_MAX} bytes at most)",
            path.display()
        )));
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    require_private_dir(dir)?;
    remove_stale(path)?;
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("make a socket for", path, e))?;
    let addr = SocketAddrUnix::new(path).map_err(|e| Error::io("bind", path, e))?;
    rustix::net::bind(&fd, &addr).map_err(|e| Error::io("bind", path, e))?;
    // Before listen(): until then a connect is refused, whatever the mode.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(|e| Error::io("chmod", path, e))?;
    rustix::net::listen(&fd, BACKLOG).map_err(|e| Error::io("listen on", path, e))?;
    Ok(UnixListener::from(fd))
}

/// Make `dir` (mode 0700) if it is missing; refuse it when it is not a
/// directory of ours that only we may write to (another user could then
/// swap the socket for one of theirs).
fn require_private_dir(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("make the socket's directory", dir, e)),
    }
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("stat", dir, e))?;
    if !meta.is_dir()
        || meta.uid() != rustix::process::geteuid().as_raw()
        || meta.mode() & 0o022 != 0
    {
        return Err(Error::Failed(format!(
            "{}: the control socket's directory must be a directory owned by uid {} that \
             no one else may write to (mode 0700, say)",
            dir.display(),
            rustix::process::geteuid().as_raw()
        )));
    }
    Ok(())
}

/// Remove the socket file at `path` if nothing listens on it (a server
/// that died left it); refuse a live one and anything not a socket.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {}
        Ok(_) => {
            return Err(Error::Failed(format!(
                "{}: exists and is not a socket; not replacing it",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("stat", path, e)),
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(Error::Failed(format!(
            "{}: another server listens there already",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| Error::io("remove the stale socket", path, e))
        }
        Err(e) => Err(Error::io("connect to the old socket", path, e)),
    }
}

/// The peer's uid, if it can be told.
pub fn peer_uid(stream: &UnixStream) -> std::io::Result<u32> {
    Ok(rustix::net::sockopt::socket_peercred(stream.as_fd())?
        .uid
        .as_raw())
}
