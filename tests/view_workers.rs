//! The view's worker pool follows the load (issue 11): a serial client
//! keeps it at its floor, four workers while the CPUs have room and two
//! while they are busy (each request of a bigger pool wakes a worker that
//! must get a CPU); parallel clients whose requests queue make it grow,
//! never beyond `-o threads=N`, and it shrinks back to the floor for a
//! serial client after them. Workers are the server's threads named
//! `fuser-*`, read from /proc on real `vskel overlay` mounts.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{MountGuard, Setup, require_root};

/// One test at a time: the parallel clients of one would be load on the
/// other's server.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the parallel clients may take to make the pool grow.
const GROWS_WITHIN: Duration = Duration::from_secs(60);

/// How long a serial client may take to move the pool to its floor (the
/// pool looks at the CPUs every 50 ms and moves after three looks agree).
const FLOOR_WITHIN: Duration = Duration::from_secs(10);

/// The floor while the CPUs have room, and while they are busy.
const IDLE_FLOOR: usize = 4;
const BUSY_FLOOR: usize = 2;

/// Threads that keep every CPU busy until dropped.
struct CpuHogs {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHogs {
    /// Two spinning threads per CPU.
    fn start() -> CpuHogs {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..2 * cpus)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        CpuHogs { stop, threads }
    }
}

impl Drop for CpuHogs {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Runs a serial client (create, stat, unlink) on `overlay` until the pool
/// has `want` workers and has kept them for 200 more operations, or
/// `FLOOR_WITHIN` has passed; returns the most workers seen during those
/// last operations and the count at the end.
fn serial_until(overlay: &Overlay, want: usize, tag: &str) -> (usize, usize) {
    let start = Instant::now();
    let mut i = 0u64;
    let mut reached_at = None;
    let mut most_after = 0;
    while start.elapsed() < FLOOR_WITHIN {
        create_stat_unlink(&overlay.mnt, &format!("{tag}{i}"));
        i += 1;
        if i % 10 == 0 {
            let now = overlay.workers();
            match reached_at {
                None if now == want => reached_at = Some(i),
                Some(at) => {
                    most_after = most_after.max(now);
                    if i >= at + 200 {
                        break;
                    }
                }
                None => {}
            }
        }
    }
    (most_after.max(overlay.workers()), overlay.workers())
}

/// An overlay of empty layers mounted in the background by `vskel overlay`,
/// with its server's pid. Fields drop in order: unmounted before the
/// setup's directory goes.
struct Overlay {
    _guard: MountGuard,
    mnt: PathBuf,
    pid: u32,
    _setup: Setup,
}

impl Overlay {
    /// Mount with the extra `-o` options `extra` (may be empty).
    fn mount(extra: &str) -> Overlay {
        let setup = Setup::new("");
        let base = setup.dir.path().to_path_buf();
        for dir in ["low", "up", "wk", "mnt"] {
            fs::create_dir_all(base.join(dir)).unwrap();
        }
        let mnt = base.join("mnt");
        let guard = MountGuard(mnt.clone());
        let mut options = format!(
            "lowerdir={0}/low,upperdir={0}/up,workdir={0}/wk",
            base.display()
        );
        if !extra.is_empty() {
            options = format!("{options},{extra}");
        }
        let out = setup
            .vskel()
            .args(["overlay", "-o", &options])
            .arg(&mnt)
            .timeout(Duration::from_secs(60))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "vskel overlay -o {options}: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = stdout
            .rsplit("server pid ")
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or_else(|| panic!("no server pid in {stdout:?}"));
        let overlay = Overlay {
            _guard: guard,
            mnt,
            pid,
            _setup: setup,
        };
        // The mount is live before the server starts its first worker.
        let start = Instant::now();
        while overlay.workers() == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the server starts no worker"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        overlay
    }

    /// How many workers (threads named `fuser-*`) the server has now.
    fn workers(&self) -> usize {
        workers_of(self.pid)
    }
}

/// How many threads named `fuser-*` process `pid` has.
fn workers_of(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter(|task| {
            fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.starts_with("fuser-"))
        })
        .count()
}

/// Create (64 bytes written), stat and unlink `dir/name`.
fn create_stat_unlink(dir: &Path, name: &str) {
    let path = dir.join(name);
    fs::write(&path, [b'x'; 64]).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 64);
    fs::remove_file(&path).unwrap();
}

#[test]
fn with_cpus_free_a_serial_client_keeps_four_workers() {
    if !require_root("with_cpus_free_a_serial_client_keeps_four_workers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let overlay = Overlay::mount("threads=8");
    let (most, end) = serial_until(&overlay, IDLE_FLOOR, "f");
    assert_eq!(
        end, IDLE_FLOOR,
        "a serial client on free CPUs left {end} workers (at most {most})"
    );
    assert!(
        most <= IDLE_FLOOR,
        "a serial client on free CPUs grew the pool to {most} workers"
    );
}

#[test]
fn beside_busy_cpus_a_serial_client_keeps_two_workers() {
    if !require_root("beside_busy_cpus_a_serial_client_keeps_two_workers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let overlay = Overlay::mount("threads=8");
    let (_, before) = serial_until(&overlay, IDLE_FLOOR, "f");
    let hogs = CpuHogs::start();
    let (most, busy) = serial_until(&overlay, BUSY_FLOOR, "g");
    drop(hogs);
    assert_eq!(
        busy, BUSY_FLOOR,
        "beside busy CPUs a serial client left {busy} workers (at most {most} after it had two)"
    );
    // And back up once the CPUs are free again.
    let (_, after) = serial_until(&overlay, IDLE_FLOOR, "h");
    assert_eq!(
        (before, after),
        (IDLE_FLOOR, IDLE_FLOOR),
        "workers before the busy CPUs and after them"
    );
}

#[test]
fn parallel_clients_grow_the_pool_up_to_its_bound() {
    if !require_root("parallel_clients_grow_the_pool_up_to_its_bound") {
        return;
    }
    const BOUND: usize = 6;
    const CLIENTS: usize = 8;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let overlay = Overlay::mount(&format!("threads={BOUND}"));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let dir = overlay.mnt.join(format!("client{c}"));
            fs::create_dir(&dir).unwrap();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    create_stat_unlink(&dir, &format!("f{i}"));
                    i += 1;
                }
            })
        })
        .collect();
    let start = Instant::now();
    let mut most = 0;
    while start.elapsed() < GROWS_WITHIN {
        most = most.max(overlay.workers());
        if most >= BOUND {
            // Grown to the bound: go on a little to see it stay there.
            std::thread::sleep(Duration::from_millis(500));
            most = most.max(overlay.workers());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    most = most.max(overlay.workers());
    assert!(
        most > IDLE_FLOOR,
        "{CLIENTS} parallel clients left the pool at {most} workers"
    );
    assert!(
        most <= BOUND,
        "the pool grew to {most} workers, above threads={BOUND}"
    );
    // A serial client after them: the pool shrinks back to its floor.
    std::thread::sleep(Duration::from_millis(300));
    let (_, after) = serial_until(&overlay, IDLE_FLOOR, "after");
    assert!(
        after <= IDLE_FLOOR,
        "a serial client after parallel ones left {after} workers"
    );
}
