//! Helpers shared by the benchmarks: fixtures, a temporary vskel setup,
//! timing, summaries, the load average; `memory`: processes' memory.
#![allow(dead_code)] // each benchmark uses a different part

pub mod memory;

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
/// Environment variable overriding the number of runs.
const RUNS_ENV: &str = "VSKEL_BENCH_RUNS";
/// Environment variable naming the fixtures directory (as in
/// compare-overlays.sh).
const FIXTURES_ENV: &str = "VSKEL_FIXTURES";
/// Default fixtures directory.
const DEFAULT_FIXTURES: &str = "/var/tmp/vskel-fixtures";
/// Environment variable with the entries the /usr copy must reach (as in
/// compare-overlays.sh).
const USR_ENTRIES_ENV: &str = "BENCH_USR_ENTRIES";
/// Entries the /usr copy reaches when `BENCH_USR_ENTRIES` is unset.
const DEFAULT_USR_ENTRIES: u64 = 130_000;
/// Milliseconds per second.
pub const MS_PER_S: f64 = 1e3;

/// The number of runs: `VSKEL_BENCH_RUNS`, or `default`.
pub fn runs(default: usize) -> usize {
    match std::env::var(RUNS_ENV) {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .unwrap_or_else(|| panic!("{RUNS_ENV}={v:?}: expected a positive integer")),
        Err(std::env::VarError::NotPresent) => default,
        Err(e) => panic!("{RUNS_ENV}: {e}"),
    }
}

/// The Debian minbase tree (`VSKEL_ROOTFS`), built under an exclusive lock
/// when missing (tests may build the same fixture concurrently).
pub fn rootfs() -> PathBuf {
    let dir = PathBuf::from(std::env::var_os(ROOTFS_ENV).unwrap_or(DEFAULT_ROOTFS.into()));
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
            .arg(&dir)
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
    dir
}

/// compare-overlays.sh's `usr` fixture, `$VSKEL_FIXTURES/usr-copy`: `cp -a
/// /usr`, plus copies of its share/ until it has `BENCH_USR_ENTRIES`
/// entries; made once (the two share the `usr-copy.complete` marker).
pub fn usr_copy() -> PathBuf {
    let fixtures = PathBuf::from(std::env::var_os(FIXTURES_ENV).unwrap_or(DEFAULT_FIXTURES.into()));
    let dir = fixtures.join("usr-copy");
    let marker = fixtures.join("usr-copy.complete");
    if marker.exists() {
        return dir;
    }
    let want: u64 = match std::env::var(USR_ENTRIES_ENV) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("{USR_ENTRIES_ENV}={v:?}: {e}")),
        Err(_) => DEFAULT_USR_ENTRIES,
    };
    println!("copying /usr to {} (once)", dir.display());
    let tmp = fixtures.join("usr-copy.tmp");
    for stale in [&dir, &tmp] {
        if stale.exists() {
            fs::remove_dir_all(stale).unwrap_or_else(|e| panic!("remove {}: {e}", stale.display()));
        }
    }
    fs::create_dir_all(&fixtures).unwrap_or_else(|e| panic!("create {}: {e}", fixtures.display()));
    let mut cp = Command::new("cp");
    cp.arg("-a").arg("/usr").arg(&tmp);
    run_checked(&mut cp, "cp -a /usr");
    let mut copies = 0;
    let mut entries = tree_stats(&tmp).0 + 1;
    while entries < want {
        copies += 1;
        let mut cp = Command::new("cp");
        cp.arg("-a")
            .arg(tmp.join("share"))
            .arg(tmp.join(format!("share-dup{copies}")));
        run_checked(&mut cp, "cp -a usr/share");
        entries = tree_stats(&tmp).0 + 1;
    }
    fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
    fs::write(
        &marker,
        format!("{entries} entries (cp -a /usr, {copies} copies of share/ added)\n"),
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", marker.display()));
    dir
}

/// A vskel configuration in a temporary directory (vskel's default
/// protection: shared files immutable); the immutable attribute is
/// cleared below it when dropped, so the directory can be removed.
pub struct Setup {
    pub config: PathBuf,
    pub root: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(tmp) = self.root.parent() {
            let _ = Command::new("chattr")
                .args(["-R", "-f", "-i"])
                .arg(tmp)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

impl Setup {
    /// Config, vservers root, etc and defaults dirs below `tmp`.
    pub fn new(tmp: &Path) -> Self {
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
        Setup { config, root }
    }

    /// `vskel -q -c CONFIG` with CI set and no inherited vskel settings.
    pub fn vskel(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vskel"));
        cmd.arg("-q")
            .arg("-c")
            .arg(&self.config)
            .env("CI", "true")
            .env_remove("VSKEL_LOG")
            .env_remove("VSKEL_CONFIG");
        cmd
    }

    /// Run `vskel ARGS`, which must succeed.
    pub fn run(&self, args: &[&str]) {
        let mut cmd = self.vskel();
        cmd.args(args);
        run_checked(&mut cmd, &format!("vskel {}", args.join(" ")));
    }

    /// Layer `layer` (global, local, ...) of skel `skel`.
    pub fn skel_dir(&self, skel: &str, layer: &str) -> PathBuf {
        self.root.join(".skel").join(skel).join(layer)
    }
}

/// Flush dirty data, then time `cmd` as a whole child process.
pub fn timed(cmd: &mut Command, what: &str) -> Duration {
    rustix::fs::sync();
    let started = Instant::now();
    run_checked(cmd, what);
    started.elapsed()
}

/// Flush dirty data, then time `cmd`; returns the time and its stdout.
pub fn timed_output(cmd: &mut Command, what: &str) -> (Duration, Vec<u8>) {
    rustix::fs::sync();
    let started = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
    (took, out.stdout)
}

/// Run `cmd` with stdout discarded; panic with its stderr if it fails.
pub fn run_checked(cmd: &mut Command, what: &str) {
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
pub fn tree_stats(dir: &Path) -> (u64, u64) {
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
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
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

/// A mount undone (lazily, so it always goes) when dropped.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let mounted = fs::read_to_string("/proc/self/mountinfo")
            .map(|m| {
                m.lines()
                    .any(|l| l.split(' ').nth(4) == Some(self.0.to_str().unwrap_or("")))
            })
            .unwrap_or(false);
        if mounted {
            match Command::new("umount").arg("-l").arg(&self.0).status() {
                Ok(status) if status.success() => {}
                Ok(status) => eprintln!("umount -l {}: {status}", self.0.display()),
                Err(e) => eprintln!("umount -l {}: {e}", self.0.display()),
            }
        }
    }
}

/// The 1, 5 and 15 minute load averages (the machine is often shared: a
/// concurrent build makes every figure slower and noisier).
pub fn load_average() -> String {
    let load = fs::read_to_string("/proc/loadavg").expect("load average");
    load.split(' ').take(3).collect::<Vec<_>>().join(" ")
}
