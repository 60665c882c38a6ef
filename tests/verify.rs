//! `verify` and `repair` (issue 13 items 2 and 3) on real trees of the
//! example skel: clean on fresh vservers; a global file broken off by
//! `cp -p f f.tmp && mv f.tmp f` named and linked again; a shared inode
//! changed in place named with every vserver sharing it and restored
//! byte for byte from the content store (also when only its ctime tells);
//! lost immutable attributes found and set again (ext4 loop image where
//! needed); a hostile symlink in place of a directory reported, never
//! followed; a skel file missing; views; the JSON shape. Under the
//! default protection global symlinks are each vserver's own copies
//! (`chown -h`/`touch -h` in one changes no other; upgrade-vs copies a
//! changed one), an older tree's linked symlink is `shared-unprotected`
//! and broken off by repair, and repair restores a shared symlink changed
//! in place without opening it.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use common::lifecycle::{ProtectedSetup, lacking_immutable};
use common::{Setup, dev_ino, require_root};

/// `vskel ARGS`: (exit code, stdout, stderr).
fn vskel(setup: &Setup, args: &[&str]) -> (i32, String, String) {
    let out = setup.vskel_process().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vskel verify ARGS --format json`: (exit code, the document).
fn verify_json(setup: &Setup, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let (code, out, err) = vskel(setup, &all);
    let doc: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    (code, doc["vservers"].clone())
}

/// (path, kind) of every finding of vserver `name` in a JSON report.
fn findings(doc: &serde_json::Value, name: &str) -> Vec<(String, String)> {
    let vs = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {doc}"));
    vs["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(path: &str, kind: &str) -> (String, String) {
    (path.to_string(), kind.to_string())
}

/// A setup with protection off and a skel `ex` with tree vservers a, b.
fn two_vservers() -> (Setup, std::path::PathBuf) {
    let setup = Setup::new("protect = \"none\"");
    let skel = setup.build_example_skel("ex");
    setup.create("ex", "a", "10.0.0.2");
    setup.create("ex", "b", "10.0.0.3");
    (setup, skel)
}

#[test]
fn a_fresh_vserver_verifies_clean_and_a_broken_off_copy_is_linked_again() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    let (code, out, err) = vskel(&setup, &["verify", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("clean"), "{out}");
    let (code, _, err) = vskel(&setup, &["verify", "--all"]);
    assert_eq!(code, 0, "{err}");

    // What an editor or a package tool does: a copy renamed over.
    let cp_p = |rel: &str| {
        let f = setup.root.join("a").join(rel);
        let tmp = f.with_extension("tmp");
        let cp = Command::new("cp").arg("-p").arg(&f).arg(&tmp).status();
        assert!(cp.unwrap().success());
        fs::rename(&tmp, &f).unwrap();
        f
    };
    let f = cp_p("bin/hello");
    assert_ne!(dev_ino(&f), dev_ino(&skel.join("global/bin/hello")));
    // `cp -p` leaves out xattrs: this copy lacks ping's file capability,
    // so it is not the skel's file (and is not linked again).
    let ping = cp_p("usr/bin/ping");
    let (code, out, _) = vskel(&setup, &["verify", "a"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("broken-off /bin/hello"), "{out}");
    let (code, doc) = verify_json(&setup, &["a", "b"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "a"),
        [
            pair("/bin/hello", "broken-off"),
            pair("/usr/bin/ping", "replaced")
        ]
    );
    assert_eq!(findings(&doc, "b"), []);
    fs::remove_file(&ping).unwrap();
    fs::hard_link(skel.join("global/usr/bin/ping"), &ping).unwrap();

    let (code, out, err) = vskel(&setup, &["repair", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("linked to the skel's inode again"), "{out}");
    assert_eq!(dev_ino(&f), dev_ino(&skel.join("global/bin/hello")));
    let (code, out, err) = vskel(&setup, &["verify", "a", "b"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn a_shared_inode_changed_in_place_names_every_sharer_and_repair_restores_it() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    let rel = "usr/share/doc/demo/README";
    let original = fs::read(skel.join("global").join(rel)).unwrap();
    let meta = fs::metadata(skel.join("global").join(rel)).unwrap();
    let inode = dev_ino(&skel.join("global").join(rel));
    // The content store holds a copy, named by its BLAKE3 hash.
    let object = skel
        .join("generations/objects")
        .join(blake3::hash(&original).to_hex().as_str());
    assert_eq!(fs::read(&object).unwrap(), original);
    assert_ne!(dev_ino(&object), inode);
    assert_eq!(fs::metadata(&object).unwrap().mode() & 0o7777, 0o444);
    // `echo x >> f` as root inside vserver a, protection off.
    let mut grown = original.clone();
    grown.extend_from_slice(b"x\n");
    fs::write(setup.root.join("a").join(rel), &grown).unwrap();
    assert_eq!(fs::read(setup.root.join("b").join(rel)).unwrap(), grown);

    let (code, doc) = verify_json(&setup, &["a", "b"]);
    assert_eq!(code, 1);
    let want = [pair(&format!("/{rel}"), "changed-in-place")];
    assert_eq!(findings(&doc, "a"), want);
    assert_eq!(findings(&doc, "b"), want);
    for vs in doc.as_array().unwrap() {
        let f = &vs["findings"][0];
        assert_eq!(f["shared_by"], serde_json::json!(["a", "b"]), "{f}");
        assert!(f["detail"].as_str().unwrap().contains("size"), "{f}");
    }

    let (code, out, err) = vskel(&setup, &["repair", "a", "b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("restored from the skel's content store"),
        "{out}"
    );
    for tree in [
        skel.join("global"),
        setup.root.join("a"),
        setup.root.join("b"),
    ] {
        let path = tree.join(rel);
        assert_eq!(fs::read(&path).unwrap(), original, "{}", path.display());
        assert_eq!(
            dev_ino(&path),
            inode,
            "{} is still the shared inode",
            path.display()
        );
    }
    let after = fs::metadata(skel.join("global").join(rel)).unwrap();
    assert_eq!(
        (after.mode(), after.uid(), after.mtime(), after.mtime_nsec()),
        (meta.mode(), meta.uid(), meta.mtime(), meta.mtime_nsec())
    );
    let (code, out, err) = vskel(&setup, &["verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn without_a_content_store_repair_says_it_cannot_restore() {
    if !require_root("verify") {
        return;
    }
    let setup = Setup::new("protect = \"none\"\ncontent_store = false");
    let skel = setup.build_example_skel("ex");
    assert!(!skel.join("generations/objects").exists());
    setup.create("ex", "a", "10.0.0.2");
    let rel = "usr/share/doc/demo/README";
    fs::write(setup.root.join("a").join(rel), "changed\n").unwrap();
    let (code, out, _) = vskel(&setup, &["repair", "a"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("remains changed-in-place /usr/share/doc/demo/README")
            && out.contains("vskel cannot restore it"),
        "{out}"
    );
    assert_eq!(
        fs::read(skel.join("global").join(rel)).unwrap(),
        b"changed\n"
    );
    // Only metadata changed: restored without a stored copy.
    let tool = setup.root.join("a/usr/bin/tool");
    fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
    let (code, out, _) = vskel(&setup, &["repair", "a"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("repaired changed-in-place /usr/bin/tool: metadata restored"),
        "{out}"
    );
    let mode = fs::metadata(&tool).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o4755);
}

#[test]
fn a_change_that_keeps_size_and_mtime_is_found_by_its_ctime() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    // Verified once: the cache now vouches for every inode at its ctime.
    assert_eq!(vskel(&setup, &["verify", "a"]).0, 0);
    let path = setup.root.join("a/usr/bin/ping");
    let before = fs::metadata(&path).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[0] ^= 0x20; // same size
    fs::write(&path, &bytes).unwrap();
    let mtime = filetime::FileTime::from_last_modification_time(&before);
    filetime::set_file_mtime(&path, mtime).unwrap();
    let (code, doc) = verify_json(&setup, &["b"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "b"),
        [pair("/usr/bin/ping", "changed-in-place")]
    );
    assert_eq!(vskel(&setup, &["repair", "b"]).0, 0);
    bytes[0] ^= 0x20;
    assert_eq!(fs::read(skel.join("global/usr/bin/ping")).unwrap(), bytes);
    assert_eq!(vskel(&setup, &["verify", "a", "b"]).0, 0);
}

#[test]
fn a_replaced_file_remains_and_a_chmod_of_the_shared_inode_is_mended() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    let mine = setup.root.join("a/bin/hello");
    fs::remove_file(&mine).unwrap();
    fs::write(&mine, "#!/bin/sh\necho mine\n").unwrap();
    let shared = setup.root.join("b/usr/bin/tool");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
    let (code, doc) = verify_json(&setup, &["--all"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "a"),
        [
            pair("/bin/hello", "replaced"),
            pair("/usr/bin/tool", "changed-in-place")
        ]
    );
    let (code, out, _) = vskel(&setup, &["repair", "--all"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("remains replaced /bin/hello"), "{out}");
    assert!(out.contains("vskel revert a /bin/hello"), "{out}");
    assert_eq!(fs::read_to_string(&mine).unwrap(), "#!/bin/sh\necho mine\n");
    let mode = fs::metadata(skel.join("global/usr/bin/tool"))
        .unwrap()
        .mode();
    assert_eq!(mode & 0o7777, 0o4755);
    let (code, doc) = verify_json(&setup, &["--all"]);
    assert_eq!(code, 1);
    assert_eq!(findings(&doc, "a"), [pair("/bin/hello", "replaced")]);
    assert_eq!(findings(&doc, "b"), []);
}

#[test]
fn a_hostile_symlink_in_place_of_a_directory_is_reported_never_followed() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    // usr/share/doc replaced by a symlink to the skel's own directory:
    // followed, everything below would look shared and clean.
    let doc_dir = setup.root.join("a/usr/share/doc");
    fs::remove_dir_all(&doc_dir).unwrap();
    std::os::unix::fs::symlink(skel.join("global/usr/share/doc"), &doc_dir).unwrap();
    // ... and usr/bin by one to a decoy outside with a copy of ping.
    let decoy = setup.dir.path().join("decoy");
    fs::create_dir(&decoy).unwrap();
    fs::write(decoy.join("ping"), "decoy\n").unwrap();
    let bin = setup.root.join("a/usr/bin");
    fs::remove_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(&decoy, &bin).unwrap();
    let (code, doc) = verify_json(&setup, &["a"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "a"),
        [
            pair("/usr/bin", "replaced"),
            pair("/usr/share/doc", "replaced")
        ]
    );
    let (code, out, _) = vskel(&setup, &["repair", "a"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(fs::read_to_string(decoy.join("ping")).unwrap(), "decoy\n");
    assert_eq!(fs::read_dir(&decoy).unwrap().count(), 1);
    assert!(fs::symlink_metadata(&bin).unwrap().is_symlink());
}

#[test]
fn a_skel_file_missing_is_reported_for_every_vserver_and_views_check_the_skel() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    setup.create_view("ex", "v", "10.0.0.4");
    let (code, doc) = verify_json(&setup, &["v", "a"]);
    assert_eq!(code, 0, "{doc}");
    let v = doc.as_array().unwrap().iter().find(|v| v["name"] == "v");
    assert_eq!(v.unwrap()["kind"], "view");
    fs::remove_file(skel.join("global/sbin/init")).unwrap();
    let (code, doc) = verify_json(&setup, &["--all"]);
    assert_eq!(code, 1);
    for name in ["a", "b", "v"] {
        assert_eq!(
            findings(&doc, name),
            [pair("/sbin/init", "missing-in-skel")],
            "{name}"
        );
    }
    let f = &doc[0]["findings"][0];
    let keys: Vec<&str> = f.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["detail", "kind", "path", "shared_by"]);
    for key in ["name", "skel", "generation", "kind", "checked", "findings"] {
        assert!(doc[0].get(key).is_some(), "{key} missing in {}", doc[0]);
    }
    let (code, out, _) = vskel(&setup, &["repair", "--all"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("remains missing-in-skel /sbin/init"), "{out}");
}

#[test]
fn lost_immutable_attributes_are_found_and_set_again() {
    if !require_root("verify") {
        return;
    }
    let protected = ProtectedSetup::new();
    let setup = &protected.setup;
    let skel = setup.build_example_skel("ex");
    setup.create("ex", "a", "10.0.0.2");
    setup.create("ex", "b", "10.0.0.3");
    let global = skel.join("global");
    assert_eq!(lacking_immutable(&global), Vec::<std::path::PathBuf>::new());
    assert_eq!(vskel(setup, &["verify", "--all"]).0, 0);
    let chattr = |flag: &str, path: &Path| {
        let ok = Command::new("chattr").arg(flag).arg(path).status();
        assert!(ok.unwrap().success());
    };
    // One flag lost; one file changed in place with its flag set again
    // (repair must lift it, crash-safely, to write the content back).
    let ping = global.join("usr/bin/ping");
    chattr("-i", &ping);
    let readme = global.join("usr/share/doc/demo/README");
    let original = fs::read(&readme).unwrap();
    chattr("-i", &readme);
    fs::write(&readme, "changed\n").unwrap();
    chattr("+i", &readme);
    let (code, doc) = verify_json(setup, &["a", "b"]);
    assert_eq!(code, 1);
    for name in ["a", "b"] {
        assert_eq!(
            findings(&doc, name),
            [
                pair("/usr/bin/ping", "lost-protection"),
                pair("/usr/share/doc/demo/README", "changed-in-place")
            ]
        );
    }
    let (code, out, err) = vskel(setup, &["repair", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(lacking_immutable(&global), Vec::<std::path::PathBuf>::new());
    assert_eq!(
        fs::read(setup.root.join("b/usr/share/doc/demo/README")).unwrap(),
        original
    );
    let lifted = setup.root.join(".vskel/unlocked");
    if lifted.exists() {
        let left: Vec<_> = fs::read_dir(&lifted)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".scope"))
            .collect();
        assert!(left.is_empty(), "records of lifted flags left: {left:?}");
    }
    let (code, out, err) = vskel(setup, &["verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    // A broken-off copy (the flag lifted for the rename: an immutable
    // inode cannot lose a name) is linked again through the immutable
    // inode.
    let hello = global.join("bin/hello");
    let f = setup.root.join("a/bin/hello");
    let tmp = setup.root.join("a/bin/hello.tmp");
    let cp = Command::new("cp").arg("-p").arg(&f).arg(&tmp).status();
    assert!(cp.unwrap().success());
    chattr("-i", &hello);
    fs::rename(&tmp, &f).unwrap();
    chattr("+i", &hello);
    let (code, doc) = verify_json(setup, &["a"]);
    assert_eq!(code, 1);
    assert_eq!(findings(&doc, "a"), [pair("/bin/hello", "broken-off")]);
    let (code, out, err) = vskel(setup, &["repair", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(dev_ino(&f), dev_ino(&hello));
    assert_eq!(vskel(setup, &["verify", "a"]).0, 0);
    // `revert` places a global file the same way (it failed with EPERM
    // on the immutable inode before).
    let (code, out, err) = vskel(setup, &["revert", "b", "/usr/bin/ping"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(dev_ino(&setup.root.join("b/usr/bin/ping")), dev_ino(&ping));
    assert_eq!(lacking_immutable(&global), Vec::<std::path::PathBuf>::new());
}

/// The example skel's global symlinks (src/example.rs).
const GLOBAL_SYMLINKS: [&str; 2] = ["lib64", "usr/bin/hello-link"];

/// Owner, mtime, inode and target of a symlink (not followed).
fn symlink_state(path: &Path) -> (u32, u32, i64, i64, (u64, u64), std::path::PathBuf) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(m.file_type().is_symlink(), "{}", path.display());
    (
        m.uid(),
        m.gid(),
        m.mtime(),
        m.mtime_nsec(),
        dev_ino(path),
        fs::read_link(path).unwrap(),
    )
}

/// `chown -h` and `touch -h` of `path`, as a vserver's root does them.
fn chown_and_touch_symlink(path: &Path) {
    std::os::unix::fs::lchown(path, Some(1234), Some(1234)).unwrap();
    let when = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_symlink_file_times(path, when, when).unwrap();
}

#[test]
fn by_default_a_vserver_root_cannot_change_a_global_symlink_of_the_skel() {
    if !require_root("verify") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("ex");
    let a = setup.create("ex", "a", "10.0.0.2");
    let b = setup.create("ex", "b", "10.0.0.3");
    let (code, out, err) = vskel(&setup, &["verify", "--all"]);
    assert_eq!(code, 0, "fresh vservers under protection: {out}{err}");
    let global = skel.join("global");
    for rel in GLOBAL_SYMLINKS {
        let skel_before = symlink_state(&global.join(rel));
        let b_before = symlink_state(&b.join(rel));
        let a_before = symlink_state(&a.join(rel));
        assert_ne!(a_before.4, skel_before.4, "{rel}: A has the skel's inode");
        assert_ne!(b_before.4, skel_before.4, "{rel}: B has the skel's inode");
        assert_eq!(a_before.5, skel_before.5, "{rel}: target");
        assert_eq!(
            (a_before.0, a_before.1, a_before.2, a_before.3),
            (skel_before.0, skel_before.1, skel_before.2, skel_before.3),
            "{rel}: the copy keeps owner and mtime"
        );
        chown_and_touch_symlink(&a.join(rel));
        assert_eq!(symlink_state(&global.join(rel)), skel_before, "{rel}: skel");
        assert_eq!(symlink_state(&b.join(rel)), b_before, "{rel}: B");
        assert_eq!(symlink_state(&a.join(rel)).0, 1234, "{rel}: A's own");
    }
    // A's change is its own: reported for A only, harming no other.
    let (code, doc) = verify_json(&setup, &["a", "b"]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&doc, "a"),
        [
            pair("/lib64", "replaced"),
            pair("/usr/bin/hello-link", "replaced")
        ]
    );
    assert_eq!(findings(&doc, "b"), []);
}

#[test]
fn a_symlink_still_linked_by_an_older_tree_is_broken_off_by_repair() {
    if !require_root("verify") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("ex");
    let a = setup.create("ex", "a", "10.0.0.2");
    setup.create("ex", "b", "10.0.0.3");
    let global = skel.join("global");
    // What create-vs did before symlinks were copied under protection.
    fs::remove_file(a.join("lib64")).unwrap();
    fs::hard_link(global.join("lib64"), a.join("lib64")).unwrap();
    assert_eq!(dev_ino(&a.join("lib64")), dev_ino(&global.join("lib64")));
    let (code, doc) = verify_json(&setup, &["a", "b"]);
    assert_eq!(code, 1);
    assert_eq!(findings(&doc, "a"), [pair("/lib64", "shared-unprotected")]);
    assert_eq!(findings(&doc, "b"), []);
    let skel_before = symlink_state(&global.join("lib64"));
    let (code, out, err) = vskel(&setup, &["repair", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("a private copy"), "{out}");
    let now = symlink_state(&a.join("lib64"));
    assert_ne!(now.4, skel_before.4);
    assert_eq!(
        (now.0, now.1, now.2, now.3, &now.5),
        (
            skel_before.0,
            skel_before.1,
            skel_before.2,
            skel_before.3,
            &skel_before.5
        )
    );
    assert_eq!(symlink_state(&global.join("lib64")), skel_before);
    let (code, out, err) = vskel(&setup, &["verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn repair_restores_a_shared_symlink_changed_in_place_without_opening_it() {
    if !require_root("verify") {
        return;
    }
    let (setup, skel) = two_vservers();
    let global = skel.join("global");
    // Without protection symlinks are shared by hard link.
    for rel in GLOBAL_SYMLINKS {
        assert_eq!(
            dev_ino(&setup.root.join("a").join(rel)),
            dev_ino(&global.join(rel)),
            "{rel}"
        );
    }
    let rel = "usr/bin/hello-link";
    let before = symlink_state(&global.join(rel));
    chown_and_touch_symlink(&setup.root.join("a").join(rel));
    let (code, doc) = verify_json(&setup, &["a", "b"]);
    assert_eq!(code, 1);
    for name in ["a", "b"] {
        assert_eq!(
            findings(&doc, name),
            [pair("/usr/bin/hello-link", "changed-in-place")]
        );
    }
    let (code, out, err) = vskel(&setup, &["repair", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(symlink_state(&global.join(rel)), before);
    let (code, out, err) = vskel(&setup, &["verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn under_protection_upgrade_vs_copies_a_changed_global_symlink() {
    if !require_root("verify") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("ex");
    let a = setup.create("ex", "a", "10.0.0.2");
    let b = setup.create("ex", "b", "10.0.0.3");
    let global = skel.join("global");
    // The skel's symlink replaced by rename (a symlink has no flag).
    let link = global.join("usr/bin/hello-link");
    let tmp = global.join("usr/bin/hello-link.tmp");
    std::os::unix::fs::symlink("../../bin/hello-again", &tmp).unwrap();
    fs::rename(&tmp, &link).unwrap();
    let dirs = vskel::layout::SkelDirs { dir: skel.clone() };
    vskel::generation::record(
        &dirs,
        "test",
        &vskel::progress::Progress::hidden(),
        vskel::generation::Store::Skip,
    )
    .unwrap();
    let lib64 = dev_ino(&a.join("lib64"));
    let (code, out, err) = vskel(&setup, &["upgrade-vs", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    let now = a.join("usr/bin/hello-link");
    assert_eq!(
        fs::read_link(&now).unwrap(),
        Path::new("../../bin/hello-again")
    );
    assert_ne!(dev_ino(&now), dev_ino(&link), "A has the skel's inode");
    // An unchanged copy stays as it is.
    assert_eq!(dev_ino(&a.join("lib64")), lib64);
    let (code, out, err) = vskel(&setup, &["verify", "a"]);
    assert_eq!(code, 0, "{out}{err}");
    // B, still on the old generation, keeps its own old copy.
    assert_eq!(
        fs::read_link(b.join("usr/bin/hello-link")).unwrap(),
        Path::new("../../bin/hello")
    );
}
