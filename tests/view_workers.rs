//! The view's worker pool grows with the load (issue 11): it starts with
//! two workers, a serial client keeps it at two (each request of a
//! fixed pool woke a different worker, which had to get a CPU), and
//! parallel clients whose requests queue make it grow, never beyond
//! `-o threads=N`, and it shrinks back for a serial client after them. Workers are the server's threads named `fuser-*`, read
//! from /proc on real `vskel overlay` mounts.

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
fn a_serial_client_stays_on_at_most_two_workers() {
    if !require_root("a_serial_client_stays_on_at_most_two_workers") {
        return;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let overlay = Overlay::mount("");
    let mut most = overlay.workers();
    for i in 0..700 {
        create_stat_unlink(&overlay.mnt, &format!("f{i}"));
        if i % 50 == 0 {
            most = most.max(overlay.workers());
        }
    }
    most = most.max(overlay.workers());
    assert!(
        most <= 2,
        "a serial client (2,100 operations) left {most} workers"
    );
}

#[test]
fn parallel_clients_grow_the_pool_up_to_its_bound() {
    if !require_root("parallel_clients_grow_the_pool_up_to_its_bound") {
        return;
    }
    const BOUND: usize = 3;
    const CLIENTS: usize = 8;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let overlay = Overlay::mount(&format!("threads={BOUND}"));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(overlay.workers(), 2, "the pool starts with two workers");
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
        most > 2,
        "{CLIENTS} parallel clients left the pool at {most} workers"
    );
    assert!(
        most <= BOUND,
        "the pool grew to {most} workers, above threads={BOUND}"
    );
    // A serial client after them: the pool shrinks back.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..100 {
        create_stat_unlink(&overlay.mnt, &format!("after{i}"));
    }
    let after = overlay.workers();
    assert!(
        after <= 2,
        "a serial client after parallel ones left {after} workers"
    );
}
