//! Benchmark: recording and reading skel generations (issue 12 item 1).
//!
//! For each skel directory in `VSKEL_BENCH_SKEL_DIRS` (comma-separated,
//! e.g. `<root>/.skel/minbase,<root>/.skel/usr`; built beforehand with
//! `vskel build-skel`), with warm caches:
//!
//! 1. first record: its `generations/` is removed (this changes the skel's
//!    history: use a skel made for the benchmark) and generation 1 recorded;
//! 2. re-record with nothing changed (must write nothing);
//! 3. load of the current record; its file size;
//! 4. 100 global files replaced by rename (untimed), then the record of
//!    the new generation and `changes(N-1, N)` (what an upgrade reads).
//!
//! Each step runs `VSKEL_BENCH_RUNS` times (default 3; step 1 once, as it
//! removes the history); the median is printed with the load average.
//! It is a measurement, not a test: nothing fails on a slow result.
//!
//! Run (as root): `VSKEL_BENCH_SKEL_DIRS=... cargo bench --bench generations`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vskel::generation::{self, Kind, Part};
use vskel::layout::SkelDirs;
use vskel::progress::Progress;

fn main() {
    let Some(list) = std::env::var_os("VSKEL_BENCH_SKEL_DIRS") else {
        eprintln!("set VSKEL_BENCH_SKEL_DIRS to skel directories made for the benchmark");
        return;
    };
    let runs: usize = std::env::var("VSKEL_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    for dir in list.to_string_lossy().split(',') {
        bench_skel(Path::new(dir), runs);
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn report(what: &str, times: Vec<Duration>) {
    println!(
        "  {what:<40} {:>9.1} ms  (median of {}, load {})",
        median(times.clone()).as_secs_f64() * 1000.0,
        times.len(),
        load_average()
    );
}

fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}

fn bench_skel(dir: &Path, runs: usize) {
    let skel = SkelDirs {
        dir: dir.to_path_buf(),
    };
    let progress = Progress::hidden();
    println!("skel {}", dir.display());
    let gens = skel.generations().dir;
    match std::fs::remove_dir_all(&gens) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", gens.display()),
    }
    let (t, first) =
        timed(|| generation::record(&skel, "bench", &progress, generation::Store::Skip).unwrap());
    println!(
        "  generation 1: {} entries, {} files hashed",
        first.entries, first.hashed
    );
    report("first record", vec![t]);
    let again: Vec<Duration> = (0..runs)
        .map(|_| {
            let (t, r) = timed(|| {
                generation::record(&skel, "bench", &progress, generation::Store::Skip).unwrap()
            });
            assert!(!r.new, "nothing changed, yet a generation was written");
            t
        })
        .collect();
    report("re-record, nothing changed", again);
    let n = generation::current(&skel).unwrap().unwrap();
    let size = std::fs::metadata(skel.generations().record(n))
        .unwrap()
        .len();
    println!("  record file: {size} bytes");
    let loads: Vec<Duration> = (0..runs)
        .map(|_| timed(|| generation::load(&skel, n).unwrap()).0)
        .collect();
    report("load record", loads);
    let mut records = Vec::new();
    let mut reads = Vec::new();
    for run in 0..runs {
        let current =
            generation::load(&skel, generation::current(&skel).unwrap().unwrap()).unwrap();
        replace_files(&skel, &current, 100, run);
        let (t, r) = timed(|| {
            generation::record(&skel, "bench", &progress, generation::Store::Skip).unwrap()
        });
        assert!(r.new && r.hashed >= 100, "{r:?}");
        records.push(t);
        let (t, changes) =
            timed(|| generation::changes(&skel, r.generation - 1, r.generation).unwrap());
        assert!(changes.len() >= 100);
        reads.push(t);
    }
    report("record after 100 files replaced", records);
    report("changes(N-1, N) after that", reads);
}

/// Replace `count` global regular files by new inodes (write beside,
/// rename over), each run other files.
fn replace_files(skel: &SkelDirs, current: &generation::Generation, count: usize, run: usize) {
    let files: Vec<PathBuf> = current
        .entries()
        .iter()
        .filter(|e| e.part == Part::Global && e.kind == Kind::File && e.size < (1 << 20))
        .skip(run * count)
        .take(count)
        .map(|e| skel.global().join(&e.path))
        .collect();
    for path in files {
        let mut data = std::fs::read(&path).unwrap();
        data.push(b'\n');
        let tmp = path.with_file_name(".bench-new");
        std::fs::write(&tmp, &data).unwrap();
        let mode = std::fs::symlink_metadata(&path)
            .unwrap()
            .permissions()
            .mode();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }
}
