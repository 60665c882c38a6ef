//! One view's server as a child of the daemon: this binary run again as
//! `vskel mount NAME [MOUNTPOINT] --foreground --format json
//! --lifeline-stdin`, in a process group of its own, without the
//! daemon's `NOTIFY_SOCKET` (systemd hears only the daemon) and with
//! fewer malloc arenas than glibc's default (unless the daemon's
//! environment sets `MALLOC_ARENA_MAX`).
//!
//! How the two talk: the child's stdout is a pipe whose first JSON value,
//! the mount report, says the mount is live; its stdin is the read end
//! of a pipe whose write end the daemon keeps (the lifeline): when the
//! daemon goes, however it goes, the child reads EOF and unmounts as on
//! SIGTERM. Its stderr is the daemon's (journald gets both).

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::io::Errno;
use rustix::pipe::{PipeFlags, pipe_with};
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::vserver::mount::Mounted;

/// The hidden option of `vskel mount --foreground` that makes stdin the
/// lifeline.
pub const LIFELINE_OPTION: &str = "--lifeline-stdin";
/// How long a child may take to mount its view.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest report line read.
const MAX_REPORT: usize = 64 * 1024;
/// The running binary.
const SELF_EXE: &str = "/proc/self/exe";
/// glibc's bound on malloc arenas (default 8 per CPU: each worker thread
/// of a server gets one, about 100 KiB touched each).
const ARENA_MAX_ENV: &str = "MALLOC_ARENA_MAX";
/// What the servers get unless the daemon's environment says otherwise:
/// measured on 100 idle views, 109.8 MiB PSS in all with glibc's default,
/// 100.1 MiB with 2 (1 was no better).
const SERVER_ARENA_MAX: &str = "2";
/// The environment variable systemd passes to `Type=notify` services.
const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// A view's server the daemon started, with its mount live.
#[derive(Debug)]
pub struct ChildServer {
    /// The process (the daemon reaps it).
    pub process: Child,
    /// What it mounted.
    pub mounted: Mounted,
    /// The lifeline's write end: dropping it tells the child to unmount.
    pub lifeline: OwnedFd,
}

/// Start the server of view `name` at `at` (its default mount point when
/// None), with `global_args` (`--config PATH`) before the command, and
/// wait until its mount is live. The error says how the child ended and
/// what it said last.
pub fn start(global_args: &[OsString], name: &str, at: Option<&Path>) -> Result<ChildServer> {
    // The running binary even after a package upgrade replaced (unlinked)
    // the file it was started from.
    let program = Path::new(SELF_EXE);
    let (lifeline_read, lifeline) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| Error::io("make a pipe", "", e))?;
    let mut command = Command::new(program);
    command
        .args(global_args)
        .args(["mount", name])
        .args(at.map(Path::as_os_str))
        .args(["--foreground", "--format", "json", LIFELINE_OPTION])
        .stdin(Stdio::from(lifeline_read))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env_remove(NOTIFY_SOCKET_ENV)
        .envs(arena_limit())
        .current_dir("/")
        .process_group(0);
    let mut process = command
        .spawn()
        .map_err(|e| Error::io("start", program, e))?;
    drop(command); // its copy of the lifeline's read end
    debug!("view {name}: server pid {}", process.id());
    let stdout = process.stdout.take();
    let report = match stdout {
        Some(stdout) => read_report(stdout, READY_TIMEOUT),
        None => Err("has no stdout pipe".to_string()),
    };
    let failed = |process: &mut Child, why: String| {
        let status = end(process);
        Error::Failed(format!("the server of view \"{name}\" {why} ({status})"))
    };
    let mounted = match report {
        Ok(Some(mounted)) => mounted,
        Ok(None) => return Err(failed(&mut process, "exited before mounting".into())),
        Err(why) => return Err(failed(&mut process, why)),
    };
    Ok(ChildServer {
        process,
        mounted,
        lifeline,
    })
}

/// `MALLOC_ARENA_MAX` for a server, unless the daemon has it set.
fn arena_limit() -> Option<(&'static str, &'static str)> {
    std::env::var_os(ARENA_MAX_ENV)
        .is_none()
        .then_some((ARENA_MAX_ENV, SERVER_ARENA_MAX))
}

/// The first JSON value `stdout` carries (the mount report, printed
/// once the mount is live): `Ok(None)` when it closes first, an error
/// message on a timeout, a read error or something else than a report.
fn read_report(
    mut stdout: ChildStdout,
    timeout: Duration,
) -> std::result::Result<Option<Mounted>, String> {
    let deadline = Instant::now() + timeout;
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if !text.is_empty() {
            let mut values = serde_json::Deserializer::from_slice(&text).into_iter::<Mounted>();
            match values.next() {
                Some(Ok(mounted)) => return Ok(Some(mounted)),
                Some(Err(e)) if !e.is_eof() => {
                    return Err(format!("sent a report that is not one: {e}"));
                }
                _ => {}
            }
        }
        if text.len() > MAX_REPORT {
            return Err(format!("sent more than {MAX_REPORT} bytes of report"));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("was not ready within {} s", timeout.as_secs()));
        }
        let left = Timespec::try_from(left).map_err(|_| "a timeout out of range".to_string())?;
        let mut fds = [PollFd::new(&stdout, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(format!("could not be waited for: {e}")),
        }
        match stdout.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => text.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("could not be read from: {e}")),
        }
    }
}

/// Stop a child that failed to start (it may still run): SIGKILL if it
/// has not exited, then reap it; how it ended, as text.
fn end(process: &mut Child) -> String {
    match process.try_wait() {
        Ok(Some(status)) => return describe(status),
        Ok(None) => {}
        Err(e) => warn!("cannot look at pid {}: {e}", process.id()),
    }
    if let Err(e) = process.kill() {
        warn!("cannot kill pid {}: {e}", process.id());
    }
    match process.wait() {
        Ok(status) => describe(status),
        Err(e) => format!("status unknown: {e}"),
    }
}

/// How a server ended, as text ("exit status 1", "killed by signal 9").
pub fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_are_described() {
        use std::os::unix::process::ExitStatusExt;
        let cases = [
            (0, "exit status 0"),
            (1 << 8, "exit status 1"),
            (9, "killed by signal 9"),
        ];
        for (raw, text) in cases {
            assert_eq!(describe(std::process::ExitStatus::from_raw(raw)), text);
        }
    }
}
