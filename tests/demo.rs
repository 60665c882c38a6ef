//! `vskel demo`, the README's first command: run as root it shows every
//! section of the loop (skel built, tree and view created, the view
//! mounted by FUSE, the changed files in the diff, sync, the materialized
//! tree with hard links to the skel) and leaves nothing behind: its
//! directory is gone and nothing of it is in /proc/self/mountinfo. With
//! `--keep DIR` what it made is there to look at, every view unmounted.
//! Run as another user it says FUSE is not available and shows the rest.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::require_root;

/// Exit code of a usage error.
const USAGE: i32 = 2;
/// The user the no-root run runs as.
const NOBODY: u32 = 65534;

/// A directory of this test's own, to be the demo's `$TMPDIR`.
fn tmpdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vskel-demo-test-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// `vskel demo ARGS` with `$TMPDIR` set, as `uid` if given.
fn demo(tmp: &Path, args: &[&str], uid: Option<u32>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vskel"));
    cmd.arg("demo")
        .args(args)
        .env("TMPDIR", tmp)
        .env("CI", "true")
        .env("VSKEL_LOG", "warn")
        .env_remove("VSKEL_CONFIG");
    if let Some(uid) = uid {
        cmd.uid(uid).gid(uid);
    }
    cmd.output().expect("run vskel demo")
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "vskel demo: {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The demo's directory, from its first line.
fn demo_dir(stdout: &str) -> PathBuf {
    let first = stdout.lines().next().expect("output");
    let dir = first
        .strip_prefix("vskel demo: the whole loop in ")
        .unwrap_or_else(|| panic!("first line: {first}"));
    PathBuf::from(dir)
}

fn assert_has(stdout: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(
            stdout.contains(w),
            "no {w:?} in the demo's output:\n{stdout}"
        );
    }
}

/// The mount points of /proc/self/mountinfo at or below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|mp| mp.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

/// The numbers N and M of the "N of its M entries ... are hard links"
/// lines.
fn link_counts(stdout: &str) -> Vec<(u64, u64)> {
    stdout
        .lines()
        .filter(|l| l.contains("are hard links to the skel's global inodes"))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "of").expect("N of M");
            (
                words[at - 1].parse().unwrap(),
                words[at + 2].parse().unwrap(),
            )
        })
        .collect()
}

/// The inode shown on the `ls -li` line ending in `name`.
fn inode_on_line(stdout: &str, name: &str) -> u64 {
    let line = stdout
        .lines()
        .find(|l| l.ends_with(name))
        .unwrap_or_else(|| panic!("no line ending in {name:?}:\n{stdout}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn demo_shows_the_whole_loop_and_leaves_nothing_behind() {
    if !require_root("demo_shows_the_whole_loop_and_leaves_nothing_behind") {
        return;
    }
    let tmp = tmpdir();
    let stdout = stdout_of(&demo(tmp.path(), &[], None));
    let dir = demo_dir(&stdout);
    assert!(
        dir.starts_with(tmp.path()),
        "{} not in $TMPDIR",
        dir.display()
    );
    assert_has(
        &stdout,
        &[
            "protect = \"none\"",
            "== 1. build-skel",
            "built skel demo at ",
            "== 2. create-vs: web1",
            "created tree vserver web1 at ",
            "== 3. diff web1",
            "  M /etc/motd  52  (content)\nweb1: 0 added, 1 modified, 0 removed",
            "== 4. create-vs --view: web2",
            "created view vserver web2 at ",
            "== 5. mount web2",
            "mounted view web2 at ",
            "(fuse.vskel from demo:web2)",
            "== 6. change files in the mounted view web2",
            "upper/etc/motd",
            "== 7. diff web2",
            "  M /etc/motd  52  (content)",
            "  A /srv/www/index.html  14",
            "  D /usr/bin/ping",
            "web2: 3 added, 1 modified, 1 removed",
            "== 8. sync web2",
            "synced web2 into ",
            "the mounted view's writes were held meanwhile",
            "in the tree: /etc/motd says: Welcome to web2: this line was written in its view.",
            "/usr/bin/ping is absent: true",
            "== 9. materialize web2",
            "materialized web2 into ",
            "web2 is now recorded as a tree",
            "web2 exists: false",
            "== 10. cleanup",
        ],
    );
    // The tree shares the skel's global inode.
    assert_eq!(
        inode_on_line(&stdout, " skel global/bin/hello"),
        inode_on_line(&stdout, " the tree /bin/hello")
    );
    // The synced and the materialized tree: hard links to the skel.
    let counts = link_counts(&stdout);
    assert_eq!(counts.len(), 2, "{stdout}");
    for (linked, entries) in counts {
        assert!(linked > 0 && linked < entries, "{linked} of {entries}");
    }
    assert!(
        stdout.ends_with(&format!("removed {}\n", dir.display())),
        "{stdout}"
    );
    assert!(dir.symlink_metadata().is_err(), "{} is left", dir.display());
    assert_eq!(
        fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "left in $TMPDIR"
    );
    assert_eq!(mounts_below(&dir), Vec::<String>::new());
}

#[test]
fn demo_keep_leaves_what_it_made_unmounted() {
    if !require_root("demo_keep_leaves_what_it_made_unmounted") {
        return;
    }
    let tmp = tmpdir();
    let kept = tmp.path().join("kept");
    let stdout = stdout_of(&demo(tmp.path(), &["--keep", kept.to_str().unwrap()], None));
    assert_eq!(demo_dir(&stdout), kept);
    assert!(
        stdout.contains(&format!("kept {}", kept.display())),
        "{stdout}"
    );
    assert_eq!(mounts_below(&kept), Vec::<String>::new());
    let root = kept.join("vservers");
    assert!(root.join(".views/web2").symlink_metadata().is_err());
    for vs in ["web1", "web2"] {
        let ours = fs::symlink_metadata(root.join(vs).join("bin/hello")).unwrap();
        let skel = fs::symlink_metadata(root.join(".skel/demo/global/bin/hello")).unwrap();
        assert_eq!((ours.dev(), ours.ino()), (skel.dev(), skel.ino()), "{vs}");
    }
    assert_eq!(
        fs::read_to_string(root.join("web2/etc/motd")).unwrap(),
        "Welcome to web2: this line was written in its view.\n"
    );
    assert!(root.join("web2/srv/www/index.html").is_file());
    assert!(root.join("web2/usr/bin/ping").symlink_metadata().is_err());
    // Its configuration works for the other commands.
    let list = assert_cmd::Command::cargo_bin("vskel")
        .unwrap()
        .arg("--config")
        .arg(kept.join("vskel.toml"))
        .arg("list")
        .env("VSKEL_LOG", "warn")
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listed}");
    assert!(
        listed.contains("web1") && listed.contains("web2"),
        "{listed}"
    );
}

#[test]
fn demo_keep_refuses_a_directory_that_is_not_empty() {
    if !require_root("demo_keep_refuses_a_directory_that_is_not_empty") {
        return;
    }
    let tmp = tmpdir();
    let kept = tmp.path().join("kept");
    fs::create_dir(&kept).unwrap();
    fs::write(kept.join("mine"), "mine").unwrap();
    let out = demo(tmp.path(), &["--keep", kept.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    let names: Vec<_> = fs::read_dir(&kept)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"]);
}

#[test]
fn demo_without_root_says_fuse_is_not_available_and_shows_the_rest() {
    if !require_root("demo_without_root_says_fuse_is_not_available_and_shows_the_rest") {
        return;
    }
    let tmp = tmpdir();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(tmp.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let stdout = stdout_of(&demo(tmp.path(), &[], Some(NOBODY)));
    let dir = demo_dir(&stdout);
    assert_has(
        &stdout,
        &[
            "created tree vserver web1 at ",
            "  M /etc/motd  52  (content)\nweb1: 0 added, 1 modified, 0 removed",
            "created view vserver web2 at ",
            "FUSE is not available here (vskel does not run as root)",
            "skipped: the view is not mounted",
            "web2: 0 added, 0 modified, 0 removed",
            "synced web2 into ",
            "materialized web2 into ",
            "== 10. cleanup",
        ],
    );
    assert!(!stdout.contains("mounted view web2 at "), "{stdout}");
    assert!(dir.symlink_metadata().is_err(), "{} is left", dir.display());
    assert_eq!(mounts_below(&dir), Vec::<String>::new());
}
