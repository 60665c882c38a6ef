//! Clearing suid and sgid on a real view, next to kernel overlayfs over the
//! same layers: a caller without `CAP_FSETID` (uid 65534) writing
//! (buffered, `O_DIRECT`, `O_WRONLY`, `O_RDWR`), truncating (`ftruncate`,
//! `truncate(2)`) or opening with `O_TRUNC` a file with suid, sgid with and
//! without group-exec; root doing the same (the bits stay); and a file
//! with `security.capability` (dropped by any write or truncate). Both
//! mounts must leave the same modes (and xattrs) behind.
//!
//! Also: write-only opens go direct, so one `write(2)` to a new file is one
//! WRITE request with no GETXATTR before it (counted with the kernel's fuse
//! tracepoints in a trace instance of the test's own; skipped, saying so,
//! where the kernel has none); and a reader holding cached pages of a file
//! sees what a write-only (direct) handle writes.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::{MountGuard, require_root};

/// Modes of the files under test.
const MODES: [u32; 4] = [0o6777, 0o4777, 0o2777, 0o2767];

/// What is done to a file: a perl or dd command line run on it.
const OPS: [(&str, &str); 7] = [
    (
        "write",
        "sysopen(F, $ARGV[0], 1) or die $!; syswrite(F, 'x' x 100) or die $!",
    ),
    (
        "rdwr",
        "sysopen(F, $ARGV[0], 2) or die $!; syswrite(F, 'x' x 100) or die $!",
    ),
    ("direct", ""),
    (
        "ftruncate",
        "sysopen(F, $ARGV[0], 1) or die $!; truncate(F, 10) or die $!",
    ),
    ("truncate", "truncate($ARGV[0], 10) or die $!"),
    ("otrunc", "sysopen(F, $ARGV[0], 1 | 512) or die $!"),
    // An empty SETATTR over FUSE (FUSE_HANDLE_KILLPRIV_V2 leaves the
    // clearing to the server).
    ("chown-nothing", "chown(-1, -1, $ARGV[0]) or die $!"),
];

/// Run `op` on `file`, as uid/gid 65534 unless `root`.
fn run(op: &str, file: &Path, root: bool) {
    let mut cmd = if root {
        Command::new("env")
    } else {
        let mut c = Command::new("setpriv");
        c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"]);
        c
    };
    if op == "direct" {
        cmd.arg("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", file.display()));
        cmd.args([
            "bs=4096",
            "count=1",
            "oflag=direct",
            "conv=notrunc",
            "status=none",
        ]);
    } else {
        let script = OPS.iter().find(|(name, _)| *name == op).unwrap().1;
        cmd.args(["perl", "-e", script]).arg(file);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{op} {}: {out:?}", file.display());
}

/// The files: one per (caller, mode, op), and one with a capability per op.
fn fill(lower: &Path) {
    for who in ["user", "root"] {
        for mode in MODES {
            for (op, _) in OPS {
                let f = lower.join(format!("{who}-{mode:o}-{op}"));
                fs::write(&f, "data\n").unwrap();
                own_for(&f, op, who == "user");
                fs::set_permissions(&f, fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    }
    for (op, _) in OPS {
        let f = lower.join(format!("cap-{op}"));
        fs::write(&f, "data\n").unwrap();
        own_for(&f, op, true);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o757)).unwrap();
        let cap = [1u8, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        xattr_set(&f, "security.capability", &cap);
    }
}

/// Only its owner may `chown(f, -1, -1)`: such a file of the user's is
/// owned by uid 65534 (group 0, which the user is not in).
fn own_for(f: &Path, op: &str, user: bool) {
    if op == "chown-nothing" && user {
        std::os::unix::fs::chown(f, Some(65534), Some(0)).unwrap();
    }
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    rustix::fs::setxattr(
        c.as_c_str(),
        n.as_c_str(),
        value,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn has_xattr(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 64];
    rustix::fs::getxattr(path, name, &mut buf).is_ok()
}

/// Every case on the mount at `mnt`: (file, mode after, capability left).
fn run_all(mnt: &Path) -> Vec<(String, u32, bool)> {
    let mut seen = Vec::new();
    for who in ["user", "root"] {
        for mode in MODES {
            for (op, _) in OPS {
                let name = format!("{who}-{mode:o}-{op}");
                let f = mnt.join(&name);
                run(op, &f, who == "root");
                let after = fs::metadata(&f).unwrap().mode() & 0o7777;
                seen.push((name, after, false));
            }
        }
    }
    for (op, _) in OPS {
        let name = format!("cap-{op}");
        let f = mnt.join(&name);
        run(op, &f, false);
        let after = fs::metadata(&f).unwrap().mode() & 0o7777;
        seen.push((name, after, has_xattr(&f, "security.capability")));
    }
    seen
}

/// Layers in a fresh directory: lower (filled), upper, work, mnt.
fn layers(base: &Path) {
    for sub in ["lower", "upper", "work", "mnt"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    fill(&base.join("lower"));
}

fn overlay_options(base: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        base.join("lower").display(),
        base.join("upper").display(),
        base.join("work").display()
    )
}

#[test]
fn suid_and_sgid_are_cleared_as_kernel_overlayfs_clears_them() {
    if !require_root("suid_and_sgid_are_cleared_as_kernel_overlayfs_clears_them") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // The other users must reach the files.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let (k, v) = (dir.path().join("kernel"), dir.path().join("vskel"));
    layers(&k);
    layers(&v);

    let kernel = {
        let guard = MountGuard(k.join("mnt"));
        let status = Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &overlay_options(&k)])
            .arg(guard.path())
            .status()
            .unwrap();
        assert!(status.success(), "kernel overlayfs refused the layers");
        run_all(guard.path())
    };
    let view = {
        let guard = MountGuard(v.join("mnt"));
        let status = Command::new(env!("CARGO_BIN_EXE_vskel"))
            .args(["overlay", "-o", &overlay_options(&v)])
            .arg(guard.path())
            .status()
            .unwrap();
        assert!(status.success(), "vskel overlay did not mount");
        run_all(guard.path())
    };
    let differ: Vec<_> = kernel
        .iter()
        .zip(&view)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("kernel {a:?} vskel {b:?}"))
        .collect();
    assert!(differ.is_empty(), "{}", differ.join("\n"));
    // The cases do test something: a non-owner's write kills suid.
    assert!(kernel.contains(&("user-6777-write".into(), 0o777, false)));
    assert!(kernel.contains(&("root-6777-write".into(), 0o6777, false)));
}

#[test]
fn a_reader_with_cached_pages_sees_a_write_only_handles_writes() {
    if !require_root("a_reader_with_cached_pages_sees_a_write_only_handles_writes") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = dir.path();
    layers(base);
    fs::write(base.join("lower/old"), vec![b'a'; 8192]).unwrap();
    let guard = MountGuard(base.join("mnt"));
    let status = Command::new(env!("CARGO_BIN_EXE_vskel"))
        .args(["overlay", "-o", &overlay_options(base)])
        .arg(guard.path())
        .status()
        .unwrap();
    assert!(status.success(), "vskel overlay did not mount");
    for name in ["old", "new"] {
        let path = guard.path().join(name);
        // A new file, or one copied up (a reader holding the lower file
        // of one copied up later reads that file: not the case here).
        fs::write(&path, vec![b'a'; 8192]).unwrap();
        // Cached pages, then a write through O_WRONLY (direct).
        let script = r#"
            use Fcntl;
            sysopen(R, $ARGV[0], O_RDONLY) or die $!;
            sysread(R, my $before, 8192) == 8192 or die "short";
            sysopen(W, $ARGV[0], O_WRONLY) or die $!;
            syswrite(W, 'b' x 4096) == 4096 or die $!;
            sysseek(R, 0, 0); sysread(R, my $after, 4);
            print $after;
        "#;
        let out = Command::new("perl")
            .args(["-e", script])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"bbbb", "{name}: the reader saw stale data");
    }
}

/// A tracefs instance of this test recording the FUSE requests of one
/// connection; removed when dropped.
struct Trace(std::path::PathBuf);

impl Trace {
    /// Record the requests sent on the connection of the mount `mnt`, or
    /// `None` where the kernel has no fuse tracepoints.
    fn start(mnt: &Path) -> Option<Trace> {
        let tracing = Path::new("/sys/kernel/tracing");
        if !tracing.join("events/fuse/fuse_request_send").exists() {
            return None;
        }
        let dir = tracing.join(format!("instances/vskel-killpriv-{}", std::process::id()));
        fs::create_dir(&dir).unwrap();
        let trace = Trace(dir);
        let dev = fs::metadata(mnt).unwrap().dev();
        // The kernel's dev_t of the connection: major << 20 | minor.
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        let connection = (u64::from(major) << 20) | u64::from(minor);
        let event = trace.0.join("events/fuse/fuse_request_send");
        fs::write(event.join("filter"), format!("connection == {connection}")).unwrap();
        fs::write(event.join("enable"), "1").unwrap();
        Some(trace)
    }

    /// The opcodes recorded so far.
    fn opcodes(&self) -> Vec<String> {
        let text = fs::read_to_string(self.0.join("trace")).unwrap();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let at = l.find('(')?;
                let end = l[at..].find(')')?;
                Some(l[at + 1..at + end].to_string())
            })
            .collect()
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join("events/fuse/fuse_request_send/enable"), "0");
        if let Err(e) = fs::remove_dir(&self.0) {
            eprintln!("removing {}: {e}", self.0.display());
        }
    }
}

#[test]
fn one_write_to_a_new_write_only_file_is_one_write_request() {
    if !require_root("one_write_to_a_new_write_only_file_is_one_write_request") {
        return;
    }
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let base = dir.path();
    for sub in ["lower", "upper", "work", "mnt"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    let guard = MountGuard(base.join("mnt"));
    let status = Command::new(env!("CARGO_BIN_EXE_vskel"))
        .args(["overlay", "-o", &overlay_options(base)])
        .arg(guard.path())
        .status()
        .unwrap();
    assert!(status.success(), "vskel overlay did not mount");
    let Some(trace) = Trace::start(guard.path()) else {
        eprintln!("SKIPPED the request count: the kernel has no fuse tracepoints");
        return;
    };
    let path = guard.path().join("new");
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, &vec![7u8; 64 * 1024]).unwrap();
    let ops = trace.opcodes();
    drop(file);
    let count = |op: &str| ops.iter().filter(|o| *o == op).count();
    assert_eq!(count("FUSE_CREATE"), 1, "{ops:?}");
    assert_eq!(count("FUSE_WRITE"), 1, "{ops:?}");
    assert_eq!(count("FUSE_GETXATTR"), 0, "{ops:?}");
    assert_eq!(fs::metadata(&path).unwrap().len(), 64 * 1024);
}
