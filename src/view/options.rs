//! The options of an overlay mount, in fuse-overlayfs' (and libfuse's)
//! `-o` syntax: the parser, its tables of ignored and refused options, the
//! escapes, and the options a mount(8) line may give a view.
//!
//! Syntax: `-o` may be given several times; options are separated by
//! `,`; a backslash makes the next character literal, so `\,` is a comma
//! inside a value, `\:` a colon inside a lowerdir path (not a layer
//! separator) and `\\` a backslash. `vskel overlay` and the
//! `mount.fuse.vskel` helper both read options through this module.

use std::path::{Path, PathBuf};

/// mount(8) flags that are vskel's behaviour anyway, and fstab
/// bookkeeping (as are `x-*` and `comment=`): taken and ignored by both
/// overlays and views.
const MOUNT_FLAGS: &[&str] = &[
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
];

/// Tuning that vskel decides itself: taken and ignored by overlays.
const TUNING: &[&str] = &[
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

/// Is `key` an option taken and ignored by every mount (a mount(8) flag or
/// fstab bookkeeping)?
fn is_mount_flag(key: &str) -> bool {
    MOUNT_FLAGS.contains(&key) || key.starts_with("x-") || key == "comment"
}

/// Is `key` an option an overlay takes and ignores?
fn is_ignored(key: &str) -> bool {
    is_mount_flag(key) || TUNING.contains(&key)
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
    /// `threads=N`: at most N workers serve requests (four or two while
    /// requests come one at a time, by how busy the CPUs are; more while
    /// requests of several callers wait); the default depends on the CPUs.
    pub threads: Option<usize>,
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
                "threads" => {
                    let value = need_value()?;
                    parsed.threads = match value.parse::<usize>() {
                        Ok(n) if n > 0 => Some(n),
                        _ => {
                            return Err(format!(
                                "threads={value}: give a number of threads, at least 1"
                            ));
                        }
                    };
                }
                _ if is_ignored(key) => {
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
    if let Some(threads) = options.threads {
        parts.push(format!("threads={threads}"));
    }
    parts.join(",")
}

/// What the options of a view's mount(8) line say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ViewOptions {
    /// `config=`: vskel's configuration file.
    pub config: Option<PathBuf>,
    /// Options taken and ignored, as given.
    pub ignored: Vec<String>,
}

/// Parse the options of a view's mount(8) line: `config=PATH`, the
/// mount(8) flags and fstab bookkeeping an overlay ignores too; anything
/// else is refused.
pub fn parse_view_options(groups: &[String]) -> Result<ViewOptions, String> {
    let mut parsed = ViewOptions::default();
    for group in groups {
        for option in split_unescaped(group, ',') {
            let key = option.split_once('=').map_or(option.as_str(), |(k, _)| k);
            match option.split_once('=') {
                _ if option.is_empty() => {}
                Some(("config", value)) if !value.is_empty() => {
                    parsed.config = Some(PathBuf::from(unescape(value)));
                }
                _ if is_mount_flag(key) => parsed.ignored.push(option.clone()),
                _ => return Err(format!("option {option} is not supported for a view")),
            }
        }
    }
    Ok(parsed)
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
                &["lowerdir=/a,upperdir=/u,workdir=/w,threads=0"],
                "threads=0: give a number of threads",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,threads=many"],
                "threads=many: give a number of threads",
            ),
            (
                &["lowerdir=/a,upperdir=/u,workdir=/w,threads="],
                "threads needs a value",
            ),
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
                threads: Some(3),
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
    fn every_option_is_in_one_list_only() {
        for (refused, _) in REFUSED {
            assert!(!is_ignored(refused), "{refused} is in both lists");
        }
        for special in [
            "lowerdir",
            "upperdir",
            "workdir",
            "fsname",
            "allow_other",
            "debug",
            "threads",
        ] {
            assert!(!is_ignored(special));
            assert!(!REFUSED.iter().any(|(k, _)| *k == special));
        }
    }

    #[test]
    fn parses_view_options() {
        type Case = (
            &'static [&'static str],
            Result<Option<&'static str>, &'static str>,
        );
        let cases: &[Case] = &[
            (&[], Ok(None)),
            (
                &["rw,defaults,noauto,_netdev,x-systemd.automount"],
                Ok(None),
            ),
            (
                &["config=/etc/vskel/b.toml,nofail"],
                Ok(Some("/etc/vskel/b.toml")),
            ),
            (&["defaults", "config=/a\\,b"], Ok(Some("/a,b"))),
            (
                &["nosuid"],
                Err("option nosuid is not supported for a view"),
            ),
            (&["lowerdir=/a"], Err("option lowerdir=/a is not supported")),
            (
                &["max_read=4096"],
                Err("option max_read=4096 is not supported"),
            ),
            (&["config="], Err("option config= is not supported")),
        ];
        for (args, expected) in cases {
            match (parse_view_options(&groups(args)), expected) {
                (Ok(got), Ok(config)) => {
                    assert_eq!(got.config.as_deref(), config.map(Path::new), "{args:?}")
                }
                (Err(err), Err(want)) => assert!(err.contains(want), "{args:?}: {err}"),
                (got, _) => panic!("{args:?}: {got:?}"),
            }
        }
    }
}
