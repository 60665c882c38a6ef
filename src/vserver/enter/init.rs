//! The first process of an entered vserver's PID namespace: starts the
//! command as its child, reaps every process that ends up its child
//! (orphans are re-parented to it), passes SIGTERM and SIGHUP on to the
//! command, and ends with the command's exit code (`128 + N` for a death
//! by signal N). When it ends, the kernel kills whatever is left in the
//! namespace.
//!
//! Why not exec the command as that first process: the kernel drops
//! signals a namespace's first process has no handler for, so a command
//! run as it could not be stopped with Ctrl-C, nor kill itself.
//!
//! An interactive shell (`vskel enter`) on a terminal vskel holds in the
//! foreground gets a process group of its own and the terminal's
//! foreground: its job control then finds a process group it can see from
//! inside the PID namespace (dash restores it on exit, and fails when the
//! one it started in is outside). A shell started before it has the
//! terminal stops itself (SIGTTIN) until it has: a stopped child is
//! continued, also after Ctrl-Z, which nothing outside could undo. Other
//! commands stay in vskel's process group (and so in the terminal's
//! foreground from the start).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use rustix::process::{Pid, Signal, WaitOptions};
use signal_hook::consts::{SIGHUP, SIGTERM};

use super::SIGNAL_EXIT_BASE;
use super::inside::{EXIT_CANNOT_RUN, EXIT_NOT_FOUND, EXIT_SETUP};

/// Run `command` (already chrooted) and wait for it as described above,
/// giving it the terminal on stdin if `foreground` (this process holds
/// it); returns the exit code to end with.
pub fn run_command(command: &[OsString], foreground: bool) -> i32 {
    let Some((program, args)) = command.split_first() else {
        tracing::error!("no command to run");
        return EXIT_SETUP;
    };
    let mut spawn = std::process::Command::new(program);
    spawn.args(args);
    if foreground {
        spawn.process_group(0);
    }
    let child = match spawn.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!("cannot run {}: {e}", program.to_string_lossy());
            return if e.kind() == std::io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_RUN
            };
        }
    };
    let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) else {
        tracing::error!("the command's process id {} is not one", child.id());
        return EXIT_SETUP;
    };
    forward_signals(pid);
    if foreground && let Err(e) = rustix::termios::tcsetpgrp(std::io::stdin(), pid) {
        tracing::warn!("cannot give the terminal to the command: {e}");
    }
    loop {
        match rustix::process::wait(WaitOptions::UNTRACED) {
            Ok(Some((reaped, status))) if reaped == pid && status.stopped() => {
                if let Err(e) = rustix::process::kill_process_group(pid, Signal::CONT) {
                    tracing::warn!("cannot continue the stopped command: {e}");
                }
            }
            Ok(Some((reaped, status))) if reaped == pid => {
                return match (status.exit_status(), status.terminating_signal()) {
                    (Some(code), _) => code,
                    (None, Some(signal)) => SIGNAL_EXIT_BASE + signal,
                    (None, None) => EXIT_CANNOT_RUN,
                };
            }
            // An orphan reaped, or a stop reported.
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                tracing::error!("cannot wait for the command: {e}");
                return EXIT_SETUP;
            }
        }
    }
}

/// Pass SIGTERM and SIGHUP sent to this process on to `pid` (a thread
/// for as long as the process lives).
fn forward_signals(pid: Pid) {
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGHUP]) {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!("cannot catch SIGTERM and SIGHUP to pass them on: {e}");
            return;
        }
    };
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let signal = if signal == SIGHUP {
                Signal::HUP
            } else {
                Signal::TERM
            };
            if let Err(e) = rustix::process::kill_process(pid, signal) {
                tracing::debug!("cannot pass {signal:?} on to the command: {e}");
            }
        }
    });
}

/// Whether this process is in the foreground process group of its
/// terminal, from `/proc/self/stat` (read before the chroot: the host's
/// /proc names process groups outside the new PID namespace too).
pub fn holds_terminal() -> bool {
    match std::fs::read_to_string("/proc/self/stat") {
        Ok(stat) => in_foreground(&stat).unwrap_or(false),
        Err(e) => {
            tracing::debug!("cannot read /proc/self/stat: {e}");
            false
        }
    }
}

/// From a `/proc/PID/stat` line: whether its process group (field 5) is
/// its terminal's foreground group (field 8, -1 without a terminal).
fn in_foreground(stat: &str) -> Option<bool> {
    // Field 2, the command name in parentheses, may hold anything.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let pgrp: i64 = fields.get(2)?.parse().ok()?;
    let tpgid: i64 = fields.get(5)?.parse().ok()?;
    Some(tpgid > 0 && pgrp == tpgid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_foreground_from_stat() {
        for (stat, want) in [
            ("12 (sh) S 1 12 12 34816 12 4194560 0", Some(true)),
            ("12 (sh) S 1 12 12 34816 15 4194560 0", Some(false)),
            ("12 (sh) S 1 12 12 0 -1 4194560 0", Some(false)),
            ("12 (a) b) (c) S 1 12 12 34816 12 0", Some(true)),
            ("12 (sh) S 1", None),
            ("garbage", None),
        ] {
            assert_eq!(in_foreground(stat), want, "{stat}");
        }
    }
}
