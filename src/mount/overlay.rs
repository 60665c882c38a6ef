//! An overlay of plain directories, fuse-overlayfs-style (`vskel overlay`):
//! its layers checked, its pid file and log under [`OVERLAY_RUN_DIR`]
//! (named after the mount point), served in this process or started in the
//! background.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::debug;

use super::mountinfo::normalize;
use super::pidfile::{PidFile, already_served};
use super::spawn::{How, start_in_background};
use super::stale::prepare;
use crate::error::{Error, Result};
use crate::tree::TreeRoot;
use crate::view::options::{OverlayOptions, render_options};
use crate::view::serve::serve;
use crate::view::{LayerSpec, ServeOptions, default_threads};
use crate::view::{layout, workdir};

/// The source an overlay shows in /proc/mounts unless `fsname=` says.
pub const DEFAULT_FSNAME: &str = "vskel-overlay";
/// Where overlay servers keep their pid files and logs (one per mount
/// point, named after it; a server that ends cleanly removes both).
pub const OVERLAY_RUN_DIR: &str = "/run/vskel/overlay";

/// An overlay to mount.
#[derive(Debug, Clone)]
pub struct OverlayRequest {
    /// What the `-o` options say.
    pub options: OverlayOptions,
    /// Where to mount it.
    pub mountpoint: PathBuf,
    /// Serve requests on one thread.
    pub single_thread: bool,
    /// Keep the log of a clean foreground run (logging was asked for).
    pub keep_log: bool,
}

/// What was mounted.
#[derive(Debug, Clone, Serialize)]
pub struct OverlayMounted {
    /// The source shown in /proc/mounts.
    pub fsname: String,
    /// Where.
    #[serde(serialize_with = "crate::report_path::path")]
    pub mountpoint: PathBuf,
    /// The read-only layers, top first.
    #[serde(serialize_with = "crate::report_path::list")]
    pub lowers: Vec<PathBuf>,
    /// The writable layer.
    #[serde(serialize_with = "crate::report_path::path")]
    pub upper: PathBuf,
    /// The work directory.
    #[serde(serialize_with = "crate::report_path::path")]
    pub work: PathBuf,
    /// The serving process.
    pub pid: u32,
    /// Its log file (background servers).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[serde(serialize_with = "crate::report_path::option")]
    pub log: Option<PathBuf>,
}

/// A file name for `mountpoint`: bytes other than letters, digits, `.`,
/// `_` and `-` as `%XX`.
fn mangle(mountpoint: &Path) -> String {
    mountpoint
        .as_os_str()
        .as_bytes()
        .iter()
        .map(|&b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The pid file of the overlay server at `mountpoint` (already normalized).
pub fn pid_file(mountpoint: &Path) -> PathBuf {
    Path::new(OVERLAY_RUN_DIR).join(format!("{}.pid", mangle(mountpoint)))
}

/// The log of the background overlay server at `mountpoint`.
fn log_file(mountpoint: &Path) -> PathBuf {
    Path::new(OVERLAY_RUN_DIR).join(format!("{}.log", mangle(mountpoint)))
}

/// Mount the overlay `request` asks for: in this process until it is
/// unmounted (then the report is handed to `on_ready` once it is live),
/// or in the background.
pub fn mount_overlay(
    request: &OverlayRequest,
    how: How<'_, OverlayMounted>,
) -> Result<OverlayMounted> {
    let mut options = request.options.clone();
    let layers = check_layers(&mut options)?;
    let mountpoint = &normalize(&request.mountpoint)?;
    let fsname = options
        .fsname
        .clone()
        .unwrap_or_else(|| DEFAULT_FSNAME.to_string());
    let what = format!("the overlay at {}", mountpoint.display());
    let report = |pid, log| OverlayMounted {
        fsname: fsname.clone(),
        mountpoint: mountpoint.clone(),
        lowers: layers.lowers.clone(),
        upper: layers.upper.clone(),
        work: layers.work.clone(),
        pid,
        log,
    };
    let pid_path = pid_file(mountpoint);
    match how {
        How::Foreground {
            readiness,
            on_ready,
        } => {
            make_run_dir()?;
            let _pid_file = PidFile::acquire(&pid_path, mountpoint, &what)?;
            prepare(mountpoint)?;
            let serve_options = ServeOptions {
                fsname: fsname.clone(),
                // As fuse-overlayfs does: a root mount is for everyone (an
                // overlay is usually a root filesystem for many users).
                allow_other: options.allow_other || crate::sys::is_root(),
                threads: if request.single_thread {
                    1
                } else {
                    options.threads.unwrap_or_else(default_threads)
                },
                // Nobody syncs an overlay: no control socket.
                control: None,
            };
            let mounted = report(std::process::id(), None);
            serve(&layers, mountpoint, &serve_options, || {
                on_ready(&mounted);
                readiness.notify();
            })?;
            // A clean run's log says nothing worth keeping, unless logging
            // was asked for; logs of failed runs stay (one per mount
            // point, in /run).
            let log = log_file(mountpoint);
            if !request.keep_log {
                match std::fs::remove_file(&log) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        debug!("cannot remove {}: {e}", log.display());
                    }
                    _ => {}
                }
            }
            Ok(mounted)
        }
        How::Background { global_args } => {
            if let Some(owner) = PidFile::owner(&pid_path)? {
                return Err(already_served(&what, &owner));
            }
            // The server refuses a work directory in use too; asking first
            // gives the error here rather than in the server's log.
            let work = TreeRoot::open(&layers.work)?;
            if workdir::in_use(&work)? {
                return Err(workdir::in_use_error(&work));
            }
            prepare(mountpoint)?;
            let mut child = global_args;
            child.extend([OsString::from("overlay"), OsString::from("-f")]);
            if request.single_thread {
                child.push(OsString::from("-s"));
            }
            child.extend([
                OsString::from("-o"),
                OsString::from(render_options(&options)),
                mountpoint.as_os_str().to_os_string(),
            ]);
            let started =
                start_in_background(&child, &log_file(mountpoint), &format!("mounting {what}"))?;
            Ok(report(started.pid, Some(started.log)))
        }
    }
}

fn make_run_dir() -> Result<()> {
    std::fs::create_dir_all(OVERLAY_RUN_DIR)
        .map_err(|e| Error::io("make directory", OVERLAY_RUN_DIR, e))
}

/// Make the layer paths absolute (the background server runs in `/`) and
/// check them: directories, none the same as or inside another, work on
/// the upper's mount (`view::layout`), before anything is started.
fn check_layers(options: &mut OverlayOptions) -> Result<LayerSpec> {
    let absolute = |what: &str, path: &Path| -> Result<PathBuf> {
        let abs = std::path::absolute(path).map_err(|e| Error::io("resolve", path, e))?;
        match std::fs::metadata(&abs) {
            Ok(meta) if meta.is_dir() => Ok(abs),
            Ok(_) => Err(Error::Usage(format!(
                "{what}={}: not a directory",
                path.display()
            ))),
            Err(e) => Err(Error::Usage(format!("{what}={}: {e}", path.display()))),
        }
    };
    for lower in &mut options.lowers {
        *lower = absolute("lowerdir", lower)?;
    }
    let (Some(upper), Some(work)) = (&options.upper, &options.work) else {
        return Err(Error::Usage(
            "upperdir= and workdir= are needed".to_string(),
        ));
    };
    let upper = absolute("upperdir", upper)?;
    let work = absolute("workdir", work)?;
    let open = |path: &Path| TreeRoot::open(path);
    let (upper_tree, work_tree) = (open(&upper)?, open(&work)?);
    if upper_tree.dev() != work_tree.dev() {
        return Err(Error::Usage(format!(
            "upperdir={} and workdir={} are on different filesystems; they must share one",
            upper.display(),
            work.display()
        )));
    }
    let lower_trees = options
        .lowers
        .iter()
        .map(|l| open(l))
        .collect::<Result<Vec<_>>>()?;
    layout::check(&upper_tree, &work_tree, &lower_trees)?;
    options.upper = Some(upper.clone());
    options.work = Some(work.clone());
    Ok(LayerSpec {
        upper,
        work,
        lowers: options.lowers.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mangles_mount_points_into_file_names() {
        let cases = [
            ("/mnt/x", "%2Fmnt%2Fx"),
            ("/a b/c-d_e.f", "%2Fa%20b%2Fc-d_e.f"),
            ("/%", "%2F%25"),
        ];
        for (path, expected) in cases {
            assert_eq!(mangle(Path::new(path)), expected);
        }
        assert_eq!(
            pid_file(Path::new("/mnt/x")),
            Path::new("/run/vskel/overlay/%2Fmnt%2Fx.pid")
        );
    }
}
