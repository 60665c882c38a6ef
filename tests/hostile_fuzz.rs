//! Hostile-vserver fuzz test (issue 9): a vserver's users and its root
//! attack vskel, and nothing outside the vserver may change.
//!
//! Setup: a skel from the built-in example plus a setuid-root binary, sparse
//! files, a hard-linked pair, a FIFO and symlinks; a decoy tree outside
//! every vserver, skel and view (files of known modes, owners, contents and
//! xattrs, a setuid file, directories), recorded before the run with the
//! skel's canonical listing.
//!
//! * Part A: inside a mounted view, two processes as user 65534 and one as
//!   the vserver's root (chrooted into the view), three threads each, run
//!   seeded random operations (`tests/common/hostile_ops.rs`): open files
//!   whose names are replaced by symlinks to the decoy or the skel (absolute
//!   and `../../..`) before fchmod/fchown/ftruncate/futimens/fsetxattr on
//!   the descriptor or a reopen through /proc/self/fd, directories swapped
//!   for symlinks while descriptors of the old ones are used, hard links
//!   across directories, FIFOs and device nodes, sparse files, setuid
//!   modes, user xattrs, RENAME_EXCHANGE, unlinked open files changed
//!   through their descriptors.
//! * Part B: a tree vserver synced again and again (`vskel sync`) from its
//!   mounted view, where every round makes new FIFOs, device nodes, files,
//!   links and modes, while a racer acting as the vserver's root in the
//!   tree renames a symlink to the decoy or the skel over every name
//!   created there and some renamed into place (inotify IN_CREATE and
//!   IN_MOVED_TO: sync's temporary names, whatever they are), swaps
//!   directories for symlinks and entries for FIFOs.
//!
//! After each part: no decoy entry changed (kind, mode, owner, size,
//! content, mtime, xattrs, no new entries), the skel's canonical listing is
//! the same and no mount is left. A failure names each entry and how it
//! changed, the seed, the first change a monitor saw while the attack ran
//! with the operations just before it, and the last operations of every
//! hostile process (each logs every operation to a file).
//!
//! Two small deterministic tests do finding 1's sequence exactly.
//!
//! Budget: each part runs `HOSTILE_FUZZ_SECS` seconds (default 10), with
//! seed `HOSTILE_FUZZ_SEED` (default 1, so CI is reproducible; `random` for
//! a new one, printed) and at most `HOSTILE_FUZZ_OPS` operations per thread.
//! To run longer:
//!
//! ```text
//! HOSTILE_FUZZ_SECS=600 cargo test --test hostile_fuzz -- --nocapture
//! HOSTILE_FUZZ_SEED=random HOSTILE_FUZZ_SECS=600 cargo test --test hostile_fuzz -- --nocapture
//! ```
//!
//! The hostile processes are this binary re-executed: the ignored test
//! `hostile_child` runs the plan in `HOSTILE_FUZZ_CHILD`.

mod common;

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::hostile::{
    Budget, CHILD_ENV, Decoy, HANG_GRACE, HostileChild, Logs, NOBODY, Outside, Plan, Rng,
    build_hostile_skel, make_private, report, targets_of, wait_children,
};
use common::{MountGuard, Setup, require_root};

/// Not a test of its own: a hostile child of the tests below.
#[test]
#[ignore = "a hostile child process of the fuzz tests, run by them"]
fn hostile_child() {
    let Ok(plan) = std::env::var(CHILD_ENV) else {
        eprintln!("hostile_child: only the fuzz tests run it");
        return;
    };
    common::hostile_ops::run(serde_json::from_str(&plan).expect("child plan"));
}

/// Work directories of the view children (tmp/ is 1777, so user 65534
/// may work there), and those that get swapped for symlinks.
const WORK_DIRS: &[&str] = &[
    "tmp/hz",
    "tmp/hz/d0",
    "tmp/hz/d1",
    "tmp/hz/d2",
    "tmp/hz/d0/s",
];
const SWAP_DIRS: &[&str] = &["tmp/hz/d0", "tmp/hz/d1", "tmp/hz/d2", "tmp/hz/d0/s"];

/// Skel entries (as seen in the view) the root child attacks too.
const ATTACK: &[&str] = &[
    "bin/hello",
    "bin/hello-again",
    "usr/bin/suid-env",
    "usr/bin/tool",
    "etc/motd",
    "etc/hz/a.conf",
    "etc/hz/b.conf",
    "usr/share/hz/sparse.img",
    "var/lib/demo/sparse.db",
    "usr/share/doc/demo/README",
    "lib/libdemo.so.1",
];

/// A sync still running this long is hung.
const SYNC_HANG: Duration = Duration::from_secs(60);

/// Symlink targets outside the vserver: every decoy entry and a few skel
/// entries, absolute and relative.
fn targets(outside: &Outside) -> (Vec<String>, Vec<String>) {
    let skel = &outside.skel;
    let mut files: Vec<PathBuf> = outside.decoy.files();
    files.extend([
        skel.join("global/usr/bin/suid-env"),
        skel.join("global/bin/hello"),
        skel.join("local/etc/motd"),
        skel.join("global/usr/share/hz/sparse.img"),
    ]);
    let mut dirs: Vec<PathBuf> = outside.decoy.dirs();
    dirs.extend([skel.join("global/usr/bin"), skel.join("local/etc")]);
    // Deep enough to climb to `/` from anywhere in a view's upper or a tree.
    let levels = outside.top.components().count() + 12;
    let expand = |paths: Vec<PathBuf>| paths.iter().flat_map(|p| targets_of(p, levels)).collect();
    (expand(files), expand(dirs))
}

/// A setup with the decoy, the hostile skel and a view `name` of it,
/// mounted; fields drop in order, so the mount goes first.
struct Mounted {
    guard: MountGuard,
    merged: PathBuf,
    name: &'static str,
    outside: Outside,
    log_dir: PathBuf,
    setup: Setup,
}

impl Mounted {
    /// `tree`: sync the view into a tree before mounting it.
    fn new(name: &'static str, hostile_skel: bool, tree: bool) -> Mounted {
        let setup = Setup::new("");
        make_private(setup.dir.path());
        let decoy = Decoy::make(&setup.dir.path().join("decoy"));
        let skel = if hostile_skel {
            build_hostile_skel(&setup)
        } else {
            setup.build_example_skel("base")
        };
        let outside = Outside::record(&setup, decoy, skel);
        setup.create_view("base", name, "10.0.0.2");
        if tree {
            setup.vskel().args(["sync", name]).assert().success();
        }
        let merged = setup.root.join(".views").join(name).join("merged");
        let guard = MountGuard(merged.clone());
        setup.vskel().args(["mount", name]).assert().success();
        let log_dir = setup.dir.path().join("logs");
        fs::create_dir(&log_dir).unwrap();
        Mounted {
            guard,
            merged,
            name,
            outside,
            log_dir,
            setup,
        }
    }

    /// The view's root, as a descriptor a child gets as stdin.
    fn root_fd(&self) -> OwnedFd {
        rustix::fs::open(
            &self.merged,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap()
    }

    /// Make the view's work directories, user 65534's.
    fn make_work_dirs(&self) {
        for dir in WORK_DIRS {
            let path = self.merged.join(dir);
            fs::create_dir(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(NOBODY), Some(NOBODY)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o777)).unwrap();
        }
    }

    /// Unmount (a failure is a problem), then everything changed outside.
    fn finish(self, mut problems: Vec<String>) -> (Vec<String>, Outside, Setup) {
        let out = self
            .setup
            .vskel()
            .args(["unmount", self.name])
            .output()
            .unwrap();
        if !out.status.success() {
            problems.push(format!(
                "vskel unmount {} failed: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        drop(self.guard);
        problems.extend(self.outside.problems());
        (problems, self.outside, self.setup)
    }
}

/// Lines of a log containing `needle`.
fn count(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

/// Lines of a log containing `needle` for an operation that succeeded.
fn count_ok(log: &Path, needle: &str) -> usize {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle) && l.ends_with("-> ok"))
        .count()
}

/// Run finding 1's sequence (`role`) as user 65534 in a mounted view
/// against decoy file `decoy_file`; panics with a report when anything
/// outside the view changed.
fn finding1(role: &str, test: &str, decoy_file: &str) {
    if !require_root(test) {
        return;
    }
    let view = Mounted::new("web1", false, false);
    let target = view.outside.decoy.dir.join(decoy_file);
    let plan = Plan {
        role: role.to_string(),
        label: format!("{role}-nobody"),
        work_dirs: vec!["tmp".to_string()],
        file_targets: vec![target.to_str().unwrap().to_string()],
        ..Plan::default()
    };
    let logs = Logs::default();
    let monitor = view.outside.monitor(&logs);
    let mut child = vec![HostileChild::spawn(
        &plan,
        Some(NOBODY),
        Some(view.root_fd()),
        &view.log_dir,
        &logs,
    )];
    let log = child[0].log.clone();
    let problems = wait_children(&mut child, &monitor, Instant::now() + HANG_GRACE);
    drop(child);
    eprintln!(
        "{test}: the child's log:\n{}",
        common::hostile::tail(&log, 20)
    );
    let first = monitor.finish();
    let (mut problems, _outside, _setup) = view.finish(problems);
    // The sequence must have run, or nothing was tried.
    for step in ["O_CREAT|O_RDWR -> ok", "tmp/finding1-f -> ok"] {
        if count(&log, step) == 0 {
            problems.push(format!(
                "the child's log has no {step:?}: the attack did not run"
            ));
        }
    }
    // Reopening an open file acts on that file, whatever its name is now.
    if role == "finding1-proc" && count(&log, "reached the open file: yes") == 0 {
        problems.push(
            "reopening the open file through /proc/self/fd did not reach it (see the log)"
                .to_string(),
        );
    }
    report(test, None, &problems, first.as_ref(), &logs, "");
}

#[test]
fn an_unprivileged_user_cannot_chmod_a_decoy_through_a_symlink_renamed_over_an_open_file() {
    // fd=open("f", O_CREAT|O_RDWR); symlink(DECOY, "s"); rename("s", "f");
    // fchmod(fd, 04777): the decoy (root's, 0600) must keep its mode.
    finding1(
        "finding1",
        "an_unprivileged_user_cannot_chmod_a_decoy_through_a_symlink_renamed_over_an_open_file",
        "secret",
    );
}

#[test]
fn reopening_a_renamed_over_file_through_proc_reaches_that_file_not_a_decoy() {
    // The same, then open("/proc/self/fd/N", O_RDWR) and a write: the
    // decoy's content must stay, and the write must reach the open file.
    finding1(
        "finding1-proc",
        "reopening_a_renamed_over_file_through_proc_reaches_that_file_not_a_decoy",
        "plain",
    );
}

#[test]
fn hostile_users_in_a_mounted_view_change_nothing_outside_it() {
    let test = "hostile_users_in_a_mounted_view_change_nothing_outside_it";
    if !require_root(test) {
        return;
    }
    let budget = Budget::from_env("hostile fuzz part A (mounted view)");
    let view = Mounted::new("web1", true, false);
    view.make_work_dirs();
    let (file_targets, dir_targets) = targets(&view.outside);
    let base = Plan {
        role: "view".to_string(),
        millis: (budget.secs * 1000.0) as u64,
        max_ops: budget.ops,
        threads: 3,
        work_dirs: WORK_DIRS.iter().map(|s| s.to_string()).collect(),
        swap_dirs: SWAP_DIRS.iter().map(|s| s.to_string()).collect(),
        file_targets,
        dir_targets,
        ..Plan::default()
    };
    let mut plans = Vec::new();
    for k in 1..=2u64 {
        plans.push((
            Plan {
                label: format!("nobody-{k}"),
                seed: budget.seed.wrapping_mul(31).wrapping_add(k),
                owners: vec![(NOBODY, NOBODY)],
                ..base.clone()
            },
            Some(NOBODY),
        ));
    }
    plans.push((
        Plan {
            label: "vserver-root".to_string(),
            seed: budget.seed.wrapping_mul(31).wrapping_add(3),
            chroot: true,
            attack: ATTACK.iter().map(|s| s.to_string()).collect(),
            owners: vec![(0, 0), (1000, 1000), (NOBODY, NOBODY), (1234, 42)],
            ..base.clone()
        },
        None,
    ));
    let logs = Logs::default();
    let monitor = view.outside.monitor(&logs);
    let mut children: Vec<HostileChild> = plans
        .iter()
        .map(|(plan, uid)| {
            HostileChild::spawn(plan, *uid, Some(view.root_fd()), &view.log_dir, &logs)
        })
        .collect();
    let deadline = Instant::now() + budget.duration() + HANG_GRACE;
    let problems = wait_children(&mut children, &monitor, deadline);
    let first = monitor.finish();
    let mut summary = String::new();
    for child in &children {
        let done = fs::read_to_string(&child.log)
            .unwrap_or_default()
            .lines()
            .find(|l| l.contains("done: "))
            .map(|l| l.to_string())
            .unwrap_or_else(|| "(no summary: killed?)".to_string());
        summary.push_str(&format!("  {}: {done}\n", child.label));
    }
    let renamed_over: usize = children.iter().map(|c| count_ok(&c.log, ") over ")).sum();
    drop(children);
    eprintln!("{test}:\n{summary}  symlinks renamed over names: {renamed_over}");
    let (mut problems, _outside, _setup) = view.finish(problems);
    if problems.is_empty() && renamed_over == 0 {
        problems.push("no symlink was ever renamed over a name: the attack did not run".into());
    }
    report(
        "hostile fuzz part A (mounted view)",
        Some(&budget),
        &problems,
        first.as_ref(),
        &logs,
        &summary,
    );
}

/// Change many kinds of things through the mounted view `merged` (as
/// root: nothing hostile runs in this view), so that the next sync has
/// special files, files, links and modes to write. Returns what was made,
/// to remove a few rounds later.
fn change_view(merged: &Path, round: u64, rng: &mut Rng) -> Vec<PathBuf> {
    use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};
    const DIRS: &[&str] = &["srv/hz", "srv/hz/deep", "etc", "var/log", "usr/bin"];
    fs::create_dir_all(merged.join("srv/hz/deep")).unwrap();
    let mut made = Vec::new();
    let chmod = |p: &Path, mode: u32| {
        fs::set_permissions(p, fs::Permissions::from_mode(mode))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", p.display()))
    };
    for k in 0..8 {
        let p = merged
            .join(rng.pick(DIRS))
            .join(format!("fifo-{round}-{k}"));
        mknodat(CWD, &p, FileType::Fifo, Mode::from_raw_mode(0o644), 0)
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
        chmod(&p, *rng.pick(&[0o4777, 0o6755, 0o640, 0o4666]));
        made.push(p);
    }
    for k in 0..2 {
        let p = merged
            .join(*rng.pick(&["dev", "srv/hz"]))
            .join(format!("null-{round}-{k}"));
        mknodat(
            CWD,
            &p,
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o666),
            makedev(1, 3),
        )
        .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
        chmod(&p, 0o4666);
        made.push(p);
    }
    let file = merged.join(format!("srv/hz/file-{round}"));
    fs::write(&file, format!("round {round}\n")).unwrap();
    chmod(&file, *rng.pick(&[0o4755, 0o644, 0o6711]));
    made.push(file.clone());
    let link = merged.join(format!("srv/hz/deep/hl-{round}"));
    fs::hard_link(&file, &link).unwrap();
    made.push(link);
    let sym = merged.join(format!("srv/hz/link-{round}"));
    std::os::unix::fs::symlink(format!("file-{round}"), &sym).unwrap();
    made.push(sym);
    let dir = merged.join(format!("srv/hz/dir-{round}"));
    fs::create_dir(&dir).unwrap();
    mknodat(
        CWD,
        dir.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o4777),
        0,
    )
    .unwrap();
    chmod(&dir, 0o750);
    made.push(dir);
    if round % 4 == 0 {
        let sparse = merged.join(format!("srv/hz/sparse-{round}"));
        let f = fs::File::create(&sparse).unwrap();
        f.set_len(8 << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, b"middle\n", 4 << 20).unwrap();
        made.push(sparse);
    }
    // Existing skel entries change too (copy-up; sync writes copies).
    chmod(
        &merged.join("lib/libdemo.so.1"),
        *rng.pick(&[0o600, 0o644, 0o4755]),
    );
    chmod(
        &merged.join("usr/bin/suid-env"),
        *rng.pick(&[0o4755, 0o755, 0o4711]),
    );
    let mut motd = fs::OpenOptions::new()
        .append(true)
        .open(merged.join("etc/motd"))
        .unwrap();
    std::io::Write::write_all(&mut motd, format!("round {round}\n").as_bytes()).unwrap();
    made
}

/// Remove what [`change_view`] made.
fn remove_made(made: &[PathBuf]) {
    for p in made {
        let r = if p.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            fs::remove_dir_all(p)
        } else {
            fs::remove_file(p)
        };
        r.unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
    }
}

/// `vskel sync NAME`; `Err` with its message when it failed, or when it
/// hung (then it is killed).
fn sync(setup: &Setup, name: &str) -> Result<(), String> {
    let mut child = setup
        .vskel_process()
        .args(["sync", name])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + SYNC_HANG;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let text = reader.join().unwrap();
            return if status.success() {
                Ok(())
            } else {
                Err(text.trim().to_string())
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("HUNG: still running after {SYNC_HANG:?}, killed"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_hostile_root_racing_syncs_in_its_tree_changes_nothing_outside_it() {
    let test = "a_hostile_root_racing_syncs_in_its_tree_changes_nothing_outside_it";
    if !require_root(test) {
        return;
    }
    let budget = Budget::from_env("hostile fuzz part B (tree during syncs)");
    let view = Mounted::new("web2", true, true);
    let tree = view.setup.root.join("web2");
    let (file_targets, dir_targets) = targets(&view.outside);
    let plan = Plan {
        role: "racer".to_string(),
        label: "tree-root".to_string(),
        seed: budget.seed.wrapping_mul(31).wrapping_add(7),
        millis: (budget.secs * 1000.0) as u64,
        file_targets,
        dir_targets,
        tree: Some(tree),
        ..Plan::default()
    };
    let logs = Logs::default();
    let mut children = vec![HostileChild::spawn(&plan, None, None, &view.log_dir, &logs)];
    let log = children[0].log.clone();
    let ready_by = Instant::now() + HANG_GRACE;
    while count(&log, "ready: watching") == 0 {
        assert!(
            Instant::now() < ready_by && children[0].poll().is_none(),
            "the racer did not start:\n{}",
            common::hostile::tail(&log, 20)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let monitor = view.outside.monitor(&logs);
    let mut rng = Rng::new(budget.seed, 2000);
    let start = Instant::now();
    let (mut ok, mut failed, mut hung) = (0, 0, Vec::new());
    let mut failures: Vec<String> = Vec::new();
    let mut rounds: Vec<Vec<PathBuf>> = Vec::new();
    let mut round = 0;
    while start.elapsed() < budget.duration() && !monitor.triggered() {
        round += 1;
        rounds.push(change_view(&view.merged, round, &mut rng));
        if rounds.len() > 3 {
            remove_made(&rounds.remove(0));
        }
        match sync(&view.setup, view.name) {
            Ok(()) => ok += 1,
            Err(e) if e.starts_with("HUNG") => hung.push(format!("sync {round} {e}")),
            Err(e) => {
                failed += 1;
                if failures.len() < 3 && !failures.contains(&e) {
                    failures.push(e);
                }
            }
        }
    }
    let mut problems = wait_children(&mut children, &monitor, Instant::now() + HANG_GRACE);
    let first = monitor.finish();
    let summary_line = fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .find(|l| l.contains("summary "))
        .map(|l| l.to_string());
    drop(children);
    let summary = format!(
        "syncs: {round} rounds, {ok} succeeded, {failed} failed (first errors: {failures:#?}); \
         racer: {}",
        summary_line.as_deref().unwrap_or("(no summary: killed?)")
    );
    eprintln!("{test}: {summary}");
    problems.extend(hung);
    let (mut problems, _outside, _setup) = view.finish(problems);
    if problems.is_empty() && count_ok(&log, "over it") == 0 {
        problems.push("the racer never replaced a name sync made: the attack did not run".into());
    }
    report(
        "hostile fuzz part B (tree during syncs)",
        Some(&budget),
        &problems,
        first.as_ref(),
        &logs,
        &summary,
    );
}
