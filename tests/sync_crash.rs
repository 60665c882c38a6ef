//! Crash safety of `vskel sync` (DESIGN.md section 6: "the old tree or the
//! new, never half"; section 8: a kill -9 leaves no lost data): a sync
//! SIGKILLed at a random moment leaves `<root>/NAME` in a state that is,
//! file by file, one the tree was allowed to be in, loses nothing, and the
//! next sync completes.
//!
//! On the Debian skel, view `web1` is synced once (the old state), then a
//! few hundred changes are made through the mounted view: appends to global
//! files, edits of local files, deletions, chmods, a renamed lower
//! directory, new directories, files, a symlink and a hard link. Then each
//! trial spawns `vskel sync web1`, SIGKILLs it after a random delay in
//! `[0, T]` and checks the tree:
//!
//! * it exists;
//! * every entry in it has the state it has in one of the allowed listings
//!   (below): kind, mode, owner, xattrs and, for non-directories, size,
//!   mtime, content, symlink target and whether it is the skel's inode.
//!   Directory mtimes are not checked here (a half-done sync may leave one
//!   at "now"), nor hard-link groups (a group is replaced one name at a
//!   time); both are checked once a sync completes;
//! * an entry present in every allowed listing is present (never lost);
//! * an entry in no allowed listing (a sync's temporary file) is reported;
//!   it must be gone once a sync completes.
//!
//! The allowed listings are those since the last sync that ran to
//! completion: the state the tree had then, and every later state of the
//! view. Some trials first make more changes through the view (always after
//! a trial whose sync completed, else with odds 1 in [`CHANGE_ODDS`]), so
//! incremental syncs are killed too, also on top of a half-done one. A sync
//! that exits before its kill must leave exactly the latest listing.
//!
//! The expected listing of a state comes from a complete sync of a copy of
//! the view: a fresh view `refN` of the same skel whose `upper/` and
//! `static/` are replaced by copies of web1's (taken while web1 is
//! unmounted), synced to completion, listed with `common::canonical` and
//! removed again. This gives the whole canonical listing, inode sharing with
//! the skel and hard-link groups included, which a walk of the mounted view
//! cannot (FUSE has its own inode numbers). The method is checked against
//! the truth once: after the first round of changes the synced copy must
//! match a walk of the mounted web1 view in everything but inode identity;
//! so must the final tree.
//!
//! At the end `vskel sync web1` runs to completion twice: the tree must
//! equal the latest listing exactly (content, metadata, directory mtimes,
//! skel inodes shared, hard-link groups) and `<root>/.vskel/staging` must
//! be empty.
//!
//! `T` follows what a sync costs: it starts at [`WINDOW_MARGIN`] times the
//! measured duration of web1's first (full) sync; a sync that completes
//! before its kill sets it to [`WINDOW_MARGIN`] times its own duration (an
//! incremental sync costs less than a full one); each kill stretches it by
//! [`WINDOW_GROWTH`], so the window also reaches the end of syncs that cost
//! more than the last completed one (replacing a tree costs more than
//! making the first).
//!
//! `SYNC_CRASH_SEED` (decimal or 0x-hex; default [`DEFAULT_SEED`]) seeds the
//! delays and the changes; `SYNC_CRASH_TRIALS` (default 20) sets the number
//! of trials. A failure names the seed.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{Canonical, Listing, MountGuard, Setup, canonical, diff, fingerprint, require_root};

/// Environment variable with the PRNG seed.
const SEED_ENV: &str = "SYNC_CRASH_SEED";
/// Seed when `SYNC_CRASH_SEED` is unset.
const DEFAULT_SEED: u64 = 0x5eed_5afe_c0de;
/// Environment variable with the number of trials.
const TRIALS_ENV: &str = "SYNC_CRASH_TRIALS";
/// Trials when `SYNC_CRASH_TRIALS` is unset.
const DEFAULT_TRIALS: u64 = 20;
/// The skel and the view under test.
const SKEL: &str = "minbase";
const VS: &str = "web1";
/// How often a running sync is checked for having exited.
const POLL: Duration = Duration::from_millis(1);
/// The kill window never shrinks below this.
const MIN_WINDOW: Duration = Duration::from_millis(20);
/// The kill window after a completed sync, relative to its duration.
const WINDOW_MARGIN: f64 = 1.25;
/// What each kill stretches the kill window by.
const WINDOW_GROWTH: f64 = 1.1;
/// A trial after a killed sync first changes the view with odds 1 in this.
const CHANGE_ODDS: u64 = 4;
/// Size limit of a new file's random content.
const MAX_NEW_FILE: u64 = 16 * 1024;
/// Problems listed in a failure message.
const SHOWN: usize = 10;

/// How much one round of changes through the view does.
struct Amounts {
    /// Global files appended to.
    append: usize,
    /// Local files rewritten.
    edit: usize,
    /// Global files deleted.
    delete: usize,
    /// Global files whose mode changes (metadata-only copy-up).
    chmod: usize,
    /// New directories, each with `files_per_dir` new files.
    new_dirs: usize,
    files_per_dir: usize,
}

/// The first round: a few hundred changed entries.
const FIRST: Amounts = Amounts {
    append: 150,
    edit: 40,
    delete: 40,
    chmod: 20,
    new_dirs: 10,
    files_per_dir: 10,
};

/// Later rounds, between trials.
const LATER: Amounts = Amounts {
    append: 20,
    edit: 5,
    delete: 5,
    chmod: 3,
    new_dirs: 2,
    files_per_dir: 10,
};

/// SplitMix64: small, seedable, good enough to pick delays and files.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (near enough).
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.up_to(i as u64) as usize;
            items.swap(i, j);
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// A u64 from the environment (decimal or 0x-hex), or `default`.
fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        }
        Err(std::env::VarError::NotPresent) => default,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Says which seed to rerun with when the test panics anywhere.
struct SeedOnPanic(u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "sync_crash failed with seed {seed}: rerun with {SEED_ENV}={seed}",
                seed = self.0
            );
        }
    }
}

/// How a trial's sync ended.
enum Outcome {
    /// SIGKILLed while running.
    Killed,
    /// Exited successfully before the kill, after this long.
    Completed(Duration),
}

/// The vskel setup with view `web1` and the paths the test looks at.
struct World {
    setup: Setup,
    skel: PathBuf,
    tree: PathBuf,
    view_dir: PathBuf,
    merged: PathBuf,
    /// Where a spawned sync's stderr goes.
    sync_log: PathBuf,
}

impl World {
    fn new() -> Self {
        let setup = Setup::new("");
        let skel = setup.build_debian_skel(SKEL);
        let view_dir = setup.create_view(SKEL, VS, "10.0.0.2");
        World {
            skel,
            tree: setup.root.join(VS),
            merged: view_dir.join("merged"),
            view_dir,
            sync_log: setup.dir.path().join("sync.stderr"),
            setup,
        }
    }

    /// `vskel sync web1` to completion; returns its stdout and duration.
    fn sync(&self, extra: &[&str]) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        let out = self
            .setup
            .vskel()
            .args(["sync", VS])
            .args(extra)
            .assert()
            .success();
        (out.get_output().stdout.clone(), started.elapsed())
    }

    /// Spawn `vskel sync web1`, SIGKILL it after `delay` unless it exited
    /// before, and reap it.
    fn sync_killed_after(&self, delay: Duration) -> Outcome {
        let log = fs::File::create(&self.sync_log).unwrap();
        let mut cmd: Command = self.setup.vskel_process();
        cmd.args(["sync", VS])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        let mut child = cmd.spawn().expect("spawn vskel sync");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return self.exited(status, started.elapsed());
            }
            if started.elapsed() >= delay {
                // Kill sends SIGKILL; on a child that already exited (not
                // yet reaped) it does nothing, and wait tells.
                child.kill().unwrap();
                let status = child.wait().unwrap();
                if status.signal() == Some(libc::SIGKILL) {
                    return Outcome::Killed;
                }
                return self.exited(status, started.elapsed());
            }
            std::thread::sleep(POLL);
        }
    }

    /// A sync that exited by itself must have succeeded.
    fn exited(&self, status: ExitStatus, took: Duration) -> Outcome {
        assert!(
            status.success(),
            "vskel sync failed by itself ({status}): {}",
            fs::read_to_string(&self.sync_log).unwrap_or_default()
        );
        Outcome::Completed(took)
    }

    /// Mount web1, make one round of changes (numbered `round`) chosen from
    /// `current` (the view's current listing) with `rng`, unmount.
    fn change(&self, rng: &mut Rng, round: u64, amounts: &Amounts, current: &Listing) {
        let _guard = MountGuard(self.merged.clone());
        self.setup.vskel().args(["mount", VS]).assert().success();
        let m = &self.merged;
        let files_under = |prefix: &str| -> Vec<&Path> {
            current
                .iter()
                .filter(|(p, e)| e.kind == "file" && p.starts_with(prefix))
                .map(|(p, _)| p.as_path())
                .collect()
        };
        let mut global = files_under("usr");
        let mut local = files_under("etc");
        rng.shuffle(&mut global);
        rng.shuffle(&mut local);
        let (appended, rest) = global.split_at(amounts.append);
        let (chmodded, rest) = rest.split_at(amounts.chmod);
        let deleted = &rest[..amounts.delete];

        for rel in appended {
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(m.join(rel))
                .unwrap_or_else(|e| panic!("open {}: {e}", rel.display()));
            writeln!(f, "round {round}: appended to {}", rel.display()).unwrap();
        }
        for rel in &local[..amounts.edit] {
            fs::write(
                m.join(rel),
                format!("round {round}: rewrote {}\n", rel.display()),
            )
            .unwrap();
        }
        for rel in chmodded {
            let mode = current[*rel].mode;
            let new = if mode & 0o777 == 0o640 { 0o600 } else { 0o640 };
            fs::set_permissions(m.join(rel), fs::Permissions::from_mode(mode & 0o7000 | new))
                .unwrap();
        }
        for rel in deleted {
            fs::remove_file(m.join(rel)).unwrap();
        }

        // Rename a directory: in the first round one with much lower
        // content, later any directory two or more levels down in usr/share
        // or srv (so also ones that only the upper layer holds).
        let from = if round == 1 {
            PathBuf::from("usr/share/doc")
        } else {
            let mut dirs: Vec<&Path> = current
                .iter()
                .filter(|(p, e)| {
                    e.kind == "dir"
                        && (p.starts_with("usr/share") || p.starts_with("srv"))
                        && p.components().count() >= 3
                })
                .map(|(p, _)| p.as_path())
                .collect();
            rng.shuffle(&mut dirs);
            dirs[0].to_path_buf()
        };
        let mut to = from.clone().into_os_string();
        to.push(format!(".round{round}"));
        fs::rename(m.join(&from), m.join(&to)).unwrap();

        let base = m.join(format!("srv/round{round}"));
        for d in 0..amounts.new_dirs {
            let dir = base.join(format!("d{d}"));
            fs::create_dir_all(&dir).unwrap();
            for f in 0..amounts.files_per_dir {
                let len = rng.up_to(MAX_NEW_FILE) as usize;
                fs::write(dir.join(format!("f{f}")), rng.bytes(len)).unwrap();
            }
        }
        symlink("d0/f0", base.join("latest")).unwrap();
        fs::hard_link(base.join("d0/f0"), base.join("d0/f0.link")).unwrap();

        self.setup.vskel().args(["unmount", VS]).assert().success();
    }

    /// Walk web1 on a fresh mount (right after a copy-up the kernel's
    /// cached attributes of the copied-up directories can be stale: the
    /// server changes their mtimes in upper/ without invalidating them).
    fn walk_view(&self) -> Listing {
        let _guard = MountGuard(self.merged.clone());
        self.setup.vskel().args(["mount", VS]).assert().success();
        let walk = view_listing(&self.merged);
        self.setup.vskel().args(["unmount", VS]).assert().success();
        walk
    }

    /// The canonical listing a complete sync of web1's current state gives:
    /// a copy of the view synced as `ref<round>` and removed again.
    fn expected(&self, round: u64) -> Listing {
        let name = format!("ref{round}");
        let ref_dir = self.setup.create_view(SKEL, &name, "10.0.1.1");
        for layer in ["upper", "static"] {
            fs::remove_dir_all(ref_dir.join(layer)).unwrap();
            let status = Command::new("cp")
                .arg("-a")
                .arg(self.view_dir.join(layer))
                .arg(ref_dir.join(layer))
                .status()
                .unwrap();
            assert!(status.success(), "cp -a {layer}: {status}");
        }
        self.setup.vskel().args(["sync", &name]).assert().success();
        let listing = canonical(&self.setup.root.join(&name), &self.skel);
        self.setup
            .vskel()
            .args(["remove-vs", &name])
            .assert()
            .success();
        listing
    }

    /// `<root>/.vskel/staging` entries.
    fn staging_leftovers(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.setup.root.join(".vskel/staging")) {
            Ok(dir) => dir.map(|e| e.unwrap().path()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("read staging: {e}"),
        }
    }
}

/// The mounted view's entries (no inode identity: FUSE has its own).
fn view_listing(merged: &Path) -> Listing {
    fingerprint(merged)
        .into_iter()
        .map(|(rel, (e, hash))| {
            let entry = Canonical {
                kind: e.kind,
                mode: e.mode,
                owner: (e.uid, e.gid),
                size: e.size,
                mtime: e.mtime,
                content: hash,
                link: e.link,
                xattrs: common::xattrs(&merged.join(&rel)),
                shares_skel: false,
                group: None,
            };
            (rel, entry)
        })
        .collect()
}

/// A synced tree's listing must match the walk of the view, all but inode
/// identity.
fn assert_matches_view(synced: &Listing, walk: &Listing, seed: u64, what: &str) {
    let mut problems = diff_paths(synced, walk);
    for (path, entry) in synced {
        match walk.get(path) {
            Some(seen) if !same_as_view(entry, seen) => problems.push(format!(
                "{}: synced {entry:?}, view {seen:?}",
                path.display()
            )),
            _ => {}
        }
    }
    assert!(
        problems.is_empty(),
        "seed {seed}: {what} differs from the view ({} problems; first tree: synced, second: \
         view): {:#?}",
        problems.len(),
        &problems[..problems.len().min(SHOWN)]
    );
}

/// Paths in only one of two listings.
fn diff_paths(a: &Listing, b: &Listing) -> Vec<String> {
    let only = |x: &Listing, y: &Listing, label: &str| -> Vec<String> {
        x.keys()
            .filter(|p| !y.contains_key(*p))
            .map(|p| format!("{}: only in the {label} tree", p.display()))
            .collect()
    };
    let mut out = only(a, b, "first");
    out.extend(only(b, a, "second"));
    out
}

/// A synced entry against the view's: all but inode identity.
fn same_as_view(synced: &Canonical, view: &Canonical) -> bool {
    Canonical {
        shares_skel: false,
        group: None,
        ..synced.clone()
    } == *view
}

/// Whether an entry found after a kill is in the state `want` (see the
/// module doc: directories without mtime, no hard-link groups).
fn same_state(found: &Canonical, want: &Canonical) -> bool {
    let same_meta = found.kind == want.kind
        && found.mode == want.mode
        && found.owner == want.owner
        && found.xattrs == want.xattrs;
    same_meta
        && (want.kind == "dir"
            || (found.size == want.size
                && found.mtime == want.mtime
                && found.content == want.content
                && found.link == want.link
                && found.shares_skel == want.shares_skel))
}

/// What a trial found in the tree.
#[derive(Default)]
struct Found {
    /// The tree's listing (empty if it is missing).
    listing: Listing,
    /// Changed entries (differing between the oldest and the latest
    /// allowed listing) in the oldest state, the latest, or one between.
    at_oldest: usize,
    at_latest: usize,
    between: usize,
    /// Entries in no allowed listing.
    strays: Vec<PathBuf>,
    /// Torn or lost entries, a missing tree.
    problems: Vec<String>,
}

impl Found {
    /// One word for the whole tree.
    fn state(&self, allowed: &[Listing]) -> String {
        let whole = |l: &Listing| {
            l.len() == self.listing.len()
                && l.iter().all(|(p, want)| {
                    self.listing
                        .get(p)
                        .is_some_and(|found| same_state(found, want))
                })
        };
        if !self.problems.is_empty() {
            "BROKEN".into()
        } else if whole(allowed.last().unwrap()) {
            "latest".into()
        } else if whole(&allowed[0]) {
            "oldest".into()
        } else if let Some(i) = allowed.iter().position(whole) {
            format!("allowed listing {i}")
        } else {
            format!(
                "mixed: {} changed entries at the oldest state, {} at the latest, {} between, \
                 {} strays {:?}",
                self.at_oldest,
                self.at_latest,
                self.between,
                self.strays.len(),
                &self.strays[..self.strays.len().min(SHOWN)]
            )
        }
    }
}

/// Check the tree against the allowed listings (oldest first).
fn inspect(tree: &Path, skel: &Path, allowed: &[Listing]) -> Found {
    let mut found = Found::default();
    if !tree.is_dir() {
        found
            .problems
            .push(format!("{} is missing", tree.display()));
        return found;
    }
    found.listing = canonical(tree, skel);
    let (oldest, latest) = (&allowed[0], allowed.last().unwrap());
    for (path, entry) in &found.listing {
        let wanted: Vec<&Canonical> = allowed.iter().filter_map(|l| l.get(path)).collect();
        if wanted.is_empty() {
            found.strays.push(path.clone());
            continue;
        }
        let matches = |l: &Listing| l.get(path).is_some_and(|w| same_state(entry, w));
        if !wanted.iter().any(|w| same_state(entry, w)) {
            found.problems.push(format!(
                "{}: torn: found {entry:?}, allowed {wanted:?}",
                path.display()
            ));
        } else if oldest.get(path) != latest.get(path) {
            match (matches(oldest), matches(latest)) {
                (_, true) => found.at_latest += 1,
                (true, false) => found.at_oldest += 1,
                (false, false) => found.between += 1,
            }
        }
    }
    for path in oldest.keys() {
        if allowed.iter().all(|l| l.contains_key(path)) && !found.listing.contains_key(path) {
            found.problems.push(format!("{}: lost", path.display()));
        }
    }
    found
}

/// The final tree must be `want` exactly.
fn assert_exactly(tree: &Listing, want: &Listing, seed: u64, when: &str) {
    let differences = diff(want, tree);
    assert!(
        differences.is_empty(),
        "seed {seed}: {when}: the tree is not the view's state ({} differences; first tree: \
         expected, second: found): {:#?}",
        differences.len(),
        &differences[..differences.len().min(SHOWN)]
    );
}

#[test]
fn a_sync_killed_at_any_moment_leaves_a_tree_the_next_sync_completes() {
    if !require_root("a_sync_killed_at_any_moment_leaves_a_tree_the_next_sync_completes") {
        return;
    }
    let seed = env_u64(SEED_ENV, DEFAULT_SEED);
    let trials = env_u64(TRIALS_ENV, DEFAULT_TRIALS);
    let _say_seed = SeedOnPanic(seed);
    eprintln!("sync_crash: seed {seed} ({SEED_ENV}), {trials} trials ({TRIALS_ENV})");
    let test_started = Instant::now();
    let mut rng = Rng(seed);

    let world = World::new();
    let _guard = MountGuard(world.merged.clone());
    let (_, first_sync) = world.sync(&[]);
    let mut window = first_sync.mul_f64(WINDOW_MARGIN).max(MIN_WINDOW);
    let old = canonical(&world.tree, &world.skel);
    let mut round = 1;
    world.change(&mut rng, round, &FIRST, &old);
    let expected = world.expected(round);
    // The method (a synced copy) against the truth (the view), once here
    // and once at the end.
    assert_matches_view(
        &expected,
        &world.walk_view(),
        seed,
        "a synced copy of the view",
    );
    let changed = diff(&old, &expected).len();
    let mut allowed = vec![old, expected];
    eprintln!(
        "first sync {first_sync:.1?}; round 1 changed {changed} entries ({:.1?} so far)",
        test_started.elapsed()
    );

    let (mut killed, mut completed) = (0, 0);
    let mut last_completed = false;
    for trial in 1..=trials {
        let mut note = String::new();
        if last_completed || rng.up_to(CHANGE_ODDS - 1) == 0 {
            round += 1;
            world.change(&mut rng, round, &LATER, allowed.last().unwrap());
            allowed.push(world.expected(round));
            note = format!("round {round} of changes, ");
        }
        let delay = Duration::from_micros(rng.up_to(window.as_micros() as u64));
        let outcome = world.sync_killed_after(delay);
        let found = inspect(&world.tree, &world.skel, &allowed);
        let how = match outcome {
            Outcome::Killed => "killed".to_string(),
            Outcome::Completed(took) => format!("completed in {took:.1?}"),
        };
        eprintln!(
            "trial {trial:2}: {note}{} allowed listings, T {}ms, delay {delay:.1?}: {how}; \
             tree: {}",
            allowed.len(),
            window.as_millis(),
            found.state(&allowed)
        );
        assert!(
            found.problems.is_empty(),
            "seed {seed}: trial {trial} (delay {delay:?}, {how}): {} problems: {:#?}",
            found.problems.len(),
            &found.problems[..found.problems.len().min(SHOWN)]
        );
        match outcome {
            Outcome::Killed => {
                killed += 1;
                last_completed = false;
                window = window.mul_f64(WINDOW_GROWTH);
            }
            Outcome::Completed(took) => {
                completed += 1;
                last_completed = true;
                let latest = allowed.pop().unwrap();
                assert_exactly(&found.listing, &latest, seed, &format!("trial {trial}"));
                allowed = vec![latest];
                window = took.mul_f64(WINDOW_MARGIN).max(MIN_WINDOW);
            }
        }
    }

    let (out, took) = world.sync(&["--format", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let counts: Vec<String> = ["linked", "copied", "removed", "unchanged"]
        .iter()
        .filter_map(|k| report["counts"][k].as_u64().map(|n| format!("{k} {n}")))
        .collect();
    eprintln!(
        "final sync {took:.1?} ({}); {killed} syncs killed, {completed} completed; \
         {} rounds of changes; {:.1?} in all",
        counts.join(", "),
        round,
        test_started.elapsed()
    );
    let latest = allowed.last().unwrap();
    assert_exactly(
        &canonical(&world.tree, &world.skel),
        latest,
        seed,
        "final sync",
    );
    // Nothing changed since: the same tree again.
    world.sync(&[]);
    assert_exactly(
        &canonical(&world.tree, &world.skel),
        latest,
        seed,
        "second final sync",
    );
    assert_matches_view(latest, &world.walk_view(), seed, "the final tree");
    let leftovers = world.staging_leftovers();
    assert!(
        leftovers.is_empty(),
        "seed {seed}: left in staging: {leftovers:?}"
    );
}
