//! Crash safety of `create-vs`, `materialize` and `remove-vs` with
//! `protect = "immutable"` (DESIGN.md section 8: a kill -9 leaves no
//! half-made vserver; protection flags lifted for a moment are restored
//! after a crash), and the regressions of issue 9's findings 3, 7, 8, 9
//! and 10.
//!
//! The three SIGKILL tests run on the Debian skel (4,671 protected global
//! files). Each trial starts the command, SIGKILLs it after a random delay
//! in `[0, T]` (`T` is 1.25 times the command's measured duration, set
//! again from each run that ends before its kill and stretched by each
//! kill, so the kills spread over all of it; a run that ends before its
//! kill counts as completed and must succeed), then runs the next command: for `create-vs` that is,
//! with odds 1 in 2, `vskel list` first (every command restores flags)
//! and then the rerun; for the others the rerun. After it:
//!
//! * no global file of the skel lacks `+i` (right after the kill some
//!   do: the test reports how often);
//! * every `<etc>/contexts/<id>` points at a registered vserver, and each
//!   vserver owns exactly the one ID its record names;
//! * no temporary file (`.nextid.tmp*`, a record's, an unlock record, a
//!   staging entry) is left;
//! * the rerun completed: it succeeds, or (when the killed run had in fact
//!   finished) says so, and the vserver is complete (same entries as an
//!   uninterrupted run made).
//!
//! `LIFECYCLE_CRASH_SEED` (decimal or 0x-hex) seeds the delays,
//! `LIFECYCLE_CRASH_TRIALS` (default 30) sets the trials per command. A
//! failure names the seed.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::lifecycle::{
    Ended, ProtectedSetup, Rng, env_u64, lacking_immutable, problems, records, run,
    run_killed_after, shape, timed,
};
use common::{Setup, require_root};

/// Environment variable with the PRNG seed.
const SEED_ENV: &str = "LIFECYCLE_CRASH_SEED";
/// Seed when `LIFECYCLE_CRASH_SEED` is unset.
const DEFAULT_SEED: u64 = 0x11fe_c7c1_e5af_e000;
/// Environment variable with the number of trials per command.
const TRIALS_ENV: &str = "LIFECYCLE_CRASH_TRIALS";
/// Trials per command when `LIFECYCLE_CRASH_TRIALS` is unset.
const DEFAULT_TRIALS: u64 = 30;
/// The kill window, relative to the command's measured duration (the
/// first uninterrupted run's, then that of each run that ended before its
/// kill).
const WINDOW_MARGIN: f64 = 1.25;
/// What each kill stretches the kill window by (so it also reaches the
/// end of runs slower than the last one that completed).
const WINDOW_GROWTH: f64 = 1.1;
/// The skel, and the vserver the trials make and remove.
const SKEL: &str = "deb";
const VS: &str = "web";
const FQDN: &str = "web.example.org";
const IP: &str = "10.0.0.2";

/// Prints the seed if the test panics.
struct SeedOnPanic(&'static str, u64);

impl Drop for SeedOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "{} failed with seed {}: rerun with {SEED_ENV}={}",
                self.0, self.1, self.1
            );
        }
    }
}

/// The common part of the three trial tests.
struct World {
    protected: ProtectedSetup,
    rng: Rng,
    seed: u64,
    trials: u64,
    /// Kills that left a global file without `+i` before the next command.
    flags_lost: u64,
    killed: u64,
    completed: u64,
}

impl World {
    fn new(test: &'static str) -> (World, SeedOnPanic) {
        let seed = env_u64(SEED_ENV, DEFAULT_SEED);
        let trials = env_u64(TRIALS_ENV, DEFAULT_TRIALS);
        eprintln!("{test}: seed {seed} ({SEED_ENV}), {trials} trials ({TRIALS_ENV})");
        let protected = ProtectedSetup::new();
        protected.setup.build_debian_skel(SKEL);
        let world = World {
            protected,
            rng: Rng(seed),
            seed,
            trials,
            flags_lost: 0,
            killed: 0,
            completed: 0,
        };
        assert!(
            world.lacking().is_empty(),
            "build-skel left global files without +i"
        );
        (world, SeedOnPanic(test, seed))
    }

    fn setup(&self) -> &Setup {
        &self.protected.setup
    }

    fn lacking(&self) -> Vec<std::path::PathBuf> {
        lacking_immutable(&self.setup().root.join(".skel").join(SKEL).join("global"))
    }

    /// Run `args` killed after a random delay in `[0, window]` (adapted
    /// afterwards); counts the kill and whether it left flags lifted.
    fn kill(&mut self, args: &[&str], window: &mut Duration) -> (Duration, Ended) {
        let delay = Duration::from_micros(self.rng.up_to(window.as_micros() as u64));
        let ended = run_killed_after(self.setup(), args, delay);
        match ended {
            Ended::Killed => {
                self.killed += 1;
                *window = window.mul_f64(WINDOW_GROWTH);
            }
            Ended::Exited(code, took) => {
                assert_eq!(
                    code, 0,
                    "seed {}: vskel {args:?} failed unkilled",
                    self.seed
                );
                self.completed += 1;
                *window = took.mul_f64(WINDOW_MARGIN);
            }
        }
        if !self.lacking().is_empty() {
            self.flags_lost += 1;
        }
        (delay, ended)
    }

    /// The invariants every command must leave.
    fn check(&self, trial: u64, what: &str) {
        let seed = self.seed;
        let lacking = self.lacking();
        assert!(
            lacking.is_empty(),
            "seed {seed}, trial {trial}, after {what}: {} global files lack +i: {:?}",
            lacking.len(),
            &lacking[..lacking.len().min(5)]
        );
        let problems = problems(self.setup());
        assert!(
            problems.is_empty(),
            "seed {seed}, trial {trial}, after {what}: {problems:#?}"
        );
    }

    fn report(&self, test: &str) {
        eprintln!(
            "{test}: {} trials, {} killed, {} completed before the kill; {} kills left global \
             files without +i, all restored by the next command",
            self.trials, self.killed, self.completed, self.flags_lost
        );
    }
}

#[test]
fn create_vs_killed_at_any_moment_leaks_no_id_and_no_unlocked_file() {
    const TEST: &str = "create_vs_killed_at_any_moment_leaks_no_id_and_no_unlocked_file";
    if !require_root(TEST) {
        return;
    }
    let (mut world, _seed) = World::new(TEST);
    let create = ["create-vs", SKEL, VS, FQDN, IP];
    // An uninterrupted run: its duration and the tree it makes.
    let took = timed(world.setup(), &create);
    let want = shape(&world.setup().root.join(VS));
    timed(world.setup(), &["remove-vs", VS]);
    let mut window = took.mul_f64(WINDOW_MARGIN);
    eprintln!("create-vs takes {took:.1?}; kills within {window:.1?}");

    for trial in 1..=world.trials {
        let (delay, ended) = world.kill(&create, &mut window);
        let committed = records(world.setup()).get(VS).is_some_and(|r| !r.creating);
        if world.rng.up_to(1) == 0 {
            let (code, stderr) = run(world.setup(), &["list"]);
            assert_eq!(code, 0, "seed {}: list: {stderr}", world.seed);
            world.check_flags_only(trial, "vskel list");
        }
        let (code, stderr) = run(world.setup(), &create);
        let rerun_ok = code == 0 || (committed && stderr.contains("exists already"));
        assert!(
            rerun_ok,
            "seed {}, trial {trial} (delay {delay:?}, {ended:?}): the rerun failed ({code}): \
             {stderr}",
            world.seed
        );
        world.check(trial, "the rerun");
        assert_eq!(
            shape(&world.setup().root.join(VS)),
            want,
            "seed {}, trial {trial}: the tree differs from an uninterrupted run's",
            world.seed
        );
        let (code, stderr) = run(world.setup(), &["remove-vs", VS]);
        assert_eq!(
            code, 0,
            "seed {}, trial {trial}: remove-vs: {stderr}",
            world.seed
        );
        world.check(trial, "remove-vs");
    }
    world.report(TEST);
}

impl World {
    /// Only the flags (a command that does not allocate, such as `list`,
    /// leaves the other leftovers to the rerun).
    fn check_flags_only(&self, trial: u64, what: &str) {
        let lacking = self.lacking();
        assert!(
            lacking.is_empty(),
            "seed {}, trial {trial}, after {what}: {} global files lack +i: {:?}",
            self.seed,
            lacking.len(),
            &lacking[..lacking.len().min(5)]
        );
    }
}

#[test]
fn remove_vs_killed_at_any_moment_is_finished_by_the_next_one() {
    const TEST: &str = "remove_vs_killed_at_any_moment_is_finished_by_the_next_one";
    if !require_root(TEST) {
        return;
    }
    let (mut world, _seed) = World::new(TEST);
    let create = ["create-vs", SKEL, VS, FQDN, IP];
    let remove = ["remove-vs", VS];
    timed(world.setup(), &create);
    let took = timed(world.setup(), &remove);
    let mut window = took.mul_f64(WINDOW_MARGIN);
    eprintln!("remove-vs takes {took:.1?}; kills within {window:.1?}");

    for trial in 1..=world.trials {
        let (code, stderr) = run(world.setup(), &create);
        assert_eq!(
            code, 0,
            "seed {}, trial {trial}: create-vs: {stderr}",
            world.seed
        );
        let (delay, ended) = world.kill(&remove, &mut window);
        let nothing_left = !records(world.setup()).contains_key(VS)
            && !world.setup().root.join(VS).exists()
            && !world.setup().etc.join(format!("{VS}.conf")).exists();
        let (code, stderr) = run(world.setup(), &remove);
        let rerun_ok = code == 0 || (nothing_left && stderr.contains("no vserver named"));
        assert!(
            rerun_ok,
            "seed {}, trial {trial} (delay {delay:?}, {ended:?}): the rerun failed ({code}): \
             {stderr}",
            world.seed
        );
        world.check(trial, "the rerun");
        let setup = world.setup();
        assert!(
            !setup.root.join(VS).exists()
                && !setup.etc.join(format!("{VS}.conf")).exists()
                && !records(setup).contains_key(VS),
            "seed {}, trial {trial}: something of {VS} is left",
            world.seed
        );
    }
    world.report(TEST);
}

#[test]
fn materialize_killed_at_any_moment_is_finished_by_the_next_one() {
    const TEST: &str = "materialize_killed_at_any_moment_is_finished_by_the_next_one";
    if !require_root(TEST) {
        return;
    }
    let (mut world, _seed) = World::new(TEST);
    let create = ["create-vs", "--view", SKEL, VS, FQDN, IP];
    let materialize = ["materialize", VS];
    timed(world.setup(), &create);
    let took = timed(world.setup(), &materialize);
    let want = shape(&world.setup().root.join(VS));
    timed(world.setup(), &["remove-vs", VS]);
    let mut window = took.mul_f64(WINDOW_MARGIN);
    eprintln!("materialize takes {took:.1?}; kills within {window:.1?}");

    for trial in 1..=world.trials {
        let (code, stderr) = run(world.setup(), &create);
        assert_eq!(
            code, 0,
            "seed {}, trial {trial}: create-vs: {stderr}",
            world.seed
        );
        let (delay, ended) = world.kill(&materialize, &mut window);
        let setup = world.setup();
        let done = records(setup).get(VS).is_some_and(|r| r.kind == "tree")
            && !setup.root.join(".views").join(VS).exists();
        let (code, stderr) = run(setup, &materialize);
        let rerun_ok = code == 0 || (done && stderr.contains("not a view"));
        assert!(
            rerun_ok,
            "seed {}, trial {trial} (delay {delay:?}, {ended:?}): the rerun failed ({code}): \
             {stderr}",
            world.seed
        );
        world.check(trial, "the rerun");
        let setup = world.setup();
        let record = records(setup).remove(VS).expect("a record");
        let tree = setup.root.join(VS);
        assert_eq!(record.kind, "tree", "seed {}, trial {trial}", world.seed);
        assert_eq!(record.root, tree, "seed {}, trial {trial}", world.seed);
        assert!(!setup.root.join(".views").join(VS).exists());
        let link = setup
            .etc
            .join("contexts")
            .join(record.context.unwrap().to_string());
        assert_eq!(fs::read_link(&link).unwrap(), tree, "seed {}", world.seed);
        assert_eq!(
            shape(&tree),
            want,
            "seed {}, trial {trial}: the tree differs",
            world.seed
        );
        let (code, stderr) = run(setup, &["remove-vs", VS]);
        assert_eq!(
            code, 0,
            "seed {}, trial {trial}: remove-vs: {stderr}",
            world.seed
        );
        world.check(trial, "remove-vs");
    }
    world.report(TEST);
}

/// Finding 7: `remove-vs` during a sync must not leave an orphan tree. A
/// first (full) sync of the Debian view runs; once it is building (its
/// staging entry exists) `remove-vs` runs. If the sync was still running
/// when remove-vs returned, remove-vs must have refused, naming the sync;
/// in every case no tree may be left without a record.
#[test]
fn remove_vs_during_a_sync_is_refused_and_leaves_no_orphan() {
    const TEST: &str = "remove_vs_during_a_sync_is_refused_and_leaves_no_orphan";
    if !require_root(TEST) {
        return;
    }
    /// Attempts at catching the sync running (each makes a fresh view).
    const ATTEMPTS: usize = 20;
    let setup = Setup::new("");
    setup.build_debian_skel(SKEL);
    let staging = setup.root.join(".vskel/staging");
    let mut caught = 0;
    for attempt in 1..=ATTEMPTS {
        setup.create_view(SKEL, VS, IP);
        let mut sync = setup.vskel_process().args(["sync", VS]).spawn().unwrap();
        // Wait for the sync to build (or to end).
        let building = loop {
            let busy = fs::read_dir(&staging)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("sync-"));
            if busy {
                break true;
            }
            if sync.try_wait().unwrap().is_some() {
                break false;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let (code, stderr) = run(&setup, &["remove-vs", VS]);
        let sync_running = building && sync.try_wait().unwrap().is_none();
        assert!(
            sync.wait().unwrap().success() || code == 0,
            "the sync failed"
        );
        let tree = setup.root.join(VS);
        let registered = setup
            .root
            .join(".vskel/vservers")
            .join(format!("{VS}.toml"));
        assert!(
            !tree.exists() || registered.exists(),
            "attempt {attempt}: {} is left without a record (remove-vs exit {code}: {stderr})",
            tree.display()
        );
        if sync_running {
            caught += 1;
            assert_eq!(code, 1, "remove-vs during a sync: {stderr}");
            assert!(
                stderr.contains("busy") && stderr.contains("sync"),
                "{stderr}"
            );
            assert!(
                tree.is_dir() && registered.exists(),
                "the synced vserver is whole"
            );
        }
        if registered.exists() {
            let (code, stderr) = run(&setup, &["remove-vs", VS]);
            assert_eq!(code, 0, "{stderr}");
        }
        assert!(!tree.exists(), "attempt {attempt}: remove-vs left the tree");
        if caught > 0 {
            break;
        }
    }
    assert!(
        caught > 0,
        "in {ATTEMPTS} attempts remove-vs never ran during a sync"
    );
}

/// Finding 8: a directory under the root that is no registered vserver is
/// not removed, unless `--force-unregistered` names it.
#[test]
fn remove_vs_refuses_a_directory_that_is_no_vserver() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.2");
    let home = setup.root.join("home");
    fs::create_dir_all(home.join("alice")).unwrap();
    fs::write(home.join("alice/notes"), "keep me\n").unwrap();

    let (code, stderr) = run(&setup, &["remove-vs", "home"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("not a vserver vskel made") && stderr.contains("--force-unregistered home"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(home.join("alice/notes")).unwrap(),
        "keep me\n"
    );

    // The flag is for unregistered directories only, and never follows a
    // symlink out.
    let (code, stderr) = run(&setup, &["remove-vs", "--force-unregistered", "web1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(setup.root.join("web1/bin").is_dir());
    let outside = setup.dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("f"), "x").unwrap();
    symlink(&outside, setup.root.join("link")).unwrap();
    let (code, stderr) = run(&setup, &["remove-vs", "--force-unregistered", "link"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(outside.join("f").exists() && setup.root.join("link").exists());
    for hidden in [".skel", ".views", ".vskel", ".x"] {
        let (code, stderr) = run(&setup, &["remove-vs", "--force-unregistered", hidden]);
        assert_eq!(code, 2, "{hidden}: {stderr}");
    }
    assert!(setup.root.join(".skel/base/global").is_dir());

    let (code, stderr) = run(&setup, &["remove-vs", "--force-unregistered", "home"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!home.exists());
    assert!(setup.root.join("web1/bin").is_dir(), "web1 is untouched");
}

/// Finding 9, the state a killed create-vs left with older versions, made
/// by hand: a dangling `contexts/<id>` for the name being created, a
/// second link to a registered vserver, and a `nextid` temporary. The next
/// create-vs takes them back: each vserver owns one ID.
#[test]
fn ids_left_by_killed_runs_are_taken_back() {
    let setup = Setup::new("");
    setup.build_example_skel("base");
    setup.create("base", "web1", "10.0.0.2");
    let contexts = setup.etc.join("contexts");
    symlink(setup.root.join("web2"), contexts.join("60")).unwrap();
    symlink(setup.root.join("web1"), contexts.join("70")).unwrap();
    fs::write(contexts.join(".nextid.tmp4242"), "61\n").unwrap();
    fs::write(contexts.join("nextid"), "61\n").unwrap();
    // A link of another tool, to a tree vskel has no record of: kept.
    fs::create_dir(setup.root.join("legacy")).unwrap();
    symlink(setup.root.join("legacy"), contexts.join("80")).unwrap();

    setup.create("base", "web2", "10.0.0.3");
    let mut names: Vec<String> = fs::read_dir(&contexts)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".lock", "50", "61", "80", "nextid"]);
    assert_eq!(
        fs::read_link(contexts.join("61")).unwrap(),
        setup.root.join("web2")
    );
    let problems: Vec<String> = problems(&setup)
        .into_iter()
        .filter(|p| !p.contains("context 80 "))
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Finding 10, the exact state a materialize killed between saving the
/// record and moving the context link left (older versions saved the
/// record first): the record says "tree", the link still points at the
/// view's `merged/`, the view directory is there. The rerun completes.
#[test]
fn materialize_finishes_a_run_killed_after_its_record_was_saved() {
    if !require_root("materialize_finishes_a_run_killed_after_its_record_was_saved") {
        return;
    }
    let setup = Setup::new("");
    setup.build_example_skel("base");
    let view = setup.create_view("base", "web1", "10.0.0.2");
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    let record = setup.root.join(".vskel/vservers/web1.toml");
    let text = fs::read_to_string(&record).unwrap();
    let merged = view.join("merged");
    assert!(text.contains("kind = \"view\"") && text.contains(merged.to_str().unwrap()));
    let crashed = text
        .replace("kind = \"view\"", "kind = \"tree\"")
        .replace(merged.to_str().unwrap(), tree.to_str().unwrap());
    fs::write(&record, crashed).unwrap();
    let link = setup.etc.join("contexts/50");
    assert_eq!(fs::read_link(&link).unwrap(), merged);

    setup
        .vskel()
        .args(["materialize", "web1"])
        .assert()
        .success();
    assert_eq!(fs::read_link(&link).unwrap(), tree);
    assert!(!view.exists(), "the view directory is gone");
    assert!(tree.join("bin/hello").exists());
    assert!(problems(&setup).is_empty(), "{:#?}", problems(&setup));
    setup.vskel().args(["remove-vs", "web1"]).assert().success();
    assert!(!tree.exists() && !link.exists());
}

/// Finding 3's visibility: `vskel list --skels` counts the immutable
/// global files of each skel and warns about a protected skel's files
/// that lack the flag.
#[test]
fn list_skels_shows_global_files_that_lost_their_flag() {
    if !require_root("list_skels_shows_global_files_that_lost_their_flag") {
        return;
    }
    let protected = ProtectedSetup::new();
    let setup = &protected.setup;
    let skel = setup.build_example_skel("base");
    let global = skel.join("global");
    let total = count_files(&global);
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "base  immutable: {total} of {total} global files  generation 1: "
        )),
        "{stdout}"
    );
    let status = std::process::Command::new("chattr")
        .arg("-i")
        .arg(global.join("bin/hello"))
        .status()
        .unwrap();
    assert!(status.success());
    // (bin/hello may have more names in global/: each counts.)
    let lacking = lacking_immutable(&global).len() as u64;
    assert!(lacking > 0);
    let out = setup.vskel().args(["list", "--skels"]).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "base  immutable: {} of {total} global files  generation ",
            total - lacking
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("lack the immutable attribute") && stderr.contains("bin/hello"),
        "{stderr}"
    );
    let out = setup
        .vskel()
        .args(["list", "--skels", "--format", "json"])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["protection"][0]["immutable"], total - lacking);
    let shown = json["protection"][0]["lacking"].as_array().unwrap();
    assert!(shown.iter().any(|p| p == "bin/hello"), "{shown:?}");
}

fn count_files(dir: &Path) -> u64 {
    let mut n = 0;
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ft = entry.file_type().unwrap();
        if ft.is_dir() {
            n += count_files(&entry.path());
        } else if ft.is_file() {
            n += 1;
        }
    }
    n
}
