//! `vskel du` on real vservers of the built-in example skel: a tree
//! (changed in place: a big file of its own, a global file broken off)
//! and a view mounted by `vskel mount` (a big file written through the
//! mount). Each vserver's own and shared bytes are checked against a
//! count made here with std::fs (each inode's blocks once), and the total
//! counts each shared inode once. Every mount is undone by a
//! [`MountGuard`].

mod common;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{MountGuard, Setup, disk_usage, require_root};
use serde_json::Value;

/// Exit code of a usage error.
const USAGE: i32 = 2;
/// Bytes of the file each vserver gets of its own.
const BIG: usize = 1 << 20;

/// Every inode below `dir` (not following symlinks) with its bytes.
fn inodes(dir: &Path) -> HashMap<(u64, u64), u64> {
    let mut out = HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(path) = todo.pop() {
        let m = fs::symlink_metadata(&path).unwrap();
        out.insert((m.dev(), m.ino()), m.blocks() * 512);
        if m.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                todo.push(entry.unwrap().path());
            }
        }
    }
    out
}

fn du_json(setup: &Setup, names: &[&str]) -> Value {
    let mut args = vec!["du", "--format", "json"];
    args.extend_from_slice(names);
    let out = setup.run_ok(&args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn by_name<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["vservers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {doc:#}"))
}

/// The tree's (own, shared) bytes: shared are the skel's global inodes.
fn tree_usage(tree: &Path, global: &Path) -> (u64, u64) {
    let skel: HashSet<_> = inodes(global).into_keys().collect();
    let (mut own, mut shared) = (0, 0);
    for (inode, bytes) in inodes(tree) {
        if skel.contains(&inode) {
            shared += bytes;
        } else {
            own += bytes;
        }
    }
    (own, shared)
}

#[test]
fn du_counts_own_and_shared_bytes_of_trees_and_views() {
    if !require_root("du_counts_own_and_shared_bytes_of_trees_and_views") {
        return;
    }
    let setup = Setup::new("");
    let skel = setup.build_example_skel("base");
    let (global, local) = (skel.join("global"), skel.join("local"));
    let tree = setup.create("base", "t1", "10.0.0.1");
    let view = setup.create_view("base", "v1", "10.0.0.2");
    let (upper, statics): (PathBuf, PathBuf) = (view.join("upper"), view.join("static"));

    let before = du_json(&setup, &["t1"]);
    let (own, shared) = tree_usage(&tree, &global);
    assert!(shared > 0, "the tree shares the skel's global files");
    assert_eq!(by_name(&before, "t1")["own_bytes"], own, "{before:#}");
    assert_eq!(by_name(&before, "t1")["shared_bytes"], shared, "{before:#}");

    // The tree: a big file of its own, a global file broken off.
    fs::write(tree.join("root/big"), vec![1u8; BIG]).unwrap();
    let copy = fs::read(tree.join("lib/libdemo.so.1")).unwrap();
    fs::remove_file(tree.join("lib/libdemo.so.1")).unwrap();
    fs::write(tree.join("lib/libdemo.so.1"), copy).unwrap();
    // The view: a big file written through its mount.
    let at = view.join("merged");
    let _guard = MountGuard(at.clone());
    setup.run_ok(&["mount", "v1"]);
    fs::write(at.join("root/big"), vec![2u8; BIG]).unwrap();

    let doc = du_json(&setup, &[]);
    assert_eq!(doc["vservers"].as_array().unwrap().len(), 2, "{doc:#}");
    let t1 = by_name(&doc, "t1");
    let (own, shared) = tree_usage(&tree, &global);
    assert!(own >= BIG as u64, "{own}");
    assert_eq!(t1["kind"], "tree");
    assert_eq!(t1["skel"], "base");
    assert_eq!(t1["own_bytes"], own, "{doc:#}");
    assert_eq!(t1["shared_bytes"], shared, "{doc:#}");
    assert_eq!(t1["error"], Value::Null);

    let v1 = by_name(&doc, "v1");
    let view_own = disk_usage(&[&upper, &statics]);
    assert!(view_own >= BIG as u64, "{view_own}");
    let view_shared = disk_usage(&[&local, &global]);
    assert_eq!(v1["kind"], "view");
    assert_eq!(v1["own_bytes"], view_own, "{doc:#}");
    assert_eq!(v1["shared_bytes"], view_shared, "{doc:#}");

    // The total: each shared inode once (the tree's are the view's too).
    assert_eq!(doc["total"]["own_bytes"], own + view_own);
    assert_eq!(doc["total"]["shared_bytes"], view_shared);

    let text = setup.run_ok(&["du"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    let total: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        total,
        [
            "total",
            &(own + view_own).to_string(),
            &view_shared.to_string()
        ],
        "{text}"
    );
    let one = setup.run_ok(&["du", "v1"]);
    assert_eq!(
        one.lines().count(),
        2,
        "no total for the vservers named: {one}"
    );
}

#[test]
fn du_of_an_unknown_vserver_is_a_usage_error() {
    let setup = Setup::new("");
    let out = setup.vskel().args(["du", "nosuch"]).output().unwrap();
    assert_eq!(out.status.code(), Some(USAGE), "{out:?}");
    assert!(out.stdout.is_empty());
}
