//! Benchmark: `upgrade-vs` (issue 12 item 3) after a 100-file skel change.
//!
//! 1. One tree vserver of a skel built from the ~130k-entry `/usr` copy
//!    (`$VSKEL_FIXTURES/usr-copy`, made if missing, everything global; the skel is built
//!    once and kept in `$VSKEL_BENCH_UPGRADE_DIR`, default
//!    `/var/tmp/vskel-bench-upgrade`, as building it takes a while): per
//!    run, a fresh vserver, 100 global files of the skel replaced by rename
//!    and a generation recorded (untimed), then `upgrade-vs --plan` and
//!    `upgrade-vs` of it, each a whole process (goal: under 300 ms).
//! 2. `upgrade-vs --all` of 50 vservers of the Debian minbase skel
//!    (`$VSKEL_FIXTURES/rootfs-bookworm`, made if missing; smaller than the /usr copy, so
//!    that making 50 vservers does not dominate) after a 100-file change
//!    (goal: under 10 s).
//!
//! Runs `VSKEL_BENCH_RUNS` times (default 3); medians with the load
//! average. A measurement, not a test. Run as root:
//! `cargo bench --bench upgrade`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vskel::generation::{self, Kind, Part};
use vskel::layout::SkelDirs;
use vskel::progress::Progress;

const VSERVERS_FOR_ALL: usize = 50;
const CHANGED_FILES: usize = 100;

fn main() {
    let dir = PathBuf::from(
        std::env::var("VSKEL_BENCH_UPGRADE_DIR")
            .unwrap_or_else(|_| "/var/tmp/vskel-bench-upgrade".into()),
    );
    let runs: usize = std::env::var("VSKEL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let bench = Bench::new(&dir);
    let usr = bench.skel("usr", &common::usr_copy());
    println!(
        "one vserver of the /usr copy skel ({} entries)",
        entries(&usr)
    );
    let mut plans = Vec::new();
    let mut upgrades = Vec::new();
    for run in 0..runs {
        let name = format!("big{run}");
        bench.fresh_vserver("usr", &name);
        let changed = change(&usr, run);
        plans.push(bench.timed(&["upgrade-vs", "--plan", &name]));
        upgrades.push(bench.timed(&["upgrade-vs", &name]));
        bench.check_taken(&usr, &name, &changed);
        bench.run(&["remove-vs", &name]);
    }
    report("upgrade-vs --plan (process)", plans);
    report("upgrade-vs (process)", upgrades);

    let minbase = bench.skel("minbase", &common::rootfs());
    println!(
        "{VSERVERS_FOR_ALL} vservers of the minbase skel ({} entries)",
        entries(&minbase)
    );
    let mut alls = Vec::new();
    for run in 0..runs {
        for i in 0..VSERVERS_FOR_ALL {
            bench.fresh_vserver("minbase", &format!("m{i}"));
        }
        let changed = change(&minbase, run);
        alls.push(bench.timed(&["upgrade-vs", "--all", "--skel", "minbase"]));
        for i in 0..VSERVERS_FOR_ALL {
            bench.check_taken(&minbase, &format!("m{i}"), &changed);
        }
    }
    report(&format!("upgrade-vs --all ({VSERVERS_FOR_ALL})"), alls);
    for i in 0..VSERVERS_FOR_ALL {
        bench.run(&["remove-vs", &format!("m{i}")]);
    }
}

struct Bench {
    config: PathBuf,
    root: PathBuf,
}

impl Bench {
    fn new(dir: &Path) -> Self {
        let root = dir.join("root");
        for d in ["root", "etc", "defaults"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let config = dir.join("vskel.toml");
        fs::write(
            &config,
            format!(
                // The skel is changed in place below (files replaced by
                // rename), as a test does: shared files unprotected.
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

    fn timed(&self, args: &[&str]) -> Duration {
        let mut cmd = self.command(args);
        cmd.stdout(std::process::Stdio::null());
        let start = Instant::now();
        let status = cmd.status().unwrap();
        let took = start.elapsed();
        assert!(status.success(), "{args:?}");
        took
    }

    /// Skel `name` built from `source` once (kept for later runs).
    fn skel(&self, name: &str, source: &Path) -> SkelDirs {
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
        SkelDirs { dir }
    }

    /// The upgrade did its work: each changed path of vserver `name` is
    /// the skel's new inode.
    fn check_taken(&self, skel: &SkelDirs, name: &str, changed: &[PathBuf]) {
        use std::os::unix::fs::MetadataExt;
        for rel in changed {
            let want = fs::symlink_metadata(skel.global().join(rel)).unwrap();
            let have = fs::symlink_metadata(self.root.join(name).join(rel)).unwrap();
            assert_eq!(
                have.ino(),
                want.ino(),
                "{name}: {} not taken",
                rel.display()
            );
        }
    }

    fn fresh_vserver(&self, skel: &str, name: &str) {
        if self.root.join(name).exists() {
            self.run(&["remove-vs", name]);
        }
        // One address for all: create-vs refuses a taken one otherwise.
        self.run(&[
            "create-vs",
            "--shared-ip",
            skel,
            name,
            &format!("{name}.example.org"),
            "10.0.3.2",
        ]);
    }
}

fn entries(skel: &SkelDirs) -> u64 {
    let progress = Progress::hidden();
    let n = generation::ensure(skel, "bench", &progress, generation::Store::Skip).unwrap();
    generation::header(skel, n).unwrap().entries
}

/// Replace `CHANGED_FILES` global regular files of the skel by rename
/// (a different set each run) and record the new generation.
fn change(skel: &SkelDirs, run: usize) -> Vec<PathBuf> {
    let progress = Progress::hidden();
    let n = generation::ensure(skel, "bench", &progress, generation::Store::Skip).unwrap();
    let current = generation::load(skel, n).unwrap();
    let files: Vec<_> = current
        .entries()
        .iter()
        .filter(|e| e.part == Part::Global && e.kind == Kind::File && e.size < 1 << 20)
        .collect();
    let step = (files.len() / CHANGED_FILES).max(1);
    let mut changed = Vec::new();
    for e in files
        .iter()
        .skip(run % step)
        .step_by(step)
        .take(CHANGED_FILES)
    {
        let path = skel.global().join(&e.path);
        let mut data = fs::read(&path).unwrap();
        data.extend_from_slice(format!("\nbench run {run}\n").as_bytes());
        let tmp = path.with_file_name(".vskel-bench-new");
        fs::write(&tmp, data).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(e.mode)).unwrap();
        std::os::unix::fs::lchown(&tmp, Some(e.uid), Some(e.gid)).unwrap();
        fs::rename(&tmp, &path).unwrap();
        changed.push(e.path.clone());
    }
    let recorded = generation::record(skel, "bench", &progress, generation::Store::Skip).unwrap();
    assert!(recorded.new);
    changed
}

fn load_average() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "  {what:<36} {:>9.1} ms  (median of {}, load {})",
        times[times.len() / 2].as_secs_f64() * 1000.0,
        times.len(),
        load_average()
    );
}
