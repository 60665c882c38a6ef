//! The view's command line on real temporary setups: `create-vs --view`,
//! `list`, `remove-vs` of a view, `mount` / `unmount` (background server,
//! pid file, refusal of a second mount, busy mounts), stale-mount clearing
//! after a server was killed with SIGKILL, `overlay` (fuse-overlayfs'
//! command line), the `mount.fuse.vskel` helper and bad input.
//!
//! Every mount a test makes is undone by a [`MountGuard`] (`umount -l`),
//! also when the test fails.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use common::{Setup, require_root};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;

/// Exit code of an operational failure.
const FAILURE: i32 = 1;
/// Exit code of a usage error.
const USAGE: i32 = 2;
/// How long a test waits for a mount to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(10);
/// The mount helper, in the checkout.
const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/mount-helpers/mount.fuse.vskel"
);

/// Detaches a mount point when dropped (`umount -l`), and kills a server
/// child, if it has one: no test leaves a mount behind.
struct MountGuard {
    mountpoint: PathBuf,
    child: Option<Child>,
}

impl MountGuard {
    fn new(mountpoint: &Path) -> Self {
        MountGuard {
            mountpoint: mountpoint.to_path_buf(),
            child: None,
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        while is_mount_point(&self.mountpoint) {
            let status = StdCommand::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                break;
            }
        }
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The mount points listed in /proc/self/mountinfo.
fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(mp.replace("\\040", " ")))
        .collect()
}

fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// The mountinfo line of the mount at `path`, if any.
fn mountinfo_line(path: &Path) -> Option<String> {
    let wanted = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(wanted))
        .map(str::to_string)
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < MOUNT_WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A setup with skel "base" (the example tree) and view vserver "web1".
fn with_view() -> Setup {
    let setup = Setup::new("");
    // Mount points below the setup directory are then closed to host
    // users, as `vskel mount` requires of a mount point of one's choice.
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    setup.build_example_skel("base");
    setup
        .vskel()
        .args([
            "create-vs",
            "--view",
            "base",
            "web1",
            "web1.example.org",
            "10.1.2.3",
        ])
        .assert()
        .success();
    setup
}

fn view_dir(setup: &Setup, name: &str) -> PathBuf {
    setup.root.join(".views").join(name)
}

fn json(output: &[u8]) -> Value {
    serde_json::from_slice(output)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(output)))
}

/// The pid in a view's mount.pid.
fn server_pid(setup: &Setup, name: &str) -> u32 {
    let text = fs::read_to_string(view_dir(setup, name).join("mount.pid")).unwrap();
    text.lines().next().unwrap().parse().unwrap()
}

/// Is process `pid` still there? A killed multi-threaded server's main
/// thread can be a zombie while its other threads still exit (and still
/// hold its files and locks): alive until every thread is a zombie.
fn is_alive(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        fs::read_to_string(task.path().join("stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    })
}

#[test]
fn create_vs_view_prepares_the_view_directory() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let out = setup
        .vskel()
        .args([
            "create-vs",
            "--view",
            "base",
            "web1",
            "web1.example.org",
            "10.1.2.3",
            "--format",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let created = json(&out);
    let dir = view_dir(&setup, "web1");
    assert_eq!(created["kind"], "view");
    assert_eq!(created["root"], dir.join("merged").to_str().unwrap());
    assert_eq!(created["context"], 50);

    for sub in ["upper", "work", "merged"] {
        let path = dir.join(sub);
        let meta = fs::metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(meta.is_dir(), "{sub}");
        assert_eq!(meta.mode() & 0o7777, 0o755, "{sub}");
        assert_eq!(
            fs::read_dir(&path).unwrap().count(),
            0,
            "{sub} must be empty"
        );
    }
    let hosts = fs::read_to_string(dir.join("static/etc/hosts")).unwrap();
    assert!(
        hosts.contains("10.1.2.3\tweb1.example.org\tweb1"),
        "{hosts}"
    );
    assert!(!hosts.contains("%%"), "{hosts}");
    let skel_passwd = setup.root.join(".skel/base/static/etc/passwd");
    assert_eq!(
        fs::read(dir.join("static/etc/passwd")).unwrap(),
        fs::read(skel_passwd).unwrap()
    );
    // Only static/ is copied: local and global stay in the skel.
    assert!(!dir.join("static/bin").exists());
    assert!(!dir.join("static/etc/motd").exists());
    // No tree; config file and context link as for a tree.
    assert!(!setup.root.join("web1").exists());
    assert!(setup.etc.join("web1.conf").exists());
    assert_eq!(
        fs::read_link(setup.etc.join("contexts/50")).unwrap(),
        dir.join("merged")
    );
    // Nothing left in staging.
    let staging = setup.root.join(".vskel/staging");
    assert_eq!(fs::read_dir(staging).unwrap().count(), 0);
}

#[test]
fn list_shows_a_view_and_remove_vs_removes_its_directory() {
    let setup = with_view();
    setup.create("base", "tree1", "10.1.2.4");
    let out = setup
        .vskel()
        .args(["list", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let kinds: Vec<(String, String)> = json(&out)["vservers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("tree1".into(), "tree".into()),
            ("web1".into(), "view".into())
        ]
    );
    setup
        .vskel()
        .arg("list")
        .assert()
        .success()
        .stdout(contains("view"));

    setup
        .vskel()
        .args(["remove-vs", "web1"])
        .assert()
        .success()
        .stdout(contains(format!(
            "view {}",
            view_dir(&setup, "web1").display()
        )));
    assert!(!view_dir(&setup, "web1").exists());
    assert!(!setup.etc.join("web1.conf").exists());
    assert!(!setup.etc.join("contexts/50").exists());
    assert!(setup.etc.join("contexts/51").exists(), "tree1's");
    assert!(setup.root.join(".skel/base/static/etc/hosts").exists());
    setup
        .vskel()
        .arg("list")
        .assert()
        .success()
        .stdout(contains("web1").not());
}

/// One bad command: its arguments, exit code and what stderr must say.
struct Bad {
    args: Vec<String>,
    code: i32,
    stderr_has: &'static str,
}

fn bad(args: &[&str], code: i32, stderr_has: &'static str) -> Bad {
    Bad {
        args: args.iter().map(|s| s.to_string()).collect(),
        code,
        stderr_has,
    }
}

#[test]
fn bad_input_gives_clear_errors_and_writes_nothing() {
    let setup = with_view();
    setup.create("base", "tree1", "10.1.2.4");
    let not_a_mount = setup.dir.path().join("plain-dir");
    fs::create_dir(&not_a_mount).unwrap();
    let not_a_mount = not_a_mount.to_str().unwrap();
    let cases = [
        bad(&["mount", "nosuch"], USAGE, "no vserver named \"nosuch\""),
        bad(&["mount", "tree1"], USAGE, "is a tree"),
        bad(&["mount", "../x"], USAGE, "vserver name"),
        bad(
            &["mount", "web1", "/nonexistent-dir-of-vskel-tests"],
            USAGE,
            "does not exist",
        ),
        bad(&["mount", "web1", "--ready-fd", "7"], USAGE, "--ready-fd 7"),
        bad(
            &["unmount", "nosuch"],
            USAGE,
            "no view vserver and no mount point",
        ),
        bad(&["unmount", "tree1"], USAGE, "not a view"),
        bad(
            &["unmount", "web1"],
            FAILURE,
            "view \"web1\" is not mounted",
        ),
        bad(&["unmount", not_a_mount], FAILURE, "is not a mount point"),
        bad(&["unmount", "/"], FAILURE, "is not a vskel mount"),
        bad(
            &[
                "create-vs",
                "--view",
                "base",
                "web2",
                "web2.example.org",
                "300.1.1.1",
            ],
            USAGE,
            "300.1.1.1",
        ),
        bad(
            &[
                "create-vs",
                "--view",
                "nosuch",
                "web2",
                "web2.example.org",
                "10.0.0.9",
            ],
            USAGE,
            "no skel named",
        ),
        bad(
            &[
                "create-vs",
                "--view",
                "base",
                "web1",
                "web1.example.org",
                "10.0.0.9",
            ],
            FAILURE,
            "exists already",
        ),
        bad(
            &["overlay", "-o", "lowerdir=/a", not_a_mount],
            USAGE,
            "read-only overlays are not supported",
        ),
        bad(
            &[
                "overlay",
                "-o",
                "lowerdir=/a,upperdir=/u,workdir=/w,uidmapping=0:1:1",
                not_a_mount,
            ],
            USAGE,
            "UID/GID mapping is not supported",
        ),
        bad(
            &[
                "overlay",
                "-o",
                "lowerdir=/no/such/dir,upperdir=/tmp,workdir=/tmp",
                not_a_mount,
            ],
            USAGE,
            "lowerdir=/no/such/dir",
        ),
        bad(&["overlay", not_a_mount], USAGE, "no lowerdir= given"),
    ];
    let before = common::snapshot(setup.dir.path());
    for case in cases {
        setup
            .vskel()
            .args(&case.args)
            .assert()
            .code(case.code)
            .stderr(contains(case.stderr_has));
        assert_eq!(
            common::snapshot(setup.dir.path()),
            before,
            "{:?} changed the setup",
            case.args
        );
    }
}

#[test]
fn mount_serves_the_view_in_the_background_until_unmounted() {
    if !require_root("mount_serves_the_view_in_the_background_until_unmounted") {
        return;
    }
    let setup = with_view();
    let dir = view_dir(&setup, "web1");
    let merged = dir.join("merged");
    let _guard = MountGuard::new(&merged);
    let out = setup
        .vskel()
        .args(["mount", "web1", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let mounted = json(&out);
    assert_eq!(mounted["fsname"], "base:web1");
    assert_eq!(mounted["mountpoint"], merged.to_str().unwrap());
    let pid = server_pid(&setup, "web1");
    assert_eq!(mounted["pid"], pid);
    assert!(is_alive(pid));
    let line = mountinfo_line(&merged).expect("mounted");
    assert!(line.contains(" base:web1 "), "{line}");

    // The layers, top first: static over local over global.
    let hosts = fs::read_to_string(merged.join("etc/hosts")).unwrap();
    assert!(hosts.contains("10.1.2.3"), "{hosts}");
    assert!(merged.join("bin/hello").exists());
    assert!(merged.join("etc/motd").exists());
    // Writes land in upper/, never in the skel.
    fs::write(merged.join("etc/motd"), "changed\n").unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("upper/etc/motd")).unwrap(),
        "changed\n"
    );
    assert_ne!(
        fs::read_to_string(setup.root.join(".skel/base/local/etc/motd")).unwrap(),
        "changed\n"
    );

    // A second mount, here or elsewhere, is refused.
    let elsewhere = setup.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let _guard2 = MountGuard::new(&elsewhere);
    for extra in [None, Some(&elsewhere)] {
        let mut cmd = setup.vskel();
        cmd.args(["mount", "web1"]);
        if let Some(mp) = extra {
            cmd.arg(mp);
        }
        cmd.assert()
            .code(FAILURE)
            .stderr(contains("mounted already"))
            .stderr(contains(format!("pid {pid}")));
    }
    // remove-vs refuses a mounted view.
    setup
        .vskel()
        .args(["remove-vs", "web1"])
        .assert()
        .code(FAILURE)
        .stderr(contains("unmount web1"));
    assert!(dir.join("upper/etc/motd").exists());

    let out = setup
        .vskel()
        .args(["unmount", "web1", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let unmounted = json(&out);
    assert_eq!(unmounted["server_pid"], pid);
    assert_eq!(unmounted["server_exited"], true);
    assert!(!is_mount_point(&merged));
    assert!(!is_alive(pid));
    assert!(!dir.join("mount.pid").exists());
    assert!(
        fs::read_to_string(dir.join("mount.log"))
            .unwrap()
            .contains("mounted view web1")
    );
}

#[test]
fn a_mount_waits_for_a_running_sync_to_finish() {
    if !require_root("a_mount_waits_for_a_running_sync_to_finish") {
        return;
    }
    let setup = with_view();
    let merged = view_dir(&setup, "web1").join("merged");
    let _guard = MountGuard::new(&merged);
    // Hold the vserver's sync lock, as a running `vskel sync web1` does.
    let lock_dir = setup.root.join(".vskel/sync");
    fs::create_dir_all(&lock_dir).unwrap();
    let lock = fs::File::create(lock_dir.join("web1.lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let mut mount = setup
        .vskel_process()
        .env("VSKEL_LOG", "info")
        .args(["mount", "web1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(mount.try_wait().unwrap().is_none(), "mount did not wait");
    assert!(!is_mount_point(&merged), "mounted while a sync ran");
    // The sync ends: the mount goes ahead.
    drop(lock);
    let out = mount.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("waiting for the running sync of web1"),
        "{stderr}"
    );
    assert!(is_mount_point(&merged));
    // A sync started now finds the view mounted and holds its writes.
    let out = setup
        .vskel()
        .args(["sync", "web1", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(json(&out)["writes_held"], true);
    setup.vskel().args(["unmount", "web1"]).assert().success();
}

#[test]
fn a_server_that_fails_to_start_is_reported_with_its_log() {
    if !require_root("a_server_that_fails_to_start_is_reported_with_its_log") {
        return;
    }
    let setup = with_view();
    let dir = view_dir(&setup, "web1");
    // work/ on another filesystem than upper/: the server refuses to start.
    let elsewhere = setup.dir.path().join("other-fs");
    fs::create_dir(&elsewhere).unwrap();
    let _guard = MountGuard::new(&elsewhere);
    let status = StdCommand::new("mount")
        .args(["-t", "tmpfs", "vskel-test-tmpfs"])
        .arg(&elsewhere)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_dir(dir.join("work")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("work")).unwrap();
    setup
        .vskel()
        .args(["mount", "web1"])
        .assert()
        .code(FAILURE)
        .stderr(contains("mounting view \"web1\" failed"))
        .stderr(contains(format!(
            "the end of {}",
            dir.join("mount.log").display()
        )))
        .stderr(contains("different filesystems"));
    assert!(!is_mount_point(&dir.join("merged")));
    assert!(!dir.join("mount.pid").exists());
}

#[test]
fn unmount_by_mount_point_and_busy_mounts() {
    if !require_root("unmount_by_mount_point_and_busy_mounts") {
        return;
    }
    let setup = with_view();
    let mountpoint = setup.dir.path().join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    let _guard = MountGuard::new(&mountpoint);
    setup
        .vskel()
        .arg("mount")
        .arg("web1")
        .arg(&mountpoint)
        .assert()
        .success();
    assert!(is_mount_point(&mountpoint));
    let pid = server_pid(&setup, "web1");

    // A process working inside keeps it busy: refused without --lazy.
    let mut user = StdCommand::new("sleep")
        .arg("30")
        .current_dir(mountpoint.join("etc"))
        .spawn()
        .unwrap();
    setup
        .vskel()
        .arg("unmount")
        .arg(&mountpoint)
        .assert()
        .code(FAILURE)
        .stderr(contains("busy"))
        .stderr(contains("--lazy"));
    assert!(is_mount_point(&mountpoint));
    setup
        .vskel()
        .args(["unmount", "--lazy"])
        .arg(&mountpoint)
        .assert()
        .success()
        .stdout(contains("lazily unmounted view web1"));
    assert!(!is_mount_point(&mountpoint));
    user.kill().unwrap();
    user.wait().unwrap();
    wait_until("the server to exit once its last user left", || {
        !is_alive(pid)
    });
}

/// Mount fuse-overlayfs at `mountpoint` in the foreground and kill it with
/// SIGKILL: a stale FUSE mount. None when fuse-overlayfs is not installed.
fn stale_fuse_mount(setup: &Setup, mountpoint: &Path) -> Option<MountGuard> {
    if StdCommand::new("fuse-overlayfs")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!(
            "skipped: fuse-overlayfs is not installed (apt-get install fuse-overlayfs) \
             to make a stale FUSE mount"
        );
        return None;
    }
    let base = setup.dir.path().join("fo");
    for sub in ["lower", "upper", "work"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    let mut guard = MountGuard::new(mountpoint);
    let child = StdCommand::new("fuse-overlayfs")
        .arg("-f")
        .arg("-o")
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            base.join("lower").display(),
            base.join("upper").display(),
            base.join("work").display()
        ))
        .arg(mountpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    guard.child = Some(child);
    wait_until("fuse-overlayfs to mount", || is_mount_point(mountpoint));
    let child = guard.child.as_mut().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let err = fs::metadata(mountpoint).expect_err("a dead FUSE mount cannot be looked at");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    Some(guard)
}

#[test]
fn mount_clears_a_stale_mount_left_by_a_killed_server() {
    if !require_root("mount_clears_a_stale_mount_left_by_a_killed_server") {
        return;
    }
    let setup = with_view();
    let merged = view_dir(&setup, "web1").join("merged");
    let Some(_guard) = stale_fuse_mount(&setup, &merged) else {
        return;
    };
    setup
        .vskel()
        .args(["mount", "web1"])
        .assert()
        .success()
        .stderr(contains("cleared a stale mount at"))
        .stderr(contains(merged.to_str().unwrap()));
    assert!(merged.join("etc/hosts").exists());

    // Now kill vskel's own server: the next mount clears its stale mount.
    let pid = server_pid(&setup, "web1");
    StdCommand::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the server to die", || !is_alive(pid));
    setup
        .vskel()
        .args(["mount", "web1"])
        .assert()
        .success()
        .stderr(contains("cleared a stale mount"));
    let pid = server_pid(&setup, "web1");
    StdCommand::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    wait_until("the server to die", || !is_alive(pid));
    // remove-vs clears it too, and removes the view.
    setup
        .vskel()
        .args(["remove-vs", "web1"])
        .assert()
        .success()
        .stderr(contains("cleared a stale mount"));
    assert!(!is_mount_point(&merged));
    assert!(!view_dir(&setup, "web1").exists());
}

#[test]
fn mount_refuses_to_mount_over_a_live_foreign_mount() {
    if !require_root("mount_refuses_to_mount_over_a_live_foreign_mount") {
        return;
    }
    let setup = with_view();
    let mountpoint = setup.dir.path().join("tmpfs");
    fs::create_dir(&mountpoint).unwrap();
    let _guard = MountGuard::new(&mountpoint);
    let status = StdCommand::new("mount")
        .args(["-t", "tmpfs", "vskel-test-tmpfs"])
        .arg(&mountpoint)
        .status()
        .unwrap();
    assert!(status.success());
    setup
        .vskel()
        .arg("mount")
        .arg("web1")
        .arg(&mountpoint)
        .assert()
        .code(FAILURE)
        .stderr(contains("refusing to mount over it"));
    setup
        .vskel()
        .arg("unmount")
        .arg(&mountpoint)
        .assert()
        .code(FAILURE)
        .stderr(contains("not a vskel mount"));
}

#[test]
fn overlay_mounts_with_fuse_overlayfs_options() {
    if !require_root("overlay_mounts_with_fuse_overlayfs_options") {
        return;
    }
    let setup = Setup::new("");
    let base = setup.dir.path().join("ov");
    for sub in ["a", "b,c", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    fs::write(base.join("a/f"), "from a\n").unwrap();
    fs::write(base.join("b,c/f"), "from b\n").unwrap();
    fs::write(base.join("b,c/g"), "only in b\n").unwrap();
    let merged = base.join("merged");
    let _guard = MountGuard::new(&merged);
    // Relative paths, an escaped comma, options split over two -o.
    setup
        .vskel()
        .current_dir(&base)
        .args(["overlay", "-o", r"lowerdir=a:b\,c,upperdir=upper", "-o"])
        .arg("workdir=work,suid,dev,noatime,fsname=test-ov")
        .arg("merged")
        .assert()
        .success()
        .stdout(contains("mounted overlay test-ov"));
    let line = mountinfo_line(&merged).expect("mounted");
    assert!(line.contains(" test-ov "), "{line}");
    assert_eq!(fs::read_to_string(merged.join("f")).unwrap(), "from a\n");
    assert_eq!(fs::read_to_string(merged.join("g")).unwrap(), "only in b\n");
    fs::write(merged.join("new"), "new\n").unwrap();
    assert_eq!(fs::read_to_string(base.join("upper/new")).unwrap(), "new\n");
    // A second overlay on the same mount point is refused.
    setup
        .vskel()
        .current_dir(&base)
        .args([
            "overlay",
            "-o",
            "lowerdir=a,upperdir=upper,workdir=work",
            "merged",
        ])
        .assert()
        .code(FAILURE)
        .stderr(contains("mounted already"));
    let out = setup
        .vskel()
        .arg("unmount")
        .arg(&merged)
        .args(["--format", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let unmounted = json(&out);
    assert_eq!(unmounted["server_exited"], true, "{unmounted}");
    assert!(!is_mount_point(&merged));
}

#[test]
fn overlay_clears_a_stale_mount() {
    if !require_root("overlay_clears_a_stale_mount") {
        return;
    }
    let setup = Setup::new("");
    let base = setup.dir.path().join("ov");
    for sub in ["a", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    let merged = base.join("merged");
    let Some(_stale) = stale_fuse_mount(&setup, &merged) else {
        return;
    };
    setup
        .vskel()
        .current_dir(&base)
        .args([
            "overlay",
            "-o",
            "lowerdir=a,upperdir=upper,workdir=work",
            "merged",
        ])
        .assert()
        .success()
        .stderr(contains("cleared a stale mount"));
    assert!(fs::metadata(&merged).is_ok());
    setup.vskel().arg("unmount").arg(&merged).assert().success();
}

/// The helper, run one of the two ways it is installed: as the binary
/// under the name `mount.fuse.vskel` (a symlink in `dir`), or as the script
/// (which runs `vskel mount.fuse.vskel ...`).
fn helper_command(dir: &Path, as_link: bool) -> StdCommand {
    if as_link {
        let link = dir.join("mount.fuse.vskel");
        if !link.exists() {
            std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_vskel"), &link).unwrap();
        }
        return StdCommand::new(link);
    }
    let mut script = StdCommand::new("sh");
    script.arg(HELPER).env("VSKEL", env!("CARGO_BIN_EXE_vskel"));
    script
}

/// The helper's argument handling: which vskel command it would run (in
/// fake mode, `-f`), or how it fails.
#[test]
fn mount_helper_turns_mount_arguments_into_vskel_commands() {
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["base:web1", "/mnt"],
            0,
            "vskel mount --skel base web1 /mnt",
        ),
        (
            &[
                "base:web1",
                "/mnt",
                "-o",
                "rw,defaults,noauto,_netdev,x-systemd.automount",
            ],
            0,
            "vskel mount --skel base web1 /mnt",
        ),
        (
            &["base:web1", "/mnt", "-oconfig=/etc/vskel/b.toml,nofail"],
            0,
            "vskel --config /etc/vskel/b.toml mount --skel base web1 /mnt",
        ),
        (
            &["base:web1", "/mnt", "-nv", "-t", "fuse.vskel"],
            0,
            "vskel mount --skel base web1 /mnt",
        ),
        (
            &[
                "overlay",
                "/mnt",
                "-o",
                "lowerdir=/a:/b,upperdir=/u",
                "-o",
                "workdir=/w",
            ],
            0,
            "vskel overlay -o lowerdir=/a:/b,upperdir=/u,workdir=/w overlay /mnt",
        ),
        // Any source is an overlay's, as with fuse-overlayfs (mount(8)
        // users and test suites pass the subtype).
        (
            &["vskel", "/mnt", "-o", "lowerdir=/a,upperdir=/u,workdir=/w"],
            0,
            "vskel overlay -o lowerdir=/a,upperdir=/u,workdir=/w vskel /mnt",
        ),
        (
            &[
                "/dev/whatever",
                "/mnt",
                "-olowerdir=/a,upperdir=/u,workdir=/w",
            ],
            0,
            "vskel overlay -o lowerdir=/a,upperdir=/u,workdir=/w /dev/whatever /mnt",
        ),
        (&["base:web1", "/mnt", "-o", "nosuid"], 1, ""),
        (&["base:web1", "/mnt", "-o", "lowerdir=/a"], 1, ""),
        (&["web1", "/mnt"], 1, ""),
        (&["base:", "/mnt"], 1, ""),
        (&["overlay", "/mnt"], 1, ""),
        (&["base:web1"], 1, ""),
        (&["base:web1", "/mnt", "extra"], 1, ""),
        (&["base:web1", "/mnt", "-o"], 1, ""),
    ];
    let dir = tempfile::tempdir().unwrap();
    for as_link in [false, true] {
        for (args, code, would_run) in cases {
            let out = helper_command(dir.path(), as_link)
                .args(*args)
                // Fake only what must succeed: a failure must come from the
                // arguments alone.
                .args((*code == 0).then_some("-f"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(*code),
                "{as_link} {args:?}: {out:?}"
            );
            assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
            assert!(
                stderr.starts_with("mount.fuse.vskel: "),
                "{args:?}: {out:?}"
            );
            if *code == 0 {
                assert_eq!(
                    stderr.trim_end(),
                    format!("mount.fuse.vskel: would run: {would_run}"),
                    "{args:?}"
                );
            }
        }
    }
}

#[test]
fn mount_helper_mounts_a_view() {
    if !require_root("mount_helper_mounts_a_view") {
        return;
    }
    let setup = with_view();
    let mountpoint = setup.dir.path().join("helper-mnt");
    fs::create_dir(&mountpoint).unwrap();
    let _guard = MountGuard::new(&mountpoint);
    let vskel = env!("CARGO_BIN_EXE_vskel");
    let out = StdCommand::new("sh")
        .arg(HELPER)
        .arg("base:web1")
        .arg(&mountpoint)
        .arg("-o")
        .arg(format!("defaults,config={}", setup.config.display()))
        .env("VSKEL", vskel)
        .env("VSKEL_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        fs::read_to_string(mountpoint.join("etc/hosts"))
            .unwrap()
            .contains("10.1.2.3")
    );
    // A failing mount (the same view again) maps to mount(8)'s 32; the
    // binary run as the helper (symlink) does the same.
    let again = helper_command(setup.dir.path(), true)
        .arg("base:web1")
        .arg(setup.dir.path())
        .arg("-o")
        .arg(format!("config={}", setup.config.display()))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(32), "{again:?}");
    let status = StdCommand::new("umount").arg(&mountpoint).status().unwrap();
    assert!(status.success());
}

/// `mount -t fuse.vskel vskel MNT -o lowerdir=...`: mount(8) users and
/// test suites pass the subtype (or anything) as the source of an overlay.
#[test]
fn mount_helper_mounts_an_overlay_from_any_source() {
    if !require_root("mount_helper_mounts_an_overlay_from_any_source") {
        return;
    }
    let setup = Setup::new("");
    let base = setup.dir.path().join("ov");
    for sub in ["a", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    fs::write(base.join("a/f"), "from a\n").unwrap();
    let merged = base.join("merged");
    let _guard = MountGuard::new(&merged);
    for as_link in [true, false] {
        let out = helper_command(setup.dir.path(), as_link)
            .current_dir(&base)
            .args([
                "vskel",
                "merged",
                "-o",
                "lowerdir=a,upperdir=upper,workdir=work",
            ])
            .env("VSKEL_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{as_link}: {out:?}");
        assert_eq!(fs::read_to_string(merged.join("f")).unwrap(), "from a\n");
        setup.vskel().arg("unmount").arg(&merged).assert().success();
        assert!(!is_mount_point(&merged));
    }
}

#[test]
fn sigterm_and_sigint_unmount_the_view_cleanly() {
    if !require_root("sigterm_and_sigint_unmount_the_view_cleanly") {
        return;
    }
    let setup = with_view();
    let merged = view_dir(&setup, "web1").join("merged");
    let _guard = MountGuard::new(&merged);
    for signal in ["-TERM", "-INT"] {
        setup.vskel().args(["mount", "web1"]).assert().success();
        let pid = server_pid(&setup, "web1");
        fs::write(merged.join("etc/written-before-signal"), signal).unwrap();
        let status = StdCommand::new("kill")
            .arg(signal)
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(status.success());
        wait_until("the server to exit", || !is_alive(pid));
        // Unmounted, not left stale: the mount point is a plain directory.
        assert!(!is_mount_point(&merged), "{signal}: still mounted");
        assert!(fs::read_dir(&merged).unwrap().next().is_none());
        // What was written is in the upper layer.
        let upper = view_dir(&setup, "web1").join("upper/etc/written-before-signal");
        assert_eq!(fs::read_to_string(upper).unwrap(), signal);
    }
}
