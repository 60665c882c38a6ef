//! `vskel sync`: a view flattened into an on-disk tree equals the tree
//! `create-vs` makes (on the debootstrap skel), and changes made through a
//! mounted view appear in the synced tree with the skel's inodes shared
//! where nothing changed.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

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
    // Content and metadata of its parts; link counts grow as trees link
    // the skel's files (and its lock files are not its content).
    let skel_state = |skel: &Path| {
        let mut parts = Vec::new();
        for part in ["global", "local", "static"] {
            let mut state = fingerprint(&skel.join(part));
            for (entry, _) in state.values_mut() {
                entry.nlink = 0;
            }
            parts.push(state);
        }
        parts
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
        !setup.root.join(".vskel/sync/web1.manifest").exists(),
        "the sync state is gone"
    );
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
    assert_eq!(list["vservers"][0]["kind"], "tree");
    assert_eq!(list["vservers"][0]["root"], tree.to_str().unwrap());
    // A tree is not a view any more: it cannot be mounted or synced.
    setup.vskel().args(["mount", "web1"]).assert().failure();
    setup.vskel().args(["sync", "web1"]).assert().failure();
    setup.vskel().args(["remove-vs", "web1"]).assert().success();
    assert!(!tree.exists());
}

/// Inode and change time of every entry of a tree: what "changes nothing"
/// must keep.
fn inode_state(tree: &Path) -> BTreeMap<PathBuf, (u64, i64, i64)> {
    snapshot(tree)
        .keys()
        .map(|rel| {
            let md = fs::symlink_metadata(tree.join(rel)).unwrap();
            (rel.clone(), (md.ino(), md.ctime(), md.ctime_nsec()))
        })
        .collect()
}

fn sync_json(setup: &Setup, extra: &[&str]) -> serde_json::Value {
    let out = setup
        .vskel()
        .args(["sync", "web1", "--format", "json"])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sync failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Skel "base" from the example, with a second hard-linked pair in
/// global/ (`usr/bin/ping`, `usr/bin/ping-again`) that [`change_a_lot`]
/// leaves unchanged but for removing one name, which copies the other up
/// as it is.
fn build_skel_for_changes(setup: &Setup) -> PathBuf {
    let src = setup.example_source();
    fs::hard_link(src.join("usr/bin/ping"), src.join("usr/bin/ping-again")).unwrap();
    setup.build_example_skel("base")
}

/// Change many kinds of things through the mounted view `merged`.
fn change_a_lot(merged: &Path, round: u32) {
    use std::os::unix::fs::PermissionsExt;
    let append = |path: &Path, text: &str| {
        let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    };
    append(&merged.join("bin/hello"), &format!("echo round {round}\n"));
    if round == 1 {
        fs::write(merged.join("etc/motd"), format!("round {round}\n")).unwrap();
    }
    fs::set_permissions(
        merged.join("lib/libdemo.so.1"),
        fs::Permissions::from_mode(0o700 + round),
    )
    .unwrap();
    let dir = merged.join(format!("srv/round{round}"));
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("sub/a"), "a\n").unwrap();
    fs::hard_link(dir.join("sub/a"), dir.join("b")).unwrap();
    std::os::unix::fs::symlink("sub/a", dir.join("link")).unwrap();
    if round == 1 {
        fs::remove_file(merged.join("sbin/init")).unwrap();
        fs::remove_file(merged.join("usr/bin/ping-again")).unwrap();
        fs::rename(
            merged.join("usr/share/doc"),
            merged.join("usr/share/manuals"),
        )
        .unwrap();
        // A lower directory replaced by a new one of the same name (opaque).
        fs::remove_dir_all(merged.join("var/log")).unwrap();
        fs::create_dir(merged.join("var/log")).unwrap();
        fs::write(merged.join("var/log/new.log"), "fresh\n").unwrap();
    } else {
        // Undo part of round 1 and move things again.
        fs::remove_dir_all(merged.join("srv/round1/sub")).unwrap();
        fs::rename(
            merged.join("usr/share/manuals"),
            merged.join("usr/share/doc2"),
        )
        .unwrap();
        fs::write(merged.join("sbin/init"), "#!/bin/sh\n").unwrap();
        fs::remove_file(merged.join("var/log/new.log")).unwrap();
        // A file becomes a directory and a directory a file.
        fs::remove_file(merged.join("etc/motd")).unwrap();
        fs::create_dir(merged.join("etc/motd")).unwrap();
        fs::write(merged.join("etc/motd/part"), "part\n").unwrap();
        fs::remove_dir_all(merged.join("srv/round1")).unwrap();
        fs::write(merged.join("srv/round1"), "now a file\n").unwrap();
    }
}

#[test]
fn an_incremental_sync_gives_the_tree_a_full_rebuild_gives() {
    if !require_root("an_incremental_sync_gives_the_tree_a_full_rebuild_gives") {
        return;
    }
    let setup = Setup::new("");
    let skel = build_skel_for_changes(&setup);
    let skel_before = fingerprint(&skel.join("local"));
    setup.create_view("base", "web1", "10.0.0.2");
    let first = sync_json(&setup, &[]);
    assert_eq!(first["mode"], "full");
    let tree = setup.root.join("web1");
    let merged = setup.root.join(".views/web1/merged");
    let manifest = setup.root.join(".vskel/sync/web1.manifest");
    for round in 1..=2 {
        {
            let _guard = MountGuard(merged.clone());
            setup.vskel().args(["mount", "web1"]).assert().success();
            change_a_lot(&merged, round);
            setup.vskel().args(["unmount", "web1"]).assert().success();
        }
        let done = sync_json(&setup, &[]);
        assert_eq!(done["mode"], "incremental", "round {round}: {done}");
        let changes = done["changes"].as_array().map(Vec::len).unwrap_or(0);
        assert!(changes > 5 && changes < 100, "round {round}: {done}");
        let incremental = canonical(&tree, &skel);

        // The same view rebuilt from scratch.
        fs::remove_file(&manifest).unwrap();
        let rebuilt = sync_json(&setup, &[]);
        assert_eq!(rebuilt["mode"], "full");
        let full = canonical(&tree, &skel);
        let differences = diff(&full, &incremental);
        assert!(
            differences.is_empty(),
            "round {round}: {} differences: {:#?}",
            differences.len(),
            &differences[..differences.len().min(10)]
        );
    }
    assert_eq!(
        dev_ino(&tree.join("usr/share/doc2/demo/README")),
        dev_ino(&skel.join("global/usr/share/doc/demo/README"))
    );
    assert!(!tree.join("usr/share/manuals").exists());
    assert!(!tree.join("srv/round1/sub").exists());
    assert_eq!(
        dev_ino(&tree.join("srv/round2/b")),
        dev_ino(&tree.join("srv/round2/sub/a"))
    );
    assert_eq!(fingerprint(&skel.join("local")), skel_before);
}

#[test]
fn a_sync_with_nothing_changed_changes_nothing() {
    if !require_root("a_sync_with_nothing_changed_changes_nothing") {
        return;
    }
    let setup = Setup::new("");
    build_skel_for_changes(&setup);
    setup.create_view("base", "web1", "10.0.0.2");
    sync_json(&setup, &[]);
    let merged = setup.root.join(".views/web1/merged");
    {
        let _guard = MountGuard(merged.clone());
        setup.vskel().args(["mount", "web1"]).assert().success();
        change_a_lot(&merged, 1);
        setup.vskel().args(["unmount", "web1"]).assert().success();
    }
    sync_json(&setup, &[]);
    let tree = setup.root.join("web1");
    let before = inode_state(&tree);
    for _ in 0..2 {
        let again = sync_json(&setup, &[]);
        assert_eq!(again["mode"], "incremental");
        for count in ["linked", "copied", "dirs", "removed", "updated"] {
            assert_eq!(again["counts"][count], 0, "{count}: {again}");
        }
        assert_eq!(
            again["counts"]["unchanged"].as_u64().unwrap(),
            before.len() as u64 - 1, // the root is not an entry
            "{again}"
        );
        assert!(inode_state(&tree) == before, "the tree changed");
    }
}

#[test]
fn dry_run_reports_the_changes_and_writes_nothing() {
    if !require_root("dry_run_reports_the_changes_and_writes_nothing") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "web1", "10.0.0.2");
    // Before the first sync: counts only, and no tree.
    let first = sync_json(&setup, &["--dry-run"]);
    assert_eq!(first["dry_run"], true);
    assert!(first["counts"]["linked"].as_u64().unwrap() > 5, "{first}");
    let tree = setup.root.join("web1");
    assert!(!tree.exists());
    sync_json(&setup, &[]);
    let merged = setup.root.join(".views/web1/merged");
    {
        let _guard = MountGuard(merged.clone());
        setup.vskel().args(["mount", "web1"]).assert().success();
        fs::write(merged.join("etc/motd"), "new\n").unwrap();
        fs::remove_file(merged.join("sbin/init")).unwrap();
        setup.vskel().args(["unmount", "web1"]).assert().success();
    }
    let before = inode_state(&tree);
    let state_dir = setup.root.join(".vskel/sync");
    let state_before = snapshot(&state_dir);
    let out = setup
        .vskel()
        .args(["sync", "web1", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would copy /etc/motd"), "{text}");
    assert!(text.contains("would remove /sbin/init"), "{text}");
    assert!(inode_state(&tree) == before, "a dry run changed the tree");
    assert!(
        snapshot(&state_dir) == state_before,
        "a dry run changed the state"
    );
    let done = sync_json(&setup, &[]);
    assert_eq!(done["counts"]["copied"], 1, "{done}");
    assert_eq!(done["counts"]["removed"], 1, "{done}");
    assert_eq!(fs::read_to_string(tree.join("etc/motd")).unwrap(), "new\n");
    assert!(!tree.join("sbin/init").exists());
}

#[test]
fn a_file_written_during_a_sync_of_the_mounted_view_is_never_torn() {
    if !require_root("a_file_written_during_a_sync_of_the_mounted_view_is_never_torn") {
        return;
    }
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const SIZE: usize = 64 * 1024;
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "web1", "10.0.0.2");
    let merged = setup.root.join(".views/web1/merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "web1"]).assert().success();
    let file = fs::File::create(merged.join("etc/busy")).unwrap();
    file.write_all_at(&[0u8; SIZE], 0).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, writes) = (stop.clone(), writes.clone());
        std::thread::spawn(move || {
            let mut k = 0u8;
            while !stop.load(Ordering::Relaxed) {
                k = k.wrapping_add(1);
                // One write call: the view gets it as one request.
                file.write_all_at(&[k; SIZE], 0).unwrap();
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let tree = setup.root.join("web1");
    let mut seen = HashSet::new();
    for round in 0..8 {
        let done = sync_json(&setup, &[]);
        assert_eq!(done["writes_held"], true, "{done}");
        let data = fs::read(tree.join("etc/busy")).unwrap();
        assert_eq!(data.len(), SIZE, "round {round}");
        assert!(
            data.iter().all(|b| *b == data[0]),
            "round {round}: torn file: starts with {} and holds {:?}",
            data[0],
            data.iter().collect::<HashSet<_>>()
        );
        seen.insert(data[0]);
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(writes.load(Ordering::Relaxed) > 8, "the writer hardly ran");
    assert!(seen.len() > 1, "every sync saw the same write: {seen:?}");
    setup.vskel().args(["unmount", "web1"]).assert().success();
}
