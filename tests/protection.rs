//! The default protection of shared files (issue 13 item 1), on the
//! Debian fixture skel: as root inside tree vserver A, a write, truncate,
//! chmod, chown or setxattr of a file A shares with the skel fails and
//! leaves the skel and vserver B unchanged; `dpkg -i` of a package that
//! adds only new files works in A and in a view; one that would replace a
//! shared file fails (the README says what to do instead); `detach` gives
//! A a private, writable copy while B and the skel keep the shared file;
//! `upgrade-vs` keeps it A's own; `protect = "none"` warns at create-vs.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::debs::{Package, build_deb};
use common::mount::MountGuard;
use common::{Setup, dev_ino, hello_deb, require_root};

const SKEL: &str = "deb";
const SHARED: &str = "usr/share/common-licenses/GPL-2";

/// Content, mode, owner, mtime and xattrs of one file.
type FileState = (Vec<u8>, u32, u32, u32, i64, i64, Vec<(String, Vec<u8>)>);

/// Content and metadata of one file, to prove it did not change.
fn state(path: &Path) -> FileState {
    let m = fs::symlink_metadata(path).unwrap();
    (
        fs::read(path).unwrap(),
        m.mode(),
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        common::xattrs(path),
    )
}

fn chroot(root: &Path, script: &str) -> std::process::Output {
    Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap()
}

fn install(root: &Path, deb: &Path) -> std::process::Output {
    fs::copy(deb, root.join("tmp/pkg.deb")).unwrap();
    let out = chroot(root, "dpkg -i /tmp/pkg.deb");
    fs::remove_file(root.join("tmp/pkg.deb")).ok();
    out
}

/// A package holding one file, `usr/bin/vskel-shared`, of `version`.
fn shared_deb(dir: &Path, version: &str) -> PathBuf {
    let content = format!("#!/bin/sh\necho {version}\n");
    build_deb(
        dir,
        &Package {
            name: "vskel-shared",
            version,
            files: &[("usr/bin/vskel-shared", &content, 0o755)],
            conffiles: &[],
            postinst: None,
        },
    )
}

#[test]
fn by_default_no_vserver_root_can_change_a_shared_file() {
    if !require_root("by_default_no_vserver_root_can_change_a_shared_file") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_debian_skel(SKEL);
    // A package in the skel, the way package work puts it there.
    let v1 = shared_deb(setup.dir.path(), "1.0");
    setup.run_ok(&["merge-skel", SKEL]);
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));
    let out = install(&temp, &v1);
    assert!(out.status.success(), "{out:?}");
    setup.run_ok(&["split-skel", SKEL]);

    let a = setup.create(SKEL, "a", "10.0.3.2");
    let b = setup.create(SKEL, "b", "10.0.3.3");
    assert_eq!(
        dev_ino(&a.join(SHARED)),
        dev_ino(&skel.join("global").join(SHARED))
    );
    let before = (
        state(&skel.join("global").join(SHARED)),
        state(&b.join(SHARED)),
    );
    for script in [
        format!("echo x >> /{SHARED}"),
        format!(": > /{SHARED}"),
        format!("chmod 666 /{SHARED}"),
        format!("chown 1000:1000 /{SHARED}"),
        format!("rm /{SHARED}"),
        format!("mv /{SHARED} /tmp/"),
    ] {
        let out = chroot(&a, &script);
        assert!(!out.status.success(), "{script} succeeded inside a");
    }
    let setxattr = rustix::fs::setxattr(
        a.join(SHARED),
        "user.vskel-test",
        b"x",
        rustix::fs::XattrFlags::empty(),
    );
    assert!(setxattr.is_err(), "setxattr of a shared file succeeded");
    let after = (
        state(&skel.join("global").join(SHARED)),
        state(&b.join(SHARED)),
    );
    assert!(before == after, "the skel's or b's file changed");

    // A package adding only new files installs in a tree vserver...
    let hello = hello_deb();
    let out = install(&a, &hello);
    assert!(
        out.status.success(),
        "dpkg -i hello in a: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&chroot(&a, "hello").stdout).contains("Hello, world!"),
        "hello runs in a"
    );
    // ... while one replacing a shared file fails, changing nothing shared.
    let v2 = shared_deb(setup.dir.path(), "2.0");
    let shared_bin = skel.join("global/usr/bin/vskel-shared");
    let bin_before = state(&shared_bin);
    let out = install(&a, &v2);
    assert!(!out.status.success(), "replacing a shared file worked");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Operation not permitted"), "{said}");
    assert!(state(&shared_bin) == bin_before);
    assert_eq!(
        fs::read(b.join("usr/bin/vskel-shared")).unwrap(),
        fs::read(&shared_bin).unwrap()
    );

    // detach: a's private copy is writable, b and the skel keep theirs.
    setup.run_ok(&["detach", "a", &format!("/{SHARED}")]);
    assert_ne!(
        dev_ino(&a.join(SHARED)),
        dev_ino(&skel.join("global").join(SHARED))
    );
    let out = chroot(&a, &format!("echo mine >> /{SHARED}"));
    assert!(out.status.success(), "{out:?}");
    assert!(
        (
            state(&skel.join("global").join(SHARED)),
            state(&b.join(SHARED))
        ) == before,
        "detach changed the shared file"
    );
    let record = fs::read_to_string(setup.root.join(".vskel/vservers/a.toml")).unwrap();
    assert!(record.contains(SHARED), "{record}");
    // A detached file is a's own: verify does not call it broken off or
    // replaced (and so repair leaves it alone).
    let verified = setup.vskel().args(["verify", "a"]).output().unwrap();
    assert!(
        verified.status.success(),
        "verify a: {}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );
    // Detaching it again: not shared any more, left alone.
    let out = setup.run_ok(&["detach", "a", &format!("/{SHARED}")]);
    assert!(out.contains("left as they are"), "{out}");
    // Bad input: nothing written.
    for (args, says) in [
        (vec!["detach", "a", "/no/such/file"], "no such file"),
        (vec!["detach", "a", "/usr/bin"], "not a regular file"),
        (vec!["detach", "a", "../x"], "not a path inside"),
        (vec!["detach", "nosuch", "/etc/motd"], "no vserver"),
    ] {
        let out = setup.vskel().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[test]
fn a_view_works_with_the_default_protection() {
    if !require_root("a_view_works_with_the_default_protection") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_debian_skel(SKEL);
    let view = setup.create_view(SKEL, "w", "10.0.3.4");
    let merged = view.join("merged");
    fs::create_dir_all(&merged).unwrap();
    let guard = MountGuard(merged.clone());
    setup.run_ok(&["mount", "w"]);
    let before = state(&skel.join("global").join(SHARED));
    let out = chroot(&merged, &format!("echo mine >> /{SHARED}"));
    assert!(out.status.success(), "write in the view: {out:?}");
    assert!(
        fs::read_to_string(merged.join(SHARED))
            .unwrap()
            .ends_with("mine\n")
    );
    assert!(state(&skel.join("global").join(SHARED)) == before);
    let out = install(&merged, &hello_deb());
    assert!(
        out.status.success(),
        "dpkg -i hello in the view: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&chroot(&merged, "hello").stdout).contains("Hello, world!"));
    guard.unmount().unwrap();
}

#[test]
fn create_vs_warns_once_without_protection() {
    if !require_root("create_vs_warns_once_without_protection") {
        return;
    }
    let setup = Setup::new("protect = \"none\"");
    setup.build_example_skel("base");
    let out = setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.3.5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("protect = \"none\"").count(), 1, "{err}");
    let setup = Setup::with_default_protection("");
    setup.build_example_skel("base");
    let out = setup
        .vskel()
        .args(["create-vs", "base", "web1", "web1.example.org", "10.0.3.5"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("protect = \"none\""));
}

/// A skel protected under the default, then `protect = "none"` set:
/// create-vs still links its immutable files (unlocking each for its own
/// link, as under protection) instead of failing with EPERM, and they
/// stay immutable.
#[test]
fn a_skel_protected_before_protect_none_is_still_linked() {
    if !require_root("a_skel_protected_before_protect_none_is_still_linked") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("base");
    let shared = skel.join("global/bin/hello");
    assert!(is_immutable(&shared));
    let config = fs::read_to_string(&setup.config).unwrap();
    fs::write(&setup.config, format!("{config}protect = \"none\"\n")).unwrap();
    let web1 = setup.create("base", "web1", "10.0.3.6");
    assert_eq!(dev_ino(&web1.join("bin/hello")), dev_ino(&shared));
    assert!(is_immutable(&shared), "the link lifted the flag for good");
    // The setup's drop clears the flags only without protect = "none".
    fs::write(&setup.config, config).unwrap();
}

fn is_immutable(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap();
    rustix::fs::ioctl_getflags(&file)
        .unwrap()
        .contains(rustix::fs::IFlags::IMMUTABLE)
}

#[test]
fn upgrade_and_sync_of_protected_vservers_put_the_new_shared_inodes_in_place() {
    if !require_root("upgrade_and_sync_of_protected_vservers") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("base");
    let tree = setup.create("base", "t1", "10.0.3.6");
    setup.create_view("base", "w1", "10.0.3.7");
    setup.run_ok(&["sync", "w1"]);
    let synced = setup.root.join("w1");
    const FILE: &str = "usr/bin/ping";
    assert!(is_immutable(&tree.join(FILE)));
    // A new generation: the file replaced by rename in the merged skel.
    setup.run_ok(&["merge-skel", "base"]);
    let temp = setup.root.join("tmp_skel_base").join(FILE);
    let new = temp.with_extension("new");
    fs::write(&new, "#!/bin/sh\necho ping v2\n").unwrap();
    fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    fs::rename(&new, &temp).unwrap();
    setup.run_ok(&["split-skel", "base"]);
    let shared = skel.join("global").join(FILE);
    assert!(is_immutable(&shared), "split protects the new file");
    for vs in ["t1", "w1"] {
        setup.run_ok(&["upgrade-vs", vs]);
    }
    // The sync after the view's upgrade puts the new inode into its tree.
    setup.run_ok(&["sync", "w1"]);
    for (root, what) in [(&tree, "the tree"), (&synced, "the synced view")] {
        assert_eq!(
            dev_ino(&root.join(FILE)),
            dev_ino(&shared),
            "{what} has the new shared inode"
        );
        assert!(is_immutable(&root.join(FILE)), "{what}: still protected");
    }
    // The old inode, still in the generation kept for views, keeps +i.
    let kept = skel.join("generations/1.tree/global").join(FILE);
    assert!(kept.exists() && is_immutable(&kept));
}
