//! The barrier between host users and the vservers (issue 9, finding 6):
//! a vserver's root leaves a setuid-root program in its tree or its view;
//! a host user (uid 65534) must not be able to run it, nor stat or read
//! anything under `<root>` (a tree, a mounted view, a view's state, the
//! skels, vskel's state), while root and processes chrooted into the tree
//! or the view (as uid 65534 too) work as before. An admin-made `<root>`
//! of mode 0755 is closed with a warning, and a view is not mounted where
//! host users can reach it.
//!
//! Uses the Debian fixture (real binaries to chroot into).

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{MountGuard, Setup, chroot_sh, require_root};

/// The host user of the test (nobody).
const HOST_USER: u32 = 65534;

/// Run `program args` as the host user.
fn as_host_user(program: &Path, args: &[&Path]) -> std::io::Result<Output> {
    Command::new(program)
        .args(args)
        .uid(HOST_USER)
        .gid(HOST_USER)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .current_dir("/")
        .output()
}

/// Run `script` with /bin/sh chrooted into `root` as uid and gid 65534.
fn chrooted_as_nobody(root: &Path, script: &str) -> Output {
    Command::new("/usr/sbin/chroot")
        .arg(format!("--userspec={HOST_USER}:{HOST_USER}"))
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}, stdout {:?}, stderr {:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn host_users_cannot_reach_the_vservers() {
    if !require_root("host_users_cannot_reach_the_vservers") {
        return;
    }
    let setup = Setup::new("");
    // As an admin's /vservers: every directory above <root> is open (the
    // test's temp dir is 0700, which would hide everything by itself).
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let reachable = setup.dir.path().join("vskel.toml");
    fs::set_permissions(&reachable, fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_host_user(Path::new("/usr/bin/stat"), &[&reachable]).unwrap();
    assert!(
        out.status.success(),
        "the host user must reach <root>'s parent for this test to mean anything: {}",
        text(&out)
    );

    setup.build_debian_skel("deb");
    let tree = setup.create("deb", "t", "10.0.0.2");
    let view_dir = setup.create_view("deb", "v", "10.0.0.3");
    let merged = view_dir.join("merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "v"]).assert().success();

    // The vserver's root plants setuid-root programs in its tree and view.
    for root in [&tree, &merged] {
        chroot_sh(root, "cp /usr/bin/id /tmp/.x && chmod 4755 /tmp/.x");
        assert_eq!(mode(&root.join("tmp/.x")), 0o4755);
    }

    let mut failures = Vec::new();
    // The attack: run them by their host path.
    for planted in [tree.join("tmp/.x"), merged.join("tmp/.x")] {
        match as_host_user(&planted, &[]) {
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
            Err(e) => failures.push(format!("{}: exec failed oddly: {e}", planted.display())),
            Ok(out) => failures.push(format!(
                "the host user ran {}: {}",
                planted.display(),
                text(&out)
            )),
        }
    }
    // Nothing under <root> can be looked at or read.
    let root = &setup.root;
    let skel = root.join(".skel/deb");
    let looked_at: Vec<PathBuf> = vec![
        root.join("t"),
        tree.join("etc/hostname"),
        tree.join("usr/bin/id"),
        merged.clone(),
        merged.join("etc/hostname"),
        view_dir.join("upper"),
        view_dir.join("static/etc/hostname"),
        skel.join("global/usr/bin/id"),
        skel.join("static/etc/hosts"),
        root.join(".vskel"),
    ];
    for path in &looked_at {
        assert!(
            path.symlink_metadata().is_ok(),
            "root sees {}",
            path.display()
        );
        for program in ["/usr/bin/stat", "/usr/bin/cat", "/usr/bin/ls"] {
            let out = as_host_user(Path::new(program), &[path]).unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !stderr.contains("Permission denied") {
                failures.push(format!(
                    "the host user's {program} {}: {}",
                    path.display(),
                    text(&out)
                ));
            }
        }
    }
    // Inside the vserver nothing changed: chrooted as uid 65534, its users
    // run programs and read files, in the tree and in the mounted view.
    for (inside, name) in [(&tree, "t"), (&merged, "v")] {
        let out = chrooted_as_nobody(
            inside,
            "id -u && cat /etc/hostname && ls /usr/bin >/dev/null",
        );
        if !out.status.success()
            || String::from_utf8_lossy(&out.stdout) != format!("{HOST_USER}\n{name}\n")
        {
            failures.push(format!(
                "a user inside {} was hindered: {}",
                inside.display(),
                text(&out)
            ));
        }
    }
    // Root is not hindered either.
    assert_eq!(
        fs::read_to_string(tree.join("etc/hostname")).unwrap(),
        "t\n"
    );
    assert_eq!(
        fs::read_to_string(merged.join("etc/hostname")).unwrap(),
        "v\n"
    );
    for dir in [
        root.clone(),
        root.join(".skel"),
        root.join(".vskel"),
        root.join(".views"),
        view_dir.clone(),
    ] {
        if mode(&dir) & 0o077 != 0 {
            failures.push(format!("{} is mode {:04o}", dir.display(), mode(&dir)));
        }
    }
    setup.vskel().args(["unmount", "v"]).assert().success();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn an_open_root_is_closed_with_a_warning() {
    if !require_root("an_open_root_is_closed_with_a_warning") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let view_dir = setup.create_view("base", "v", "10.0.0.3");
    let open = [
        setup.root.clone(),
        setup.root.join(".skel"),
        setup.root.join(".views"),
        view_dir.clone(),
    ];
    for dir in &open {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Any command closes them, naming each.
    let out = setup
        .vskel()
        .arg("list")
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for dir in &open {
        assert_eq!(mode(dir), 0o700, "{}", dir.display());
        let said = format!(
            "closed {} to users other than root (mode 0755 -> 0700)",
            dir.display()
        );
        assert!(stderr.contains(&said), "no {said:?} in {stderr}");
    }
    // Closed ones stay as they are, quietly (util-vserver's 000 too).
    fs::set_permissions(&setup.root, fs::Permissions::from_mode(0o000)).unwrap();
    let out = setup
        .vskel()
        .arg("list")
        .assert()
        .success()
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("closed"));
    assert_eq!(mode(&setup.root), 0o000);
}

#[test]
fn a_view_is_not_mounted_where_host_users_reach_it() {
    if !require_root("a_view_is_not_mounted_where_host_users_reach_it") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "v", "10.0.0.3");
    let open = setup.dir.path().join("open/mnt");
    fs::create_dir_all(&open).unwrap();
    // The temp dir is 0700; open it, and everything above is open.
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(open.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    let _guard = MountGuard(open.clone());
    setup
        .vskel()
        .args(["mount", "v"])
        .arg(&open)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("closed to host users"));
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(open.to_str().unwrap()), "mounted anyway");
    // Below a closed directory it mounts.
    fs::set_permissions(open.parent().unwrap(), fs::Permissions::from_mode(0o700)).unwrap();
    setup
        .vskel()
        .args(["mount", "v"])
        .arg(&open)
        .assert()
        .success();
    assert!(open.join("etc").is_dir());
    setup.vskel().args(["unmount", "v"]).assert().success();
}
