//! Benchmark: `vskel verify --all` on 20 tree vservers of a real Debian
//! minbase skel (issue 13 item 2).
//!
//! Builds skel `minbase` once from the `VSKEL_ROOTFS` fixture (default
//! `/var/tmp/vskel-fixtures/rootfs-bookworm`) and makes 20 tree vservers
//! of it, then `VSKEL_BENCH_RUNS` times (default 5; a `sync` before each
//! timed command): `verify --all` with a cold hash cache (the skel's
//! `generations/verified` removed: every shared file is hashed once),
//! again with the cache warm (nothing hashed), and `verify` of one
//! vserver, warm. It prints median/min/max of each and the load average.
//! A measurement, not a test: nothing fails on a slow result.
//!
//! Run (as root): `cargo bench --bench verify`.

mod common;

use std::fs;
use std::process::Command;
use std::time::Duration;

use common::{MS_PER_S, Setup, run_checked, summary, timed, tree_stats};

/// Rounds when `VSKEL_BENCH_RUNS` is unset.
const DEFAULT_RUNS: usize = 5;
/// Name of the skel built for the benchmark.
const SKEL: &str = "minbase";
/// Tree vservers made of it.
const VSERVERS: usize = 20;

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("verify benchmark: needs root; skipped");
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
    let (entries, bytes) = tree_stats(&skel.join("global"));
    for i in 0..VSERVERS {
        let name = format!("vs{i}");
        let ip = format!("10.1.0.{}", i + 2);
        setup.run(&[
            "create-vs",
            SKEL,
            &name,
            &format!("{name}.example.org"),
            &ip,
        ]);
    }
    let cache = skel.join("generations/verified");
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut one = Vec::new();
    for _ in 0..runs {
        match fs::remove_file(&cache) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                panic!("remove {}: {e}", cache.display())
            }
            _ => {}
        }
        cold.push(ms(verify(&setup, &["--all"])));
        warm.push(ms(verify(&setup, &["--all"])));
        one.push(ms(verify(&setup, &["vs0"])));
    }
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "verify on {VSERVERS} tree vservers of {SKEL} (global: {entries} entries, {:.0} MB), {runs} \
         rounds; load average {}",
        bytes as f64 / 1e6,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    );
    println!("{:<26}{:>9}{:>9}{:>9}", "", "median", "min", "max");
    for (name, t) in [
        ("verify --all, cold cache", &cold),
        ("verify --all, warm cache", &warm),
        ("verify vs0, warm cache", &one),
    ] {
        let (med, min, max) = summary(t);
        println!("{name:<26}{med:>7.1}ms{min:>7.1}ms{max:>7.1}ms");
    }
    drop(setup); // clears the immutable attribute below the temp dir
    tmp.close().expect("remove the benchmark's temp dir");
}

fn verify(setup: &Setup, args: &[&str]) -> Duration {
    let mut cmd: Command = setup.vskel();
    cmd.arg("verify").args(args);
    timed(&mut cmd, "vskel verify")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * MS_PER_S
}
