//! One client connection: bounded request lines read against a deadline,
//! each answered with one reply line, until the client leaves, sends a
//! line over [`MAX_LINE`], stops mid-line or stays silent too long.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixStream;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, warn};

use super::protocol::Handler;
use super::protocol::{HELLO, MAX_LINE, encode, error_reply, hello_reply, ok_reply, parse_request};

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 64 * 1024;

/// What reading the next request line found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line, without its newline.
    Full(Vec<u8>),
    /// The client closed the connection mid-line.
    Truncated,
    /// The client closed the connection between lines.
    Eof,
    /// More than [`MAX_LINE`] bytes without a newline.
    TooLong,
    /// The line did not come within the idle timeout.
    Idle,
}

/// Read the next line, all of it before `deadline`, keeping at most
/// [`MAX_LINE`] bytes of it.
fn next_line(reader: &mut BufReader<&UnixStream>, deadline: Instant) -> std::io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Line::Idle);
        }
        reader.get_ref().set_read_timeout(Some(left))?;
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Line::Idle);
            }
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if line.is_empty() {
                Line::Eof
            } else {
                Line::Truncated
            });
        }
        let (part, newline) = match chunk.iter().position(|b| *b == b'\n') {
            Some(at) => (&chunk[..at], true),
            None => (chunk, false),
        };
        if line.len() + part.len() > MAX_LINE {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(part);
        let used = part.len() + usize::from(newline);
        reader.consume(used);
        if newline {
            return Ok(Line::Full(line));
        }
    }
}

/// The reply to one request line.
fn answer(line: &[u8], handler: &dyn Handler) -> Value {
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(message) => return error_reply(&message),
    };
    if request.cmd == HELLO {
        return hello_reply(handler.hello());
    }
    // A handler that panics fails its request, not the server.
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        handler.handle(&request.cmd, &request.args)
    })) {
        Ok(Ok(data)) => ok_reply(data),
        Ok(Err(message)) => error_reply(&message),
        Err(_) => {
            warn!("the {:?} command panicked", request.cmd);
            error_reply(&format!(
                "the {:?} command failed (internal error)",
                request.cmd
            ))
        }
    }
}

/// Serve `stream` until it ends: each request must arrive whole within
/// `idle` of the previous reply (or of the connection).
pub(super) fn serve(stream: &UnixStream, handler: &dyn Handler, idle: Duration) {
    if let Err(e) = stream.set_write_timeout(Some(idle)) {
        debug!("control connection: {e}");
        return;
    }
    let mut reader = BufReader::with_capacity(READ_CHUNK, stream);
    loop {
        // The reply, and whether the connection goes on after it.
        let (reply, goes_on) = match next_line(&mut reader, Instant::now() + idle) {
            Ok(Line::Full(line)) => (answer(&line, handler), true),
            Ok(Line::Eof) => return,
            Ok(Line::Truncated) => (
                error_reply("the connection ended in the middle of a request (no newline)"),
                false,
            ),
            Ok(Line::TooLong) => (
                error_reply(&format!(
                    "request line longer than {MAX_LINE} bytes: closing the connection"
                )),
                false,
            ),
            Ok(Line::Idle) => (
                error_reply(&format!(
                    "no request within {} s: closing the connection",
                    idle.as_secs_f64()
                )),
                false,
            ),
            Err(e) => {
                debug!("control connection: {e}");
                return;
            }
        };
        if let Err(e) = send(stream, &encode(&reply)) {
            debug!("control connection: cannot reply: {e}");
            return;
        }
        if !goes_on {
            return;
        }
    }
}

/// Send `bytes` whole (without SIGPIPE if the peer is gone).
pub(super) fn send(stream: &UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    let mut rest = bytes;
    while !rest.is_empty() {
        match rustix::net::send(stream, rest, rustix::net::SendFlags::NOSIGNAL) {
            Ok(n) => rest = &rest[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
