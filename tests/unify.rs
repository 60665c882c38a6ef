//! `vskel unify` (issue 13 item 4): a tree vserver made into copies with
//! `cp -a` (no inode shared with the skel) is linked back to the skel's
//! inodes, with the bytes reported and its canonical listing unchanged
//! apart from inode sharing; `--dry-run` writes nothing; a file that
//! differs by one byte, its mode, owner, an xattr or (without
//! `--ignore-mtime`) its mtime is left alone; a symlink the vserver put
//! where a parent directory was is never followed; views and bad input
//! are refused; with `protect = "immutable"` the links are made and the
//! skel's files stay immutable.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::lifecycle::{ProtectedSetup, lacking_immutable};
use common::{Listing, Setup, canonical, dev_ino, diff, disk_usage, require_root, snapshot};

/// Size of the big global file added to the example tree.
const BIG: usize = 1 << 20;

/// The example skel plus a big file and a few spare ones, and vserver
/// `web` made from it and then turned into copies (`cp -a`).
fn world(setup: &Setup) -> PathBuf {
    let src = setup.example_source();
    fs::create_dir_all(src.join("usr/lib/demo")).unwrap();
    let big: Vec<u8> = (0..BIG).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(src.join("usr/lib/demo/big"), &big).unwrap();
    for f in ["byte", "mode", "owner", "xattr", "mtime", "kept"] {
        fs::write(src.join("usr/lib/demo").join(f), format!("{f} content\n")).unwrap();
    }
    setup
        .vskel()
        .args(["build-skel", "base", "--from"])
        .arg(&src)
        .assert()
        .success();
    let vs = setup.create("base", "web", "10.0.4.2");
    into_copies(&vs);
    vs
}

/// Replace the tree `vs` by a `cp -a` copy of itself: every file a copy
/// of its own, hard links among its names kept. The tree made by
/// create-vs is moved out of the vservers root, beside it (its global
/// files may be immutable).
fn into_copies(vs: &Path) {
    let copy = vs.with_extension("copy");
    let ok = Command::new("cp")
        .arg("-a")
        .arg(vs)
        .arg(&copy)
        .status()
        .unwrap()
        .success();
    assert!(ok, "cp -a");
    let made = vs.parent().unwrap().with_file_name("made-by-create-vs");
    fs::rename(vs, made).unwrap();
    fs::rename(&copy, vs).unwrap();
}

fn skel(setup: &Setup) -> PathBuf {
    setup.root.join(".skel/base")
}

fn global_files(setup: &Setup) -> Vec<PathBuf> {
    let global = skel(setup).join("global");
    snapshot(&global)
        .into_iter()
        .filter(|(_, e)| e.kind == "file")
        .map(|(p, _)| p)
        .collect()
}

fn shared(setup: &Setup, vs: &Path, rel: &Path) -> bool {
    dev_ino(&vs.join(rel)) == dev_ino(&skel(setup).join("global").join(rel))
}

/// The listing without what unify may change: which inodes are shared
/// (with the skel, and so the link counts that name a group of one).
fn unshared(listing: &Listing) -> Listing {
    listing
        .iter()
        .map(|(p, e)| {
            let mut e = e.clone();
            e.shares_skel = false;
            if e.group.as_ref() == Some(p) {
                e.group = None;
            }
            (p.clone(), e)
        })
        .collect()
}

fn unify_json(setup: &Setup, args: &[&str]) -> serde_json::Value {
    let out = setup
        .vskel()
        .arg("unify")
        .args(args)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "unify {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn unify_links_a_cp_a_copy_and_reports_the_bytes() {
    if !require_root("unify_links_a_cp_a_copy_and_reports_the_bytes") {
        return;
    }
    let setup = Setup::new("");
    let vs = world(&setup);
    let files = global_files(&setup);
    assert!(files.len() >= 10, "{files:?}");
    assert!(
        files.iter().all(|f| !shared(&setup, &vs, f)),
        "cp -a shares"
    );
    let before = canonical(&vs, &skel(&setup));
    let usage = disk_usage(&[&setup.root]);

    let report = unify_json(&setup, &["web"]);
    assert_eq!(report["linked"], files.len() as u64, "{report}");
    assert_eq!(report["different"], 0, "{report}");
    let reclaimed = report["bytes_reclaimed"].as_u64().unwrap();
    assert!(reclaimed >= BIG as u64, "{report}");
    assert_eq!(usage - disk_usage(&[&setup.root]), reclaimed, "{report}");
    for f in &files {
        assert!(shared(&setup, &vs, f), "{} not linked", f.display());
    }
    let after = canonical(&vs, &skel(&setup));
    assert!(after.values().any(|e| e.shares_skel));
    let changed = diff(&unshared(&before), &unshared(&after));
    assert!(changed.is_empty(), "{changed:#?}");

    // Again: everything is shared already.
    let again = unify_json(&setup, &["web"]);
    assert_eq!(again["linked"], 0, "{again}");
    assert_eq!(again["already_shared"], files.len() as u64, "{again}");
    // The text report says what was done.
    let out = setup.vskel().args(["unify", "web"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("linked 0 files"), "{text}");
}

#[test]
fn dry_run_writes_nothing_and_reports_what_it_would_reclaim() {
    if !require_root("dry_run_writes_nothing_and_reports_what_it_would_reclaim") {
        return;
    }
    let setup = Setup::new("");
    let vs = world(&setup);
    let before = snapshot(setup.dir.path());
    let dry = unify_json(&setup, &["web", "--dry-run"]);
    assert_eq!(snapshot(setup.dir.path()), before);
    let out = setup
        .vskel()
        .args(["unify", "web", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("would link /usr/lib/demo/big"), "{text}");
    assert_eq!(snapshot(setup.dir.path()), before);
    assert!(global_files(&setup).iter().all(|f| !shared(&setup, &vs, f)));

    let real = unify_json(&setup, &["web"]);
    for key in ["linked", "bytes_reclaimed", "paths"] {
        assert_eq!(dry[key], real[key], "{key}: {dry} vs {real}");
    }
}

#[test]
fn files_that_differ_are_left_alone() {
    if !require_root("files_that_differ_are_left_alone") {
        return;
    }
    let setup = Setup::new("");
    let vs = world(&setup);
    let d = vs.join("usr/lib/demo");
    let keep_mtime = |path: &Path, change: &dyn Fn(&Path)| {
        let mtime = filetime::FileTime::from_last_modification_time(&fs::metadata(path).unwrap());
        change(path);
        filetime::set_file_mtime(path, mtime).unwrap();
    };
    // One byte, same size and mtime.
    keep_mtime(&d.join("byte"), &|p| {
        fs::write(p, "byte contenT\n").unwrap()
    });
    keep_mtime(&d.join("mode"), &|p| {
        fs::set_permissions(p, fs::Permissions::from_mode(0o600)).unwrap()
    });
    keep_mtime(&d.join("owner"), &|p| {
        std::os::unix::fs::chown(p, Some(1234), Some(1234)).unwrap()
    });
    keep_mtime(&d.join("xattr"), &|p| {
        xattr::set(p, "user.mine", b"1").unwrap();
    });
    filetime::set_file_mtime(d.join("mtime"), filetime::FileTime::from_unix_time(1, 0)).unwrap();
    let report = unify_json(&setup, &["web"]);
    assert_eq!(report["different"], 5, "{report}");
    let rel = |f: &str| Path::new("usr/lib/demo").join(f);
    for f in ["byte", "mode", "owner", "xattr", "mtime"] {
        assert!(!shared(&setup, &vs, &rel(f)), "{f} was linked");
    }
    assert!(shared(&setup, &vs, &rel("kept")));
    assert_eq!(fs::read(d.join("byte")).unwrap(), b"byte contenT\n");
    assert_eq!(
        xattr::get(d.join("xattr"), "user.mine").unwrap(),
        Some(b"1".to_vec())
    );

    // --ignore-mtime links the file whose mtime alone differs; it takes
    // the skel's mtime.
    let report = unify_json(&setup, &["web", "--ignore-mtime"]);
    assert_eq!(report["linked"], 1, "{report}");
    assert!(shared(&setup, &vs, &rel("mtime")));
    let skel_mtime = fs::metadata(skel(&setup).join("global").join(rel("mtime")))
        .unwrap()
        .mtime();
    assert_eq!(fs::metadata(d.join("mtime")).unwrap().mtime(), skel_mtime);
    assert_eq!(report["different"], 4, "{report}");
}

#[test]
fn a_planted_symlink_is_never_followed() {
    if !require_root("a_planted_symlink_is_never_followed") {
        return;
    }
    let setup = Setup::new("");
    let vs = world(&setup);
    // Outside the tree: identical copies of the skel's usr/lib/demo and
    // usr/bin, which the vserver points its own directories at.
    let outside = setup.dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    for d in ["usr/lib/demo", "usr/bin"] {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(skel(&setup).join("global").join(d))
            .arg(outside.join(d.replace('/', "-")))
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }
    fs::remove_dir_all(vs.join("usr/lib/demo")).unwrap();
    std::os::unix::fs::symlink(outside.join("usr-lib-demo"), vs.join("usr/lib/demo")).unwrap();
    // A relative one too, climbing out.
    fs::remove_dir_all(vs.join("usr/bin")).unwrap();
    // (From <dir>/vservers/web/usr to <dir>/outside.)
    std::os::unix::fs::symlink("../../../outside/usr-bin", vs.join("usr/bin")).unwrap();
    // And a file that is a symlink to the skel's own file.
    let hello = vs.join("bin/hello-again");
    fs::remove_file(&hello).unwrap();
    std::os::unix::fs::symlink(skel(&setup).join("global/bin/hello"), &hello).unwrap();
    let outside_before = snapshot(&outside);
    let skel_before = snapshot(&skel(&setup));

    let report = unify_json(&setup, &["web"]);
    assert_eq!(snapshot(&outside), outside_before);
    assert_eq!(
        snapshot(&skel(&setup)),
        skel_before_linked(&skel_before, &setup)
    );
    assert!(
        fs::symlink_metadata(&hello)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(vs.join("usr/bin"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let absent = report["absent"].as_u64().unwrap();
    assert!(absent >= 10, "{report}");
    assert!(shared(&setup, &vs, Path::new("bin/hello")));
}

/// The skel's snapshot as it is once unify linked files: only link
/// counts changed.
fn skel_before_linked(
    before: &std::collections::BTreeMap<PathBuf, common::Entry>,
    setup: &Setup,
) -> std::collections::BTreeMap<PathBuf, common::Entry> {
    let now = snapshot(&skel(setup));
    before
        .iter()
        .map(|(p, e)| {
            let mut e = e.clone();
            if let Some(n) = now.get(p) {
                e.nlink = n.nlink;
            }
            (p.clone(), e)
        })
        .collect()
}

#[test]
fn views_and_bad_input_are_refused() {
    if !require_root("views_and_bad_input_are_refused") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "v1", "10.0.4.3");
    let out = setup.vskel().args(["unify", "v1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a view") && err.contains("upper"), "{err}");
    for (args, code) in [
        (vec!["unify", "nobody"], 1),
        (vec!["unify", "../x"], 2),
        (vec!["unify", ".hidden"], 2),
        (vec!["unify"], 2),
    ] {
        let before = snapshot(&setup.root);
        let out = setup.vskel().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        assert_eq!(snapshot(&setup.root), before, "{args:?} wrote");
    }
}

#[test]
fn immutable_skel_files_are_linked_and_stay_immutable() {
    if !require_root("immutable_skel_files_are_linked_and_stay_immutable") {
        return;
    }
    let protected = ProtectedSetup::new();
    let setup = &protected.setup;
    let vs = world(setup);
    let global = skel(setup).join("global");
    assert!(lacking_immutable(&global).is_empty());
    let report = unify_json(setup, &["web"]);
    assert_eq!(
        report["linked"],
        global_files(setup).len() as u64,
        "{report}"
    );
    for f in global_files(setup) {
        assert!(shared(setup, &vs, &f), "{}", f.display());
    }
    assert!(lacking_immutable(&global).is_empty());
    // Under protection the copy's symlinks are its own (no flag can guard
    // a shared one): unify leaves them, and verify finds all as it should.
    for rel in ["lib64", "usr/bin/hello-link"] {
        assert_ne!(dev_ino(&vs.join(rel)), dev_ino(&global.join(rel)), "{rel}");
    }
    let out = setup.vskel().args(["verify", "web"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
