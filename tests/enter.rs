//! `vskel enter` and `vskel exec` on real vservers: a tree made from the
//! real Debian skel and a mounted view of it run commands chrooted, with
//! the vserver's hostname, their own /proc (and PID namespace), /dev/pts
//! and /dev/shm, and pass the exit status on (also from a shell on a
//! terminal); nothing they mount is left
//! in the host's mount table. A vserver whose /proc or /dev is a symlink
//! out of its tree is refused.

mod common;

use std::fs;
use std::path::Path;

use common::{MountGuard, Setup, require_root};

/// The host's mount table lines that name a path below `dir`.
fn mounts_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir))
        .map(String::from)
        .collect()
}

/// `vskel exec NAME -- ARGS`: exit code, stdout, stderr.
fn exec(setup: &Setup, name: &str, args: &[&str]) -> (i32, String, String) {
    let out = setup
        .vskel()
        .args(["exec", name, "--"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The output of `exec`, which must succeed.
fn exec_ok(setup: &Setup, name: &str, args: &[&str]) -> String {
    let (code, out, err) = exec(setup, name, args);
    assert_eq!(code, 0, "exec {name} {args:?}: {err}");
    out
}

/// What every entered vserver shows, whatever it is.
fn assert_entered(setup: &Setup, name: &str) {
    assert_eq!(
        exec_ok(setup, name, &["hostname"]),
        format!("{name}.example.org\n")
    );
    let own = exec_ok(setup, name, &["ls", "/proc/self"]);
    assert!(own.lines().any(|l| l == "status"), "ls /proc/self: {own}");
    // Its own PID namespace: vskel is 1, the command 2.
    assert_eq!(exec_ok(setup, name, &["sh", "-c", "echo $$"]), "2\n");
    let mounts = exec_ok(setup, name, &["cat", "/proc/mounts"]);
    for want in [" /proc proc ", " /dev/pts devpts ", " /dev/shm tmpfs "] {
        assert!(mounts.contains(want), "{want:?} not in\n{mounts}");
    }
    assert_eq!(exec(setup, name, &["sh", "-c", "exit 7"]).0, 7);
    assert_eq!(exec(setup, name, &["sh", "-c", "kill -9 $$"]).0, 128 + 9);
    let (code, _, err) = exec(setup, name, &["no-such-command"]);
    assert_eq!(code, 127, "{err}");
    // enter: a login shell reading its commands from stdin.
    let out = setup
        .vskel()
        .args(["enter", name])
        .write_stdin("echo in $(hostname)\nexit 3\n")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("in {name}.example.org\n")
    );
    // ... and on a terminal (script(1) gives it one), where the shell's
    // job control must find its process group on exit.
    let vskel = format!(
        "{} --config {} enter {name}",
        env!("CARGO_BIN_EXE_vskel"),
        setup.config.display()
    );
    let out = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &vskel, "/dev/null"])
        .env("VSKEL_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"echo on-a-tty $(hostname)\nexit 4\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{shown}");
    assert!(
        shown.contains(&format!("on-a-tty {name}.example.org")),
        "{shown}"
    );
}

#[test]
fn exec_and_enter_run_inside_a_tree_vserver() {
    if !require_root("exec_and_enter_run_inside_a_tree_vserver") {
        return;
    }
    let setup = Setup::new("");
    setup.build_debian_skel("deb");
    setup.create("deb", "c1", "10.0.0.2");
    let before = mounts_below(setup.dir.path());
    assert_entered(&setup, "c1");
    assert_eq!(mounts_below(setup.dir.path()), before, "mounts leaked");
}

#[test]
fn exec_enters_a_mounted_view_and_refuses_one_not_mounted() {
    if !require_root("exec_enters_a_mounted_view_and_refuses_one_not_mounted") {
        return;
    }
    let setup = Setup::new("");
    setup.build_debian_skel("deb");
    let view = setup.create_view("deb", "v1", "10.0.0.3");
    let (code, _, err) = exec(&setup, "v1", &["hostname"]);
    assert_ne!(code, 0);
    assert!(err.contains("`vskel mount v1` first"), "{err}");

    let _guard = MountGuard(view.join("merged"));
    setup.vskel().args(["mount", "v1"]).assert().success();
    let before = mounts_below(setup.dir.path());
    assert_entered(&setup, "v1");
    assert_eq!(mounts_below(setup.dir.path()), before, "mounts leaked");
}

#[test]
fn a_proc_or_dev_that_leads_out_of_the_tree_is_refused() {
    if !require_root("a_proc_or_dev_that_leads_out_of_the_tree_is_refused") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let tree = setup.create("base", "c1", "10.0.0.2");
    let host_dir = setup.dir.path().join("host-dir");
    fs::create_dir(&host_dir).unwrap();
    // The example has no programs: the command is not found, but only
    // once /proc and /dev are mounted.
    let (code, _, err) = exec(&setup, "c1", &["/bin/true"]);
    assert_eq!(code, 127, "{err}");

    for name in ["proc", "dev"] {
        let link = tree.join(name);
        let aside = tree.join(format!("{name}.aside"));
        fs::rename(&link, &aside).unwrap();
        std::os::unix::fs::symlink(&host_dir, &link).unwrap();
        let before = mounts_below(setup.dir.path());
        let (code, _, err) = exec(&setup, "c1", &["/bin/true"]);
        assert_eq!(code, 125, "{name}: {err}");
        assert!(
            err.contains(&format!("{}: not a directory", link.display())),
            "{name}: {err}"
        );
        assert_eq!(mounts_below(setup.dir.path()), before);
        assert_eq!(fs::read_dir(&host_dir).unwrap().count(), 0);
        fs::remove_file(&link).unwrap();
        fs::rename(&aside, &link).unwrap();
    }
}
