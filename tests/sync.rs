//! `vskel sync`: a view flattened into an on-disk tree equals the tree
//! `create-vs` makes (on the debootstrap skel), and changes made through a
//! mounted view appear in the synced tree with the skel's inodes shared
//! where nothing changed.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{MountGuard, Setup, canonical, dev_ino, diff, fingerprint, require_root, snapshot};

#[test]
fn a_synced_view_equals_the_tree_create_vs_makes() {
    if !require_root("a_synced_view_equals_the_tree_create_vs_makes") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_debian_skel("minbase");
    let tree = setup.create("minbase", "web1", "10.0.0.2");
    let created = canonical(&tree, &skel);
    setup.vskel().args(["remove-vs", "web1"]).assert().success();

    setup.create_view("minbase", "web1", "10.0.0.2");
    setup.vskel().args(["sync", "web1"]).assert().success();
    let synced = canonical(&tree, &skel);
    let differences = diff(&created, &synced);
    assert!(
        differences.is_empty(),
        "{} differences (first tree: create-vs, second: sync), first: {:#?}",
        differences.len(),
        &differences[..differences.len().min(10)]
    );
    assert!(created.len() > 5000, "{} entries", created.len());
    assert!(
        created.values().filter(|e| e.shares_skel).count() > 4000,
        "global entries must share the skel's inodes"
    );
    // A second sync with nothing changed gives the same tree again.
    setup.vskel().args(["sync", "web1"]).assert().success();
    assert!(diff(&created, &canonical(&tree, &skel)).is_empty());
}

#[test]
fn changes_made_through_a_mounted_view_appear_after_sync() {
    if !require_root("changes_made_through_a_mounted_view_appear_after_sync") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    // Content and metadata; link counts grow as trees link the skel's files.
    let skel_state = |skel: &Path| {
        let mut state = fingerprint(skel);
        for (entry, _) in state.values_mut() {
            entry.nlink = 0;
        }
        state
    };
    let skel_before = skel_state(&skel);
    setup.create_view("base", "web1", "10.0.0.2");
    let merged = setup.root.join(".views/web1/merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "web1"]).assert().success();
    // Append to a global file with a hard-link twin, edit a local file,
    // remove a global file, rename a lower directory, make new things.
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
    setup.vskel().args(["unmount", "web1"]).assert().success();

    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    let hello = fs::read_to_string(tree.join("bin/hello")).unwrap();
    assert!(hello.ends_with("echo changed\n"), "{hello}");
    // The changed global file is no longer the skel's inode but still one
    // inode with its twin; unchanged global files still are the skel's.
    assert_ne!(
        dev_ino(&tree.join("bin/hello")),
        dev_ino(&skel.join("global/bin/hello"))
    );
    assert_eq!(
        dev_ino(&tree.join("bin/hello")),
        dev_ino(&tree.join("bin/hello-again"))
    );
    assert_eq!(fs::metadata(tree.join("bin/hello")).unwrap().nlink(), 2);
    assert_eq!(
        dev_ino(&tree.join("lib/libdemo.so.1")),
        dev_ino(&skel.join("global/lib/libdemo.so.1"))
    );
    assert_eq!(
        fs::read_to_string(tree.join("etc/motd")).unwrap(),
        "edited\n"
    );
    assert!(!tree.join("sbin/init").exists());
    assert!(!tree.join("usr/share/doc").exists());
    assert_eq!(
        fs::read_to_string(tree.join("usr/share/manuals/demo/README")).unwrap(),
        "The vskel example tree.\n"
    );
    assert_eq!(
        dev_ino(&tree.join("usr/share/manuals/demo/README")),
        dev_ino(&skel.join("global/usr/share/doc/demo/README")),
        "a file below a renamed directory is still the skel's inode"
    );
    assert_eq!(
        fs::read_to_string(tree.join("srv/www/index.html")).unwrap(),
        "<h1>web1</h1>\n"
    );
    assert!(tree.join("proc").is_dir());
    assert!(skel_state(&skel) == skel_before, "the skel changed");
    // Overlay bookkeeping never reaches the tree.
    for (rel, _) in snapshot(&tree) {
        for (name, _) in common::xattrs(&tree.join(&rel)) {
            assert!(
                !name.starts_with("trusted.overlay."),
                "{}: {name}",
                rel.display()
            );
        }
    }
}

#[test]
fn materialize_turns_a_mounted_view_into_an_ordinary_tree() {
    if !require_root("materialize_turns_a_mounted_view_into_an_ordinary_tree") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup.create_view("base", "web1", "10.0.0.2");
    let views = setup.root.join(".views/web1");
    let merged = views.join("merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "web1"]).assert().success();
    fs::write(merged.join("etc/motd"), "from the view\n").unwrap();

    setup
        .vskel()
        .args(["materialize", "web1"])
        .assert()
        .success();
    let tree = setup.root.join("web1");
    assert_eq!(
        fs::read_to_string(tree.join("etc/motd")).unwrap(),
        "from the view\n"
    );
    assert_eq!(
        dev_ino(&tree.join("bin/hello")),
        dev_ino(&skel.join("global/bin/hello"))
    );
    assert!(!views.exists(), "the view directory is gone");
    assert!(
        !fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .contains(merged.to_str().unwrap()),
        "still mounted"
    );
    let link = setup.etc.join("contexts/50");
    assert_eq!(fs::read_link(&link).unwrap(), tree);
    let out = setup
        .vskel()
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["kind"], "tree");
    assert_eq!(list[0]["root"], tree.to_str().unwrap());
    // A tree is not a view any more: it cannot be mounted or synced.
    setup.vskel().args(["mount", "web1"]).assert().failure();
    setup.vskel().args(["sync", "web1"]).assert().failure();
    setup.vskel().args(["remove-vs", "web1"]).assert().success();
    assert!(!tree.exists());
}
