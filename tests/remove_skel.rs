//! `vskel remove-skel` (issue 13 item 5): refused while a tree vserver or
//! a view uses the skel (they are listed; nothing is removed), while the
//! skel is merged, and without a terminal or `--force`; after `remove-vs`
//! it removes the skel whole (generations, kept trees, .bak parts, locks)
//! and leaves nothing in the staging area, also with
//! `protect = "immutable"`; bad names are refused with nothing written.

mod common;

use std::fs;
use std::path::Path;

use common::lifecycle::{ProtectedSetup, lacking_immutable};
use common::{Setup, require_root, snapshot};

fn remove_skel(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    let out = setup
        .vskel()
        .arg("remove-skel")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn staging_is_empty(setup: &Setup) -> bool {
    let dir = setup.root.join(".vskel/staging");
    !dir.exists() || fs::read_dir(&dir).unwrap().next().is_none()
}

/// A skel that went through a merge and a split (global.bak, local.bak,
/// two generations), with a vserver `web` of it.
fn used_skel(setup: &Setup) -> std::path::PathBuf {
    let skel = setup.build_example_skel("base");
    setup.create("base", "web", "10.0.5.2");
    for command in ["merge-skel", "split-skel"] {
        setup.vskel().args([command, "base"]).assert().success();
    }
    assert!(skel.join("global.bak").is_dir());
    skel
}

#[test]
fn refused_while_a_tree_uses_it_then_removed_after_remove_vs() {
    if !require_root("refused_while_a_tree_uses_it_then_removed_after_remove_vs") {
        return;
    }
    let setup = Setup::new("");
    let skel = used_skel(&setup);
    setup.create("base", "db", "10.0.5.3");
    let before = snapshot(&skel);
    let (code, _, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("web (tree)") && err.contains("db (tree)") && err.contains("remove-vs"),
        "{err}"
    );
    assert_eq!(
        snapshot(&skel),
        before,
        "a refused remove-skel changed the skel"
    );

    for vs in ["web", "db"] {
        setup.vskel().args(["remove-vs", vs]).assert().success();
    }
    // No terminal, no --force: refused, saying what to do.
    let (code, _, err) = remove_skel(&setup, &["base"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert!(skel.join("global").is_dir());

    let (code, out, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("removed skel base"), "{out}");
    assert!(!skel.exists());
    assert!(staging_is_empty(&setup));
    let (code, _, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no skel named"), "{err}");
}

#[test]
fn refused_while_a_view_uses_it() {
    if !require_root("refused_while_a_view_uses_it") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup.create_view("base", "v1", "10.0.5.4");
    let before = snapshot(&skel);
    let (code, _, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("v1 (view)"), "{err}");
    assert_eq!(snapshot(&skel), before);
    setup.vskel().args(["remove-vs", "v1"]).assert().success();
    let (code, _, err) = remove_skel(&setup, &["base", "--force", "--format", "json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!skel.exists());
}

#[test]
fn refused_while_merged() {
    if !require_root("refused_while_merged") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    setup
        .vskel()
        .args(["merge-skel", "base"])
        .assert()
        .success();
    let (code, _, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("split-skel base"), "{err}");
    assert!(skel.join("global").is_dir());
    setup
        .vskel()
        .args(["split-skel", "base"])
        .assert()
        .success();
    let (code, _, err) = remove_skel(&setup, &["base", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!skel.exists());
}

#[test]
fn removes_an_immutable_skel() {
    if !require_root("removes_an_immutable_skel") {
        return;
    }
    let protected = ProtectedSetup::new();
    let setup = &protected.setup;
    let skel = used_skel(setup);
    let global = skel.join("global");
    assert!(!snapshot(&global).is_empty() && lacking_immutable(&global).is_empty());
    let (code, _, err) = remove_skel(setup, &["base", "--force"]);
    assert_eq!(code, Some(1), "{err}");
    setup.vskel().args(["remove-vs", "web"]).assert().success();
    let (code, _, err) = remove_skel(setup, &["base", "--force"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!skel.exists());
    assert!(staging_is_empty(setup));
    // No record of lifted flags is left behind.
    let unlocked = setup.root.join(".vskel/unlocked");
    if unlocked.exists() {
        let left: Vec<_> = fs::read_dir(&unlocked)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".scope"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn bad_names_are_refused() {
    if !require_root("bad_names_are_refused") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let long = "x".repeat(65);
    for name in [
        "",
        ".",
        "..",
        ".base",
        "-base",
        "a/b",
        "../base",
        long.as_str(),
        "ba se",
    ] {
        let before = snapshot(&setup.root);
        let (code, _, err) = remove_skel(&setup, &[name, "--force"]);
        assert_eq!(code, Some(2), "{name:?}: {err}");
        assert_eq!(snapshot(&setup.root), before, "{name:?} wrote");
    }
    assert!(Path::new(&setup.root.join(".skel/base/global")).is_dir());
}
