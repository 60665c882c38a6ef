//! `vskel diff` on real vservers of the built-in example skel: a view
//! mounted by `vskel mount` and changed through the mount (a file added,
//! one written, one chmod-ed, one removed, a directory removed, one
//! removed and made again: opaque, a file copied up unchanged), and a tree
//! changed in place; each diff must list exactly those changes, as JSON,
//! as text and with `--stat`, and the same once the view is unmounted. A
//! tree whose record names no generation is compared with the skel.
//! Every mount is undone by a [`MountGuard`].

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{MountGuard, Setup, require_root};
use serde_json::Value;

/// Exit code of a usage error.
const USAGE: i32 = 2;

/// A change as the test expects it: status, path, content, metadata.
type Want = (&'static str, &'static str, bool, bool);

fn diff_json(setup: &Setup, name: &str, extra: &[&str]) -> Value {
    let mut args = vec!["diff", name, "--format", "json"];
    args.extend_from_slice(extra);
    let out = setup.run_ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The changes of a diff document, as [`Want`]s.
fn changes_of(doc: &Value) -> Vec<(String, String, bool, bool)> {
    doc["changes"]
        .as_array()
        .unwrap_or_else(|| panic!("no changes in {doc:#}"))
        .iter()
        .map(|c| {
            (
                c["status"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                c["content"].as_bool().unwrap(),
                c["metadata"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn owned(want: &[Want]) -> Vec<(String, String, bool, bool)> {
    want.iter()
        .map(|(s, p, c, m)| (s.to_string(), p.to_string(), *c, *m))
        .collect()
}

fn change<'a>(doc: &'a Value, path: &str) -> &'a Value {
    doc["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {doc:#}"))
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// What every test does to a vserver's root `at`, and what its diff must
/// then list (both sides as the example skel lays them out).
fn change_root(at: &Path) {
    fs::write(at.join("new-file"), vec![7u8; 100]).unwrap(); // added
    fs::write(at.join("etc/motd"), "changed\n").unwrap(); // local, content
    fs::write(at.join("etc/hosts"), "127.0.0.1 elsewhere\n").unwrap(); // static, content
    chmod(&at.join("var/lib/demo/state"), 0o644); // local, metadata only
    fs::remove_file(at.join("etc/fstab")).unwrap(); // removed
    fs::remove_file(at.join("usr/bin/ping")).unwrap(); // global, removed
    fs::remove_dir(at.join("var/log")).unwrap(); // an empty directory removed
    // A directory removed with what it holds, and made again.
    fs::remove_dir_all(at.join("etc/ssl")).unwrap();
    fs::create_dir(at.join("etc/ssl")).unwrap();
    fs::write(at.join("etc/ssl/new.pem"), "new\n").unwrap();
}

const CHANGED: &[Want] = &[
    ("modified", "/etc/hosts", true, false),
    ("modified", "/etc/motd", true, false),
    ("removed", "/etc/fstab", false, false),
    ("added", "/etc/ssl/new.pem", false, false),
    ("removed", "/etc/ssl/certs", false, false),
    ("removed", "/etc/ssl/certs/a.pem", false, false),
    ("removed", "/etc/ssl/certs/b.pem", false, false),
    ("added", "/new-file", false, false),
    ("removed", "/usr/bin/ping", false, false),
    ("modified", "/var/lib/demo/state", false, true),
    ("removed", "/var/log", false, false),
];

/// [`CHANGED`] sorted as diff sorts (by path).
fn sorted(want: &[Want]) -> Vec<(String, String, bool, bool)> {
    let mut out = owned(want);
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

fn merged(setup: &Setup, name: &str) -> PathBuf {
    setup.root.join(".views").join(name).join("merged")
}

#[test]
fn view_diff_lists_exactly_what_changed_through_the_mount() {
    if !require_root("view_diff_lists_exactly_what_changed_through_the_mount") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "v1", "10.0.0.1");
    let untouched = diff_json(&setup, "v1", &[]);
    assert_eq!(changes_of(&untouched), Vec::new(), "{untouched:#}");
    assert_eq!(untouched["kind"], "view");
    assert_eq!(untouched["skel"], "base");

    let at = merged(&setup, "v1");
    let guard = MountGuard(at.clone());
    setup.run_ok(&["mount", "v1"]);
    change_root(&at);
    // Copied up (opened for writing), nothing changed: not listed.
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(at.join("usr/share/doc/demo/README"))
            .unwrap(),
    );
    let upper = setup.root.join(".views/v1/upper");
    assert!(upper.join("usr/share/doc/demo/README").exists());
    // A global file chmod-ed (copied up): metadata only.
    chmod(&at.join("usr/bin/tool"), 0o755);
    let mut want = CHANGED.to_vec();
    want.push(("modified", "/usr/bin/tool", false, true));

    let doc = diff_json(&setup, "v1", &[]);
    assert_eq!(changes_of(&doc), sorted(&want), "{doc:#}");
    assert_eq!(change(&doc, "/new-file")["size"], 100);
    assert_eq!(change(&doc, "/new-file")["kind"], "file");
    assert_eq!(change(&doc, "/etc/motd")["size"], 8);
    assert_eq!(change(&doc, "/etc/motd")["old_size"], 24);
    assert_eq!(change(&doc, "/etc/fstab")["size"], 8);
    assert_eq!(change(&doc, "/var/log")["size"], Value::Null);
    assert_eq!(change(&doc, "/var/log")["kind"], "dir");
    let summary = &doc["summary"];
    assert_eq!(summary["added"], 2);
    assert_eq!(summary["modified"], 4);
    assert_eq!(summary["modified_content"], 2);
    assert_eq!(summary["modified_metadata"], 2);
    assert_eq!(summary["removed"], 6);
    assert_eq!(summary["added_bytes"], 104);

    let text = setup.run_ok(&["diff", "v1"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), want.len() + 1, "{text}");
    assert!(lines.contains(&"A /new-file  100"), "{text}");
    assert!(lines.contains(&"M /etc/motd  8  (content)"), "{text}");
    assert!(lines.contains(&"M /usr/bin/tool  27  (metadata)"), "{text}");
    assert!(lines.contains(&"D /var/log  -"), "{text}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("v1 against skel base generation 1: 2 added (104 bytes), 4 modified"),
        "{text}"
    );

    let stat = diff_json(&setup, "v1", &["--stat"]);
    assert!(stat.get("changes").is_none(), "{stat:#}");
    assert_eq!(stat["summary"], doc["summary"]);
    let stat_text = setup.run_ok(&["diff", "v1", "--stat"]);
    assert_eq!(stat_text.lines().count(), 1, "{stat_text}");

    // The same from the layers alone, unmounted.
    guard.unmount().unwrap();
    assert_eq!(changes_of(&diff_json(&setup, "v1", &[])), sorted(&want));
}

#[test]
fn tree_diff_lists_exactly_what_changed_in_the_tree() {
    if !require_root("tree_diff_lists_exactly_what_changed_in_the_tree") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let tree = setup.create("base", "t1", "10.0.0.2");
    let untouched = diff_json(&setup, "t1", &[]);
    assert_eq!(changes_of(&untouched), Vec::new(), "{untouched:#}");
    assert_eq!(untouched["kind"], "tree");
    assert_eq!(untouched["generation"], 1);

    change_root(&tree);
    // A global file given other bytes (a copy: the skel's inode is left).
    fs::remove_file(tree.join("lib/libdemo.so.1")).unwrap();
    fs::write(tree.join("lib/libdemo.so.1"), "a real library now\n").unwrap();
    let mut want = CHANGED.to_vec();
    want.push(("modified", "/lib/libdemo.so.1", true, false));
    let doc = diff_json(&setup, "t1", &[]);
    assert_eq!(changes_of(&doc), sorted(&want), "{doc:#}");
    assert_eq!(change(&doc, "/etc/motd")["old_size"], 24);
    let text = setup.run_ok(&["diff", "t1"]);
    assert!(text.contains("A /new-file  100\n"), "{text}");
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("t1 against skel base generation 1:"),
        "{text}"
    );

    // A tree made before generations were recorded: against the skel.
    let record = setup.root.join(".vskel/vservers/t1.toml");
    let text = fs::read_to_string(&record).unwrap_or_else(|e| panic!("{}: {e}", record.display()));
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("generation") && !l.starts_with("tree_generation"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    fs::write(&record, without).unwrap();
    let doc = diff_json(&setup, "t1", &[]);
    assert_eq!(doc["generation"], Value::Null);
    assert_eq!(changes_of(&doc), sorted(&want), "{doc:#}");
}

#[test]
fn diff_of_an_unknown_vserver_is_a_usage_error() {
    let setup = Setup::new("");
    for name in ["nosuch", "../etc"] {
        let out = setup.vskel().args(["diff", name]).output().unwrap();
        assert_eq!(out.status.code(), Some(USAGE), "{name}: {out:?}");
        assert!(out.stdout.is_empty());
    }
}

/// A directory renamed in the view (a redirect in the upper layer) is
/// its old path removed and its new one added, each with what it holds;
/// a file replaced by a symlink pointing out of the vserver is read as
/// the symlink (never followed): its content changed, its size the
/// target's length.
#[test]
fn view_diff_follows_redirects_and_no_symlink() {
    if !require_root("view_diff_follows_redirects_and_no_symlink") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create_view("base", "v2", "10.0.0.3");
    let at = merged(&setup, "v2");
    let _guard = MountGuard(at.clone());
    setup.run_ok(&["mount", "v2"]);
    fs::rename(at.join("etc/ssl"), at.join("etc/tls")).unwrap();
    fs::remove_file(at.join("etc/motd")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", at.join("etc/motd")).unwrap();
    let doc = diff_json(&setup, "v2", &[]);
    let want: &[Want] = &[
        ("modified", "/etc/motd", true, true),
        ("removed", "/etc/ssl", false, false),
        ("removed", "/etc/ssl/certs", false, false),
        ("removed", "/etc/ssl/certs/a.pem", false, false),
        ("removed", "/etc/ssl/certs/b.pem", false, false),
        ("added", "/etc/tls", false, false),
        ("added", "/etc/tls/certs", false, false),
        ("added", "/etc/tls/certs/a.pem", false, false),
        ("added", "/etc/tls/certs/b.pem", false, false),
    ];
    assert_eq!(changes_of(&doc), sorted(want), "{doc:#}");
    let motd = change(&doc, "/etc/motd");
    assert_eq!(motd["kind"], "symlink");
    assert_eq!(motd["size"], "/etc/passwd".len());
}

/// A vserver's root swapped `/etc` for a symlink to the host's `/etc`
/// (in a tree, and in a view's upper layer as kernel overlayfs would
/// leave it): diff reports the symlink and the skel's `/etc` removed, and
/// never reads the host's files through it.
#[test]
fn diff_never_follows_a_symlink_the_vserver_planted() {
    if !require_root("diff_never_follows_a_symlink_the_vserver_planted") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let tree = setup.create("base", "t3", "10.0.0.4");
    let view = setup.create_view("base", "v3", "10.0.0.5");
    fs::remove_dir_all(tree.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc", tree.join("etc")).unwrap();
    std::os::unix::fs::symlink("/etc", view.join("upper/etc")).unwrap();
    for name in ["t3", "v3"] {
        let doc = diff_json(&setup, name, &[]);
        let changes = changes_of(&doc);
        assert!(
            changes.contains(&("modified".into(), "/etc".into(), true, true)),
            "{name}: {doc:#}"
        );
        // Nothing below it is the host's: only the skel's, removed.
        for (status, path, _, _) in &changes {
            if path.starts_with("/etc/") {
                assert_eq!(status, "removed", "{name}: {path}");
            }
        }
        assert!(
            changes.iter().any(|c| c.1 == "/etc/motd"),
            "{name}: the skel's /etc/motd is gone: {doc:#}"
        );
        assert_eq!(change(&doc, "/etc")["kind"], "symlink");
    }
}
