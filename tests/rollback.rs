//! `rollback-skel` on real trees with vskel's default protection (the
//! kept generation's inodes are immutable): the skel gets an earlier
//! generation's global/ and local/ back as a new generation, every
//! unchanged entry keeps its inode, `upgrade-vs` brings a tree along and
//! `verify` finds it clean; a second rollback undoes the first. Bad
//! states and bad input are refused with nothing written.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::{Setup, require_root, snapshot};

/// What a part holds: per path its kind, mode, owner, size, content or
/// link target (no inode, no times).
type Content = BTreeMap<PathBuf, (String, u32, u32, u64, Option<Vec<u8>>, Option<PathBuf>)>;

fn content(dir: &Path) -> Content {
    snapshot(dir)
        .into_iter()
        .map(|(rel, e)| {
            let kind = e.kind.to_string();
            let size = if kind == "dir" { 0 } else { e.size };
            (rel, (kind, e.mode, e.uid, size, e.content, e.link))
        })
        .collect()
}

/// The skel's global/ and local/ contents.
fn parts(skel: &Path) -> (Content, Content) {
    (content(&skel.join("global")), content(&skel.join("local")))
}

/// The inode of each non-directory of global/.
fn inodes(skel: &Path) -> BTreeMap<PathBuf, u64> {
    snapshot(&skel.join("global"))
        .into_iter()
        .filter(|(_, e)| e.kind != "dir")
        .map(|(rel, e)| (rel, e.ino))
        .collect()
}

/// Replace `rel` in `root` by a new file (as dpkg does: a new inode).
fn replace(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    let tmp = path.with_extension("vskel-test-new");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, &path).unwrap();
}

/// Make generation 2 of skel `ex`: usr/bin/tool replaced, usr/bin/ping
/// removed, usr/bin/added added, etc/motd (local) replaced.
fn change_skel(setup: &Setup) {
    setup.run_ok(&["merge-skel", "ex"]);
    let temp = setup.root.join("tmp_skel_ex");
    replace(&temp, "usr/bin/tool", "#!/bin/sh\necho tool v2\n");
    fs::remove_file(temp.join("usr/bin/ping")).unwrap();
    fs::write(temp.join("usr/bin/added"), "added in v2\n").unwrap();
    replace(&temp, "etc/motd", "motd v2\n");
    setup.run_ok(&["split-skel", "ex"]);
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

#[test]
fn rollback_gives_back_an_earlier_generation_and_upgrade_vs_follows() {
    if !require_root("rollback_gives_back_an_earlier_generation_and_upgrade_vs_follows") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("ex");
    let first = parts(&skel);
    let first_inodes = inodes(&skel);
    let t1 = setup.create("ex", "t1", "10.0.7.1");
    change_skel(&setup);
    let second = parts(&skel);
    assert_ne!(first, second);
    setup.run_ok(&["upgrade-vs", "t1"]);
    assert_eq!(
        fs::read_to_string(t1.join("usr/bin/tool")).unwrap(),
        "#!/bin/sh\necho tool v2\n"
    );

    let done = json(&setup.run_ok(&["rollback-skel", "ex", "--format", "json"]));
    assert_eq!(
        (&done["from"], &done["to"], &done["generation"]),
        (&2.into(), &1.into(), &3.into()),
        "{done}"
    );
    assert_eq!(done["removed"], 1, "{done}");
    assert_eq!(parts(&skel), first, "the parts are generation 1's again");
    assert!(skel.join("generations/3.record").is_file());
    // Every entry generation 2 did not change kept its inode (a hard-link
    // group stays one), and global files are protected.
    let now = inodes(&skel);
    for (rel, ino) in &first_inodes {
        if rel != Path::new("usr/bin/tool") && rel != Path::new("usr/bin/ping") {
            assert_eq!(now.get(rel), Some(ino), "{} has a new inode", rel.display());
        }
    }
    let tool = skel.join("global/usr/bin/tool");
    let lsattr = std::process::Command::new("lsattr")
        .arg(&tool)
        .output()
        .unwrap();
    let flags = String::from_utf8_lossy(&lsattr.stdout);
    assert!(
        flags.split_whitespace().next().unwrap_or("").contains('i'),
        "{flags}"
    );

    // The tree follows: the skel's inodes again, clean.
    let upgraded = setup.run_ok(&["upgrade-vs", "t1", "--format", "json"]);
    assert_eq!(json(&upgraded)["vservers"][0]["to"], 3, "{upgraded}");
    assert_eq!(
        fs::read_to_string(t1.join("usr/bin/tool")).unwrap(),
        fs::read_to_string(&tool).unwrap()
    );
    assert_eq!(
        fs::metadata(t1.join("usr/bin/tool")).unwrap().ino(),
        fs::metadata(&tool).unwrap().ino()
    );
    assert!(t1.join("usr/bin/ping").is_file());
    assert!(!t1.join("usr/bin/added").exists());
    setup.run_ok(&["verify", "t1"]);

    // A second rollback undoes the first.
    setup.run_ok(&["rollback-skel", "ex"]);
    assert_eq!(parts(&skel), second);
    assert!(skel.join("generations/4.record").is_file());
}

#[test]
fn bad_states_and_bad_input_are_refused_with_nothing_written() {
    if !require_root("bad_states_and_bad_input_are_refused_with_nothing_written") {
        return;
    }
    let setup = Setup::with_default_protection("");
    setup.build_example_skel("ex");
    let refused = |args: &[&str], says: &str| {
        let before = snapshot(&setup.root);
        let out = setup.vskel().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(before == snapshot(&setup.root), "{args:?} wrote something");
    };
    refused(&["rollback-skel", "nosuch"], "no skel named");
    refused(&["rollback-skel", "../x"], "invalid");
    refused(&["rollback-skel", "ex"], "first generation");
    change_skel(&setup);
    refused(
        &["rollback-skel", "ex", "--to", "2"],
        "roll back to an earlier one",
    );
    refused(
        &["rollback-skel", "ex", "--to", "0"],
        "roll back to an earlier one",
    );
    refused(&["rollback-skel", "ex", "--to", "x"], "invalid value");
    setup.run_ok(&["merge-skel", "ex"]);
    refused(&["rollback-skel", "ex"], "is merged");
    setup.run_ok(&["split-skel", "ex"]);
    // Two changes on: generation 1's parts are no longer kept.
    change_skel_again(&setup);
    refused(&["rollback-skel", "ex", "--to", "1"], "are not kept");
}

/// Generation 3: usr/bin/tool replaced again.
fn change_skel_again(setup: &Setup) {
    setup.run_ok(&["merge-skel", "ex"]);
    replace(
        &setup.root.join("tmp_skel_ex"),
        "usr/bin/tool",
        "#!/bin/sh\necho tool v3\n",
    );
    setup.run_ok(&["split-skel", "ex"]);
    assert!(
        !setup.root.join(".skel/ex/generations/1.tree").exists(),
        "generation 1's tree is pruned"
    );
}
