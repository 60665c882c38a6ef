//! `vskel overlay [-f] -o lowerdir=A:B:C,upperdir=U,workdir=W MOUNTPOINT`:
//! fuse-overlayfs' command line, so that tools and test suites written for
//! it can drive vskel's view.
//!
//! Option syntax (libfuse's and fuse-overlayfs'): `-o` may be given
//! several times; options are separated by `,`; a backslash makes the next
//! character literal, so `\,` is a comma inside a value, `\:` a colon
//! inside a lowerdir path (not a layer separator) and `\\` a backslash.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use clap::ArgAction;
use serde::Serialize;
use tracing::debug;

use super::Invocation;
use super::output::{Format, print};
use crate::error::{Error, Result};
use crate::tree::TreeRoot;
use crate::view::daemon_start::{Readiness, start_in_background};
use crate::view::mountpoint::{PidFile, already_served, normalize, prepare};
use crate::view::serve::serve;
use crate::view::{LayerSpec, ServeOptions};
use crate::view::{layout, workdir};

/// The source an overlay shows in /proc/mounts unless `fsname=` says.
pub const DEFAULT_FSNAME: &str = "vskel-overlay";
/// Where overlay servers keep their pid files and logs (one per mount
/// point, named after it; a server that ends cleanly removes both).
pub const OVERLAY_RUN_DIR: &str = "/run/vskel/overlay";

/// Options taken and ignored: the defaults anyway, tuning that vskel
/// decides itself, or fstab bookkeeping (as are `x-*` and `comment=`).
const IGNORED: &[&str] = &[
    // mount(8) flags that are vskel's behaviour anyway
    "rw",
    "defaults",
    "suid",
    "dev",
    "exec",
    "async",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
    "diratime",
    "nodiratime",
    "lazytime",
    "nolazytime",
    // fstab bookkeeping
    "auto",
    "noauto",
    "nofail",
    "_netdev",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    // FUSE tuning
    "auto_unmount",
    "default_permissions",
    "clone_fd",
    "max_idle_threads",
    "max_threads",
    "max_read",
    "max_write",
    "max_background",
    "congestion_threshold",
    "kernel_cache",
    "auto_cache",
    "noauto_cache",
    "direct_io",
    "entry_timeout",
    "negative_timeout",
    "attr_timeout",
    "ac_attr_timeout",
    "big_writes",
    "splice_read",
    "splice_write",
    "splice_move",
    "no_splice_read",
    "no_splice_write",
    "no_splice_move",
    "async_read",
    "sync_read",
    "writeback_cache",
    "no_remote_lock",
    "no_remote_posix_lock",
    "no_remote_flock",
    "hard_remove",
    "use_ino",
    "readdir_ino",
    "subtype",
    // fuse-overlayfs tuning
    "fast_ino",
    "fsync",
    "threaded",
    "timeout",
    "writeback",
    "noacl",
    "static_nlink",
    "volatile",
];

/// Options refused because they change what the filesystem does in ways
/// vskel does not (yet) support, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("ro", "read-only overlays are not supported yet"),
    ("nosuid", "vskel cannot apply nosuid to its mount yet"),
    ("nodev", "vskel cannot apply nodev to its mount yet"),
    ("noexec", "vskel cannot apply noexec to its mount yet"),
    ("sync", "synchronous mounts are not supported"),
    ("dirsync", "synchronous mounts are not supported"),
    ("uidmapping", "UID/GID mapping is not supported"),
    ("gidmapping", "UID/GID mapping is not supported"),
    ("squash_to_root", "squashing owners is not supported"),
    ("squash_to_uid", "squashing owners is not supported"),
    ("squash_to_gid", "squashing owners is not supported"),
    ("uid", "overriding owners is not supported"),
    ("gid", "overriding owners is not supported"),
    ("umask", "overriding modes is not supported"),
    ("context", "SELinux mount contexts are not supported"),
    ("fscontext", "SELinux mount contexts are not supported"),
    ("defcontext", "SELinux mount contexts are not supported"),
    ("rootcontext", "SELinux mount contexts are not supported"),
    ("plugins", "fuse-overlayfs plugins are not supported"),
    (
        "noxattrs",
        "vskel always passes extended attributes through",
    ),
    (
        "xattr_permissions",
        "vskel keeps xattrs as they are, it does not emulate permissions in them",
    ),
    (
        "userxattr",
        "vskel keeps overlay metadata in trusted.overlay.* (kernel overlayfs' format)",
    ),
    ("allow_root", "give allow_other instead"),
];

/// Mount an overlay of directories, with fuse-overlayfs' command line.
///
/// `vskel overlay -o lowerdir=A:B:C,upperdir=U,workdir=W MOUNTPOINT` shows
/// A over B over C (top first, read-only) under the writable U at
/// MOUNTPOINT, copy-on-write; W is a work directory on U's mount (vskel's
/// scratch space is W/work/, as kernel overlayfs' is; vskel removes only
/// its own scratch entries there). Layers that are the same directory or
/// inside one another are refused. The upper layer is in kernel overlayfs'
/// format. Without -f the server runs in the
/// background and vskel returns once the mount is live (its log and pid
/// file are in /run/vskel/overlay/). `vskel unmount MOUNTPOINT` or
/// `umount MOUNTPOINT` unmounts.
///
/// Options (-o, comma-separated, may repeat; `\,` `\:` `\\` escape):
/// lowerdir=, upperdir=, workdir= (all three needed: read-only overlays are
/// not supported yet), fsname= (the source in /proc/mounts, default
/// vskel-overlay), allow_other (let other users in; always on when root
/// mounts, as with fuse-overlayfs), debug (like -d).
/// Ignored: rw, defaults, suid, dev, exec, async, the atime family, fstab
/// bookkeeping (auto, noauto, nofail, _netdev, user, users, owner, x-*,
/// comment=) and FUSE and fuse-overlayfs tuning (max_read, kernel_cache,
/// attr_timeout, clone_fd, auto_unmount, fast_ino, fsync, threaded,
/// timeout, writeback, noacl, static_nlink, volatile, ...). Refused: ro,
/// nosuid, nodev, noexec, sync, dirsync, uidmapping, gidmapping, squash_*,
/// uid, gid, umask, SELinux contexts, plugins, noxattrs,
/// xattr_permissions, userxattr, allow_root; and any other option.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Mount options, comma-separated (see above); may be given several times.
    #[arg(short = 'o', value_name = "OPTIONS", action = ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground and serve until unmounted.
    #[arg(short = 'f')]
    foreground: bool,
    /// Like -f (fuse-overlayfs' debug switch; set VSKEL_LOG=debug for details).
    #[arg(short = 'd', long = "debug")]
    debug: bool,
    /// Serve requests on one thread.
    #[arg(short = 's')]
    single_thread: bool,
    /// Where to report readiness (used when vskel starts itself in the background).
    #[arg(long = "ready-fd", value_name = "FD", hide = true)]
    ready_fd: Option<i32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// The mount point, after an optional source name (which mount(8)
    /// helpers pass; it is ignored).
    #[arg(value_name = "[SOURCE] MOUNTPOINT", num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,
}

/// What the `-o` options say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayOptions {
    /// `lowerdir=`, top first.
    pub lowers: Vec<PathBuf>,
    /// `upperdir=`.
    pub upper: Option<PathBuf>,
    /// `workdir=`.
    pub work: Option<PathBuf>,
    /// `fsname=`.
    pub fsname: Option<String>,
    /// `allow_other`.
    pub allow_other: bool,
    /// `debug`.
    pub debug: bool,
    /// Options taken and ignored, as given.
    pub ignored: Vec<String>,
}

/// Parse the `-o` arguments (each a comma-separated group).
pub fn parse_options(groups: &[String]) -> Result<OverlayOptions, String> {
    let mut parsed = OverlayOptions::default();
    for group in groups {
        for option in split_unescaped(group, ',') {
            if option.is_empty() {
                continue;
            }
            let (key, value) = match option.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (option.as_str(), None),
            };
            let need_value = || {
                value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| format!("option {key} needs a value ({key}=...)"))
            };
            match key {
                "lowerdir" => {
                    let layers = split_unescaped(need_value()?, ':');
                    if layers.iter().any(|l| l.is_empty()) {
                        return Err(format!(
                            "lowerdir={}: a layer is empty (layers are separated by ':'; \
                             write \\: for a colon inside a path)",
                            value.unwrap_or_default()
                        ));
                    }
                    parsed.lowers = layers.iter().map(|l| PathBuf::from(unescape(l))).collect();
                }
                "upperdir" => parsed.upper = Some(PathBuf::from(unescape(need_value()?))),
                "workdir" => parsed.work = Some(PathBuf::from(unescape(need_value()?))),
                "fsname" => parsed.fsname = Some(unescape(need_value()?)),
                "allow_other" => parsed.allow_other = true,
                "debug" => parsed.debug = true,
                _ if IGNORED.contains(&key) || key.starts_with("x-") || key == "comment" => {
                    parsed.ignored.push(option.clone());
                }
                _ => {
                    return Err(match REFUSED.iter().find(|(k, _)| *k == key) {
                        Some((_, why)) => format!("option {key} is not supported: {why}"),
                        None => format!(
                            "unknown option {key}; `vskel overlay --help` lists the options"
                        ),
                    });
                }
            }
        }
    }
    match (&parsed.upper, &parsed.work) {
        _ if parsed.lowers.is_empty() => Err("no lowerdir= given".to_string()),
        (None, _) => Err(
            "no upperdir= given: read-only overlays are not supported yet; \
             give upperdir= and workdir="
                .to_string(),
        ),
        (Some(_), None) => {
            Err("upperdir= needs workdir= (a directory on the same filesystem)".to_string())
        }
        (Some(_), Some(_)) => Ok(parsed),
    }
}

/// Split `text` at each `sep` not preceded by a backslash, keeping the
/// escapes in the pieces (they are undone by [`unescape`]).
fn split_unescaped(text: &str, sep: char) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        let current = pieces.last_mut().expect("never empty");
        if c == '\\' {
            current.push(c);
            if let Some(next) = chars.next() {
                current.push(next);
            }
        } else if c == sep {
            pieces.push(String::new());
        } else {
            current.push(c);
        }
    }
    pieces
}

/// Undo backslash escapes: `\x` is `x` (a trailing lone backslash stays).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next().unwrap_or('\\'));
        } else {
            out.push(c);
        }
    }
    out
}

/// Escape `\`, `,` and `:` in a value for an option string.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The option string that [`parse_options`] reads back as `options`
/// (ignored options left out).
pub fn render_options(options: &OverlayOptions) -> String {
    let path = |p: &Path| escape(&p.to_string_lossy());
    let mut parts = vec![format!(
        "lowerdir={}",
        options
            .lowers
            .iter()
            .map(|l| path(l))
            .collect::<Vec<_>>()
            .join(":")
    )];
    if let Some(upper) = &options.upper {
        parts.push(format!("upperdir={}", path(upper)));
    }
    if let Some(work) = &options.work {
        parts.push(format!("workdir={}", path(work)));
    }
    if let Some(fsname) = &options.fsname {
        parts.push(format!("fsname={}", escape(fsname)));
    }
    if options.allow_other {
        parts.push("allow_other".to_string());
    }
    if options.debug {
        parts.push("debug".to_string());
    }
    parts.join(",")
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

/// What was mounted.
#[derive(Debug, Clone, Serialize)]
struct Mounted {
    fsname: String,
    mountpoint: PathBuf,
    lowers: Vec<PathBuf>,
    upper: PathBuf,
    work: PathBuf,
    /// The serving process.
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<PathBuf>,
}

impl Mounted {
    fn text(&self) -> String {
        format!(
            "mounted overlay {} at {}: server pid {}",
            self.fsname,
            self.mountpoint.display(),
            self.pid
        )
    }
}

pub fn run(args: &Args, invocation: &Invocation<'_>) -> Result<()> {
    let readiness = Readiness::from_option(args.ready_fd)?;
    let mut options = parse_options(&args.options).map_err(Error::Usage)?;
    for option in &options.ignored {
        debug!("ignoring option {option}");
    }
    let (mountpoint, source) = match args.paths.as_slice() {
        [mountpoint] => (mountpoint, None),
        [source, mountpoint] => (mountpoint, Some(source)),
        _ => return Err(Error::Usage("give [SOURCE] MOUNTPOINT".to_string())),
    };
    if let Some(source) = source {
        debug!("ignoring the source {}", source.display());
    }
    let layers = check_layers(&mut options)?;
    let mountpoint = normalize(mountpoint)?;
    let fsname = options
        .fsname
        .clone()
        .unwrap_or_else(|| DEFAULT_FSNAME.to_string());
    let what = format!("the overlay at {}", mountpoint.display());
    let report = |pid, log| Mounted {
        fsname: fsname.clone(),
        mountpoint: mountpoint.clone(),
        lowers: layers.lowers.clone(),
        upper: layers.upper.clone(),
        work: layers.work.clone(),
        pid,
        log,
    };
    let pid_path = pid_file(&mountpoint);
    if args.foreground || args.debug || options.debug {
        make_run_dir()?;
        let _pid_file = PidFile::acquire(&pid_path, &mountpoint, &what)?;
        prepare(&mountpoint)?;
        let serve_options = ServeOptions {
            fsname: fsname.clone(),
            // As fuse-overlayfs does: a root mount is for everyone (an
            // overlay is usually a root filesystem for many users).
            allow_other: options.allow_other || crate::sys::is_root(),
            threads: if args.single_thread {
                1
            } else {
                ServeOptions::default().threads
            },
            // Nobody syncs an overlay: no control socket.
            control: None,
        };
        let mounted = report(std::process::id(), None);
        serve(&layers, &mountpoint, &serve_options, || {
            if let Err(e) = print(args.format, &mounted, || mounted.text()) {
                debug!("cannot report the mount on stdout: {e}");
            }
            readiness.notify();
        })?;
        // A clean run's log says nothing worth keeping, unless logging
        // was asked for (VSKEL_LOG); logs of failed runs stay (one per
        // mount point, in /run).
        let log = log_file(&mountpoint);
        if std::env::var_os(super::LOG_ENV).is_none() {
            match std::fs::remove_file(&log) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    debug!("cannot remove {}: {e}", log.display());
                }
                _ => {}
            }
        }
        Ok(())
    } else {
        if let Some(holder) = PidFile::holder(&pid_path)? {
            return Err(already_served(&what, &holder));
        }
        // The server refuses a work directory in use too; asking first
        // gives the error here rather than in the server's log.
        let work = TreeRoot::open(&layers.work)?;
        if workdir::in_use(&work)? {
            return Err(workdir::in_use_error(&work));
        }
        prepare(&mountpoint)?;
        let mut child = invocation.global_args()?;
        child.extend([OsString::from("overlay"), OsString::from("-f")]);
        if args.single_thread {
            child.push(OsString::from("-s"));
        }
        child.extend([
            OsString::from("-o"),
            OsString::from(render_options(&options)),
            mountpoint.as_os_str().to_os_string(),
        ]);
        let started =
            start_in_background(&child, &log_file(&mountpoint), &format!("mounting {what}"))?;
        let mounted = report(started.pid, Some(started.log));
        print(args.format, &mounted, || mounted.text())
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

    fn groups(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn paths(items: &[&str]) -> Vec<PathBuf> {
        items.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn parses_good_options() {
        struct Case {
            args: &'static [&'static str],
            lowers: &'static [&'static str],
            upper: &'static str,
            work: &'static str,
            fsname: Option<&'static str>,
            allow_other: bool,
            ignored: &'static [&'static str],
        }
        let cases = [
            Case {
                args: &["lowerdir=/a:/b:/c,upperdir=/u,workdir=/w"],
                lowers: &["/a", "/b", "/c"],
                upper: "/u",
                work: "/w",
                fsname: None,
                allow_other: false,
                ignored: &[],
            },
            Case {
                args: &["lowerdir=/a", "upperdir=/u", "workdir=/w,allow_other"],
                lowers: &["/a"],
                upper: "/u",
                work: "/w",
                fsname: None,
                allow_other: true,
                ignored: &[],
            },
            Case {
                // escapes: \: inside a layer, \, inside a value, \\ a backslash
                args: &[r"lowerdir=/a\:b:/c\,d:/e\\f,upperdir=/u\,v,workdir=/w\:x"],
                lowers: &["/a:b", "/c,d", r"/e\f"],
                upper: "/u,v",
                work: "/w:x",
                fsname: None,
                allow_other: false,
                ignored: &[],
            },
            Case {
                args: &["fsname=my\\,fs,lowerdir=relative/dir,upperdir=up,workdir=wk"],
                lowers: &["relative/dir"],
                upper: "up",
                work: "wk",
                fsname: Some("my,fs"),
                allow_other: false,
                ignored: &[],
            },
            Case {
                // what fuse-overlayfs' own tests and fstab lines pass
                args: &[
                    "lowerdir=/l,upperdir=/u,workdir=/w,suid,dev",
                    "rw,noatime,x-systemd.automount,comment=x,fsync=0,max_read=4096,,",
                ],
                lowers: &["/l"],
                upper: "/u",
                work: "/w",
                fsname: None,
                allow_other: false,
                ignored: &[
                    "suid",
                    "dev",
                    "rw",
                    "noatime",
                    "x-systemd.automount",
                    "comment=x",
                    "fsync=0",
                    "max_read=4096",
                ],
            },
            Case {
                // the later lowerdir wins, as with libfuse
                args: &["lowerdir=/old,lowerdir=/new,upperdir=/u,workdir=/w"],
                lowers: &["/new"],
                upper: "/u",
                work: "/w",
                fsname: None,
                allow_other: false,
                ignored: &[],
            },
        ];
        for case in cases {
            let got = parse_options(&groups(case.args))
                .unwrap_or_else(|e| panic!("{:?}: {e}", case.args));
            assert_eq!(got.lowers, paths(case.lowers), "{:?}", case.args);
            assert_eq!(
                got.upper,
                Some(PathBuf::from(case.upper)),
                "{:?}",
                case.args
            );
            assert_eq!(got.work, Some(PathBuf::from(case.work)), "{:?}", case.args);
            assert_eq!(got.fsname.as_deref(), case.fsname, "{:?}", case.args);
            assert_eq!(got.allow_other, case.allow_other, "{:?}", case.args);
            assert_eq!(got.ignored, groups(case.ignored), "{:?}", case.args);
        }
    }

    #[test]
    fn refuses_bad_options() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no lowerdir= given"),
            (&["upperdir=/u,workdir=/w"], "no lowerdir= given"),
            (&["lowerdir=/a"], "read-only overlays are not supported"),
            (
                &["lowerdir=/a,workdir=/w"],
                "read-only overlays are not supported",
            ),
            (&["lowerdir=/a,upperdir=/u"], "upperdir= needs workdir="),
            (
                &["lowerdir=/a::/b,upperdir=/u,workdir=/w"],
                "a layer is empty",
            ),
            (&["lowerdir=/a:,upperdir=/u,workdir=/w"], "a layer is empty"),
            (
                &["lowerdir=,upperdir=/u,workdir=/w"],
                "lowerdir needs a value",
            ),
            (
                &["lowerdir,upperdir=/u,workdir=/w"],
                "lowerdir needs a value",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,ro"],
                "option ro is not supported",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,nosuid"],
                "option nosuid is not supported",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w", "uidmapping=0:1000:1"],
                "UID/GID mapping is not supported",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,squash_to_root"],
                "squashing owners is not supported",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,allow_root"],
                "give allow_other instead",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,frobnicate"],
                "unknown option frobnicate",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,metacopy=on"],
                "unknown option metacopy",
            ),
        ];
        for (args, expected) in cases {
            let err = parse_options(&groups(args)).expect_err(&format!("{args:?} must fail"));
            assert!(err.contains(expected), "{args:?}: {err}");
        }
    }

    #[test]
    fn splits_and_unescapes() {
        let cases: &[(&str, char, &[&str])] = &[
            ("a,b,c", ',', &["a", "b", "c"]),
            (r"a\,b,c", ',', &[r"a\,b", "c"]),
            (r"a\\,b", ',', &[r"a\\", "b"]),
            ("", ',', &[""]),
            ("a,", ',', &["a", ""]),
            (r"x\", ',', &[r"x\"]),
            (r"/a\:b:/c", ':', &[r"/a\:b", "/c"]),
        ];
        for (text, sep, expected) in cases {
            assert_eq!(split_unescaped(text, *sep), groups(expected), "{text}");
        }
        let unescapes = [
            (r"plain", "plain"),
            (r"a\,b", "a,b"),
            (r"a\:b", "a:b"),
            (r"a\\b", r"a\b"),
            (r"a\xb", "axb"),
            (r"end\", r"end\"),
        ];
        for (text, expected) in unescapes {
            assert_eq!(unescape(text), expected, "{text}");
        }
    }

    #[test]
    fn rendered_options_parse_back() {
        let cases = [
            OverlayOptions {
                lowers: paths(&["/a", "/b"]),
                upper: Some("/u".into()),
                work: Some("/w".into()),
                ..Default::default()
            },
            OverlayOptions {
                lowers: paths(&["/with:colon", "/with,comma", r"/with\backslash"]),
                upper: Some("/u,1".into()),
                work: Some("/w:2".into()),
                fsname: Some("name,with:odd\\chars".into()),
                allow_other: true,
                debug: true,
                ignored: Vec::new(),
            },
        ];
        for options in cases {
            let rendered = render_options(&options);
            assert_eq!(
                parse_options(std::slice::from_ref(&rendered)).unwrap(),
                options,
                "{rendered}"
            );
        }
    }

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

    #[test]
    fn every_option_is_in_one_list_only() {
        for (refused, _) in REFUSED {
            assert!(!IGNORED.contains(refused), "{refused} is in both lists");
        }
        for special in [
            "lowerdir",
            "upperdir",
            "workdir",
            "fsname",
            "allow_other",
            "debug",
        ] {
            assert!(!IGNORED.contains(&special));
            assert!(!REFUSED.iter().any(|(k, _)| *k == special));
        }
    }
}
