//! Benchmark: `vskel merge-skel` and `vskel split-skel` on a real Debian
//! minbase skel (issue 12 item 2).
//!
//! Builds skel `minbase` once from the `VSKEL_ROOTFS` fixture (default
//! `/var/tmp/vskel-fixtures/rootfs-bookworm`), then `VSKEL_BENCH_RUNS`
//! times (default 5; after one untimed warm-up round, a `sync` before each
//! timed command): `merge-skel minbase`, 100 files under `usr/share`
//! replaced by rename and one conffile added in the temporary vserver
//! (untimed, as dpkg would), `split-skel minbase`. It prints
//! median/min/max of each and the load average. A measurement, not a
//! test: nothing fails on a slow result.
//!
//! Run (as root): `cargo bench --bench merge_split`.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{MS_PER_S, Setup, run_checked, summary, timed, tree_stats};

/// Rounds when `VSKEL_BENCH_RUNS` is unset.
const DEFAULT_RUNS: usize = 5;
/// Name of the skel built for the benchmark.
const SKEL: &str = "minbase";
/// Files replaced in the temporary vserver per round.
const CHANGED: usize = 100;

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("merge_split benchmark: needs root; skipped");
        return;
    }
    let runs = common::runs(DEFAULT_RUNS);
    let rootfs = common::rootfs();
    let tmp = tempfile::Builder::new()
        .prefix("vskel-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir under CARGO_TARGET_TMPDIR");
    let setup = Setup::new(tmp.path());
    let mut build = setup.vskel();
    build.args(["build-skel", SKEL, "--from"]).arg(&rootfs);
    run_checked(&mut build, "vskel build-skel");
    let skel = setup.root.join(".skel").join(SKEL);
    let (entries, bytes) = tree_stats(&skel);
    let temp = setup.root.join(format!("tmp_skel_{SKEL}"));

    let mut merges = Vec::new();
    let mut splits = Vec::new();
    for round in 0..=runs {
        let merge = round_step(&setup, "merge-skel");
        change(&temp, round);
        let split = round_step(&setup, "split-skel");
        if round > 0 {
            merges.push(merge.as_secs_f64() * MS_PER_S);
            splits.push(split.as_secs_f64() * MS_PER_S);
        }
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "merge-skel / split-skel on {SKEL} ({entries} entries, {:.0} MB), {runs} rounds, \
         {CHANGED} files changed per round; load average {}",
        bytes as f64 / 1e6,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!("{:<14}{:>9}{:>9}{:>9}", "", "median", "min", "max");
    for (name, t) in [("merge-skel", &merges), ("split-skel", &splits)] {
        let (med, min, max) = summary(t);
        println!("{name:<14}{med:>7.1}ms{min:>7.1}ms{max:>7.1}ms");
    }
    drop(setup); // unlocks the protected files, so the directory can go
    tmp.close().expect("remove the benchmark's temp dir");
}

fn round_step(setup: &Setup, command: &str) -> Duration {
    let _ = Command::new("sync").status();
    let mut cmd = setup.vskel();
    cmd.args([command, SKEL]);
    timed(&mut cmd, command)
}

/// Replace `CHANGED` files under usr/share by rename (new inodes, as dpkg
/// does) and add a conffile.
fn change(temp: &Path, round: usize) {
    let mut files = Vec::new();
    let mut dirs = vec![temp.join("usr/share")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("read usr/share") {
            let entry = entry.expect("entry");
            let ft = entry.file_type().expect("type");
            if ft.is_dir() {
                dirs.push(entry.path());
            } else if ft.is_file() && files.len() < CHANGED {
                files.push(entry.path());
            }
        }
        if files.len() >= CHANGED {
            break;
        }
    }
    for f in &files {
        let new = f.with_extension("vskel-bench-new");
        let mut data = fs::read(f).expect("read");
        data.extend_from_slice(format!("\nround {round}\n").as_bytes());
        fs::write(&new, data).expect("write");
        fs::rename(&new, f).expect("rename");
    }
    fs::write(
        temp.join("etc/vskel-bench.conf"),
        format!("round={round}\n"),
    )
    .expect("conffile");
}
