//! `enter` and `exec`: run a command inside a vserver, util-vserver's
//! `vserver NAME enter|exec`.
//!
//! The command runs chrooted into the vserver's root (a tree's
//! `<root>/NAME`, or where its view is mounted), in new mount, UTS and PID
//! namespaces: util-linux `unshare --mount --uts --pid --fork
//! --propagation private` starts vskel again, hidden, as the namespaces'
//! first process, and that process ([`inside`]) sets the hostname, mounts
//! `/proc` and a fresh `/dev` (with `/dev/pts` and `/dev/shm`; it hides
//! whatever `/dev` the vserver has), chroots and runs the command as its
//! child ([`init`]). The mounts exist only in the new mount namespace (its
//! propagation is private before anything is mounted), so they go away
//! with its last process and the host never sees them. A vserver without
//! `/proc` or `/dev` gets an empty directory there, the only change made
//! to it.
//!
//! The hostname is the FQDN in the vserver's record (what `create-vs` was
//! given), or its name when there is none or it is too long for a
//! hostname.
//!
//! This is a root shell in a chroot, not a security boundary: the
//! vserver's programs run as the host's root, with its capabilities.

mod dev;
mod init;
pub mod inside;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use signal_hook::consts::{SIGINT, SIGQUIT};

use super::mount::locate_view;
use super::registry::{self, Kind};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::validate::validate_name;

/// util-linux's `unshare`, found on `PATH`.
const UNSHARE: &str = "unshare";
/// The hidden subcommand that runs inside the namespaces.
pub const INSIDE_COMMAND: &str = "enter-inside";
/// The longest hostname the kernel takes (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;
/// Exit codes of a command killed by signal N are `SIGNAL_EXIT_BASE + N`,
/// as shells report them.
pub(crate) const SIGNAL_EXIT_BASE: i32 = 128;
/// The shell `vskel enter` runs: the vserver's own `/bin/sh`, as a login
/// shell (so it reads the vserver's `/etc/profile`).
pub const LOGIN_SHELL: [&str; 2] = ["/bin/sh", "-l"];

/// Where and as what a command runs in a vserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The vserver.
    pub name: String,
    /// Its root as the host sees it: the tree, or the view's mount point.
    pub root: PathBuf,
    /// The hostname it gets.
    pub hostname: String,
}

/// Where vserver `name` can be entered: its tree, or its view where it is
/// mounted (a view that is not mounted is an error saying to mount it).
pub fn target(config: &Config, name: &str) -> Result<Target> {
    validate_name("vserver name", name)?;
    let record = registry::load(config, name)?;
    let tree = Layout::new(config).vserver(name);
    let root = match &record {
        Some(r) if r.creating => {
            return Err(Error::Failed(format!(
                "vserver \"{name}\" is not finished (`create-vs` was interrupted); \
                 `vskel remove-vs {name}` removes what it made"
            )));
        }
        Some(r) if r.kind == Kind::View => {
            let found = locate_view(config, r)?;
            found.mountpoint.ok_or_else(|| {
                Error::Failed(format!(
                    "view \"{name}\" is not mounted; `vskel mount {name}` first"
                ))
            })?
        }
        // A tree, recorded or not (one other tools made).
        _ if is_real_dir(&tree) => tree,
        Some(_) => {
            return Err(Error::Failed(format!(
                "vserver \"{name}\" has no tree at {}",
                tree.display()
            )));
        }
        None => {
            return Err(Error::Usage(format!(
                "no vserver named \"{name}\"; `vskel list` shows the vservers"
            )));
        }
    };
    let fqdn = record.and_then(|r| r.fqdn);
    Ok(Target {
        hostname: hostname_of(name, fqdn.as_deref()),
        name: name.to_string(),
        root,
    })
}

/// The hostname of vserver `name`: its FQDN if it fits, else its name.
fn hostname_of(name: &str, fqdn: Option<&str>) -> String {
    match fqdn {
        Some(fqdn) if !fqdn.is_empty() && fqdn.len() <= HOSTNAME_MAX => fqdn.to_string(),
        Some(fqdn) if !fqdn.is_empty() => {
            tracing::warn!(
                "the FQDN of vserver \"{name}\" is longer than a hostname can be \
                 ({HOSTNAME_MAX} bytes); its hostname is \"{name}\""
            );
            name.to_string()
        }
        _ => name.to_string(),
    }
}

fn is_real_dir(path: &std::path::Path) -> bool {
    path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false)
}

/// How the command is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Session {
    /// An interactive shell: on a terminal this process holds, it gets a
    /// process group of its own and the terminal ([`init`]).
    Shell,
    /// A command: it stays in this process's process group.
    Command,
}

/// Run `command` (program and arguments) inside `target` and wait for it;
/// returns its exit code (`128 + N` when signal N killed it). While it
/// runs, this process ignores the terminal's SIGINT and SIGQUIT (they are
/// the command's), as `system(3)` does.
pub fn run(target: &Target, command: &[OsString], session: Session) -> Result<i32> {
    if command.is_empty() {
        return Err(Error::Usage("no command to run".into()));
    }
    let exe = std::env::current_exe().map_err(|e| Error::io("find", "/proc/self/exe", e))?;
    let mut unshare = Command::new(UNSHARE);
    unshare
        .args(["--mount", "--uts", "--pid", "--fork", "--kill-child"])
        .args(["--propagation", "private", "--"])
        .arg(exe)
        .arg(INSIDE_COMMAND)
        .arg("--root")
        .arg(&target.root)
        .arg("--hostname")
        .arg(&target.hostname)
        .args((session == Session::Shell).then_some("--job-control"))
        .arg("--")
        .args(command);
    let _ignored = IgnoredSignals::install()?;
    let status = unshare.status().map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::NotFound {
            " (util-linux's unshare is needed)"
        } else {
            ""
        };
        Error::Failed(format!("cannot run {UNSHARE}{hint}: {e}"))
    })?;
    Ok(exit_code(status))
}

/// The exit code a shell would report for `status`.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => SIGNAL_EXIT_BASE + signal,
        (None, None) => crate::error::EXIT_FAILURE,
    }
}

/// SIGINT and SIGQUIT caught (and so ignored) until dropped; the child
/// gets them as usual (caught signals are reset by `exec`).
struct IgnoredSignals(Vec<signal_hook::SigId>);

impl IgnoredSignals {
    fn install() -> Result<Self> {
        let flag = Arc::new(AtomicBool::new(false));
        let mut ids = Vec::new();
        for signal in [SIGINT, SIGQUIT] {
            let id = signal_hook::flag::register(signal, Arc::clone(&flag))
                .map_err(|e| Error::Failed(format!("cannot catch signal {signal}: {e}")))?;
            ids.push(id);
        }
        Ok(Self(ids))
    }
}

impl Drop for IgnoredSignals {
    fn drop(&mut self) {
        for id in self.0.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_is_the_fqdn_when_it_fits() {
        let long = "a".repeat(HOSTNAME_MAX + 1);
        for (fqdn, want) in [
            (Some("web1.example.com"), "web1.example.com"),
            (None, "web1"),
            (Some(""), "web1"),
            (Some(long.as_str()), "web1"),
        ] {
            assert_eq!(hostname_of("web1", fqdn), want, "{fqdn:?}");
        }
    }
}
