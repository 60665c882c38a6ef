//! `mount.fuse.vskel SOURCE MOUNTPOINT [-sfnv] [-N NS] [-o OPTIONS] [-t TYPE]`:
//! the mount(8) helper, so that `/etc/fstab` and `mount -t fuse.vskel`
//! work. It is this binary, run under the name `mount.fuse.vskel` (a
//! symlink) or as `vskel mount.fuse.vskel ...` (what the script in
//! `mount-helpers/` runs); it turns mount(8)'s arguments into a vskel
//! command line and runs it here.
//!
//! SOURCE `SKEL:VS` is the view of vserver VS: `vskel mount --skel SKEL VS
//! MOUNTPOINT` (a VS of another skel is refused), with the options `view::options::parse_view_options` takes
//! (`config=PATH` is `--config PATH`). Any other source (`overlay`,
//! `vskel`, whatever mount(8) users and test suites pass) is an overlay,
//! as with fuse-overlayfs: `vskel overlay -o OPTIONS SOURCE MOUNTPOINT`
//! (the source is what /proc/mounts shows, so that `mount -a` finds an
//! fstab line mounted). `-f` (fake) shows what would run and mounts nothing; `-s -n -v` are ignored.
//! Exit codes as mount(8) expects: 1 bad usage, 32 mount failure.

use std::ffi::OsString;
use std::path::Path;

use crate::error::{EXIT_OK, EXIT_USAGE};
use crate::view::options::parse_view_options;

/// The helper's name: mount(8) runs `/sbin/mount.fuse.vskel`.
pub const HELPER_NAME: &str = "mount.fuse.vskel";
/// mount(8)'s exit code for bad usage.
const EX_USAGE: i32 = 1;
/// mount(8)'s exit code for a failed mount.
const EX_FAIL: i32 = 32;

/// The helper's arguments, if this process was run as the helper (under
/// its name, or as `vskel mount.fuse.vskel ...`).
pub fn invoked(args: &[OsString]) -> Option<Vec<OsString>> {
    let name = args.first().and_then(|a| Path::new(a).file_name());
    if name.is_some_and(|n| n == HELPER_NAME) {
        return Some(args[1..].to_vec());
    }
    (args.get(1).is_some_and(|a| a == HELPER_NAME)).then(|| args[2..].to_vec())
}

/// Run the helper; returns mount(8)'s exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let (command, fake) = match command_line(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{HELPER_NAME}: {message}");
            eprintln!(
                "usage: {HELPER_NAME} SKEL:VS|SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]"
            );
            return EX_USAGE;
        }
    };
    if fake {
        let shown: Vec<_> = command.iter().map(|a| a.to_string_lossy()).collect();
        eprintln!("{HELPER_NAME}: would run: {}", shown.join(" "));
        return EXIT_OK;
    }
    match super::run_command_line(command) {
        EXIT_OK => EXIT_OK,
        EXIT_USAGE => EX_USAGE,
        _ => EX_FAIL,
    }
}

/// The vskel command line for mount(8)'s arguments, and whether only to
/// show it (`-f`).
fn command_line(args: &[OsString]) -> Result<(Vec<OsString>, bool), String> {
    let [source, mountpoint, rest @ ..] = args else {
        return Err("need a source and a mount point".to_string());
    };
    let (mut options, mut fake) = (Vec::new(), false);
    let mut rest = rest.iter().map(|a| a.to_string_lossy().into_owned());
    while let Some(arg) = rest.next() {
        let mut value_of = |flag: &str| {
            let attached = &arg[flag.len()..];
            if attached.is_empty() {
                rest.next().ok_or_else(|| format!("{flag} needs a value"))
            } else {
                Ok(attached.to_string())
            }
        };
        match arg.as_str() {
            a if a.starts_with("-o") => options.push(value_of("-o")?),
            a if a.starts_with("-t") || a.starts_with("-N") => {
                value_of(&a[..2])?; // the type and the namespace: not vskel's business
            }
            // -s -f -n -v, alone or grouped (-nv)
            a if a.starts_with('-')
                && a.len() > 1
                && a[1..].chars().all(|c| "sfnv".contains(c)) =>
            {
                fake |= a.contains('f');
            }
            a => return Err(format!("unexpected argument: {a}")),
        }
    }
    let mut command = vec![OsString::from("vskel")];
    match source.to_string_lossy().split_once(':') {
        Some((skel, vs)) if !skel.is_empty() && !vs.is_empty() => {
            let view = parse_view_options(&options)
                .map_err(|e| format!("{e} (see `{HELPER_NAME}` in mount-helpers/README.md)"))?;
            if let Some(config) = view.config {
                command.extend([OsString::from("--config"), config.into_os_string()]);
            }
            command.extend([
                OsString::from("mount"),
                OsString::from("--skel"),
                OsString::from(skel),
                OsString::from(vs),
            ]);
        }
        // Any other source is an overlay's, as fuse-overlayfs takes any.
        _ if options.is_empty() => {
            return Err(format!(
                "source {} is no SKEL:VS, and an overlay needs -o lowerdir=...,upperdir=...,workdir=...",
                source.to_string_lossy()
            ));
        }
        // The source goes along: /proc/mounts shows it, so that `mount -a`
        // finds the fstab line mounted.
        _ => command.extend([
            OsString::from("overlay"),
            OsString::from("-o"),
            OsString::from(options.join(",")),
            source.clone(),
        ]),
    }
    command.push(mountpoint.clone());
    Ok((command, fake))
}
