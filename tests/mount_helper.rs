//! The `mount.fuse.vskel` helper under real mount(8): the lines of
//! `mount-helpers/fstab.example` (paths made the test's) mounted by
//! `mount -a` twice, the second finding them mounted (their source in
//! /proc/mounts is the fstab's), and a `SKEL:VS` source whose SKEL is not
//! the vserver's refused, naming both.
//!
//! mount(8) runs helpers from /sbin only: the `mount -a` test runs in a
//! private mount namespace (`unshare -m`) with the helper alone bound over
//! /usr/sbin, and unmounts what it mounted before it ends.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::mount::is_mounted;
use common::{MountGuard, Setup, require_root};

/// The helper script, in the checkout.
const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/mount-helpers/mount.fuse.vskel"
);
/// The fstab example, in the checkout.
const FSTAB_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mount-helpers/fstab.example");

/// Setup with skel "base" (the example tree) and view vserver "web1";
/// its directory closed to host users, as mount points of one's choice
/// below it need.
fn with_view() -> Setup {
    let setup = Setup::new("");
    fs::set_permissions(setup.dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
    setup.build_example_skel("base");
    setup.create_view("base", "web1", "10.1.2.3");
    setup
}

/// The example's line whose source is `source`.
fn example_line(source: &str) -> String {
    fs::read_to_string(FSTAB_EXAMPLE)
        .unwrap()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(source))
        .unwrap_or_else(|| panic!("no {source} line in {FSTAB_EXAMPLE}"))
        .to_string()
}

#[test]
fn mount_a_twice_finds_the_example_lines_mounted() {
    if !require_root("mount_a_twice_finds_the_example_lines_mounted") {
        return;
    }
    let setup = with_view();
    let dir = setup.dir.path();
    // The overlay line, its directories made here, mounted by `mount -a`.
    let overlay = dir.join("srv");
    for sub in ["A", "B", "U", "W"] {
        fs::create_dir_all(overlay.join(sub)).unwrap();
    }
    fs::write(overlay.join("A/f"), "from A\n").unwrap();
    let merged = dir.join("merged");
    fs::create_dir(&merged).unwrap();
    let overlay_line = example_line("overlay")
        .replace("/srv/", &format!("{}/", overlay.display()))
        .replace("/mnt/merged", &merged.display().to_string())
        .replace(",noauto", "");
    // The first view line, with this setup's config and root.
    let view_merged = setup.root.join(".views/web1/merged");
    let view_line = example_line("base:web1")
        .replace("/vservers", &setup.root.display().to_string())
        .replace(
            "defaults,nofail",
            &format!("defaults,nofail,config={}", setup.config.display()),
        );
    let fstab = dir.join("fstab");
    fs::write(&fstab, format!("{overlay_line}\n{view_line}\n")).unwrap();
    // The helper as /sbin/mount.fuse.vskel, in the namespace only.
    let sbin = dir.join("sbin");
    fs::create_dir(&sbin).unwrap();
    std::os::unix::fs::symlink(HELPER, sbin.join("mount.fuse.vskel")).unwrap();
    let (fstab, merged, view_merged) = (fstab.display(), merged.display(), view_merged.display());
    let script = format!(
        "mount --bind {sbin} /usr/sbin
         trap 'umount -l {merged}; umount -l {view_merged}' EXIT
         mount -a -T {fstab} >/dev/null; echo \"first $?\"
         mount -a -T {fstab} >/dev/null; echo \"second $?\"
         findmnt --verify --tab-file {fstab} >/dev/null 2>&1; echo \"verify $?\"
         cat {merged}/f
         grep -q 10.1.2.3 {view_merged}/etc/hosts && echo 'view served'
         awk '$2 == \"{merged}\" || $2 == \"{view_merged}\" {{ print \"source\", $1, $3 }}' /proc/mounts
         umount {merged} && umount {view_merged} && echo unmounted",
        sbin = sbin.display(),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .env("VSKEL", env!("CARGO_BIN_EXE_vskel"))
        .env("VSKEL_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = "first 0\nsecond 0\nverify 0\nfrom A\nview served\n\
                    source overlay fuse.vskel\nsource base:web1 fuse.vskel\nunmounted\n";
    assert_eq!(
        stdout,
        expected,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_source_naming_another_skel_is_refused() {
    if !require_root("a_source_naming_another_skel_is_refused") {
        return;
    }
    let setup = with_view();
    let mountpoint = setup.dir.path().join("mnt");
    fs::create_dir(&mountpoint).unwrap();
    let _guard = MountGuard(mountpoint.clone());
    let helper = |source: &str| {
        Command::new("sh")
            .arg(HELPER)
            .arg(source)
            .arg(&mountpoint)
            .arg("-o")
            .arg(format!("config={}", setup.config.display()))
            .env("VSKEL", env!("CARGO_BIN_EXE_vskel"))
            .env("VSKEL_LOG", "warn")
            .output()
            .unwrap()
    };
    let out = helper("otherskel:web1");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("\"web1\" is of skel \"base\", not of skel \"otherskel\""),
        "{stderr}"
    );
    assert!(!is_mounted(&mountpoint));
    assert!(!Path::new(&setup.root.join(".views/web1/mount.pid")).exists());
    // Its own skel mounts it.
    let out = helper("base:web1");
    assert!(out.status.success(), "{out:?}");
    assert!(is_mounted(&mountpoint));
}
