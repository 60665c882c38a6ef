//! Starting a server in the background, without `fork()` (vskel has no
//! unsafe code): the command re-executes its own binary in foreground mode
//! and waits until the new process says that its mount is live.
//!
//! How the two talk: the parent makes a pipe and hands its write end to the
//! child as the child's stdin, telling it so with the hidden option
//! `--ready-fd 0` (safe Rust can reach fds 0, 1 and 2 only, so the pipe
//! travels on one of them; stdout and stderr go to the log file). The child
//! writes one byte once the mount is live, then points its stdin at
//! `/dev/null`. The parent returns on that byte. If the pipe closes without
//! it, the child died: the parent fails with the end of the log file. The
//! child runs in a process group of its own, with `/` as its working
//! directory (it never keeps a directory busy), and keeps serving after
//! the parent is gone.
//!
//! The child also tells systemd it is ready (`READY=1` on `$NOTIFY_SOCKET`)
//! when it runs under a `Type=notify` unit.

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::{Pid, Signal, kill_process};
use tracing::{debug, warn};

use super::pidfile::wait_for_exit;
use crate::error::{Error, Result};

/// The hidden option telling a foreground server which fd carries the
/// readiness pipe.
pub const READY_FD_OPTION: &str = "--ready-fd";
/// The fd the parent passes the pipe on: the child's stdin.
pub const READY_FD: i32 = 0;
/// How long the parent waits for the child's mount to go live.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a child that missed [`READY_TIMEOUT`] gets to stop after
/// SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Lines of the log shown when the child fails.
pub const LOG_TAIL_LINES: usize = 20;
/// Mode of a new log file.
const LOG_MODE: u32 = 0o640;
/// The byte the child writes when it is ready (any byte would do).
const READY_BYTE: u8 = b'R';
/// The environment variable systemd passes to `Type=notify` services.
const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// How a server is run.
pub enum How<'a, R> {
    /// In this process, until it is unmounted: once the mount is live,
    /// `on_ready` gets the report and then `readiness` is notified.
    Foreground {
        /// Whom to tell that the mount is live.
        readiness: Readiness,
        /// Called with the report once the mount is live.
        on_ready: Box<dyn FnOnce(&R) + 'a>,
    },
    /// In the background: this binary run again in the foreground, with
    /// `global_args` (`--config PATH`, `--quiet`) before its command;
    /// returns once the mount is live.
    Background {
        /// The global options for the new process.
        global_args: Vec<OsString>,
    },
}

/// A server started in the background.
#[derive(Debug, Clone)]
pub struct Started {
    /// Its pid.
    pub pid: u32,
    /// Its log file (stdout and stderr, appended).
    pub log: PathBuf,
}

/// Run this binary with `args` followed by `--ready-fd 0` in the
/// background, its output appended to `log`, and wait until it reports
/// ready. `what` names the job in errors ("mounting view web1").
pub fn start_in_background(args: &[OsString], log: &Path, what: &str) -> Result<Started> {
    let program = std::env::current_exe().map_err(|e| Error::io("find", "the vskel binary", e))?;
    let (mut log_file, log_start) = open_log(log, &program, args)?;
    let (ready_read, ready_write) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("make a pipe", "", e))?;
    let mut child = {
        // The command holds the pipe's write end until it is dropped: it
        // must be gone before waiting, or the parent never sees EOF.
        let mut command = Command::new(&program);
        command
            .args(args)
            .arg(READY_FD_OPTION)
            .arg(READY_FD.to_string())
            .stdin(Stdio::from(ready_write))
            .stdout(clone_log(&log_file, log)?)
            .stderr(clone_log(&log_file, log)?)
            .current_dir("/")
            .process_group(0);
        command
            .spawn()
            .map_err(|e| Error::io("start", &program, e))?
    };
    debug!("started {} as pid {}", program.display(), child.id());
    match wait_ready(&ready_read, READY_TIMEOUT)? {
        Ready::Yes => Ok(Started {
            pid: child.id(),
            log: log.to_path_buf(),
        }),
        Ready::Died => {
            let status = child
                .wait()
                .map(|s| s.to_string())
                .unwrap_or_else(|e| format!("status unknown: {e}"));
            Err(Error::Failed(format!(
                "{what} failed ({status}); the end of {}:\n{}",
                log.display(),
                log_tail(&mut log_file, log_start)
            )))
        }
        Ready::TimedOut => {
            stop(&mut child);
            Err(Error::Failed(format!(
                "{what}: the server was not ready within {} s and was stopped; \
                 the end of {}:\n{}",
                READY_TIMEOUT.as_secs(),
                log.display(),
                log_tail(&mut log_file, log_start)
            )))
        }
    }
}

/// Open (append) the log and write a header; returns it and where this
/// run's output starts.
fn open_log(log: &Path, program: &Path, args: &[OsString]) -> Result<(std::fs::File, u64)> {
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("make directory", dir, e))?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(LOG_MODE)
        .open(log)
        .map_err(|e| Error::io("open the log", log, e))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let command: Vec<String> = std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    writeln!(
        file,
        "--- {} (pid {} starting it at unix time {now})",
        command.join(" "),
        std::process::id()
    )
    .map_err(|e| Error::io("write", log, e))?;
    let start = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::io("seek", log, e))?;
    Ok((file, start))
}

fn clone_log(file: &std::fs::File, log: &Path) -> Result<Stdio> {
    file.try_clone()
        .map(Stdio::from)
        .map_err(|e| Error::io("duplicate the log's descriptor", log, e))
}

/// The last [`LOG_TAIL_LINES`] lines written to the log after `start`.
fn log_tail(file: &mut std::fs::File, start: u64) -> String {
    let mut text = String::new();
    if let Err(e) = file
        .seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_string(&mut text))
    {
        return format!("(cannot read the log: {e})");
    }
    tail_lines(&text, LOG_TAIL_LINES)
}

/// The last `n` lines of `text`, or a note that there were none.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if lines.is_empty() {
        return "(nothing was logged)".to_string();
    }
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// What the readiness pipe said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// The byte came.
    Yes,
    /// The pipe closed without it.
    Died,
    /// Nothing within the timeout.
    TimedOut,
}

fn wait_ready(pipe: &OwnedFd, timeout: Duration) -> Result<Ready> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Ready::TimedOut);
        }
        let left = Timespec::try_from(left).map_err(|_| {
            Error::Failed(format!("timeout {} s is out of range", timeout.as_secs()))
        })?;
        let mut fds = [PollFd::new(pipe, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => return Ok(Ready::TimedOut),
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::io("wait for the server", "its readiness pipe", e)),
        }
        let mut byte = [0u8; 1];
        match rustix::io::read(pipe, &mut byte) {
            Ok(0) => return Ok(Ready::Died),
            Ok(_) => return Ok(Ready::Yes),
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => return Err(Error::io("read", "the server's readiness pipe", e)),
        }
    }
}

/// Stop a child that did not get ready: SIGTERM, then SIGKILL.
fn stop(child: &mut Child) {
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        return;
    };
    if let Err(e) = kill_process(pid, Signal::TERM) {
        warn!("cannot stop pid {pid}: {e}");
    }
    if !wait_for_exit(child.id(), STOP_GRACE).unwrap_or(false)
        && let Err(e) = child.kill()
    {
        warn!("cannot kill pid {pid}: {e}");
    }
    if let Err(e) = child.wait() {
        warn!("cannot reap pid {pid}: {e}");
    }
}

/// The foreground server's side: tells whoever waits that the mount is
/// live.
#[derive(Debug)]
pub struct Readiness {
    fd: Option<i32>,
}

impl Readiness {
    /// From the hidden `--ready-fd N` option (0, 1 or 2: the standard
    /// streams, the only fds safe Rust can name), or none.
    pub fn from_option(fd: Option<i32>) -> Result<Readiness> {
        match fd {
            None | Some(0..=2) => Ok(Readiness { fd }),
            Some(other) => Err(Error::Usage(format!(
                "{READY_FD_OPTION} {other}: only 0, 1 or 2 can carry the readiness pipe"
            ))),
        }
    }

    /// The mount is live: write the byte on the readiness fd (then point
    /// that fd at `/dev/null`, closing the pipe), and tell systemd.
    pub fn notify(self) {
        if let Some(fd) = self.fd
            && let Err(e) = signal_pipe(fd)
        {
            warn!("cannot report readiness on fd {fd} (did the starting command die?): {e}");
        }
        notify_systemd();
    }
}

fn signal_pipe(fd: i32) -> std::io::Result<()> {
    let write =
        |stream: std::os::fd::BorrowedFd<'_>| rustix::io::write(stream, &[READY_BYTE]).map(|_| ());
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    match fd {
        0 => {
            write(std::io::stdin().as_fd())?;
            rustix::stdio::dup2_stdin(&null)?;
        }
        1 => {
            let stdout = std::io::stdout();
            let _flushed = stdout.lock().flush();
            write(stdout.as_fd())?;
            rustix::stdio::dup2_stdout(&null)?;
        }
        _ => {
            write(std::io::stderr().as_fd())?;
            rustix::stdio::dup2_stderr(&null)?;
        }
    }
    Ok(())
}

/// `READY=1` to systemd when `$NOTIFY_SOCKET` is set.
fn notify_systemd() {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return;
    };
    let message = format!("READY=1\nMAINPID={}\n", std::process::id());
    if let Err(e) = send_notify(&socket, message.as_bytes()) {
        warn!(
            "cannot notify systemd on {}: {e}",
            Path::new(&socket).display()
        );
    }
}

fn send_notify(socket: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<usize> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let sock = UnixDatagram::unbound()?;
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name)?,
        None => SocketAddr::from_pathname(Path::new(socket))?,
    };
    sock.send_to_addr(message, &addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_of_logs() {
        let cases = [
            ("", 3, "(nothing was logged)"),
            ("\n \n", 3, "(nothing was logged)"),
            ("a\nb\n", 3, "a\nb"),
            ("a\nb\nc\nd\n", 2, "c\nd"),
            ("a\n\nb\n\n", 1, "b"),
        ];
        for (text, n, expected) in cases {
            assert_eq!(tail_lines(text, n), expected, "{text:?}");
        }
    }

    #[test]
    fn ready_fd_must_be_a_standard_stream() {
        let cases = [
            (None, true),
            (Some(0), true),
            (Some(1), true),
            (Some(2), true),
            (Some(3), false),
            (Some(-1), false),
        ];
        for (fd, ok) in cases {
            assert_eq!(Readiness::from_option(fd).is_ok(), ok, "{fd:?}");
        }
    }

    #[test]
    fn readiness_pipe_outcomes() {
        // A byte: ready.
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        rustix::io::write(&w, &[READY_BYTE]).unwrap();
        assert_eq!(wait_ready(&r, Duration::from_secs(1)).unwrap(), Ready::Yes);
        // Closed without a byte: died.
        let (r, w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        drop(w);
        assert_eq!(wait_ready(&r, Duration::from_secs(1)).unwrap(), Ready::Died);
        // Open and silent: timed out.
        let (r, _w) = pipe_with(PipeFlags::CLOEXEC).unwrap();
        assert_eq!(
            wait_ready(&r, Duration::from_millis(50)).unwrap(),
            Ready::TimedOut
        );
    }

    #[test]
    fn notifies_systemd_on_a_datagram_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        send_notify(path.as_os_str(), b"READY=1\n").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\n");
    }
}
