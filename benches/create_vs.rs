//! Benchmark: `vskel create-vs` against `cp -al` on a real Debian minbase skel.
//!
//! Builds skel `minbase` once from a debootstrap'ed Debian tree (the
//! `VSKEL_ROOTFS` fixture, default `/var/tmp/vskel-fixtures/rootfs-bookworm`,
//! made by `../shared/fixtures/make-rootfs.sh` when missing), then times, in
//! paired runs with alternating order and a `sync` before each timed command
//! (after one untimed warm-up run of each):
//!
//! * A: `vskel create-vs minbase bench-vs …` (then an untimed `remove-vs`);
//! * B: `cp -al` of the skel's global/ tree (the comparison the issue asks
//!   for; goal: A/B <= 1.0);
//! * C: `cp -al global/. dst && cp -a local/. dst`, the classic shell
//!   equivalent of create-vs.
//!
//! It prints median/min/max per variant and the per-pair ratios A/B and A/C.
//! It is a measurement, not a test: nothing fails on a slow result.
//!
//! Run (as root): `cargo bench --bench create_vs`; `VSKEL_BENCH_RUNS=N` sets
//! the number of pairs (default 10).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{MS_PER_S, Setup, run_checked, summary, timed, tree_stats};

/// Paired runs when `VSKEL_BENCH_RUNS` is unset.
const DEFAULT_RUNS: usize = 10;
/// Name of the skel built for the benchmark.
const SKEL: &str = "minbase";
/// Name, FQDN and IP of the vserver created in each run.
const VS_NAME: &str = "bench-vs";
const VS_FQDN: &str = "bench-vs.example.org";
const VS_IP: &str = "10.0.0.2";
/// Untimed runs of every variant before the measured pairs (cold caches,
/// first allocations).
const WARMUP_RUNS: usize = 1;
/// Bytes per MB in the report.
const BYTES_PER_MB: f64 = 1e6;

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("create_vs benchmark: needs root (create-vs keeps owners); skipped");
        return;
    }
    let runs = common::runs(DEFAULT_RUNS);
    let rootfs = common::rootfs();

    let tmp = tempfile::Builder::new()
        .prefix("vskel-bench-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir under CARGO_TARGET_TMPDIR");
    let bench = Bench::new(tmp.path());

    let started = Instant::now();
    let mut build = bench.vskel();
    build.args(["build-skel", SKEL, "--from"]).arg(&rootfs);
    run_checked(&mut build, "vskel build-skel");
    let build_time = started.elapsed();
    let skel = bench.setup.root.join(".skel").join(SKEL);
    let (entries, bytes) = tree_stats(&skel);
    println!(
        "build-skel {SKEL} from {}: {:.1}s (untimed below)",
        rootfs.display(),
        build_time.as_secs_f64()
    );

    let variants: [(&str, Variant); 3] = [
        ("vskel create-vs", Bench::create_vs),
        ("cp -al global", Bench::cp_global),
        ("cp -al global + cp -a local", Bench::cp_global_local),
    ];
    for _ in 0..WARMUP_RUNS {
        for (_, variant) in &variants {
            variant(&bench);
        }
    }
    let mut times: [Vec<f64>; 3] = Default::default();
    for pair in 0..runs {
        // Reverse the order every other pair: A goes first, then last.
        let order: [usize; 3] = if pair % 2 == 0 { [0, 1, 2] } else { [2, 1, 0] };
        for i in order {
            times[i].push((variants[i].1)(&bench).as_secs_f64() * MS_PER_S);
        }
    }

    let cpus = std::thread::available_parallelism().expect("number of cpus");
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    println!(
        "create-vs vs cp -al on {SKEL} ({entries} entries, {:.0} MB), {runs} paired runs, \
         {cpus} cpus, kernel {}",
        bytes as f64 / BYTES_PER_MB,
        kernel.trim()
    );
    println!("{:<29}{:>9}{:>9}{:>9}", "", "median", "min", "max");
    for ((name, _), t) in variants.iter().zip(&times) {
        let (med, min, max) = summary(t);
        println!("{name:<29}{med:>7.1}ms{min:>7.1}ms{max:>7.1}ms");
    }
    for (other, label) in [(1, "cp -al global"), (2, "cp -al+cp -a local")] {
        let ratios: Vec<f64> = times[0]
            .iter()
            .zip(&times[other])
            .map(|(a, b)| a / b)
            .collect();
        let (med, min, max) = summary(&ratios);
        println!(
            "{:<40}median {med:.2} (min {min:.2}, max {max:.2})",
            format!("ratio create-vs / {label}:")
        );
    }

    drop(bench); // unlocks the protected files, so the directory can go
    tmp.close().expect("remove the benchmark's temp dir");
}

/// One timed variant: runs once, returns the time of its timed part.
type Variant = fn(&Bench) -> Duration;

/// The benchmark's vskel setup.
struct Bench {
    setup: Setup,
    cpal: PathBuf,
}

impl Bench {
    fn new(tmp: &Path) -> Self {
        Bench {
            setup: Setup::new(tmp),
            cpal: tmp.join("cpal"),
        }
    }

    fn vskel(&self) -> Command {
        self.setup.vskel()
    }

    fn skel_dir(&self, layer: &str) -> PathBuf {
        self.setup.skel_dir(SKEL, layer)
    }

    /// A: create-vs, timed; remove-vs, untimed.
    fn create_vs(&self) -> Duration {
        let mut create = self.vskel();
        create.args(["create-vs", SKEL, VS_NAME, VS_FQDN, VS_IP]);
        let took = timed(&mut create, "vskel create-vs");
        let mut remove = self.vskel();
        remove.args(["remove-vs", VS_NAME]);
        run_checked(&mut remove, "vskel remove-vs");
        took
    }

    /// B: `cp -al global DST`, timed; `rm -rf DST`, untimed.
    fn cp_global(&self) -> Duration {
        let mut cp = Command::new("cp");
        cp.arg("-al").arg(self.skel_dir("global")).arg(&self.cpal);
        let took = timed(&mut cp, "cp -al global");
        self.remove_cpal();
        took
    }

    /// C: `cp -al global/. DST && cp -a local/. DST`, timed; `rm -rf DST`,
    /// untimed.
    fn cp_global_local(&self) -> Duration {
        let mut sh = Command::new("sh");
        sh.arg("-ec")
            .arg(r#"cp -al "$1/." "$3" && cp -a "$2/." "$3""#)
            .arg("sh")
            .arg(self.skel_dir("global"))
            .arg(self.skel_dir("local"))
            .arg(&self.cpal);
        let took = timed(&mut sh, "cp -al global + cp -a local");
        self.remove_cpal();
        took
    }

    fn remove_cpal(&self) {
        let mut rm = Command::new("rm");
        rm.arg("-rf").arg(&self.cpal);
        run_checked(&mut rm, "rm -rf");
    }
}
