//! Benchmark: `vskel sync` (DESIGN.md section 6), the first sync of a view
//! against `cp -al`, and later syncs against the size of the tree.
//!
//! Skels, each built once with `vskel build-skel` (untimed):
//!
//! * `minbase`: the Debian minbase tree (the `VSKEL_ROOTFS` fixture,
//!   default `/var/tmp/vskel-fixtures/rootfs-bookworm`, ~6.7k entries);
//! * `big`: the same tree with compare-overlays.sh's /usr copy
//!   (`$VSKEL_FIXTURES/usr-copy`, `cp -a /usr` grown to
//!   `BENCH_USR_ENTRIES`, default 130,000 entries; made once if missing)
//!   hard-linked in at `usr/big` of the source, so its global/ holds ~140k
//!   entries.
//!
//! For each skel:
//!
//! 1. First sync, in paired runs with alternating order, a `sync(2)` before
//!    each timed command and one untimed warm-up run of each:
//!    * A: `vskel sync bench-first` of a fresh view (`create-vs --view`
//!      before, `remove-vs` after, both untimed);
//!    * B: `cp -al` of the skel's global/ into a fresh directory of the same
//!      filesystem (`rm -rf` after, untimed).
//!
//!    Medians and the per-pair ratio A/B; the goal is A/B <= 1.2.
//! 2. Later syncs of view `bench-inc` (synced once, untimed):
//!    * nothing changed: `vskel sync bench-inc`, timed;
//!    * 10 changed: mount the view, append a line to 10 of its global files
//!      (other files each run), unmount (untimed), then `vskel sync
//!      bench-inc`, timed. The goal is under 50 ms on `big`, i.e. a cost
//!      that does not grow with the tree.
//!
//!    The counts the last sync of each kind reported (`--format json`) are
//!    printed too.
//!
//! It is a measurement, not a test: nothing fails on a slow result.
//!
//! Run (as root): `cargo bench --bench sync`. `VSKEL_BENCH_RUNS=N` sets the
//! number of pairs and of timed later syncs of each kind (default 7);
//! `VSKEL_BENCH_SKELS=minbase,big` picks the skels (default both).

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{MS_PER_S, MountGuard, Setup, run_checked, summary, timed, timed_output};

/// Runs when `VSKEL_BENCH_RUNS` is unset.
const DEFAULT_RUNS: usize = 7;
/// Environment variable with the skels to measure.
const SKELS_ENV: &str = "VSKEL_BENCH_SKELS";
/// The skels, in order.
const SKELS: [&str; 2] = ["minbase", "big"];
/// Where the /usr copy goes in the big skel's source tree.
const BIG_USR: &str = "usr/big";
/// The fresh view of the first-sync runs, and the one synced again.
const FIRST_VS: &str = "bench-first";
const INC_VS: &str = "bench-inc";
/// Files changed before each "10 changed" sync.
const CHANGED_FILES: usize = 10;
/// Untimed runs of each first-sync variant before the measured pairs.
const WARMUP_RUNS: usize = 1;
/// The goals, for the table.
const GOAL_FIRST_RATIO: f64 = 1.2;
const GOAL_CHANGED_MS: f64 = 50.0;
/// Count fields reported by `vskel sync --format json` (today's build has
/// linked, copied, dirs, bytes; the incremental one linked, copied,
/// removed, unchanged); shown when present.
const COUNT_FIELDS: [&str; 6] = ["linked", "copied", "removed", "unchanged", "dirs", "bytes"];

/// What was measured on one skel.
struct Figures {
    skel: &'static str,
    entries: u64,
    first_sync: Vec<f64>,
    cp_al: Vec<f64>,
    unchanged: Vec<f64>,
    unchanged_counts: String,
    changed: Vec<f64>,
    changed_counts: String,
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("sync benchmark: needs root (sync keeps owners, mounts views); skipped");
        return;
    }
    let runs = common::runs(DEFAULT_RUNS);
    let wanted = std::env::var(SKELS_ENV).unwrap_or_else(|_| SKELS.join(","));
    for name in wanted.split(',') {
        assert!(SKELS.contains(&name), "{SKELS_ENV}: unknown skel {name:?}");
    }
    let rootfs = common::rootfs();
    let load_at_start = load_average();

    let tmp = tempfile::Builder::new()
        .prefix("vskel-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir under CARGO_TARGET_TMPDIR");
    let setup = Setup::new(tmp.path());
    let mut all = Vec::new();
    for skel in SKELS
        .into_iter()
        .filter(|s| wanted.split(',').any(|w| w == *s))
    {
        let source = if skel == "big" {
            big_source(tmp.path(), &rootfs)
        } else {
            rootfs.clone()
        };
        let (took, _) = timed_output(
            setup
                .vskel()
                .args(["build-skel", skel, "--from"])
                .arg(&source),
            "vskel build-skel",
        );
        let global = setup.skel_dir(skel, "global");
        let entries = common::tree_stats(&setup.root.join(".skel").join(skel)).0;
        println!(
            "build-skel {skel} ({entries} entries): {:.1}s (untimed below)",
            took.as_secs_f64()
        );
        let (first_sync, cp_al) = first_sync_pairs(&setup, skel, &global, tmp.path(), runs);
        let later = later_syncs(&setup, skel, &global, runs);
        all.push(Figures {
            skel,
            entries,
            first_sync,
            cp_al,
            unchanged: later.0,
            unchanged_counts: later.1,
            changed: later.2,
            changed_counts: later.3,
        });
        setup.run(&["remove-vs", INC_VS]);
    }
    report(&all, runs, &load_at_start);
    drop(setup); // unlocks the protected files, so the directory can go
    tmp.close().expect("remove the benchmark's temp dir");
}

/// The big skel's source: the Debian tree plus the /usr copy, as hard
/// links (cheap; build-skel copies it).
fn big_source(tmp: &Path, rootfs: &Path) -> PathBuf {
    let usr = common::usr_copy();
    let source = tmp.join("big-source");
    let mut cp = Command::new("cp");
    cp.arg("-al").arg(rootfs).arg(&source);
    run_checked(&mut cp, "cp -al rootfs");
    let mut cp = Command::new("cp");
    cp.arg("-al").arg(&usr).arg(source.join(BIG_USR));
    run_checked(&mut cp, "cp -al usr-copy");
    source
}

/// Paired first syncs and `cp -al` runs, in ms.
fn first_sync_pairs(
    setup: &Setup,
    skel: &str,
    global: &Path,
    tmp: &Path,
    runs: usize,
) -> (Vec<f64>, Vec<f64>) {
    let cpal = tmp.join("cpal");
    let first_sync = || -> f64 {
        setup.run(&[
            "create-vs",
            "--view",
            skel,
            FIRST_VS,
            "bench-first.example.org",
            "10.0.0.2",
        ]);
        let mut sync = setup.vskel();
        sync.args(["sync", FIRST_VS]);
        let took = timed(&mut sync, "vskel sync (first)");
        setup.run(&["remove-vs", FIRST_VS]);
        took.as_secs_f64() * MS_PER_S
    };
    let cp_al = || -> f64 {
        let mut cp = Command::new("cp");
        cp.arg("-al").arg(global).arg(&cpal);
        let took = timed(&mut cp, "cp -al global");
        let mut rm = Command::new("rm");
        rm.arg("-rf").arg(&cpal);
        run_checked(&mut rm, "rm -rf");
        took.as_secs_f64() * MS_PER_S
    };
    for _ in 0..WARMUP_RUNS {
        first_sync();
        cp_al();
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for pair in 0..runs {
        // Reverse the order every other pair.
        if pair % 2 == 0 {
            a.push(first_sync());
            b.push(cp_al());
        } else {
            b.push(cp_al());
            a.push(first_sync());
        }
    }
    (a, b)
}

/// Later syncs of view `bench-inc`: nothing changed, then 10 files changed
/// through the mounted view; times in ms and the last counts of each.
fn later_syncs(
    setup: &Setup,
    skel: &str,
    global: &Path,
    runs: usize,
) -> (Vec<f64>, String, Vec<f64>, String) {
    setup.run(&[
        "create-vs",
        "--view",
        skel,
        INC_VS,
        "bench-inc.example.org",
        "10.0.0.3",
    ]);
    setup.run(&["sync", INC_VS]);
    let sync = || -> (f64, String) {
        let mut cmd = setup.vskel();
        cmd.args(["sync", INC_VS, "--format", "json"]);
        let (took, out) = timed_output(&mut cmd, "vskel sync");
        (took.as_secs_f64() * MS_PER_S, counts(&out))
    };

    let mut unchanged = Vec::new();
    let mut unchanged_counts = String::new();
    for _ in 0..runs {
        let (ms, c) = sync();
        unchanged.push(ms);
        unchanged_counts = c;
    }

    let files = regular_files(global);
    assert!(
        files.len() > CHANGED_FILES * runs,
        "{}: too few files",
        global.display()
    );
    // Spread over the tree, different ones each run.
    let stride = files.len() / (CHANGED_FILES * runs + 1);
    let merged = setup.root.join(".views").join(INC_VS).join("merged");
    let mut changed = Vec::new();
    let mut changed_counts = String::new();
    for run in 0..runs {
        {
            let _guard = MountGuard(merged.clone());
            setup.run(&["mount", INC_VS]);
            for k in 0..CHANGED_FILES {
                let rel = &files[(run * CHANGED_FILES + k + 1) * stride];
                let path = merged.join(rel);
                let mut f = fs::OpenOptions::new()
                    .append(true)
                    .open(&path)
                    .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
                writeln!(f, "bench run {run}")
                    .unwrap_or_else(|e| panic!("append to {}: {e}", path.display()));
            }
            setup.run(&["unmount", INC_VS]);
        }
        let (ms, c) = sync();
        changed.push(ms);
        changed_counts = c;
    }
    (unchanged, unchanged_counts, changed, changed_counts)
}

/// Regular files below `dir`, relative, sorted.
fn regular_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let path = dir.join(&rel);
        let listing =
            fs::read_dir(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        for entry in listing {
            let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let kind = entry
                .file_type()
                .unwrap_or_else(|e| panic!("stat {:?}: {e}", entry.path()));
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                out.push(child);
            }
        }
    }
    out.sort();
    out
}

/// The `counts` of a `vskel sync --format json` report, as `name n, ...`.
fn counts(json: &[u8]) -> String {
    let report: serde_json::Value =
        serde_json::from_slice(json).unwrap_or_else(|e| panic!("vskel sync --format json: {e}"));
    COUNT_FIELDS
        .iter()
        .filter_map(|k| report["counts"][k].as_u64().map(|n| format!("{k} {n}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The 1, 5 and 15 minute load averages (the machine is often shared: a
/// concurrent build makes every figure slower and noisier).
fn load_average() -> String {
    let load = fs::read_to_string("/proc/loadavg").expect("load average");
    load.split(' ').take(3).collect::<Vec<_>>().join(" ")
}

fn report(all: &[Figures], runs: usize, load_at_start: &str) {
    let cpus = std::thread::available_parallelism().expect("number of cpus");
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    println!();
    println!(
        "vskel sync, {runs} runs, {cpus} cpus, kernel {}, load {load_at_start} at the start, \
         {} at the end",
        kernel.trim(),
        load_average()
    );
    println!();
    println!(
        "first sync of a fresh view vs cp -al of the skel's global/ (goal: ratio <= {GOAL_FIRST_RATIO})"
    );
    println!(
        "{:<8}{:>9}{:>25}{:>25}{:>25}",
        "skel", "entries", "sync ms med (min-max)", "cp -al med (min-max)", "ratio med (min-max)"
    );
    for f in all {
        let ratios: Vec<f64> = f
            .first_sync
            .iter()
            .zip(&f.cp_al)
            .map(|(a, b)| a / b)
            .collect();
        println!(
            "{:<8}{:>9}{:>25}{:>25}{:>25}",
            f.skel,
            f.entries,
            ms_cell(&f.first_sync),
            ms_cell(&f.cp_al),
            ratio_cell(&ratios)
        );
    }
    println!();
    println!(
        "later syncs (goal: {CHANGED_FILES} changed files < {GOAL_CHANGED_MS} ms on big, \
         whatever the tree's size)"
    );
    println!(
        "{:<8}{:>9}{:>30}{:>30}",
        "skel", "entries", "unchanged ms med (min-max)", "10 changed ms med (min-max)"
    );
    for f in all {
        println!(
            "{:<8}{:>9}{:>30}{:>30}",
            f.skel,
            f.entries,
            ms_cell(&f.unchanged),
            ms_cell(&f.changed)
        );
    }
    println!();
    for f in all {
        println!(
            "{}: last unchanged sync: {}; last 10-changed sync: {}",
            f.skel, f.unchanged_counts, f.changed_counts
        );
    }
}

fn ms_cell(v: &[f64]) -> String {
    let (med, min, max) = summary(v);
    format!("{med:.1} ({min:.1}-{max:.1})")
}

fn ratio_cell(v: &[f64]) -> String {
    let (med, min, max) = summary(v);
    format!("{med:.2} ({min:.2}-{max:.2})")
}
