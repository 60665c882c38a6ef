//! A view of a real Debian skel (debootstrap minbase) runs a real userland:
//! chroot into it, install a real package with dpkg, and the skel is
//! byte-for-byte unchanged afterwards. Kernel overlayfs over the same four
//! directories then shows the same tree as the view.

mod common;

use std::path::Path;
use std::process::Command;

use common::{MountGuard, Setup, chroot_sh, fingerprint, hello_deb, require_root};

/// `find` of a tree as lines: path, type, mode, owner, size, links, target.
fn listing(root: &Path) -> Vec<String> {
    let out = Command::new("find")
        .arg(".")
        .args([
            "-path",
            "./proc",
            "-prune",
            "-o",
            "-printf",
            "%p %y %m %U %G %s %n %l\\n",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    lines
}

#[test]
fn dpkg_installs_a_package_inside_a_view_and_the_skel_stays_as_it_was() {
    if !require_root("dpkg_installs_a_package_inside_a_view_and_the_skel_stays_as_it_was") {
        return;
    }
    let deb = hello_deb();
    let setup = Setup::new("");
    let skel = setup.build_debian_skel("minbase");
    let before = fingerprint(&skel);
    setup.create_view("minbase", "web1", "10.0.0.2");
    let views = setup.root.join(".views/web1");
    let merged = views.join("merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "web1"]).assert().success();

    assert_eq!(chroot_sh(&merged, "echo ok"), "ok\n");
    assert_eq!(chroot_sh(&merged, "cat /etc/hostname"), "web1\n");
    std::fs::copy(&deb, merged.join("tmp/hello.deb")).unwrap();
    chroot_sh(&merged, "dpkg -i /tmp/hello.deb && rm /tmp/hello.deb");
    assert_eq!(chroot_sh(&merged, "hello"), "Hello, world!\n");
    assert_eq!(
        chroot_sh(&merged, "dpkg-query -W -f='${Status}' hello"),
        "install ok installed"
    );
    // Some more of what package managers do: replace, remove, rename.
    chroot_sh(
        &merged,
        "rm -r /usr/share/doc/hello && mv /usr/share/man /usr/share/man.moved \
         && mkdir /usr/share/man && ln /etc/passwd /etc/passwd.link",
    );
    let view_listing = listing(&merged);
    setup.vskel().args(["unmount", "web1"]).assert().success();

    assert_eq!(
        fingerprint(&skel),
        before,
        "the skel changed through the view"
    );

    // Kernel overlayfs reads the same upper the same way.
    let kernel = setup.dir.path().join("kernel-overlay");
    std::fs::create_dir(&kernel).unwrap();
    let options = format!(
        "lowerdir={}:{}:{},upperdir={},workdir={},redirect_dir=on",
        views.join("static").display(),
        skel.join("local").display(),
        skel.join("global").display(),
        views.join("upper").display(),
        views.join("work").display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &options])
        .arg(&kernel)
        .status()
        .unwrap();
    assert!(status.success(), "kernel overlayfs mount");
    let _kernel_guard = MountGuard(kernel.clone());
    let kernel_listing = listing(&kernel);
    let diff: Vec<_> = view_listing
        .iter()
        .filter(|l| !kernel_listing.contains(l))
        .chain(kernel_listing.iter().filter(|l| !view_listing.contains(l)))
        .take(10)
        .collect();
    assert!(
        diff.is_empty(),
        "view and kernel overlayfs differ: {diff:#?}"
    );
    assert!(view_listing.len() > 5000, "{} entries", view_listing.len());
}
