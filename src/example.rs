//! A small built-in example root tree, for the demo, the tests and anyone
//! trying vskel without a real root filesystem at hand.
//!
//! It has what a skel build must get right: global and local parts, a
//! hard-link group in each, an absolute symlink, a setuid file, a file
//! capability and a user xattr (when run as root), files owned by another
//! user (as root), the account files that move to static/, a token in a
//! file, and the directories a build must skip or empty.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::sys;

/// A `security.capability` value granting `cap_net_raw+ep` (VFS_CAP v2:
/// magic|effective, permitted = 1 << CAP_NET_RAW(13), rest zero).
pub const CAP_NET_RAW_EP: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// The mtime (seconds) given to every file of the example.
pub const EXAMPLE_MTIME: i64 = 1_600_000_000;

/// Owner given to a few files when run as root.
pub const EXAMPLE_USER: u32 = 1000;

/// Files of the example: path, mode, content.
const FILES: &[(&str, u32, &str)] = &[
    (
        "bin/hello",
        0o755,
        "#!/bin/sh\necho hello from the example\n",
    ),
    ("sbin/init", 0o755, "#!/bin/sh\nexec /bin/hello\n"),
    ("lib/libdemo.so.1", 0o644, "not really a library\n"),
    ("usr/bin/tool", 0o4755, "#!/bin/sh\necho setuid tool\n"),
    ("usr/bin/ping", 0o755, "#!/bin/sh\necho ping\n"),
    (
        "usr/share/doc/demo/README",
        0o644,
        "The vskel example tree.\n",
    ),
    ("usr/local/bin/site-tool", 0o755, "#!/bin/sh\necho site\n"),
    (
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    ),
    (
        "etc/shadow",
        0o640,
        "root:*:19000:0:99999:7:::\nuser:*:19000:0:99999:7:::\n",
    ),
    (
        "etc/group",
        0o644,
        "root:x:0:\nshadow:x:42:\nuser:x:1000:\n",
    ),
    ("etc/gshadow", 0o640, "root:*::\nshadow:*::\nuser:*::\n"),
    ("etc/hosts", 0o644, "127.0.0.1 localhost buildhost\n"),
    ("etc/hostname", 0o644, "buildhost\n"),
    ("etc/motd", 0o644, "Welcome to the example.\n"),
    ("etc/fstab", 0o644, "# empty\n"),
    (
        "etc/ssl/certs/a.pem",
        0o644,
        "-----BEGIN CERTIFICATE-----\n",
    ),
    ("var/lib/demo/state", 0o600, "state of the demo service\n"),
    ("home/user/.profile", 0o644, "# must not reach a skel\n"),
    ("root/.bashrc", 0o644, "# must not reach a skel\n"),
    ("tmp/junk", 0o644, "must not reach a skel\n"),
    ("proc/cpuinfo", 0o444, "must not reach a skel\n"),
    ("dev/null-ish", 0o644, "must not reach a skel\n"),
];

/// Hard links: (existing, new name).
const HARD_LINKS: &[(&str, &str)] = &[
    ("bin/hello", "bin/hello-again"),
    ("etc/ssl/certs/a.pem", "etc/ssl/certs/b.pem"),
];

/// Symlinks: (name, target).
const SYMLINKS: &[(&str, &str)] = &[
    ("lib64", "lib"),
    ("etc/alternatives/editor", "/usr/bin/tool"),
    ("usr/bin/hello-link", "../../bin/hello"),
];

/// Empty directories: (path, mode).
const DIRS: &[(&str, u32)] = &[
    ("var/log", 0o755),
    ("var/tmp", 0o1777),
    ("lost+found", 0o700),
];

/// Write the example root tree into the empty or missing directory `dir`.
pub fn make_example_root(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    for (rel, mode, content) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, content)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
    }
    for (rel, mode) in DIRS {
        let path = dir.join(rel);
        fs::create_dir_all(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(*mode))?;
    }
    for (from, to) in HARD_LINKS {
        fs::hard_link(dir.join(from), dir.join(to))?;
    }
    for (name, target) in SYMLINKS {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink(target, path)?;
    }
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777))?;
    sys::lset_xattr(
        &dir.join("usr/share/doc/demo/README"),
        c"user.vskel.demo",
        b"kept",
    )?;
    if sys::is_root() {
        std::os::unix::fs::chown(dir.join("etc/shadow"), Some(0), Some(42))?;
        std::os::unix::fs::chown(
            dir.join("var/lib/demo/state"),
            Some(EXAMPLE_USER),
            Some(EXAMPLE_USER),
        )?;
        sys::lset_xattr(
            &dir.join("usr/bin/ping"),
            c"security.capability",
            &CAP_NET_RAW_EP,
        )?;
    }
    set_times(dir)
}

/// Give every entry below `dir` (not following symlinks) the example mtime,
/// deepest first so directory times stay put.
fn set_times(dir: &Path) -> io::Result<()> {
    let time = filetime::FileTime::from_unix_time(EXAMPLE_MTIME, 0);
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_times(&entry.path())?;
        }
        filetime::set_symlink_file_times(entry.path(), time, time)?;
    }
    filetime::set_symlink_file_times(dir, time, time)
}
