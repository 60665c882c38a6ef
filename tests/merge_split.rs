//! `merge-skel` / `split-skel` on the Debian fixture skel with real
//! `chroot` + `dpkg`: a tiny package installed in the temporary vserver
//! ends up in the skel (binary in global/, conffile in local/), every
//! untouched global file keeps its inode, the new generation lists exactly
//! what changed; bad states are refused with nothing written; a split
//! killed at random moments leaves the old generation or the new one, and
//! the re-run finishes it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::debs::{Package, build_deb};
use common::lifecycle::{Rng, env_u64, run_killed_after};
use common::{Setup, require_root, snapshot};

const SKEL: &str = "deb";

/// A tiny package: `usr/bin/vskel-hello` and the conffile `etc/vskel-hello.conf`.
fn tiny_deb(dir: &Path) -> PathBuf {
    build_deb(
        dir,
        &Package {
            name: "vskel-hello",
            version: "1.0",
            files: &[
                ("usr/bin/vskel-hello", "#!/bin/sh\necho hello\n", 0o755),
                ("etc/vskel-hello.conf", "greeting=hello\n", 0o644),
            ],
            conffiles: &["etc/vskel-hello.conf"],
            postinst: None,
        },
    )
}

fn install_in_temp(setup: &Setup, deb: &Path) {
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));
    fs::copy(deb, temp.join("tmp/pkg.deb")).unwrap();
    let out = Command::new("chroot")
        .arg(&temp)
        .args(["dpkg", "-i", "/tmp/pkg.deb"])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chroot dpkg -i: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::remove_file(temp.join("tmp/pkg.deb")).unwrap();
}

/// Paths listed by generation `n`'s change file.
fn changed_paths(skel: &Path, n: u64) -> BTreeSet<String> {
    let text = fs::read_to_string(skel.join(format!("generations/{n}.changes"))).unwrap();
    let mut paths = BTreeSet::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("o\t") || l.starts_with("n\t"))
    {
        let f: Vec<&str> = line.split('\t').collect();
        let part = match f[1] {
            "g" => "global",
            "l" => "local",
            _ => "static",
        };
        let path = f[f.len() - 1];
        paths.insert(if path == "." {
            part.to_string()
        } else {
            format!("{part}/{path}")
        });
    }
    paths
}

#[test]
fn dpkg_in_the_merged_skel_lands_in_the_skel() {
    if !require_root("dpkg_in_the_merged_skel_lands_in_the_skel") {
        return;
    }
    dpkg_round(&Setup::new(""), false);
}

/// With `protect = "immutable"` the temporary vserver's global files are
/// copies (dpkg cannot rename over an immutable file), and split still
/// keeps every unchanged skel inode, protected.
#[test]
fn dpkg_in_a_protected_merged_skel_lands_in_the_skel() {
    if !require_root("dpkg_in_a_protected_merged_skel_lands_in_the_skel") {
        return;
    }
    let protected = common::lifecycle::ProtectedSetup::new();
    dpkg_round(&protected.setup, true);
}

fn dpkg_round(setup: &Setup, protected: bool) {
    let skel = setup.build_debian_skel(SKEL);
    let deb = tiny_deb(setup.dir.path());
    let before = snapshot(&skel.join("global"));
    setup.run_ok(&["merge-skel", SKEL]);
    assert!(skel.join("global.bak/usr/bin/env").exists());
    assert!(skel.join("local.bak/etc").is_dir());
    install_in_temp(setup, &deb);
    setup.run_ok(&["--split-skel", SKEL]);
    assert!(!setup.root.join(format!("tmp_skel_{SKEL}")).exists());
    assert!(!skel.join("merged").exists() && !skel.join("split.new").exists());
    assert_eq!(
        fs::read(skel.join("global/usr/bin/vskel-hello")).unwrap(),
        b"#!/bin/sh\necho hello\n"
    );
    assert!(skel.join("local/etc/vskel-hello.conf").is_file());
    assert!(!skel.join("global/etc").exists());
    let after = snapshot(&skel.join("global"));
    let mut kept = 0;
    for (path, old) in &before {
        let new = after
            .get(path)
            .unwrap_or_else(|| panic!("{path:?} vanished"));
        if old.kind != "dir" && old.mtime == new.mtime && old.content == new.content {
            assert_eq!(old.ino, new.ino, "{path:?} lost its inode");
            kept += 1;
        }
    }
    assert!(kept > 1000, "{kept}");
    if protected {
        let lacking = common::lifecycle::lacking_immutable(&skel.join("global"));
        assert!(lacking.is_empty(), "{} global files lack +i", lacking.len());
    }
    // Generation 2 lists the package's files, dpkg's database and the
    // directories they are in, nothing else.
    let changed = changed_paths(&skel, 2);
    assert!(
        changed.contains("global/usr/bin/vskel-hello"),
        "{changed:?}"
    );
    assert!(
        changed.contains("local/etc/vskel-hello.conf"),
        "{changed:?}"
    );
    for path in &changed {
        let ok = path.contains("vskel-hello")
            || path.starts_with("local/var/lib/dpkg")
            || path.starts_with("local/var/log")
            || ["global/usr/bin", "local/etc", "local/tmp"].contains(&path.as_str())
            || path.starts_with("local/var/cache/debconf");
        assert!(ok, "unexpected change {path}: {changed:?}");
    }
}

#[test]
fn bad_states_are_refused_with_nothing_written() {
    if !require_root("bad_states_are_refused_with_nothing_written") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("ex");
    let listing = |setup: &Setup| snapshot(&setup.root);
    type Prepare = fn(&Setup);
    let cases: &[(&str, &[&str], Prepare, &str)] = &[
        (
            "unknown skel",
            &["merge-skel", "nope"],
            |_| {},
            "no skel named",
        ),
        ("invalid name", &["merge-skel", "../x"], |_| {}, "invalid"),
        (
            "split unmerged",
            &["split-skel", "ex"],
            |_| {},
            "not merged",
        ),
        (
            "stray dir",
            &["merge-skel", "ex"],
            |s| fs::create_dir(s.root.join("tmp_skel_ex")).unwrap(),
            "exists already",
        ),
        (
            "VSkel's spelling, unknown skel",
            &["--merge-skel", "nope"],
            |_| {},
            "no skel named",
        ),
        (
            "a registered vserver of the name",
            &["merge-skel", "ex"],
            |s| {
                let records = s.root.join(".vskel/vservers");
                fs::create_dir_all(&records).unwrap();
                fs::write(records.join("tmp_skel_ex.toml"), "name = \"tmp_skel_ex\"\n").unwrap();
            },
            "is registered",
        ),
        (
            "a view of the name",
            &["merge-skel", "ex"],
            // 0700, as vskel keeps views' directories (it closes wider ones).
            |s| {
                let view = s.root.join(".views/tmp_skel_ex");
                fs::create_dir_all(&view).unwrap();
                for dir in [view.parent().unwrap(), &view] {
                    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
                }
            },
            "a view",
        ),
        (
            "create-vs of the temp",
            &[
                "create-vs",
                "ex",
                "tmp_skel_ex",
                "t.example.org",
                "10.0.0.9",
            ],
            |_| {},
            "temporary vserver",
        ),
        (
            "remove-vs of the temp",
            &["remove-vs", "tmp_skel_ex"],
            |_| {},
            "temporary vserver",
        ),
    ];
    for (what, args, prepare, message) in cases {
        prepare(&setup);
        let before = listing(&setup);
        let out = setup.vskel().args(*args).output().unwrap();
        assert!(!out.status.success(), "{what}: succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{what}: {stderr}");
        assert!(before == listing(&setup), "{what}: something was written");
        let _ = fs::remove_dir(setup.root.join("tmp_skel_ex"));
        let _ = fs::remove_file(setup.root.join(".vskel/vservers/tmp_skel_ex.toml"));
        let _ = fs::remove_dir(setup.root.join(".views/tmp_skel_ex"));
    }
    // merging twice (merged with VSkel's spelling)
    let generations = setup.root.join(".skel/ex/generations");
    let count = || {
        let mut names: Vec<String> = fs::read_dir(&generations)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".record") || n.ends_with(".changes"))
            .collect();
        names.sort();
        names
    };
    let before_merge = count();
    setup.run_ok(&["--merge-skel", "ex"]);
    assert!(setup.root.join("tmp_skel_ex/etc").is_dir());
    let before = listing(&setup);
    let out = setup.vskel().args(["merge-skel", "ex"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("merged already"));
    assert!(before == listing(&setup), "merging twice wrote something");
    setup.run_ok(&["--split-skel", "ex"]);
    assert!(!setup.root.join("tmp_skel_ex").exists());
    // Nothing was changed in it: no new generation recorded.
    assert_eq!(count(), before_merge, "{}", generations.display());
}

/// Under the default protection too, a merge and split that change
/// nothing keep every inode of the skel (symlinks included: only vserver
/// trees get copies of those), swap nothing in and record no new
/// generation; the next split that changes something works.
#[test]
fn an_empty_protected_round_keeps_every_skel_inode() {
    if !require_root("an_empty_protected_round_keeps_every_skel_inode") {
        return;
    }
    let setup = Setup::with_default_protection("");
    let skel = setup.build_example_skel("ex");
    let global = skel.join("global");
    // Every entry but directories (the split makes its own), by inode.
    let inodes = || -> BTreeMap<PathBuf, (&'static str, u64)> {
        snapshot(&global)
            .into_iter()
            .filter(|(_, e)| e.kind != "dir")
            .map(|(rel, e)| (rel, (e.kind, e.ino)))
            .collect()
    };
    let before = inodes();
    assert!(
        before.values().any(|(kind, _)| *kind == "symlink"),
        "the example skel has a global symlink: {before:?}"
    );
    setup.run_ok(&["merge-skel", "ex"]);
    setup.run_ok(&["split-skel", "ex"]);
    assert_eq!(inodes(), before, "entries given new inodes");
    assert!(
        !skel.join("generations/2.record").exists(),
        "a generation 2 was recorded"
    );
    // Nothing swapped: no kept tree of the current generation either
    // (one made a later split fail to keep its old parts: "File exists").
    assert!(!skel.join("generations/1.tree").exists());
    setup.run_ok(&["merge-skel", "ex"]);
    fs::write(setup.root.join("tmp_skel_ex/usr/bin/new-tool"), "new\n").unwrap();
    setup.run_ok(&["split-skel", "ex"]);
    assert!(skel.join("generations/2.record").is_file());
    assert!(global.join("usr/bin/new-tool").is_file());
}

/// A canonical listing of a skel's parts (no atimes, no ctimes).
fn skel_parts(skel: &Path) -> String {
    let mut out = String::new();
    for part in ["global", "local", "static"] {
        for (path, e) in snapshot(&skel.join(part)) {
            out.push_str(&format!(
                "{part}/{} {} {:o} {} {} {} {:?} {:?}\n",
                path.display(),
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                e.size,
                e.mtime,
                e.content.as_ref().map(|c| blake(c))
            ));
        }
    }
    out
}

fn blake(c: &[u8]) -> u64 {
    c.iter().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100000001b3)
    })
}

/// The fixed mtime every edited directory and file gets, so that the
/// old and the new skel are the same in every trial.
const FIXED: i64 = 1_600_000_000;

fn set_mtime(path: &Path) {
    let ok = Command::new("touch")
        .args(["-h", "-d", &format!("@{FIXED}")])
        .arg(path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch {}", path.display());
}

/// The change the crash trials split: 300 new global files, a new local
/// conffile, a changed local file, one global file removed.
fn apply_change(temp: &Path) {
    let dir = temp.join("usr/share/vskel-crash");
    fs::create_dir_all(&dir).unwrap();
    for i in 0..300 {
        let f = dir.join(format!("f{i}"));
        fs::write(&f, format!("file {i}\n")).unwrap();
        set_mtime(&f);
    }
    fs::write(temp.join("etc/vskel-crash.conf"), "x=1\n").unwrap();
    fs::write(temp.join("etc/motd"), "changed motd\n").unwrap();
    fs::rename(temp.join("usr/bin/yes"), temp.join("tmp/yes")).unwrap();
    for f in [
        "etc/vskel-crash.conf",
        "etc/motd",
        "usr/share/vskel-crash",
        "usr/share",
        "etc",
        "usr/bin",
        "tmp",
    ] {
        set_mtime(&temp.join(f));
    }
}

/// Undo [`apply_change`] (from the backups of the first merge).
fn undo_change(temp: &Path, skel: &Path, motd: &Path, yes: &Path) {
    let _ = fs::remove_dir_all(temp.join("usr/share/vskel-crash"));
    let _ = fs::remove_file(temp.join("etc/vskel-crash.conf"));
    fs::copy(motd, temp.join("etc/motd")).unwrap();
    if !temp.join("usr/bin/yes").exists() {
        fs::hard_link(yes, temp.join("usr/bin/yes")).unwrap();
    }
    let _ = fs::remove_file(temp.join("tmp/yes"));
    for f in ["etc/motd", "usr/share", "etc", "usr/bin", "tmp"] {
        set_mtime(&temp.join(f));
    }
    let _ = skel;
}

#[test]
fn split_killed_at_any_moment_is_old_or_new_and_finished_by_a_rerun() {
    if !require_root("split_killed_at_any_moment_is_old_or_new_and_finished_by_a_rerun") {
        return;
    }
    let seed = env_u64("MERGE_SPLIT_SEED", 0x005e_ed12);
    let trials = env_u64("MERGE_SPLIT_TRIALS", 20);
    eprintln!("seed {seed} (MERGE_SPLIT_SEED), {trials} trials (MERGE_SPLIT_TRIALS)");
    let mut rng = Rng(seed);
    let setup = Setup::new("");
    let skel = setup.build_debian_skel(SKEL);
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));
    let keep = setup.dir.path().join("keep");
    fs::create_dir(&keep).unwrap();
    let motd = keep.join("motd");
    let yes = keep.join("yes");
    fs::copy(skel.join("local/etc/motd"), &motd).unwrap();
    fs::hard_link(skel.join("global/usr/bin/yes"), &yes).unwrap();
    // old: the skel after an undo; new: after the change.
    setup.run_ok(&["merge-skel", SKEL]);
    undo_change(&temp, &skel, &motd, &yes);
    setup.run_ok(&["split-skel", SKEL]);
    let old = skel_parts(&skel);
    setup.run_ok(&["merge-skel", SKEL]);
    apply_change(&temp);
    let started = std::time::Instant::now();
    setup.run_ok(&["split-skel", SKEL]);
    // The kill window: at first the time of one split, then shrunk to
    // the delay of any trial whose split ended before its kill (it took
    // less than that), so a split that gets faster (less load than while
    // it was timed) is still killed at a moment within it.
    let mut window = started.elapsed();
    let new = skel_parts(&skel);
    assert_ne!(old, new);
    let differ = |a: &str, b: &str| -> Vec<String> {
        let al: BTreeSet<&str> = a.lines().collect();
        let bl: BTreeSet<&str> = b.lines().collect();
        al.symmetric_difference(&bl)
            .take(10)
            .map(|s| s.to_string())
            .collect()
    };
    let mut killed = 0;
    let mut finished_later = 0;
    let mut trial = 0;
    // Trials until `trials` of them killed split-skel (at most 3 x as many).
    while killed < trials && trial < 3 * trials {
        trial += 1;
        setup.run_ok(&["merge-skel", SKEL]);
        undo_change(&temp, &skel, &motd, &yes);
        setup.run_ok(&["split-skel", SKEL]);
        let base = skel_parts(&skel);
        assert!(
            base == old,
            "trial {trial}: undo: {:?}",
            differ(&base, &old)
        );
        setup.run_ok(&["merge-skel", SKEL]);
        apply_change(&temp);
        let delay = Duration::from_micros(rng.up_to(window.as_micros() as u64 * 3 / 4));
        let ended = run_killed_after(&setup, &["split-skel", SKEL], delay);
        if matches!(ended, common::lifecycle::Ended::Killed) {
            killed += 1;
        } else {
            window = window.min(delay.max(Duration::from_millis(1)));
        }
        let committed = skel.join("split.new/COMMIT").exists();
        finished_later += u64::from(committed);
        let now = skel_parts(&skel);
        if !committed {
            assert!(
                now == old || now == new,
                "seed {seed} trial {trial} ({delay:?}, {ended:?}): neither old nor new: {:?}",
                differ(&now, &old)
            );
        }
        // The re-run finishes a committed split or splits again; every
        // other committed one is finished by an unrelated command.
        if committed && finished_later % 2 == 0 {
            setup.run_ok(&["list", "--skels"]);
        } else if temp.exists() || skel.join("split.new").exists() {
            setup.run_ok(&["split-skel", SKEL]);
        }
        let done = skel_parts(&skel);
        assert!(
            done == new,
            "seed {seed} trial {trial} ({delay:?}, {ended:?}, committed {committed}): {:?}",
            differ(&done, &new)
        );
        assert!(!temp.exists() && !skel.join("split.new").exists());
        assert!(!skel.join("merged").exists(), "trial {trial}");
    }
    eprintln!(
        "{killed} of {trial} trials killed split-skel ({finished_later} after its journal); \
         kill window at the end: {window:?}"
    );
    assert!(
        killed >= trials,
        "only {killed} of {trial} trials killed split-skel"
    );
}
