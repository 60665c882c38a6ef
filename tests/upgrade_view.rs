//! `upgrade-vs` of a mounted view (issue 12 item 4): after `split-skel`
//! the view stays whole on its generation (the old files, the old
//! listings) until `upgrade-vs` moves it on; then what the vserver never
//! touched shows the new skel, an upper-layer copy equal to the old
//! version gives way, the vserver's own edits are kept with the skel's
//! version beside them as `.vskel-new` and reported as conflicts, the
//! view is mounted again, and `sync` gives a tree equal to the view.
//! `--plan` writes nothing; a busy view is refused with nothing changed.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::mount::{MountGuard, is_mounted};
use common::{Setup, canonical, dev_ino, require_root, snapshot};

const SKEL: &str = "base";

fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    fs::create_dir_all(src.join("usr/bin")).unwrap();
    fs::create_dir_all(src.join("etc")).unwrap();
    for f in ["take", "conf", "cu", "gone", "keep"] {
        fs::write(src.join("usr/bin").join(f), format!("{f} v1\n")).unwrap();
    }
    for f in ["lconf", "lmine"] {
        fs::write(src.join("etc").join(f), format!("{f} v1\n")).unwrap();
    }
    src
}

fn replace_by_rename(path: &Path, content: &str) {
    let tmp = path.with_extension("vskel-test-tmp");
    fs::write(&tmp, content).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The skel's second generation, made the way package work makes it.
fn split_a_new_generation(setup: &Setup) {
    setup.run_ok(&["merge-skel", SKEL]);
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));
    for f in ["take", "conf", "cu"] {
        replace_by_rename(&temp.join("usr/bin").join(f), &format!("{f} v2\n"));
    }
    fs::write(temp.join("usr/bin/added"), "added v2\n").unwrap();
    fs::remove_file(temp.join("usr/bin/gone")).unwrap();
    for f in ["lconf", "lmine"] {
        replace_by_rename(&temp.join("etc").join(f), &format!("{f} v2\n"));
    }
    setup.run_ok(&["split-skel", SKEL]);
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A canonical listing without what only a tree has (inodes shared with
/// the skel, hard-link groups).
fn content_listing(dir: &Path, skel: &Path) -> BTreeMap<PathBuf, String> {
    canonical(dir, skel)
        .into_iter()
        .map(|(p, e)| {
            let text = format!(
                "{} {:o} {:?} {} {:?} {:?} {:?} {:?}",
                e.kind, e.mode, e.owner, e.size, e.mtime, e.content, e.link, e.xattrs
            );
            (p, text)
        })
        .collect()
}

#[test]
fn a_mounted_view_stays_on_its_generation_until_upgraded_then_shows_the_new_one() {
    if !require_root("a_mounted_view_stays_on_its_generation_until_upgraded") {
        return;
    }
    let setup = Setup::new("");
    let src = source(setup.dir.path());
    setup.run_ok(&["build-skel", SKEL, "--from", src.to_str().unwrap()]);
    let skel = setup.root.join(".skel").join(SKEL);
    let view = setup.create_view(SKEL, "w1", "10.0.1.2");
    let merged = view.join("merged");
    fs::create_dir_all(&merged).unwrap();
    let guard = MountGuard(merged.clone());
    setup.run_ok(&["mount", "w1"]);
    assert!(is_mounted(&merged));

    // A first sync: the tree is on generation 1.
    setup.run_ok(&["sync", "w1"]);
    // The vserver's own edits, and a copy-up that changes nothing.
    fs::write(merged.join("usr/bin/conf"), "conf mine\n").unwrap();
    fs::write(merged.join("etc/lmine"), "lmine mine\n").unwrap();
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(merged.join("usr/bin/cu"))
            .unwrap(),
    );
    assert!(view.join("upper/usr/bin/cu").exists(), "cu was copied up");
    let bin_before = names(&merged.join("usr/bin"));

    split_a_new_generation(&setup);

    // Still generation 1, whole: old files, the old listing.
    assert_eq!(read(&merged.join("usr/bin/take")), "take v1\n");
    assert_eq!(read(&merged.join("etc/lconf")), "lconf v1\n");
    assert_eq!(names(&merged.join("usr/bin")), bin_before);
    assert!(skel.join("generations/1.tree/global/usr/bin/gone").exists());
    // ... also when mounted again: the view's record says generation 1.
    guard.unmount().unwrap();
    setup.run_ok(&["mount", "w1"]);
    assert_eq!(read(&merged.join("usr/bin/take")), "take v1\n");
    assert_eq!(names(&merged.join("usr/bin")), bin_before);

    // --plan decides and writes nothing.
    let upper_before = snapshot(&view.join("upper"));
    let static_before = snapshot(&view.join("static"));
    let plan = setup.run_ok(&["upgrade-vs", "--plan", "w1", "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let paths = |v: &serde_json::Value, what: &str| -> Vec<String> {
        v["vservers"][0]["paths"][what]
            .as_array()
            .unwrap_or_else(|| panic!("{what} in {v}"))
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(paths(&plan, "conflicting"), ["etc/lmine", "usr/bin/conf"]);
    assert_eq!(paths(&plan, "added"), ["usr/bin/added"]);
    assert_eq!(paths(&plan, "removed"), ["usr/bin/gone"]);
    assert_eq!(
        paths(&plan, "taken"),
        ["etc/lconf", "usr/bin/cu", "usr/bin/take"]
    );
    assert_eq!(snapshot(&view.join("upper")), upper_before);
    assert_eq!(snapshot(&view.join("static")), static_before);
    assert_eq!(read(&merged.join("usr/bin/take")), "take v1\n");

    // A busy view is refused, with nothing changed.
    let busy = fs::File::open(merged.join("usr/bin/keep")).unwrap();
    let out = setup.vskel().args(["upgrade-vs", "w1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "busy view: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&view.join("upper")), upper_before);
    assert!(is_mounted(&merged));
    drop(busy);

    let done = setup.run_ok(&["upgrade-vs", "w1", "--format", "json"]);
    let done: serde_json::Value = serde_json::from_str(&done).unwrap();
    assert_eq!(paths(&done, "conflicting"), ["etc/lmine", "usr/bin/conf"]);
    assert_eq!(done["vservers"][0]["to"], 2);
    // Mounted again, on generation 2.
    assert!(is_mounted(&merged), "the view is mounted again");
    assert_eq!(read(&merged.join("usr/bin/take")), "take v2\n");
    assert_eq!(read(&merged.join("usr/bin/added")), "added v2\n");
    assert!(!merged.join("usr/bin/gone").exists());
    assert_eq!(read(&merged.join("etc/lconf")), "lconf v2\n");
    assert_eq!(read(&merged.join("usr/bin/cu")), "cu v2\n");
    assert!(
        !view.join("upper/usr/bin/cu").exists(),
        "the unchanged copy-up gave way"
    );
    assert_eq!(read(&merged.join("usr/bin/conf")), "conf mine\n");
    assert_eq!(read(&merged.join("usr/bin/conf.vskel-new")), "conf v2\n");
    assert_eq!(read(&merged.join("etc/lmine")), "lmine mine\n");
    assert_eq!(read(&merged.join("etc/lmine.vskel-new")), "lmine v2\n");
    let conf_new = view.join("upper/usr/bin/conf.vskel-new");
    assert_eq!(
        fs::metadata(&conf_new).unwrap().len(),
        8,
        "a copy in the upper layer"
    );
    {
        use std::os::unix::fs::MetadataExt;
        let skel_conf = fs::metadata(skel.join("global/usr/bin/conf")).unwrap();
        assert_ne!(
            fs::metadata(&conf_new).unwrap().ino(),
            skel_conf.ino(),
            "never the skel's inode in the upper layer"
        );
    }
    // No view is on generation 1 any more; it stays as the one before.
    assert!(skel.join("generations/1.tree").exists());

    // A second upgrade has nothing to do.
    let again = setup.run_ok(&["upgrade-vs", "w1", "--format", "json"]);
    let again: serde_json::Value = serde_json::from_str(&again).unwrap();
    assert_eq!(again["vservers"][0]["from"], 2);

    // Only what changed is compared: the upper layer's changes and the
    // skel's between the generations.
    let synced = setup.run_ok(&["sync", "w1", "--format", "json"]);
    let synced: serde_json::Value = serde_json::from_str(&synced).unwrap();
    assert_eq!(synced["mode"], "incremental", "{synced}");
    let tree = setup.root.join("w1");
    let shown = content_listing(&merged, &skel);
    let synced = content_listing(&tree, &skel);
    let differ: Vec<_> = shown
        .iter()
        .filter(|(p, e)| synced.get(*p) != Some(e))
        .map(|(p, _)| p.clone())
        .chain(synced.keys().filter(|p| !shown.contains_key(*p)).cloned())
        .collect();
    assert!(differ.is_empty(), "tree and view differ at {differ:?}");
    assert_eq!(read(&tree.join("usr/bin/take")), "take v2\n");
    for f in ["take", "keep", "added", "cu"] {
        assert_eq!(
            dev_ino(&tree.join("usr/bin").join(f)),
            dev_ino(&skel.join("global/usr/bin").join(f)),
            "{f}: the tree's global file is generation 2's skel inode"
        );
    }
    // A third generation: the tree of 1 (no view on it, not the one
    // before the current) goes; that of 2 (w1 is on it) stays.
    setup.run_ok(&["merge-skel", SKEL]);
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));
    replace_by_rename(&temp.join("usr/bin/take"), "take v3\n");
    setup.run_ok(&["split-skel", SKEL]);
    assert!(!skel.join("generations/1.tree").exists(), "1.tree pruned");
    assert!(skel.join("generations/2.tree/global/usr/bin/take").exists());
    assert_eq!(read(&merged.join("usr/bin/take")), "take v2\n");
    guard.unmount().unwrap();
}

/// What an upgrade leaves in a view's layers: path -> kind, mode and
/// content (directories' times differ between views made apart; the
/// rendered files' vserver name and IP are written as NAME and IP).
fn layers_listing(view: &Path, name: &str, ip: &str) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for layer in ["upper", "static"] {
        for (rel, e) in snapshot(&view.join(layer)) {
            let content = (e.kind == "file")
                .then(|| fs::read(view.join(layer).join(&rel)).unwrap())
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace(ip, "IP")
                        .replace(name, "NAME")
                });
            out.insert(
                Path::new(layer).join(rel),
                format!("{} {:o} {:?}", e.kind, e.mode, content),
            );
        }
    }
    out
}

#[test]
fn a_killed_view_upgrade_is_finished_by_the_next_run_and_blocks_mounting_meanwhile() {
    if !require_root("a_killed_view_upgrade_is_finished_by_the_next_run") {
        return;
    }
    use common::lifecycle::{Ended, Rng, env_u64, run_killed_after};
    const TRIALS: usize = 20;
    let seed = env_u64("VIEW_UPGRADE_CRASH_SEED", 0x71e3_0b5e);
    eprintln!("VIEW_UPGRADE_CRASH_SEED={seed}");
    let setup = Setup::new("");
    let src = source(setup.dir.path());
    setup.run_ok(&["build-skel", SKEL, "--from", src.to_str().unwrap()]);
    let names: Vec<String> = (0..=TRIALS).map(|i| format!("vw{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let view = setup.create_view(SKEL, name, &format!("10.0.2.{}", i + 2));
        // The vserver's own edits, written into its upper layer as the
        // view would, and a copy-up equal to the skel's file.
        let upper = view.join("upper");
        fs::create_dir_all(upper.join("usr/bin")).unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::write(upper.join("usr/bin/conf"), "conf mine\n").unwrap();
        fs::write(upper.join("etc/lmine"), "lmine mine\n").unwrap();
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(setup.root.join(".skel/base/global/usr/bin/cu"))
            .arg(upper.join("usr/bin/cu"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp -a");
    }
    split_a_new_generation(&setup);
    let started = std::time::Instant::now();
    setup.run_ok(&["upgrade-vs", "--strategy", "take-new", "vw0"]);
    // Shrunk to the delay of a run that ended before its kill (it took
    // less), so runs faster than the timed one are still killed.
    let mut took = started.elapsed().as_micros() as u64 + 1;
    let ip = |i: usize| format!("10.0.2.{}", i + 2);
    let reference = layers_listing(&setup.root.join(".views/vw0"), "vw0", &ip(0));
    assert!(
        reference.contains_key(Path::new("upper/usr/bin/conf.vskel-old")),
        "{reference:?}"
    );
    let mut rng = Rng(seed | 1);
    let (mut killed, mut journalled) = (0, 0);
    for (i, name) in names.iter().enumerate().skip(1) {
        // Every other trial in the later part of the run, where the
        // journal is written and the layers change.
        let micros = if i % 2 == 0 {
            rng.up_to(took)
        } else {
            took / 2 + rng.up_to(took / 2)
        };
        let delay = std::time::Duration::from_micros(micros);
        let args = ["upgrade-vs", "--strategy", "take-new", name.as_str()];
        if matches!(run_killed_after(&setup, &args, delay), Ended::Killed) {
            killed += 1;
        } else {
            took = took.min(micros.max(2));
        }
        let journal = setup.root.join(format!(".vskel/sync/{name}.upgrade"));
        let begun = journal.exists();
        if begun {
            journalled += 1;
            let out = setup.vskel().args(["mount", name]).output().unwrap();
            assert!(!out.status.success(), "{name}: mounted half upgraded");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("was being upgraded"),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Run again; once journalled, the journal's strategy wins over the
        // command line's.
        if begun {
            setup.run_ok(&["upgrade-vs", name]);
        } else {
            setup.run_ok(&args);
        }
        assert!(!journal.exists(), "{name}: journal left");
        let got = layers_listing(&setup.root.join(".views").join(name), name, &ip(i));
        assert_eq!(got, reference, "{name} (delay {delay:?})");
    }
    eprintln!("{killed} of {TRIALS} runs killed, {journalled} after the journal");
    assert!(
        journalled > 0,
        "seed {seed}: no run was killed after its journal was written"
    );
}
