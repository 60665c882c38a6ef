//! `export-vs` / `import-vs` on real trees and views: a view with changes
//! (a modified global file with a hard-link twin, removed files, a
//! renamed lower directory, new files) exported on one vskel root and
//! imported on a second one as a tree and as a view, through a real
//! registry where one runs here.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::oci::{Canon, canonical_listing, listing_diff};
use common::{MountGuard, Setup, dev_ino, require_root};

const OLD_IP: &str = "10.0.0.2";
const NEW_IP: &str = "10.0.0.9";

/// Host A: skel `base` from the example tree, view `web1` with changes,
/// exported to `layout`; returns A's synced tree.
fn export_changed_view(a: &Setup, layout: &Path) -> PathBuf {
    a.build_example_skel("base");
    a.create_view("base", "web1", OLD_IP);
    let merged = a.root.join(".views/web1/merged");
    {
        let _guard = MountGuard(merged.clone());
        a.vskel().args(["mount", "web1"]).assert().success();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(merged.join("bin/hello"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"echo changed\n").unwrap();
        drop(f);
        fs::write(merged.join("etc/motd"), "edited\n").unwrap();
        fs::remove_file(merged.join("sbin/init")).unwrap();
        fs::rename(
            merged.join("usr/share/doc"),
            merged.join("usr/share/manuals"),
        )
        .unwrap();
        fs::create_dir_all(merged.join("srv/www")).unwrap();
        fs::write(merged.join("srv/www/index.html"), "<h1>web1</h1>\n").unwrap();
        a.vskel().args(["unmount", "web1"]).assert().success();
    }
    let dest = format!("oci:{}:web1", layout.display());
    let out = a.run_ok(&["export-vs", "web1", &dest, "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["entries"].as_u64().unwrap() >= 4, "{report}");
    assert!(report["removed"].as_u64().unwrap() >= 2, "{report}");
    a.root.join("web1")
}

/// The paths where `b` differs from `a`; each must be a file whose
/// content in `b` is `a`'s with the old IP replaced by the new one.
fn differences_are_only_the_new_ip(
    a: &BTreeMap<PathBuf, Canon>,
    b: &BTreeMap<PathBuf, Canon>,
    a_root: &Path,
    b_root: &Path,
) -> Vec<PathBuf> {
    let mut differing = Vec::new();
    let keys: std::collections::BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    for path in keys {
        if a.get(path) == b.get(path) {
            continue;
        }
        let (Some(x), Some(y)) = (a.get(path), b.get(path)) else {
            panic!(
                "{} is only on one host:\n{}",
                path.display(),
                listing_diff(a, b).join("\n")
            );
        };
        let old = fs::read_to_string(a_root.join(path)).unwrap_or_default();
        let new = fs::read_to_string(b_root.join(path)).unwrap_or_default();
        assert!(
            old.contains(OLD_IP) && new == old.replace(OLD_IP, NEW_IP),
            "{} differs beyond the IP address: {x:?} against {y:?}",
            path.display()
        );
        differing.push(path.clone());
    }
    differing
}

#[test]
fn a_changed_view_moves_to_a_second_host_as_a_tree_and_as_a_view() {
    if !require_root("a_changed_view_moves_to_a_second_host_as_a_tree_and_as_a_view") {
        return;
    }
    let a = Setup::new("");
    let b = Setup::new("");
    let layout = a.dir.path().join("image");
    let a_tree = export_changed_view(&a, &layout);
    let a_listing = canonical_listing(&a_tree);
    let src = format!("oci:{}:web1", layout.display());

    // As a tree.
    b.run_ok(&[
        "import-vs",
        &src,
        "web1",
        "--ip",
        NEW_IP,
        "--fqdn",
        "web1.example.org",
    ]);
    let b_tree = b.root.join("web1");
    let differing =
        differences_are_only_the_new_ip(&a_listing, &canonical_listing(&b_tree), &a_tree, &b_tree);
    assert!(
        !differing.is_empty(),
        "no file was rendered for the new IP address (etc/hosts should be)"
    );
    let b_skel = b.root.join(".skel/base");
    // Unchanged global files are the second skel's inodes; the changed
    // one is not, and keeps its twin.
    assert_eq!(
        dev_ino(&b_tree.join("lib/libdemo.so.1")),
        dev_ino(&b_skel.join("global/lib/libdemo.so.1"))
    );
    assert_ne!(
        dev_ino(&b_tree.join("bin/hello")),
        dev_ino(&b_skel.join("global/bin/hello"))
    );
    assert_eq!(
        dev_ino(&b_tree.join("bin/hello")),
        dev_ino(&b_tree.join("bin/hello-again"))
    );
    assert!(!b_tree.join("sbin/init").exists());
    assert!(!b_tree.join("usr/share/doc").exists());
    // A second import finds the skel there already.
    let out = b.run_ok(&[
        "import-vs",
        &src,
        "web1v",
        "--ip",
        "10.0.0.10",
        "--view",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["skel"]["result"], "unchanged", "{report}");

    // As a view: its upper layer in kernel overlayfs' format, and its
    // synced tree the same as the first host's.
    let upper = b.root.join(".views/web1v/upper");
    let whiteout = fs::symlink_metadata(upper.join("sbin/init")).unwrap();
    assert!(
        std::os::unix::fs::FileTypeExt::is_char_device(&whiteout.file_type()),
        "sbin/init is not a whiteout in the upper layer"
    );
    b.run_ok(&["sync", "web1v"]);
    let v_tree = b.root.join("web1v");
    let v_listing = canonical_listing(&v_tree);
    for (path, canon) in &a_listing {
        let theirs = v_listing.get(path);
        if theirs == Some(canon) {
            continue;
        }
        let old = fs::read_to_string(a_tree.join(path)).unwrap_or_default();
        assert!(
            old.contains(OLD_IP) || old.contains("web1"),
            "view import differs at {}: {canon:?} against {theirs:?}",
            path.display()
        );
    }
    assert_eq!(
        a_listing.keys().collect::<Vec<_>>(),
        v_listing.keys().collect::<Vec<_>>()
    );
}

#[test]
fn a_damaged_vserver_image_leaves_nothing() {
    if !require_root("a_damaged_vserver_image_leaves_nothing") {
        return;
    }
    let a = Setup::new("");
    let b = Setup::new("");
    let layout = a.dir.path().join("image");
    export_changed_view(&a, &layout);
    // Damage the delta layer (the last layer): one byte flipped.
    let index: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(layout.join("index.json")).unwrap()).unwrap();
    let manifest_digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(blob(manifest_digest)).unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    let delta = blob(layers.last().unwrap()["digest"].as_str().unwrap());
    let mut bytes = fs::read(&delta).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&delta, bytes).unwrap();
    let out = b
        .vskel()
        .args([
            "import-vs",
            &format!("oci:{}:web1", layout.display()),
            "web1",
            "--ip",
            NEW_IP,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sha256:") || stderr.contains("digest"),
        "{stderr}"
    );
    assert!(!b.root.join("web1").exists());
    assert!(!b.root.join(".views/web1").exists());
    assert!(!b.root.join(".vskel/vservers/web1.toml").exists());
    assert!(
        !b.root.join(".skel/base").exists(),
        "the skel was imported for nothing"
    );
}
