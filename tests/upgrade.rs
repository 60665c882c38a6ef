//! `upgrade-vs` and `revert` (issue 12 item 3): a skel built from a small
//! tree with global, local and static files; tree vservers made from its
//! first generation; the skel changed (files replaced by rename, added,
//! removed, local and static files changed, a type change) and recorded;
//! then every decision of the table against vservers edited or
//! not, `--plan` writing nothing, each strategy, the JSON report, revert,
//! bad input refused with nothing written, and SIGKILLed upgrades finished
//! by a re-run to the tree of an uninterrupted one.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Listing, Setup, canonical, dev_ino, diff, require_root};
use vskel::layout::SkelDirs;
use vskel::progress::Progress;

fn record(skel: &Path) -> u64 {
    let dirs = SkelDirs {
        dir: skel.to_path_buf(),
    };
    vskel::generation::record(
        &dirs,
        "test",
        &Progress::hidden(),
        vskel::generation::Store::Skip,
    )
    .unwrap()
    .generation
}

/// The source tree: usr/ goes to global/, etc/ to local/, and build-skel
/// makes static/etc/hosts.
fn source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    for d in ["usr/bin", "usr/share", "etc"] {
        fs::create_dir_all(src.join(d)).unwrap();
    }
    for f in [
        "take", "conv", "conf", "gone", "gone2", "tdir", "keep", "revert",
    ] {
        fs::write(src.join("usr/bin").join(f), format!("{f} v1\n")).unwrap();
    }
    for f in ["lconf", "lmine"] {
        fs::write(src.join("etc").join(f), format!("{f} v1\n")).unwrap();
    }
    src
}

fn replace_by_rename(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-new");
    fs::write(&tmp, content).unwrap();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).unwrap();
    // A fixed time: the same edit of two vservers is the same entry.
    filetime::set_file_mtime(&tmp, filetime::FileTime::from_unix_time(1_000_000_000, 0)).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// Generation 2 of the skel.
fn change_skel(skel: &Path) -> u64 {
    let g = skel.join("global/usr/bin");
    for f in ["take", "conv", "conf"] {
        replace_by_rename(&g.join(f), format!("{f} v2\n").as_bytes());
    }
    fs::write(g.join("added"), "added v2\n").unwrap();
    fs::remove_file(g.join("gone")).unwrap();
    fs::remove_file(g.join("gone2")).unwrap();
    fs::remove_file(g.join("tdir")).unwrap();
    fs::create_dir(g.join("tdir")).unwrap();
    fs::write(g.join("tdir/inside"), "inside v2\n").unwrap();
    let l = skel.join("local/etc");
    replace_by_rename(&l.join("lconf"), b"lconf v2\n");
    replace_by_rename(&l.join("lmine"), b"lmine v2\n");
    let hosts = skel.join("static/etc/hosts");
    let mut text = fs::read_to_string(&hosts).unwrap();
    text.push_str("10.9.9.9 upgraded-%%VS_NAME%%\n");
    fs::write(&hosts, text).unwrap();
    record(skel)
}

/// The vserver's own edits of paths the skel changes too.
fn edit_vserver(vs: &Path, skel: &Path) {
    let b = vs.join("usr/bin");
    // Converge: the vserver already has the new skel inode.
    fs::remove_file(b.join("conv")).unwrap();
    fs::hard_link(skel.join("global/usr/bin/conv"), b.join("conv")).unwrap();
    replace_by_rename(&b.join("conf"), b"conf mine\n");
    replace_by_rename(&b.join("gone2"), b"gone2 mine\n");
    replace_by_rename(&vs.join("etc/lmine"), b"lmine mine\n");
}

struct World {
    setup: Setup,
    skel: PathBuf,
}

fn world(vservers: &[&str]) -> World {
    let setup = Setup::new("");
    let src = source(setup.dir.path());
    setup
        .vskel()
        .args(["build-skel", "base", "--from"])
        .arg(&src)
        .assert()
        .success();
    let skel = setup.root.join(".skel/base");
    for (i, name) in vservers.iter().enumerate() {
        setup.create("base", name, &format!("10.0.1.{}", i + 2));
    }
    World { setup, skel }
}

impl World {
    fn listing(&self, name: &str) -> Listing {
        canonical(&self.setup.root.join(name), &self.skel)
    }

    fn generation_of(&self, name: &str) -> Option<i64> {
        let text = fs::read_to_string(self.setup.root.join(format!(".vskel/vservers/{name}.toml")))
            .unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        value.get("generation").and_then(|g| g.as_integer())
    }

    fn upgrade(&self, args: &[&str]) -> std::process::Output {
        self.setup
            .vskel()
            .arg("upgrade-vs")
            .args(args)
            .output()
            .unwrap()
    }

    fn skel_inode(&self, rel: &str) -> (u64, u64) {
        dev_ino(&self.skel.join("global").join(rel))
    }
}

/// The vservers of `upgrade-vs --format json`'s document.
fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["vservers"].clone()
}

fn paths(report: &serde_json::Value, what: &str) -> Vec<String> {
    report["paths"][what]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn every_decision_of_the_table_with_keep_local_and_take_new() {
    if !require_root("every_decision_of_the_table_with_keep_local_and_take_new") {
        return;
    }
    let w = world(&["web1", "web2"]);
    let web1 = w.setup.root.join("web1");
    let web2 = w.setup.root.join("web2");
    let keep_inode = dev_ino(&web1.join("usr/bin/keep"));
    assert_eq!(change_skel(&w.skel), 2);
    edit_vserver(&web1, &w.skel);

    // --plan lists the decisions and writes nothing.
    let before = w.listing("web1");
    let plan = json(&w.upgrade(&["--plan", "--format", "json", "web1"]));
    assert_eq!(diff(&before, &w.listing("web1")), Vec::<String>::new());
    assert_eq!(w.generation_of("web1"), Some(1));
    let plan = &plan[0];
    assert_eq!(plan["plan"], true);
    assert_eq!(
        paths(plan, "taken"),
        ["etc/hosts", "etc/lconf", "usr/bin/take"]
    );
    assert_eq!(paths(plan, "converged"), ["usr/bin", "usr/bin/conv"]);
    assert_eq!(paths(plan, "added"), ["usr/bin/added"]);
    assert_eq!(paths(plan, "removed"), ["usr/bin/gone"]);
    assert_eq!(
        paths(plan, "conflicting"),
        [
            "etc/lmine",
            "usr/bin/conf",
            "usr/bin/gone2",
            "usr/bin/tdir",
            "usr/bin/tdir/inside"
        ]
    );

    // strategy fail: conflicts, so nothing changes.
    let out = w.upgrade(&["--strategy", "fail", "web1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing changed"));
    assert_eq!(diff(&before, &w.listing("web1")), Vec::<String>::new());
    assert_eq!(w.generation_of("web1"), Some(1));

    // keep-local (the default).
    let done = json(&w.upgrade(&["--format", "json", "web1"]));
    let done = &done[0];
    assert_eq!(done["to"], 2);
    assert_eq!(done["counts"]["taken"], 3);
    assert_eq!(done["counts"]["converged"], 2);
    assert_eq!(done["counts"]["added"], 1);
    assert_eq!(done["counts"]["removed"], 1);
    assert_eq!(done["counts"]["conflicting"], 5);
    assert_eq!(w.generation_of("web1"), Some(2));
    let b = web1.join("usr/bin");
    assert_eq!(dev_ino(&b.join("take")), w.skel_inode("usr/bin/take"));
    assert_eq!(dev_ino(&b.join("conv")), w.skel_inode("usr/bin/conv"));
    assert_eq!(dev_ino(&b.join("added")), w.skel_inode("usr/bin/added"));
    assert_eq!(dev_ino(&b.join("keep")), keep_inode, "untouched path");
    assert!(!b.join("gone").exists());
    assert_eq!(fs::read(b.join("gone2")).unwrap(), b"gone2 mine\n");
    assert_eq!(fs::read(b.join("conf")).unwrap(), b"conf mine\n");
    assert_eq!(
        dev_ino(&b.join("conf.vskel-new")),
        w.skel_inode("usr/bin/conf")
    );
    assert!(
        b.join("tdir").is_file(),
        "a type change keeps the vserver's"
    );
    assert_eq!(fs::read(web1.join("etc/lconf")).unwrap(), b"lconf v2\n");
    assert_ne!(
        dev_ino(&web1.join("etc/lconf")),
        dev_ino(&w.skel.join("local/etc/lconf"))
    );
    assert_eq!(fs::read(web1.join("etc/lmine")).unwrap(), b"lmine mine\n");
    assert_eq!(
        fs::read(web1.join("etc/lmine.vskel-new")).unwrap(),
        b"lmine v2\n"
    );
    let hosts = fs::read_to_string(web1.join("etc/hosts")).unwrap();
    assert!(hosts.contains("upgraded-web1\n"), "{hosts}");
    // Again: nothing left to do.
    let again = json(&w.upgrade(&["--format", "json", "web1"]));
    assert_eq!(again[0]["from"], 2);
    assert_eq!(again[0]["paths"]["taken"].as_array().unwrap().len(), 0);

    // revert refuses a path the skel does not have, or one out of the
    // tree, with nothing written.
    let before = w.listing("web1");
    for (path, says) in [
        ("/no/such/path", "no such path"),
        ("../../etc/passwd", "not a path inside the vserver"),
    ] {
        let out = w
            .setup
            .vskel()
            .args(["revert", "web1", "/usr/bin/conf", path])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {err}");
        assert!(err.contains(says), "{path}: {err}");
    }
    assert_eq!(diff(&before, &w.listing("web1")), Vec::<String>::new());
    // revert puts the skel's version back.
    w.setup
        .vskel()
        .args(["revert", "web1", "/usr/bin/conf", "/etc/lmine"])
        .assert()
        .success();
    assert_eq!(dev_ino(&b.join("conf")), w.skel_inode("usr/bin/conf"));
    assert_eq!(fs::read(web1.join("etc/lmine")).unwrap(), b"lmine v2\n");

    // take-new, on an untouched vserver: the type change takes the
    // skel's directory and keeps the vserver's file beside.
    replace_by_rename(&web2.join("usr/bin/conf"), b"conf mine\n");
    let done = json(&w.upgrade(&["--strategy", "take-new", "--format", "json", "web2"]));
    assert_eq!(done[0]["counts"]["conflicting"], 2);
    let b = web2.join("usr/bin");
    assert_eq!(dev_ino(&b.join("conf")), w.skel_inode("usr/bin/conf"));
    assert_eq!(fs::read(b.join("conf.vskel-old")).unwrap(), b"conf mine\n");
    assert_eq!(fs::read(b.join("tdir.vskel-old")).unwrap(), b"tdir v1\n");
    assert_eq!(
        dev_ino(&b.join("tdir/inside")),
        w.skel_inode("usr/bin/tdir/inside")
    );
    assert!(!b.join("gone2").exists());
    assert!(!b.join("gone").exists());
}

#[test]
fn bad_input_is_refused_with_nothing_written() {
    if !require_root("bad_input_is_refused_with_nothing_written") {
        return;
    }
    let w = world(&["web1", "old1"]);
    change_skel(&w.skel);
    let record = w.setup.root.join(".vskel/vservers/old1.toml");
    let text = fs::read_to_string(&record).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.starts_with("generation"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(&record, without).unwrap();
    let before = (w.listing("web1"), w.listing("old1"));
    for (args, says) in [
        (vec!["nosuch"], "no vserver"),
        (vec!["old1"], "before skel generations"),
        (vec!["web1", "nosuch"], "no vserver"),
        (vec!["--strategy", "sideways", "web1"], "invalid value"),
        (vec!["--all", "web1"], "not both"),
        (vec!["--skel", "nosuch", "web1"], "nosuch"),
    ] {
        let out = w.upgrade(&args);
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(diff(&before.0, &w.listing("web1")), Vec::<String>::new());
    assert_eq!(diff(&before.1, &w.listing("old1")), Vec::<String>::new());
    assert_eq!(w.generation_of("web1"), Some(1));
    // web1 is on generation 1, the skel on 2: revert would mix them.
    let out = w
        .setup
        .vskel()
        .args(["revert", "web1", "/usr/bin/conf"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("vskel upgrade-vs web1"), "{err}");
    assert_eq!(diff(&before.0, &w.listing("web1")), Vec::<String>::new());
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The listing without the static paths (rendered per vserver).
fn comparable(w: &World, name: &str) -> Listing {
    let mut l = w.listing(name);
    l.retain(|p, _| !w.skel.join("static").join(p).exists());
    l
}

#[test]
fn a_killed_upgrade_is_finished_by_the_next_run() {
    if !require_root("a_killed_upgrade_is_finished_by_the_next_run") {
        return;
    }
    const TRIALS: usize = 20;
    let seed: u64 = std::env::var("UPGRADE_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_abcd);
    eprintln!("UPGRADE_CRASH_SEED={seed}");
    let names: Vec<String> = (0..=TRIALS).map(|i| format!("vs{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let w = world(&refs);
    change_skel(&w.skel);
    for name in &names {
        edit_vserver(&w.setup.root.join(name), &w.skel);
    }
    let start = Instant::now();
    json(&w.upgrade(&["--strategy", "take-new", "--format", "json", "vs0"]));
    // Shrunk to the delay of a run that ended before its kill (it took
    // less), so runs faster than the timed one are still killed.
    let mut took = start.elapsed().as_micros() as u64 + 1;
    let reference = comparable(&w, "vs0");
    let mut rng = Rng(seed | 1);
    let (mut killed, mut journalled) = (0, 0);
    for (i, name) in names.iter().enumerate().skip(1) {
        // Every other trial in the later part of the run, where the
        // journal is written and the tree changes.
        let micros = if i % 2 == 0 {
            rng.next() % took
        } else {
            took / 2 + rng.next() % (took / 2 + 1)
        };
        let delay = Duration::from_micros(micros);
        let mut child = w
            .setup
            .vskel_process()
            .args(["upgrade-vs", "--strategy", "take-new", name])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        } else {
            took = took.min(micros.max(2));
        }
        child.kill().ok();
        child.wait().unwrap();
        let journal = w.setup.root.join(format!(".vskel/sync/{name}.upgrade"));
        if journal.exists() {
            journalled += 1;
        }
        let out = w.upgrade(&["--strategy", "take-new", name]);
        assert!(
            out.status.success(),
            "seed {seed} {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(w.generation_of(name), Some(2));
        assert_eq!(
            diff(&reference, &comparable(&w, name)),
            Vec::<String>::new(),
            "seed {seed} {name} (killed after {delay:?})"
        );
    }
    eprintln!(
        "{killed} of {TRIALS} runs were killed while running, {journalled} after the journal"
    );
    assert!(
        journalled > 0,
        "seed {seed}: no run was killed after its journal was written"
    );
}
