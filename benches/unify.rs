//! Benchmark: `unify` (issue 13 item 4) of a `cp -a` copy of a vserver of
//! the skel built from the ~130k-entry `/usr` copy
//! (`$VSKEL_FIXTURES/usr-copy`, made if missing, everything global). The skel is the one
//! `benches/upgrade.rs` builds and keeps in `$VSKEL_BENCH_UPGRADE_DIR`
//! (default `/var/tmp/vskel-bench-upgrade`; built here if missing).
//!
//! Per run (untimed): a fresh vserver, replaced by a `cp -a` copy of
//! itself (no inode shared with the skel; about 5 GB written). Timed,
//! each a whole process: `unify --dry-run` (stats and hashes every file)
//! and `unify` (the same, plus one link and rename per file). Prints the
//! times, the files linked and the bytes reclaimed, with the load
//! average. Runs `VSKEL_BENCH_RUNS` times (default 1: each run copies
//! the tree). A measurement, not a test. Run as root:
//! `cargo bench --bench unify`.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let dir = PathBuf::from(
        std::env::var("VSKEL_BENCH_UPGRADE_DIR")
            .unwrap_or_else(|_| "/var/tmp/vskel-bench-upgrade".into()),
    );
    let runs: usize = std::env::var("VSKEL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let bench = Bench::new(&dir);
    bench.skel("usr", &common::usr_copy());
    for run in 0..runs {
        let name = format!("unify{run}");
        bench.copied_vserver("usr", &name);
        let load = loadavg();
        let (dry, dry_report) = bench.timed_json(&["unify", "--dry-run", &name]);
        let (real, report) = bench.timed_json(&["unify", &name]);
        println!(
            "run {run}: unify --dry-run {:.2} s (would link {} files, {} bytes); \
             unify {:.2} s: {} candidates, {} linked, {} bytes reclaimed, {} different, \
             {} kept (EMLINK); load average {load} before, {} after",
            dry.as_secs_f64(),
            dry_report["linked"],
            dry_report["bytes_reclaimed"],
            real.as_secs_f64(),
            report["candidates"],
            report["linked"],
            report["bytes_reclaimed"],
            report["different"],
            report["emlink_copies"],
            loadavg(),
        );
        bench.run(&["remove-vs", &name]);
    }
}

struct Bench {
    config: PathBuf,
    root: PathBuf,
}

impl Bench {
    /// The configuration `benches/upgrade.rs` writes (same skel: built
    /// with the same `protect`, or the other benchmark meets immutable
    /// files it means to replace).
    fn new(dir: &Path) -> Self {
        let root = dir.join("root");
        for d in ["root", "etc", "defaults"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let config = dir.join("vskel.toml");
        fs::write(
            &config,
            format!(
                "root = {root:?}\netc = {:?}\ndefaults = {:?}\nglobal = [\"*\"]\nprotect = \"none\"\ncontent_store = false\n",
                dir.join("etc"),
                dir.join("defaults")
            ),
        )
        .unwrap();
        Bench { config, root }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vskel"));
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--quiet")
            .args(args)
            .env("VSKEL_LOG", "error");
        cmd
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Run `args` with `--format json`, timed; its report.
    fn timed_json(&self, args: &[&str]) -> (Duration, serde_json::Value) {
        let mut cmd = self.command(args);
        cmd.args(["--format", "json"]);
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (took, serde_json::from_slice(&out.stdout).unwrap())
    }

    /// Skel `name` built from `source` once (kept for later runs).
    fn skel(&self, name: &str, source: &Path) {
        let dir = self.root.join(".skel").join(name);
        if !dir.join("global").is_dir() {
            let start = Instant::now();
            let mut cmd = self.command(&["build-skel", name, "--from"]);
            assert!(cmd.arg(source).status().unwrap().success());
            println!(
                "built skel {name} in {:.1} s (kept for later runs)",
                start.elapsed().as_secs_f64()
            );
        }
    }

    /// A fresh vserver `name` whose tree is a `cp -a` copy of the one
    /// create-vs made.
    fn copied_vserver(&self, skel: &str, name: &str) {
        let tree = self.root.join(name);
        if tree.exists() {
            self.run(&["remove-vs", name]);
        }
        self.run(&[
            "create-vs",
            skel,
            name,
            &format!("{name}.example.org"),
            "10.0.3.9",
        ]);
        let copy = self.root.join(format!("{name}.copy"));
        let start = Instant::now();
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&tree)
            .arg(&copy)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp -a");
        // The tree create-vs made shares immutable inodes with the skel:
        // vskel removes it (as an unregistered tree beside the others).
        let made = format!("{name}-made");
        fs::rename(&tree, self.root.join(&made)).unwrap();
        fs::rename(&copy, &tree).unwrap();
        self.run(&["remove-vs", "--force-unregistered", &made]);
        // The copy's data written out (untimed), so unify is not charged
        // with the writeback of the 5 GB cp -a left dirty.
        let synced = Command::new("sync")
            .arg("-f")
            .arg(&tree)
            .status()
            .unwrap()
            .success();
        assert!(synced, "sync -f");
        println!(
            "made {name} a cp -a copy in {:.1} s (untimed)",
            start.elapsed().as_secs_f64()
        );
    }
}

/// The 1-minute load average.
fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}
