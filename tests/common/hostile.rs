//! Harness of the hostile-vserver fuzz test (`tests/hostile_fuzz.rs`): the
//! budget and seed, a seeded generator, a decoy tree outside every vserver
//! and the skel the fuzz runs on, the hostile child processes (this test
//! binary re-executed with a [`Plan`]) and their operation logs, a monitor
//! that notices the first change outside the vserver while the children
//! run, and the checks that name what changed and how.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{Listing, Setup, canonical};

/// The environment variable that makes the test binary a hostile child;
/// its value is the child's [`Plan`] as JSON.
pub const CHILD_ENV: &str = "HOSTILE_FUZZ_CHILD";

/// The (ignored) test that runs a child's plan.
pub const CHILD_TEST: &str = "hostile_child";

/// The unprivileged user the hostile children run as.
pub const NOBODY: u32 = 65534;

/// Seed used when `HOSTILE_FUZZ_SEED` is not set, so CI is reproducible.
pub const DEFAULT_SEED: u64 = 1;

/// Seconds each fuzz part runs when `HOSTILE_FUZZ_SECS` is not set.
pub const DEFAULT_SECS: f64 = 10.0;

/// A child that has not finished this long after its budget is hung.
pub const HANG_GRACE: Duration = Duration::from_secs(60);

/// How often the monitor looks at the decoy (the skel: 5 times less often).
const MONITOR_PERIOD: Duration = Duration::from_millis(40);

/// Lines of each child's log shown in a failure.
pub const TAIL_LINES: usize = 25;

/// How long and with which seed the fuzz runs.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// The seed every child's generator derives from.
    pub seed: u64,
    /// Seconds each part runs.
    pub secs: f64,
    /// At most this many operations per child thread.
    pub ops: Option<u64>,
}

impl Budget {
    /// From `HOSTILE_FUZZ_SEED` (a number, or `random`), `HOSTILE_FUZZ_SECS`
    /// and `HOSTILE_FUZZ_OPS`; printed so a run can be repeated.
    pub fn from_env(part: &str) -> Budget {
        let seed = match std::env::var("HOSTILE_FUZZ_SEED").ok().as_deref() {
            None | Some("") => DEFAULT_SEED,
            Some("random") => {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap();
                t.as_secs() ^ u64::from(t.subsec_nanos()) ^ u64::from(std::process::id()) << 32
            }
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("HOSTILE_FUZZ_SEED={s:?}: a number or \"random\"")),
        };
        let secs = match std::env::var("HOSTILE_FUZZ_SECS").ok().as_deref() {
            None | Some("") => DEFAULT_SECS,
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("HOSTILE_FUZZ_SECS={s:?}: seconds")),
        };
        let ops = std::env::var("HOSTILE_FUZZ_OPS").ok().map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("HOSTILE_FUZZ_OPS={s:?}: a number"))
        });
        let budget = Budget { seed, secs, ops };
        eprintln!(
            "{part}: seed {seed} (repeat with HOSTILE_FUZZ_SEED={seed}), {secs} s, \
             ops per thread {}",
            ops.map_or("unbounded".to_string(), |o| o.to_string())
        );
        budget
    }

    /// The part's length.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.secs)
    }
}

/// splitmix64: a small seeded generator, the same on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`, stream `stream` (one per child and thread).
    pub fn new(seed: u64, stream: u64) -> Rng {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next_u64();
        rng
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// What a hostile child does; passed to it as JSON in [`CHILD_ENV`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// `view` (random operations inside a view), `finding1` (the fixed
    /// sequence of finding 1) or `racer` (inside a tree during syncs).
    pub role: String,
    /// Name in the log lines.
    pub label: String,
    /// Seed of this child's generators.
    pub seed: u64,
    /// How long to run.
    pub millis: u64,
    /// At most this many operations per thread.
    pub max_ops: Option<u64>,
    /// Threads doing operations.
    pub threads: usize,
    /// Chroot into the view (stdin) before starting: a vserver's root.
    pub chroot: bool,
    /// Directories (relative to the view root) the operations work in.
    pub work_dirs: Vec<String>,
    /// Those of `work_dirs` that may be renamed away and replaced by a
    /// symlink.
    pub swap_dirs: Vec<String>,
    /// Paths of skel entries in the view that are fair game too.
    pub attack: Vec<String>,
    /// Symlink targets naming files outside the vserver (decoy, skel).
    pub file_targets: Vec<String>,
    /// Symlink targets naming directories outside the vserver.
    pub dir_targets: Vec<String>,
    /// Owners the child may give files.
    pub owners: Vec<(u32, u32)>,
    /// The racer's tree (a host path).
    pub tree: Option<PathBuf>,
}

/// The decoy: a tree outside every vserver, skel and view, with files of
/// known modes, owners, contents and xattrs, that nothing may change.
pub struct Decoy {
    /// Its directory.
    pub dir: PathBuf,
}

/// Decoy files: path, mode, owner, content.
const DECOY_FILES: &[(&str, u32, (u32, u32), &str)] = &[
    ("plain", 0o644, (1234, 1234), "decoy: plain file\n"),
    (
        "suid",
        0o4755,
        (0, 0),
        "#!/bin/sh\necho decoy setuid file\n",
    ),
    ("secret", 0o600, (0, 0), "decoy: root's secret\n"),
    ("xattr", 0o640, (0, 42), "decoy: file with an xattr\n"),
    ("dir/inner", 0o644, (2000, 2000), "decoy: inner file\n"),
    ("dir/sub/deep", 0o444, (0, 0), "decoy: deep file\n"),
];

/// Decoy directories: path, mode.
const DECOY_DIRS: &[(&str, u32)] = &[("", 0o755), ("dir", 0o755), ("dir/sub", 0o700)];

/// The decoy's mtime (seconds).
const DECOY_MTIME: i64 = 1_500_000_000;

impl Decoy {
    /// Make the decoy in `dir` (which must not exist).
    pub fn make(dir: &Path) -> Decoy {
        fs::create_dir(dir).unwrap();
        for (rel, _) in DECOY_DIRS {
            fs::create_dir_all(dir.join(rel)).unwrap();
        }
        for (rel, mode, (uid, gid), content) in DECOY_FILES {
            let path = dir.join(rel);
            fs::write(&path, content).unwrap();
            std::os::unix::fs::chown(&path, Some(*uid), Some(*gid)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(*mode)).unwrap();
        }
        xattr::set(dir.join("xattr"), "user.decoy", b"original value").unwrap();
        xattr::set(dir.join("dir/inner"), "user.decoy", b"inner value").unwrap();
        std::os::unix::fs::symlink("plain", dir.join("link")).unwrap();
        let time = filetime::FileTime::from_unix_time(DECOY_MTIME, 0);
        for (rel, mode) in DECOY_DIRS.iter().rev() {
            fs::set_permissions(dir.join(rel), fs::Permissions::from_mode(*mode)).unwrap();
        }
        let mut all: Vec<&str> = DECOY_FILES.iter().map(|f| f.0).collect();
        all.push("link");
        all.extend(DECOY_DIRS.iter().rev().map(|d| d.0));
        for rel in all {
            filetime::set_symlink_file_times(dir.join(rel), time, time).unwrap();
        }
        Decoy {
            dir: dir.to_path_buf(),
        }
    }

    /// Absolute paths of its non-directories.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = DECOY_FILES.iter().map(|f| self.dir.join(f.0)).collect();
        out.push(self.dir.join("link"));
        out
    }

    /// Absolute paths of its directories.
    pub fn dirs(&self) -> Vec<PathBuf> {
        DECOY_DIRS.iter().map(|d| self.dir.join(d.0)).collect()
    }

    /// Its canonical listing.
    pub fn listing(&self) -> Listing {
        decoy_listing(&self.dir)
    }
}

/// Symlink targets that reach `path` (absolute): the path itself, and a
/// relative one that climbs to `/` from `levels` deep or less and comes
/// down again.
pub fn targets_of(path: &Path, levels: usize) -> [String; 2] {
    let abs = path.to_str().unwrap().to_string();
    let relative = format!("{}{}", "../".repeat(levels), abs.trim_start_matches('/'));
    [abs, relative]
}

/// Apparent size of the skel's sparse files.
const SPARSE_SIZE: u64 = 8 << 20;

/// Build skel "base" from the example plus [`SKEL_EXTRAS`]; returns its
/// directory.
pub fn build_hostile_skel(setup: &Setup) -> PathBuf {
    use std::os::unix::fs::FileExt;
    let src = setup.example_source();
    fs::copy("/usr/bin/env", src.join("usr/bin/suid-env")).unwrap();
    fs::set_permissions(
        src.join("usr/bin/suid-env"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    for rel in ["usr/share/hz/sparse.img", "var/lib/demo/sparse.db"] {
        let path = src.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = fs::File::create(&path).unwrap();
        f.set_len(SPARSE_SIZE).unwrap();
        f.write_all_at(b"start of a sparse file\n", 0).unwrap();
        f.write_all_at(b"middle\n", SPARSE_SIZE / 2).unwrap();
    }
    fs::create_dir_all(src.join("etc/hz")).unwrap();
    fs::write(src.join("etc/hz/a.conf"), "hard-linked pair\n").unwrap();
    fs::hard_link(src.join("etc/hz/a.conf"), src.join("etc/hz/b.conf")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        src.join("var/lib/demo/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("suid-env", src.join("usr/bin/hz-link")).unwrap();
    std::os::unix::fs::symlink("/usr/bin/suid-env", src.join("etc/hz/abs-link")).unwrap();
    setup.build_example_skel("base")
}

/// What changed between two canonical listings of `what`, one line per
/// entry that changed, naming the fields and their old and new values.
pub fn changes(what: &str, before: &Listing, after: &Listing) -> Vec<String> {
    let mut out = Vec::new();
    for (path, b) in before {
        let Some(a) = after.get(path) else {
            out.push(format!("{what} {}: removed", shown(path)));
            continue;
        };
        let mut fields = Vec::new();
        if a.kind != b.kind {
            fields.push(format!("kind {} -> {}", b.kind, a.kind));
        }
        if a.mode != b.mode {
            fields.push(format!("mode {:#o} -> {:#o}", b.mode, a.mode));
        }
        if a.owner != b.owner {
            fields.push(format!(
                "owner {}:{} -> {}:{}",
                b.owner.0, b.owner.1, a.owner.0, a.owner.1
            ));
        }
        if a.size != b.size {
            fields.push(format!("size {} -> {}", b.size, a.size));
        }
        if a.content != b.content {
            fields.push("content changed".to_string());
        }
        if a.mtime != b.mtime {
            fields.push(format!("mtime {:?} -> {:?}", b.mtime, a.mtime));
        }
        if a.link != b.link {
            fields.push(format!("symlink target {:?} -> {:?}", b.link, a.link));
        }
        if a.xattrs != b.xattrs {
            fields.push(format!(
                "xattrs {} -> {}",
                show_xattrs(&b.xattrs),
                show_xattrs(&a.xattrs)
            ));
        }
        if a.shares_skel != b.shares_skel || a.group != b.group {
            fields.push(format!(
                "hard-link structure {:?} -> {:?}",
                b.group, a.group
            ));
        }
        if !fields.is_empty() {
            out.push(format!("{what} {}: {}", shown(path), fields.join("; ")));
        }
    }
    for (path, a) in after.iter().filter(|(p, _)| !before.contains_key(*p)) {
        out.push(format!(
            "{what} {}: new entry ({} mode {:#o} owner {}:{}{})",
            shown(path),
            a.kind,
            a.mode,
            a.owner.0,
            a.owner.1,
            a.link
                .as_ref()
                .map(|l| format!(" -> {}", l.display()))
                .unwrap_or_default()
        ));
    }
    out
}

fn shown(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        "(top directory)".to_string()
    } else {
        path.display().to_string()
    }
}

fn show_xattrs(xattrs: &[(String, Vec<u8>)]) -> String {
    let parts: Vec<String> = xattrs
        .iter()
        .map(|(k, v)| format!("{k}={:?}", String::from_utf8_lossy(v)))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The canonical listing of a skel, with hard-link groups only where two
/// of its own entries share an inode: a skel file linked into a vserver
/// tree has more links but is the same file.
pub fn skel_listing(skel: &Path) -> Listing {
    let mut listing = canonical(skel, skel);
    let mut members: std::collections::HashMap<PathBuf, usize> = Default::default();
    for e in listing.values() {
        if let Some(g) = &e.group {
            *members.entry(g.clone()).or_default() += 1;
        }
    }
    for e in listing.values_mut() {
        if e.group.as_ref().is_some_and(|g| members[g] == 1) {
            e.group = None;
        }
    }
    listing
}

/// A listing, or the panic message of a walk that failed (an entry
/// vanishing under it is itself a change).
pub fn try_listing(dir: &Path, list: fn(&Path) -> Listing) -> Result<Listing, String> {
    let dir = dir.to_path_buf();
    std::panic::catch_unwind(move || list(&dir)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "walk failed".to_string())
    })
}

/// Mounts at or below `dir` (from /proc/self/mountinfo).
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|m| m == dir || m.starts_with(&format!("{dir}/")))
        })
        .map(|l| l.to_string())
        .collect()
}

/// The last `n` lines of a log.
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| format!("({e})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The logs of the children of one part, by label.
pub type Logs = Arc<Mutex<Vec<(String, PathBuf)>>>;

/// The last lines of every log.
pub fn tails(logs: &Logs, n: usize) -> String {
    let mut out = String::new();
    for (label, path) in logs.lock().unwrap().iter() {
        out.push_str(&format!(
            "--- last operations of {label} ({}):\n{}\n",
            path.display(),
            tail(path, n)
        ));
    }
    out
}

/// A hostile child process: this test binary running [`CHILD_TEST`] with
/// a plan; killed when dropped.
pub struct HostileChild {
    /// Its plan's label.
    pub label: String,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
    child: Option<Child>,
}

impl HostileChild {
    /// Start a child with `plan`, as `uid`/`gid` when given, with `stdin`
    /// (a directory descriptor: the view it works in) when given; its
    /// output goes to `<log_dir>/<label>.log`, registered in `logs`.
    pub fn spawn(
        plan: &Plan,
        uid: Option<u32>,
        stdin: Option<OwnedFd>,
        log_dir: &Path,
        logs: &Logs,
    ) -> HostileChild {
        let log = log_dir.join(format!("{}.log", plan.label));
        // Appending, so that the child can start its log afresh when it
        // grows too long (see `hostile_ops`).
        let out = fs::File::options()
            .create_new(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            CHILD_TEST,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, serde_json::to_string(plan).unwrap())
        .env("RUST_BACKTRACE", "1")
        .current_dir("/")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(stdin.map(Stdio::from).unwrap_or_else(Stdio::null));
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {} as {}: {e} (the test binary must be executable by \
                 that user)",
                plan.label,
                uid.map_or("root".to_string(), |u| format!("user {u}"))
            )
        });
        logs.lock().unwrap().push((plan.label.clone(), log.clone()));
        HostileChild {
            label: plan.label.clone(),
            log,
            child: Some(child),
        }
    }

    /// Has it finished? `Some(Err)` names a child that failed or was killed.
    pub fn poll(&mut self) -> Option<Result<(), String>> {
        let child = self.child.as_mut()?;
        let status = child.try_wait().unwrap()?;
        self.child = None;
        Some(if status.success() {
            Ok(())
        } else {
            Err(format!("{} exited with {status}", self.label))
        })
    }

    /// Kill it (SIGKILL) if it still runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for HostileChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait for `children` until all finished, the monitor saw a change (then
/// they are killed: the damage is done) or `deadline` passed (then they are
/// hung and killed). Returns the problems: failed or hung children.
pub fn wait_children(
    children: &mut [HostileChild],
    monitor: &Monitor,
    deadline: Instant,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut running: Vec<usize> = (0..children.len()).collect();
    while !running.is_empty() {
        running.retain(|&i| match children[i].poll() {
            None => true,
            Some(Ok(())) => false,
            Some(Err(e)) => {
                problems.push(format!("hostile child {e} (see its log below)"));
                false
            }
        });
        if monitor.triggered() {
            for &i in &running {
                children[i].kill();
            }
            break;
        }
        if Instant::now() > deadline {
            for &i in &running {
                problems.push(format!(
                    "hostile child {} hung: still running {HANG_GRACE:?} after its budget",
                    children[i].label
                ));
                children[i].kill();
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    problems
}

/// The first change outside the vserver the monitor saw.
#[derive(Debug, Clone)]
pub struct FirstChange {
    /// What changed.
    pub changes: Vec<String>,
    /// The children's last operations when it was seen.
    pub tails: String,
}

/// Watches the decoy and the skel while hostile processes run and keeps
/// the first change seen with the operations that came just before.
pub struct Monitor {
    stop: Arc<AtomicBool>,
    triggered: Arc<AtomicBool>,
    first: Arc<Mutex<Option<FirstChange>>>,
    handle: Option<JoinHandle<()>>,
}

impl Monitor {
    /// Start watching `decoy` (against `decoy_before`) and `skel`.
    pub fn start(
        decoy: &Decoy,
        decoy_before: &Listing,
        skel: &Path,
        skel_before: &Listing,
        logs: &Logs,
    ) -> Monitor {
        let stop = Arc::new(AtomicBool::new(false));
        let triggered = Arc::new(AtomicBool::new(false));
        let first = Arc::new(Mutex::new(None));
        let handle = {
            let (stop, triggered, first) = (stop.clone(), triggered.clone(), first.clone());
            let (decoy, decoy_before) = (decoy.dir.clone(), decoy_before.clone());
            let (skel, skel_before) = (skel.to_path_buf(), skel_before.clone());
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let mut found = changed("decoy", &decoy, decoy_listing, &decoy_before);
                    if round % 5 == 0 {
                        found.extend(changed("skel", &skel, skel_listing, &skel_before));
                    }
                    if !found.is_empty() {
                        *first.lock().unwrap() = Some(FirstChange {
                            changes: found,
                            tails: tails(&logs, TAIL_LINES),
                        });
                        triggered.store(true, Ordering::Relaxed);
                        return;
                    }
                    round += 1;
                    std::thread::sleep(MONITOR_PERIOD);
                }
            })
        };
        Monitor {
            stop,
            triggered,
            first,
            handle: Some(handle),
        }
    }

    /// Has it seen a change?
    pub fn triggered(&self) -> bool {
        self.triggered.load(Ordering::Relaxed)
    }

    /// Stop watching; the first change seen, if any.
    pub fn finish(mut self) -> Option<FirstChange> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.join().unwrap();
        }
        self.first.lock().unwrap().clone()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The canonical listing of the decoy.
fn decoy_listing(dir: &Path) -> Listing {
    canonical(dir, dir)
}

/// What changed in `dir` (listed by `list`) against `before` (a failed
/// walk is a change).
fn changed(what: &str, dir: &Path, list: fn(&Path) -> Listing, before: &Listing) -> Vec<String> {
    match try_listing(dir, list) {
        Ok(now) => changes(what, before, &now),
        Err(e) => vec![format!("{what}: cannot be listed any more: {e}")],
    }
}

/// Everything outside a vserver that must not change, recorded before a
/// fuzz part runs.
pub struct Outside {
    /// The decoy.
    pub decoy: Decoy,
    /// Its listing before.
    pub decoy_before: Listing,
    /// The skel's directory.
    pub skel: PathBuf,
    /// Its listing before.
    pub skel_before: Listing,
    /// The setup's directory (no mount may be left below it).
    pub top: PathBuf,
}

impl Outside {
    /// Record the decoy and the skel.
    pub fn record(setup: &Setup, decoy: Decoy, skel: PathBuf) -> Outside {
        let decoy_before = decoy.listing();
        let skel_before = skel_listing(&skel);
        Outside {
            decoy,
            decoy_before,
            skel,
            skel_before,
            top: setup.dir.path().to_path_buf(),
        }
    }

    /// Start a monitor over the decoy and the skel.
    pub fn monitor(&self, logs: &Logs) -> Monitor {
        Monitor::start(
            &self.decoy,
            &self.decoy_before,
            &self.skel,
            &self.skel_before,
            logs,
        )
    }

    /// Every change of the decoy and the skel, and every mount left below
    /// the setup.
    pub fn problems(&self) -> Vec<String> {
        let mut out = changed("decoy", &self.decoy.dir, decoy_listing, &self.decoy_before);
        out.extend(changed("skel", &self.skel, skel_listing, &self.skel_before));
        out.extend(
            mounts_under(&self.top)
                .into_iter()
                .map(|m| format!("stale mount left: {m}")),
        );
        out
    }
}

/// Panic with a report when there are `problems`: what changed, the seed,
/// the first change the monitor saw with the operations just before it,
/// and the last operations of every hostile process.
pub fn report(
    part: &str,
    budget: Option<&Budget>,
    problems: &[String],
    first: Option<&FirstChange>,
    logs: &Logs,
    extra: &str,
) {
    if problems.is_empty() {
        return;
    }
    let repeat = budget
        .map(|b| {
            format!(
                " (seed {seed}; repeat with HOSTILE_FUZZ_SEED={seed} HOSTILE_FUZZ_SECS={secs})",
                seed = b.seed,
                secs = b.secs
            )
        })
        .unwrap_or_default();
    let mut text = format!(
        "{part}: {} problem(s){repeat}:\n  {}\n",
        problems.len(),
        problems.join("\n  "),
    );
    if let Some(first) = first {
        text.push_str(&format!(
            "first change seen while the hostile processes ran:\n  {}\n\
             their operations just before it was seen:\n{}",
            first.changes.join("\n  "),
            first.tails
        ));
    }
    if !extra.is_empty() {
        text.push_str(extra);
        text.push('\n');
    }
    text.push_str(&format!("at the end:\n{}", tails(logs, TAIL_LINES)));
    panic!("{text}");
}

/// Close the setup's directory to host users (mode 0700, root's), or an
/// unprivileged child could touch the decoy itself and a change would
/// prove nothing.
pub fn make_private(dir: &Path) {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    let m = fs::metadata(dir).unwrap();
    assert!(
        m.uid() == 0 && m.mode() & 0o7777 == 0o700,
        "{} must be root's and mode 0700 (is {:o}, uid {})",
        dir.display(),
        m.mode() & 0o7777,
        m.uid()
    );
}
