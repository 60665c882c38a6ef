//! `vskel sync` against a hostile vserver (issue 9, findings 2, 11, 12):
//! whoever can write the live tree `<root>/NAME` (the vserver's root) must
//! never lead sync outside it, nor make it fail or touch the vserver's own
//! files by taking names, and a sync that fails half-way leaves nothing of
//! its own in the tree.
//!
//! * The race: a racer thread plays the vserver's root in a tree directory
//!   that incremental syncs write FIFOs, device nodes, files, symlinks and
//!   directories into. Told by inotify of every name that appears, it
//!   renames a symlink to a decoy file outside every tree over it at once,
//!   and keeps doing so over the last name it saw. The decoy's mode, owner,
//!   times, xattrs and content must never change. `SYNC_RACE_SEED` seeds
//!   the entries written; `SYNC_RACE_SYNCS` (default 200) and
//!   `SYNC_RACE_SECS` (default 20) bound the run.
//! * Names: a view's user creates every name vskel ever used for a
//!   temporary (and many of the pattern it uses now) in view directories,
//!   and the vserver's root creates them in the live tree; syncs and
//!   materialize still succeed and leave those files as they were.
//! * Disk full: on a small filesystem an incremental and a full sync that
//!   run out of space fail naming ENOSPC and leave the tree as it was, no
//!   staging entry and no space taken.

mod common;

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::smallfs::SmallFs;
use common::{Setup, require_root, snapshot, xattrs};
use rustix::fs::{self as rfs, FileType, Mode, inotify};

/// Seed, sync count and time budget of the race.
const SEED_ENV: &str = "SYNC_RACE_SEED";
const SYNCS_ENV: &str = "SYNC_RACE_SYNCS";
const SECS_ENV: &str = "SYNC_RACE_SECS";
const DEFAULT_SEED: u64 = 0x9ace_5ee0_0002;
const DEFAULT_SYNCS: u64 = 200;
const DEFAULT_SECS: u64 = 20;
/// Entries each round writes into the raced directory.
const ENTRIES_PER_ROUND: usize = 24;
/// The name the racer prepares its symlink under.
const RACER_TEMP: &str = "racer-link";

/// xorshift64*: small, seeded, good enough to vary the entries.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let v = v.trim();
            match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            }
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
        }
        Err(_) => default,
    }
}

/// What must never change about the decoy.
#[derive(Debug, PartialEq, Eq)]
struct DecoyState {
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, i64),
    xattrs: Vec<(String, Vec<u8>)>,
    content: Vec<u8>,
}

fn decoy_state(path: &Path) -> DecoyState {
    let m = fs::symlink_metadata(path).unwrap();
    DecoyState {
        mode: m.mode(),
        owner: (m.uid(), m.gid()),
        mtime: (m.mtime(), m.mtime_nsec()),
        xattrs: xattrs(path),
        content: fs::read(path).unwrap(),
    }
}

/// A decoy file outside every tree: root's, 0644, known content.
fn make_decoy(setup: &Setup) -> PathBuf {
    let decoy = setup.dir.path().join("decoy");
    fs::write(&decoy, b"host file: must never change\n").unwrap();
    fs::set_permissions(&decoy, fs::Permissions::from_mode(0o644)).unwrap();
    decoy
}

/// Write one round of entries into upper directory `dir` (a new
/// subdirectory with a few more inside), modes with setuid bits so that a
/// chmod led to the decoy shows.
fn write_round(dir: &Path, round: u64, rng: &mut Rng) -> Vec<PathBuf> {
    let mut made = Vec::new();
    let sub = dir.join(format!("d{round}"));
    fs::create_dir(&sub).unwrap();
    made.push(sub.clone());
    for i in 0..ENTRIES_PER_ROUND {
        let at = if i % 6 == 5 { &sub } else { dir };
        let path = at.join(format!("r{round}-{i}"));
        let mode = [0o4755, 0o6777, 0o4666, 0o2755][rng.below(4) as usize];
        match rng.below(5) {
            0 | 1 => rfs::mknodat(
                rfs::CWD,
                &path,
                FileType::Fifo,
                Mode::from_raw_mode(0o644),
                0,
            )
            .unwrap(),
            2 => rfs::mknodat(
                rfs::CWD,
                &path,
                FileType::CharacterDevice,
                Mode::from_raw_mode(0o644),
                rfs::makedev(1, 3 + rng.below(3) as u32),
            )
            .unwrap(),
            3 => fs::write(&path, format!("round {round} entry {i}\n")).unwrap(),
            _ => std::os::unix::fs::symlink(format!("target-{i}"), &path).unwrap(),
        }
        if rng.below(5) != 4 {
            // Not for symlinks (their mode is never set).
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(mode));
        }
        made.push(path);
    }
    made
}

/// The racer: in tree directory `dir` (and the directories that appear
/// in it), rename a symlink to `decoy` over every name that appears, at
/// once, and again and again over the last one seen, counting the swaps
/// in `swaps`, until `stop`.
fn race(dir: PathBuf, decoy: PathBuf, stop: Arc<AtomicBool>, swaps: Arc<AtomicU64>) {
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    let mask = inotify::WatchFlags::CREATE
        | inotify::WatchFlags::MOVED_TO
        | inotify::WatchFlags::MOVED_FROM;
    let mut dirs: Vec<(i32, OwnedFd)> = Vec::new();
    let watch = |path: &Path, dirs: &mut Vec<(i32, OwnedFd)>| {
        let Ok(fd) = rfs::open(
            path,
            rfs::OFlags::RDONLY | rfs::OFlags::DIRECTORY | rfs::OFlags::NOFOLLOW,
            Mode::empty(),
        ) else {
            return;
        };
        if let Ok(wd) = inotify::add_watch(&ino, path, mask) {
            dirs.push((wd, fd));
        }
    };
    watch(&dir, &mut dirs);
    let target = CString::new(decoy.as_os_str().as_bytes()).unwrap();
    let temp = CString::new(RACER_TEMP).unwrap();
    let swap = |dirfd: &OwnedFd, name: &CString| {
        let _ = rfs::symlinkat(&target, dirfd, &temp);
        if rfs::renameat(dirfd, &temp, dirfd, name).is_ok() {
            swaps.fetch_add(1, Ordering::Relaxed);
        }
    };
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 8192];
    let mut last: Option<(usize, CString)> = None;
    let mut new_dirs = Vec::new();
    // The cookies of the racer's own renames (not names to swap).
    let mut own = std::collections::HashSet::new();
    while !stop.load(Ordering::Relaxed) {
        let mut reader = inotify::Reader::new(&ino, &mut buf);
        let mut got = false;
        while let Ok(event) = reader.next() {
            let Some(name) = event.file_name() else {
                continue;
            };
            let flags = event.events();
            if name.to_bytes() == RACER_TEMP.as_bytes() {
                if flags.contains(inotify::ReadFlags::MOVED_FROM) {
                    own.insert(event.cookie());
                }
                continue;
            }
            if flags.contains(inotify::ReadFlags::MOVED_FROM)
                || (flags.contains(inotify::ReadFlags::MOVED_TO) && own.remove(&event.cookie()))
            {
                continue;
            }
            let Some(at) = dirs.iter().position(|(wd, _)| *wd == event.wd()) else {
                continue;
            };
            got = true;
            let name = name.to_owned();
            if flags.contains(inotify::ReadFlags::ISDIR) {
                new_dirs.push(at_path(&dirs[at].1, &name));
            } else {
                swap(&dirs[at].1, &name);
            }
            last = Some((at, name));
        }
        for path in new_dirs.drain(..) {
            watch(&path, &mut dirs);
        }
        if !got {
            match &last {
                Some((at, name)) => swap(&dirs[*at].1, name),
                None => std::thread::yield_now(),
            }
        }
    }
}

/// The path of `name` in the open directory `dir`.
fn at_path(dir: &OwnedFd, name: &CString) -> PathBuf {
    use std::os::fd::AsRawFd;
    let base = fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap_or_default();
    base.join(std::ffi::OsStr::from_bytes(name.to_bytes()))
}

#[test]
fn a_racing_vserver_root_never_leads_sync_outside_its_tree() {
    if !require_root("a_racing_vserver_root_never_leads_sync_outside_its_tree") {
        return;
    }
    let seed = env_u64(SEED_ENV, DEFAULT_SEED);
    let max_syncs = env_u64(SYNCS_ENV, DEFAULT_SYNCS);
    let budget = Duration::from_secs(env_u64(SECS_ENV, DEFAULT_SECS));
    let mut rng = Rng(seed | 1);
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let view = setup.create_view("base", "web1", "10.0.0.2");
    let upper = view.join("upper");
    let raced_upper = upper.join("var/race");
    fs::create_dir_all(&raced_upper).unwrap();
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    let raced = tree.join("var/race");
    assert!(raced.is_dir());
    let decoy = make_decoy(&setup);
    let before = decoy_state(&decoy);

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let racer = {
        let (dir, decoy, stop, swaps) = (raced.clone(), decoy.clone(), stop.clone(), swaps.clone());
        std::thread::spawn(move || race(dir, decoy, stop, swaps))
    };
    let started = Instant::now();
    let mut previous: Vec<PathBuf> = Vec::new();
    let mut failures = Vec::new();
    let mut syncs = 0;
    while syncs < max_syncs && started.elapsed() < budget {
        // The last round's entries go, this round's come.
        for path in previous.drain(..).rev() {
            let _ = fs::remove_dir_all(&path).or_else(|_| fs::remove_file(&path));
        }
        previous = write_round(&raced_upper, syncs, &mut rng);
        let out = setup.vskel().args(["sync", "web1"]).output().unwrap();
        syncs += 1;
        if !out.status.success() {
            failures.push(format!(
                "sync {syncs}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let now = decoy_state(&decoy);
        if now != before {
            stop.store(true, Ordering::Relaxed);
            racer.join().unwrap();
            panic!(
                "seed {seed:#x}: sync {syncs} changed the decoy outside the tree: \
                 mode {:o} became {:o}; {before:?} became {now:?} ({} swaps so far)",
                before.mode,
                now.mode,
                swaps.load(Ordering::Relaxed)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!(
        "seed {seed:#x}: {syncs} syncs in {:.1} s, {swaps} swaps, {} syncs failed",
        started.elapsed().as_secs_f64(),
        failures.len()
    );
    assert_eq!(decoy_state(&decoy), before);
    assert!(swaps > syncs, "the racer hardly ran: {swaps} swaps");
    assert!(
        failures.is_empty(),
        "seed {seed:#x}: the racer made syncs fail: {:#?}",
        &failures[..failures.len().min(5)]
    );
    // With the racer gone, a sync still completes, and nothing vskel
    // made is left under a name of its own.
    setup.vskel().args(["sync", "web1"]).assert().success();
    let leftovers: Vec<_> = snapshot(&tree)
        .into_keys()
        .filter(|p| p.to_string_lossy().contains(".#vskel"))
        .collect();
    assert!(leftovers.is_empty(), "temporaries left: {leftovers:?}");
}

/// Every name vskel ever used for a temporary, and many of the kind it
/// uses now.
fn taken_names(rng: &mut Rng) -> Vec<String> {
    let mut names: Vec<String> = [".#vskel-sync#", ".#vskel-sync#1", ".#vskel-sync#2"]
        .map(String::from)
        .to_vec();
    for k in 3..40 {
        names.push(format!(".#vskel-sync#{k}"));
    }
    for _ in 0..40 {
        names.push(format!(".#vskel-{:016x}{:016x}", rng.next(), rng.next()));
        names.push(format!(".#vskel-sync#{:016x}", rng.next()));
    }
    names
}

#[test]
fn names_a_vserver_takes_never_stop_or_touch_a_sync() {
    if !require_root("names_a_vserver_takes_never_stop_or_touch_a_sync") {
        return;
    }
    let mut rng = Rng(DEFAULT_SEED);
    let names = taken_names(&mut rng);
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let view = setup.create_view("base", "web1", "10.0.0.2");
    let upper = view.join("upper");
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::create_dir_all(upper.join("srv")).unwrap();
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");

    // A user of the view takes them in etc/ (shown by the view, so synced
    // as the user's files); the vserver's root takes them in the live
    // tree's var/ and srv/ (not in the view: left alone by a sync).
    for name in &names {
        fs::write(upper.join("etc").join(name), format!("view file {name}\n")).unwrap();
        for dir in ["var", "srv"] {
            fs::write(tree.join(dir).join(name), format!("tree file {name}\n")).unwrap();
        }
    }
    let tree_files = |tree: &Path| -> Vec<(PathBuf, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for name in &names {
            for dir in ["var", "srv"] {
                let p = tree.join(dir).join(name);
                let ino = fs::symlink_metadata(&p).map(|m| m.ino()).unwrap_or(0);
                out.push((p.clone(), ino, fs::read(&p).unwrap_or_default()));
            }
        }
        out
    };
    let theirs = tree_files(&tree);
    for round in 0..3 {
        // Changes in each of those directories: files, a FIFO, a new
        // directory, and a directory replaced by a file.
        for dir in ["etc", "var", "srv"] {
            let at = upper.join(dir);
            fs::create_dir_all(&at).unwrap();
            fs::write(at.join(format!("new-{round}")), "new\n").unwrap();
            rfs::mknodat(
                rfs::CWD,
                at.join(format!("fifo-{round}")),
                FileType::Fifo,
                Mode::from_raw_mode(0o600),
                0,
            )
            .unwrap();
            fs::create_dir(at.join(format!("dir-{round}"))).unwrap();
            fs::write(at.join(format!("dir-{round}/inside")), "x\n").unwrap();
            if round > 0 {
                let old = at.join(format!("dir-{}", round - 1));
                fs::remove_dir_all(&old).unwrap();
                fs::write(&old, "a file now\n").unwrap();
            }
        }
        let out = setup.vskel().args(["sync", "web1"]).output().unwrap();
        assert!(
            out.status.success(),
            "round {round}: sync failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            tree_files(&tree),
            theirs,
            "round {round}: sync touched them"
        );
        for name in &names {
            assert_eq!(
                fs::read_to_string(tree.join("etc").join(name)).unwrap(),
                format!("view file {name}\n")
            );
        }
        for dir in ["etc", "var", "srv"] {
            let at = tree.join(dir);
            assert_eq!(
                fs::read_to_string(at.join(format!("new-{round}"))).unwrap(),
                "new\n"
            );
            assert!(
                fs::symlink_metadata(at.join(format!("fifo-{round}")))
                    .unwrap()
                    .file_type()
                    .is_fifo()
            );
            assert_eq!(
                fs::read_to_string(at.join(format!("dir-{round}/inside"))).unwrap(),
                "x\n"
            );
            if round > 0 {
                assert_eq!(
                    fs::read_to_string(at.join(format!("dir-{}", round - 1))).unwrap(),
                    "a file now\n"
                );
            }
        }
    }
    // Nothing of vskel's own is left beside them.
    let ours: BTreeSet<_> = snapshot(&tree)
        .into_keys()
        .filter(|p| {
            let name = p
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            name.starts_with(".#vskel") && !names.contains(&name)
        })
        .collect();
    assert!(ours.is_empty(), "left by sync: {ours:?}");
    // Materialize (a last sync, then the view retires) succeeds too.
    setup
        .vskel()
        .args(["materialize", "web1"])
        .assert()
        .success();
    assert_eq!(tree_files(&tree), theirs);
}

/// Names in a tree, for "nothing was added or removed" checks.
fn names_in(tree: &Path) -> BTreeSet<PathBuf> {
    snapshot(tree).into_keys().collect()
}

/// A file of `len` bytes that does not compress (tmpfs stores it as is).
fn write_dense(path: &Path, len: usize, rng: &mut Rng) {
    let mut data = vec![0u8; len];
    for chunk in data.chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    fs::write(path, data).unwrap();
}

#[test]
fn a_sync_that_runs_out_of_space_leaves_no_temporary_behind() {
    if !require_root("a_sync_that_runs_out_of_space_leaves_no_temporary_behind") {
        return;
    }
    let mut rng = Rng(DEFAULT_SEED);
    let small = SmallFs::new(48);
    let setup = small.setup("");
    setup.build_example_skel("base");
    let view = setup.create_view("base", "web1", "10.0.0.2");
    let upper = view.join("upper");
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    let staging = setup.root.join(".vskel/staging");

    // A file in the view bigger than what is left once it is written.
    fs::create_dir_all(upper.join("var")).unwrap();
    let free = small.free_bytes();
    write_dense(&upper.join("var/big"), (free * 3 / 5) as usize, &mut rng);
    fs::write(upper.join("var/small"), "fits\n").unwrap();
    let names = names_in(&tree);
    let free_before = small.free_bytes();

    for (what, prepare) in [
        ("incremental", None),
        // No manifest: the next sync rebuilds the tree beside it.
        ("full", Some(setup.root.join(".vskel/sync/web1.manifest"))),
    ] {
        if let Some(manifest) = prepare {
            fs::remove_file(manifest).unwrap();
        }
        let out = setup.vskel().args(["sync", "web1"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} sync did not fail");
        assert!(
            stderr.contains("No space left on device"),
            "{what} sync: no ENOSPC in {stderr:?}"
        );
        assert!(
            stderr.contains("var/big"),
            "{what} sync: the file is not named: {stderr:?}"
        );
        assert_eq!(names_in(&tree), names, "{what} sync left the tree changed");
        let staged: Vec<_> = fs::read_dir(&staging)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            staged.is_empty(),
            "{what} sync left staging entries {staged:?}"
        );
        let free_after = small.free_bytes();
        assert!(
            free_after + (1 << 20) >= free_before,
            "{what} sync left {} bytes taken",
            free_before - free_after
        );
    }
    // Once there is room, it completes.
    fs::remove_file(upper.join("var/big")).unwrap();
    setup.vskel().args(["sync", "web1"]).assert().success();
    assert_eq!(
        fs::read_to_string(tree.join("var/small")).unwrap(),
        "fits\n"
    );
}
