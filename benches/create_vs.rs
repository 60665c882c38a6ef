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

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rustix::fs::{FlockOperation, flock};

/// Environment variable naming the Debian source tree.
const ROOTFS_ENV: &str = "VSKEL_ROOTFS";
/// Default Debian source tree (shared with the integration tests).
const DEFAULT_ROOTFS: &str = "/var/tmp/vskel-fixtures/rootfs-bookworm";
/// File `make-rootfs.sh` writes into a finished tree.
const COMPLETE_MARKER: &str = ".vskel-rootfs-complete";
/// Fixture builder, relative to `CARGO_MANIFEST_DIR`.
const MAKE_ROOTFS: &str = "../shared/fixtures/make-rootfs.sh";
/// Environment variable overriding the number of paired runs.
const RUNS_ENV: &str = "VSKEL_BENCH_RUNS";
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
/// Milliseconds per second.
const MS_PER_S: f64 = 1e3;

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("create_vs benchmark: needs root (create-vs keeps owners); skipped");
        return;
    }
    let runs = match std::env::var(RUNS_ENV) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{RUNS_ENV}={v:?}: expected a positive integer")),
        Err(std::env::VarError::NotPresent) => DEFAULT_RUNS,
        Err(e) => panic!("{RUNS_ENV}: {e}"),
    };
    let rootfs = PathBuf::from(std::env::var_os(ROOTFS_ENV).unwrap_or(DEFAULT_ROOTFS.into()));
    ensure_rootfs(&rootfs);

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
    let skel = bench.root.join(".skel").join(SKEL);
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

    tmp.close().expect("remove the benchmark's temp dir");
}

/// Make sure the Debian tree exists, building it under an exclusive lock
/// (tests may build the same fixture concurrently).
fn ensure_rootfs(dir: &Path) {
    let parent = dir.parent().expect("rootfs path has a parent");
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
    let mut lock_path = dir.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock: File = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .unwrap_or_else(|e| panic!("open {lock_path:?}: {e}"));
    flock(&lock, FlockOperation::LockExclusive)
        .unwrap_or_else(|e| panic!("lock {lock_path:?}: {e}"));
    if !dir.join(COMPLETE_MARKER).exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(MAKE_ROOTFS);
        println!(
            "building the Debian fixture in {} (takes minutes)",
            dir.display()
        );
        let status = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", script.display()));
        assert!(
            status.success(),
            "{} {} failed: {status}",
            script.display(),
            dir.display()
        );
    }
    // Closing the file releases the lock.
    drop(lock);
}

/// One timed variant: runs once, returns the time of its timed part.
type Variant = fn(&Bench) -> Duration;

/// The benchmark's vskel setup.
struct Bench {
    config: PathBuf,
    root: PathBuf,
    cpal: PathBuf,
}

impl Bench {
    fn new(tmp: &Path) -> Self {
        let root = tmp.join("vservers");
        let etc = tmp.join("etc-vservers");
        let defaults = tmp.join("etc-vskel");
        fs::create_dir_all(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
        let config = tmp.join("vskel.toml");
        fs::write(
            &config,
            format!("root = {root:?}\netc = {etc:?}\ndefaults = {defaults:?}\n"),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        Bench {
            config,
            root,
            cpal: tmp.join("cpal"),
        }
    }

    /// `vskel -q -c CONFIG` with CI set and no inherited vskel settings.
    fn vskel(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vskel"));
        cmd.arg("-q")
            .arg("-c")
            .arg(&self.config)
            .env("CI", "true")
            .env_remove("VSKEL_LOG")
            .env_remove("VSKEL_CONFIG");
        cmd
    }

    fn skel_dir(&self, layer: &str) -> PathBuf {
        self.root.join(".skel").join(SKEL).join(layer)
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

/// Flush dirty data, then time `cmd` as a whole child process.
fn timed(cmd: &mut Command, what: &str) -> Duration {
    rustix::fs::sync();
    let started = Instant::now();
    run_checked(cmd, what);
    started.elapsed()
}

/// Run `cmd` with stdout discarded; panic with its stderr if it fails.
fn run_checked(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
}

/// Entries below `dir` (not counting it) and bytes of its regular files,
/// each inode counted once.
fn tree_stats(dir: &Path) -> (u64, u64) {
    let mut entries = 0;
    let mut bytes = 0;
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let listing = fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
        for entry in listing {
            let entry = entry.unwrap_or_else(|e| panic!("read {}: {e}", d.display()));
            let path = entry.path();
            let meta = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
            entries += 1;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && seen.insert((meta.dev(), meta.ino())) {
                bytes += meta.size();
            }
        }
    }
    (entries, bytes)
}

/// Median, min and max of a non-empty sample.
fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    (median, v[0], v[n - 1])
}
