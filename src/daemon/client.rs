//! The client side of the control socket: connect (telling "no daemon
//! listens" apart from failures), send requests and read their replies,
//! each within a timeout.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::connection::send;
use super::protocol::{MAX_LINE, encode};
use crate::error::{Error, Result};

/// How long [`request`] waits for a reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to the daemon.
#[derive(Debug)]
pub struct Connection {
    socket: PathBuf,
    reader: BufReader<UnixStream>,
}

/// Connect to the daemon at `socket`; `Ok(None)` when none listens there
/// (no socket file, or a stale one).
pub fn connect(socket: &Path) -> Result<Option<Connection>> {
    match UnixStream::connect(socket) {
        Ok(stream) => Ok(Some(Connection {
            socket: socket.to_path_buf(),
            reader: BufReader::new(stream),
        })),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(Error::io("connect to the daemon at", socket, e)),
    }
}

impl Connection {
    /// Send `request` and wait up to `timeout` for its reply, returned
    /// whole (`"ok": false` replies included).
    pub fn ask(&mut self, request: &Value, timeout: Duration) -> Result<Value> {
        let io = |what: &'static str, e: std::io::Error| Error::io(what, &self.socket, e);
        let stream = self.reader.get_ref();
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|()| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| io("set a timeout on", e))?;
        send(stream, &encode(request)).map_err(|e| io("send a request to", e))?;
        let mut line = Vec::new();
        let max = u64::try_from(MAX_LINE).unwrap_or(u64::MAX) + 1;
        let read = (&mut self.reader)
            .take(max)
            .read_until(b'\n', &mut line)
            .map_err(|e| io("read the reply from", e))?;
        if read == 0 || line.last() != Some(&b'\n') {
            return Err(Error::Failed(format!(
                "{}: the daemon closed the connection without a whole reply",
                self.socket.display()
            )));
        }
        serde_json::from_slice(&line).map_err(|e| {
            Error::Failed(format!(
                "{}: the daemon's reply is not JSON: {e}",
                self.socket.display()
            ))
        })
    }
}

/// Send `request` to the daemon at `socket` (on a connection of its
/// own, within [`REQUEST_TIMEOUT`]): the data of its `"ok": true`
/// reply; an error for an `"ok": false` one, for no daemon and for no
/// reply in time.
pub fn request(socket: &Path, request: &Value) -> Result<Value> {
    let Some(mut connection) = connect(socket)? else {
        return Err(Error::Failed(format!(
            "no daemon listens at {}",
            socket.display()
        )));
    };
    let reply = connection.ask(request, REQUEST_TIMEOUT)?;
    match reply.get("ok") {
        Some(Value::Bool(true)) => Ok(reply),
        _ => Err(Error::Failed(format!(
            "the daemon: {}",
            reply["error"]
                .as_str()
                .unwrap_or("an error reply without a message")
        ))),
    }
}
