//! Benchmark: `vskel daemon` serving 100 views (issue 14) against 100 lone
//! `vskel mount` servers, for start time and memory.
//!
//! Setup, made once and kept in `$VSKEL_BENCH_DAEMON_DIR` (default
//! `/var/tmp/vskel-bench-daemon`): a config with `protect = "none"` and
//! `[daemon] socket` in that directory, `views = ["*"]`; skel `minbase`
//! built from the Debian minbase fixture (`VSKEL_ROOTFS`); views `v00` to
//! `v98` of it made by `create-vs --view`; and `v99`, a view of `big`, a
//! hard-linked copy (`cp -al`, no data copied) of the ~133k-entry `/usr`
//! copy skel the upgrade benchmark keeps (`$VSKEL_BENCH_BIG_SKEL`, default
//! `/var/tmp/vskel-bench-upgrade/root/.skel/usr`), or of `minbase` when
//! that skel is not there.
//!
//! Each way of serving the 100 views, with the release binary this
//! benchmark is built with (`CARGO_BIN_EXE_vskel`, i.e.
//! `target/release/vskel`):
//!
//! * daemon: `vskel daemon` spawned with a `NOTIFY_SOCKET` datagram
//!   socket; the time from spawn to `READY=1` (goal < 2 s);
//! * lone: `vskel mount NAME` of each view in sequence; the time for all.
//!
//! Then, for both: the sum of `Pss` (`/proc/PID/smaps_rollup`) and of the
//! threads of every vskel process of this setup (its binary, its config on
//! the command line) 1 s after the last mount (goal < 128 MiB); the same
//! after walking `v00` (minbase) and after walking `v99` (the big tree),
//! every entry lstat'ed (goal < 192 MiB after the big walk); where one
//! view server's memory goes (its `/proc/PID/smaps` by kind of mapping,
//! after the walks: the walked big view's server and an idle one); and the
//! time to stop: SIGTERM to the daemon until it exited 0 and every mount
//! is gone, or `vskel unmount` of each lone view.
//!
//! `VSKEL_BENCH_MODES=daemon,lone` picks the ways and their order (default
//! both, daemon first);
//! `VSKEL_BENCH_ENV="K=V ..."` sets environment variables for the daemon
//! (its view servers inherit them) and the lone servers, e.g.
//! `MALLOC_ARENA_MAX=1`; `VSKEL_BENCH_BIN=PATH` measures another vskel
//! binary (e.g. one linked without PIE). A measurement, not a test: nothing fails on a
//! missed goal. Run as root: `cargo bench --bench daemon`.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::memory::{self, KIB_PER_MIB, Part, Usage};
use common::{MountGuard, load_average, run_checked};

/// Environment variable naming the kept setup.
const DIR_ENV: &str = "VSKEL_BENCH_DAEMON_DIR";
const DEFAULT_DIR: &str = "/var/tmp/vskel-bench-daemon";
/// Environment variable naming the big skel copied (hard links) into it.
const BIG_SKEL_ENV: &str = "VSKEL_BENCH_BIG_SKEL";
const DEFAULT_BIG_SKEL: &str = "/var/tmp/vskel-bench-upgrade/root/.skel/usr";
/// Environment variable with the ways to measure, and the ways.
const MODES_ENV: &str = "VSKEL_BENCH_MODES";
const MODES: [&str; 2] = ["daemon", "lone"];
/// Environment variable with `K=V` settings for the servers.
const SERVER_ENV: &str = "VSKEL_BENCH_ENV";
/// Environment variable naming another binary to measure.
const BIN_ENV: &str = "VSKEL_BENCH_BIN";
/// The views.
const VIEWS: usize = 100;
/// The file that says the setup is complete; it holds the big view's skel.
const COMPLETE_MARKER: &str = "setup.complete";
/// How long a start or a stop may take before the benchmark gives up.
const WAIT: Duration = Duration::from_secs(300);
/// Pause after the last mount before the idle figures.
const SETTLE: Duration = Duration::from_secs(1);
/// The goals.
const GOAL_READY_S: f64 = 2.0;
const GOAL_IDLE_MIB: f64 = 128.0;
const GOAL_WALK_MIB: f64 = 192.0;

/// The kept setup.
struct Bench {
    dir: PathBuf,
    config: PathBuf,
    root: PathBuf,
    exe: PathBuf,
    /// The skel of the last view (`big` or `minbase`).
    last_skel: String,
    /// `K=V` settings for the servers.
    env: Vec<(String, String)>,
}

/// One walk of a view's whole tree and the usage after it.
struct Walk {
    view: String,
    entries: u64,
    took: Duration,
    usage: Usage,
}

/// Where one view server's memory goes: who, and by kind of mapping.
type Breakdown = (String, BTreeMap<&'static str, Part>);

/// The figures of one way of serving.
struct Figures {
    mode: &'static str,
    env: String,
    /// Spawn to READY=1, or the 100 mounts in sequence.
    start: Duration,
    mounted: usize,
    idle: Usage,
    /// After each walk.
    walks: Vec<Walk>,
    /// SIGTERM to exit and no mount, or the 100 unmounts.
    stop: Duration,
    /// The daemon's exit status.
    exit: Option<ExitStatus>,
    /// The daemon process alone, idle.
    daemon_alone: Option<Usage>,
    /// Where one walked and one idle view server's memory goes.
    breakdowns: Vec<Breakdown>,
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("daemon benchmark: needs root (mounts views); skipped");
        return;
    }
    let modes = std::env::var(MODES_ENV).unwrap_or_else(|_| MODES.join(","));
    for mode in modes.split(',') {
        assert!(MODES.contains(&mode), "{MODES_ENV}: unknown way {mode:?}");
    }
    let bench = Bench::prepare();
    let load_at_start = load_average();
    let mut all = Vec::new();
    // In the order given.
    for mode in modes.split(',') {
        bench.check_nothing_mounted();
        all.push(match mode {
            "daemon" => bench.daemon_run(),
            _ => bench.lone_run(),
        });
    }
    report(&bench, &all, &load_at_start);
}

/// View `i`'s name.
fn view_name(i: usize) -> String {
    format!("v{i:02}")
}

impl Bench {
    /// The setup, made when missing.
    fn prepare() -> Bench {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV).unwrap_or(DEFAULT_DIR.into()));
        let root = dir.join("root");
        for d in ["root", "etc", "defaults", "run"] {
            let path = dir.join(d);
            fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        }
        let config = dir.join("vskel.toml");
        let socket = dir.join("run").join("vskel.sock");
        fs::write(
            &config,
            format!(
                // The big skel is hard links to the upgrade benchmark's:
                // nothing may make them immutable.
                "root = {root:?}\netc = {:?}\ndefaults = {:?}\nprotect = \"none\"\n\n\
                 [daemon]\nsocket = {socket:?}\nviews = [\"*\"]\n",
                dir.join("etc"),
                dir.join("defaults"),
            ),
        )
        .unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
        let env = server_env();
        let mut bench = Bench {
            dir,
            config,
            root,
            exe: memory::canonical_exe(&binary()),
            last_skel: String::new(),
            env,
        };
        let marker = bench.dir.join(COMPLETE_MARKER);
        match fs::read_to_string(&marker) {
            Ok(skel) => bench.last_skel = skel.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bench.last_skel = bench.make_views();
                fs::write(&marker, format!("{}\n", bench.last_skel))
                    .unwrap_or_else(|e| panic!("write {}: {e}", marker.display()));
            }
            Err(e) => panic!("read {}: {e}", marker.display()),
        }
        bench
    }

    /// Build the skels and make the views (what a killed earlier run left
    /// is kept); the last view's skel.
    fn make_views(&self) -> String {
        let skels = self.root.join(".skel");
        if !skels.join("minbase").exists() {
            let rootfs = common::rootfs();
            println!("building skel minbase from {}", rootfs.display());
            let mut cmd = self.vskel();
            cmd.args(["build-skel", "minbase", "--from"]).arg(&rootfs);
            run_checked(&mut cmd, "vskel build-skel minbase");
        }
        let big = PathBuf::from(std::env::var_os(BIG_SKEL_ENV).unwrap_or(DEFAULT_BIG_SKEL.into()));
        let last_skel = if skels.join("big").exists() {
            "big"
        } else if big.join("global").is_dir() {
            println!("linking skel big from {} (cp -al)", big.display());
            let tmp = self.dir.join("big.tmp");
            if tmp.exists() {
                fs::remove_dir_all(&tmp)
                    .unwrap_or_else(|e| panic!("remove {}: {e}", tmp.display()));
            }
            let mut cp = Command::new("cp");
            cp.arg("-al").arg(&big).arg(&tmp);
            run_checked(&mut cp, "cp -al big skel");
            fs::rename(&tmp, skels.join("big"))
                .unwrap_or_else(|e| panic!("rename {}: {e}", tmp.display()));
            "big"
        } else {
            println!("no skel at {}: v99 is a minbase view too", big.display());
            "minbase"
        };
        for i in 0..VIEWS {
            let name = view_name(i);
            if self.root.join(".views").join(&name).exists() {
                continue;
            }
            let skel = if i == VIEWS - 1 { last_skel } else { "minbase" };
            let fqdn = format!("{name}.example.org");
            let ip = format!("10.0.{}.{}", 1 + i / 200, 1 + i % 200);
            let mut cmd = self.vskel();
            cmd.args(["create-vs", "--view", skel, &name, &fqdn, &ip]);
            run_checked(&mut cmd, &format!("vskel create-vs --view {name}"));
        }
        last_skel.to_string()
    }

    /// `vskel --config CONFIG --quiet`, warnings only, no inherited config.
    fn vskel(&self) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg("--config")
            .arg(&self.config)
            .arg("--quiet")
            .env("CI", "true")
            .env("VSKEL_LOG", "warn")
            .env_remove("VSKEL_CONFIG");
        cmd
    }

    /// `vskel` with the servers' settings.
    fn vskel_server(&self) -> Command {
        let mut cmd = self.vskel();
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn merged(&self, name: &str) -> PathBuf {
        self.root.join(".views").join(name).join("merged")
    }

    /// Guards that unmount every view (lazily) when dropped.
    fn guards(&self) -> Vec<MountGuard> {
        (0..VIEWS)
            .map(|i| MountGuard(self.merged(&view_name(i))))
            .collect()
    }

    /// The views mounted now.
    fn mounted(&self) -> usize {
        let info = fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
        let points: Vec<String> = (0..VIEWS)
            .map(|i| self.merged(&view_name(i)).to_string_lossy().into_owned())
            .collect();
        info.lines()
            .filter(|l| {
                l.split(' ')
                    .nth(4)
                    .is_some_and(|p| points.iter().any(|m| m == p))
            })
            .count()
    }

    fn check_nothing_mounted(&self) {
        let n = self.mounted();
        assert!(
            n == 0,
            "{n} views of {} are mounted already",
            self.dir.display()
        );
    }

    /// Every vskel process of this setup.
    fn processes(&self) -> Vec<u32> {
        memory::processes(&self.exe, &self.config.to_string_lossy())
    }

    /// The server of view `name` among `pids` (its command line has
    /// `mount NAME`).
    fn server_of(&self, pids: &[u32], name: &str) -> Option<u32> {
        pids.iter().copied().find(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|&b| b == 0).collect();
                args.windows(2)
                    .any(|w| w[0] == b"mount" && w[1] == name.as_bytes())
            })
        })
    }

    /// Walk the views `v00` and the last one, the usage after each; and
    /// where the walked last view's server and an idle one's memory goes.
    fn walks(&self) -> (Vec<Walk>, Vec<Breakdown>) {
        let mut walks = Vec::new();
        for name in [view_name(0), view_name(VIEWS - 1)] {
            let started = Instant::now();
            let (entries, _) = common::tree_stats(&self.merged(&name));
            let took = started.elapsed();
            let usage = memory::usage(&self.processes());
            walks.push(Walk {
                view: name,
                entries,
                took,
                usage,
            });
        }
        let pids = self.processes();
        let mut breakdowns = Vec::new();
        for name in [view_name(VIEWS - 1), view_name(VIEWS / 2)] {
            if let Some(pid) = self.server_of(&pids, &name) {
                breakdowns.push((
                    format!("{name} (pid {pid})"),
                    memory::breakdown(pid, &self.exe),
                ));
            }
        }
        (walks, breakdowns)
    }

    fn env_label(&self) -> String {
        if self.env.is_empty() {
            "-".to_string()
        } else {
            self.env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    /// One daemon serving every view.
    fn daemon_run(&self) -> Figures {
        let _guards = self.guards();
        let notify_path = self.dir.join("run").join("notify");
        match fs::remove_file(&notify_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", notify_path.display()),
        }
        let notify = UnixDatagram::bind(&notify_path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", notify_path.display()));
        notify
            .set_read_timeout(Some(WAIT))
            .expect("set a read timeout");
        let log_path = self.dir.join("daemon.log");
        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));
        println!("daemon: starting (log {})", log_path.display());
        let mut cmd = self.vskel_server();
        cmd.arg("daemon")
            .env("NOTIFY_SOCKET", &notify_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn vskel daemon");
        let mut daemon = DaemonChild(child);
        wait_ready(&notify);
        let start = started.elapsed();
        std::thread::sleep(SETTLE);
        let mounted = self.mounted();
        let idle = memory::usage(&self.processes());
        let daemon_alone = memory::usage(&[daemon.0.id()]);
        println!(
            "daemon: ready in {:.2} s, {mounted} views mounted",
            start.as_secs_f64()
        );
        let (walks, breakdowns) = self.walks();

        let stopping = Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &daemon.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM the daemon: {sent}");
        let exit = daemon.wait(WAIT);
        wait_until(WAIT, "every view unmounted", || self.mounted() == 0);
        let stop = stopping.elapsed();
        wait_until(WAIT, "every view server gone", || {
            self.processes().is_empty()
        });
        assert!(
            exit.success(),
            "the daemon exited with {exit} (log {})",
            log_path.display()
        );
        Figures {
            mode: "daemon",
            env: self.env_label(),
            start,
            mounted,
            idle,
            walks,
            stop,
            exit: Some(exit),
            daemon_alone: Some(daemon_alone),
            breakdowns,
        }
    }

    /// A lone `vskel mount` server for each view.
    fn lone_run(&self) -> Figures {
        let _guards = self.guards();
        println!("lone: mounting {VIEWS} views one after the other");
        let started = Instant::now();
        for i in 0..VIEWS {
            let name = view_name(i);
            let mut cmd = self.vskel_server();
            cmd.args(["mount", &name]);
            run_checked(&mut cmd, &format!("vskel mount {name}"));
        }
        let start = started.elapsed();
        std::thread::sleep(SETTLE);
        let mounted = self.mounted();
        let idle = memory::usage(&self.processes());
        println!(
            "lone: mounted in {:.2} s, {mounted} views mounted",
            start.as_secs_f64()
        );
        let (walks, breakdowns) = self.walks();

        let stopping = Instant::now();
        for i in 0..VIEWS {
            let name = view_name(i);
            let mut cmd = self.vskel();
            cmd.args(["unmount", &name]);
            run_checked(&mut cmd, &format!("vskel unmount {name}"));
        }
        let stop = stopping.elapsed();
        wait_until(WAIT, "every view server gone", || {
            self.processes().is_empty()
        });
        Figures {
            mode: "lone",
            env: self.env_label(),
            start,
            mounted,
            idle,
            walks,
            stop,
            exit: None,
            daemon_alone: None,
            breakdowns,
        }
    }
}

/// The daemon child; killed (SIGKILL) if still running when dropped, so
/// that its view servers read EOF on their lifeline and unmount (the
/// mount guards, dropped after, detach what is left).
struct DaemonChild(Child);

impl DaemonChild {
    fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().expect("wait for the daemon") {
                return status;
            }
            assert!(started.elapsed() < timeout, "the daemon does not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            if let Err(e) = self.0.kill() {
                eprintln!("kill the daemon: {e}");
            }
            if let Err(e) = self.0.wait() {
                eprintln!("wait for the daemon: {e}");
            }
        }
    }
}

/// Read notify messages until one has the line `READY=1`.
fn wait_ready(notify: &UnixDatagram) {
    let mut buf = [0u8; 4096];
    loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no READY=1 from the daemon: {e}"));
        if String::from_utf8_lossy(&buf[..n])
            .lines()
            .any(|l| l == "READY=1")
        {
            return;
        }
    }
}

/// Poll `done` until it holds; panic after `timeout`.
fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The binary measured: `VSKEL_BENCH_BIN`, or the release one this
/// benchmark is built with.
fn binary() -> PathBuf {
    std::env::var_os(BIN_ENV)
        .map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_vskel")), PathBuf::from)
}

/// `VSKEL_BENCH_ENV`: space-separated `K=V`.
fn server_env() -> Vec<(String, String)> {
    let Ok(text) = std::env::var(SERVER_ENV) else {
        return Vec::new();
    };
    text.split_whitespace()
        .map(|kv| {
            let (k, v) = kv
                .split_once('=')
                .unwrap_or_else(|| panic!("{SERVER_ENV}: {kv:?} is not K=V"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn verdict(value: f64, goal: f64) -> &'static str {
    if value < goal { "PASS" } else { "MISS" }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / KIB_PER_MIB
}

fn report(bench: &Bench, all: &[Figures], load_at_start: &str) {
    let cpus = std::thread::available_parallelism().expect("number of cpus");
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").expect("kernel release");
    println!();
    println!(
        "vskel daemon vs lone servers, {VIEWS} views (v00-v98 minbase, v99 {}), binary {}, \
         {cpus} cpus, kernel {}, load {load_at_start} at the start, {} at the end",
        bench.last_skel,
        bench.exe.display(),
        kernel.trim(),
        load_average()
    );
    println!();
    println!(
        "{:<8}{:>8}{:>10}{:>14}{:>16}{:>16}{:>10}{:>9}  env",
        "",
        "start s",
        "mounted",
        "PSS idle MiB",
        "PSS walk1 MiB",
        "PSS walk2 MiB",
        "threads",
        "stop s"
    );
    for f in all {
        let walk = |i: usize| f.walks.get(i).map_or(0.0, |w| w.usage.pss_mib());
        println!(
            "{:<8}{:>8.2}{:>10}{:>14.1}{:>16.1}{:>16.1}{:>10}{:>9.2}  {}",
            f.mode,
            f.start.as_secs_f64(),
            f.mounted,
            f.idle.pss_mib(),
            walk(0),
            walk(1),
            f.idle.threads,
            f.stop.as_secs_f64(),
            f.env
        );
    }
    println!(
        "{:<8}{:>8}{:>10}{:>14}{:>16}{:>16}",
        "goal",
        format!("<{GOAL_READY_S}"),
        VIEWS,
        format!("<{GOAL_IDLE_MIB}"),
        "",
        format!("<{GOAL_WALK_MIB}")
    );
    for f in all {
        let walk = f.walks.last().map_or(0.0, |w| w.usage.pss_mib());
        println!(
            "{:<8}{:>8}{:>10}{:>14}{:>16}{:>16}",
            f.mode,
            verdict(f.start.as_secs_f64(), GOAL_READY_S),
            if f.mounted == VIEWS { "PASS" } else { "MISS" },
            verdict(f.idle.pss_mib(), GOAL_IDLE_MIB),
            "",
            verdict(walk, GOAL_WALK_MIB)
        );
    }
    println!();
    println!("start: daemon spawn to READY=1; lone: the {VIEWS} `vskel mount` in sequence.");
    println!("stop: daemon SIGTERM to exit and no mount left; lone: the {VIEWS} `vskel unmount`.");
    for f in all {
        println!();
        println!(
            "{}: {} processes idle, RSS {:.1} MiB, PSS {:.1} MiB, largest PSS {:.1} MiB, {} threads{}",
            f.mode,
            f.idle.processes,
            f.idle.rss_mib(),
            f.idle.pss_mib(),
            mib(f.idle.max_pss_kib),
            f.idle.threads,
            f.exit
                .map(|e| format!(", daemon exit {e}"))
                .unwrap_or_default()
        );
        if let Some(d) = f.daemon_alone {
            println!(
                "  of which the daemon process: PSS {:.1} MiB, {} threads",
                d.pss_mib(),
                d.threads
            );
        }
        for Walk {
            view,
            entries,
            took,
            usage: u,
        } in &f.walks
        {
            println!(
                "  after walking {view} ({entries} entries, {:.2} s): PSS {:.1} MiB, RSS {:.1} MiB, \
                 largest PSS {:.1} MiB, {} threads",
                took.as_secs_f64(),
                u.pss_mib(),
                u.rss_mib(),
                mib(u.max_pss_kib),
                u.threads
            );
        }
        for (who, parts) in &f.breakdowns {
            println!("  server of {who}, after the walks, KiB:");
            println!(
                "    {:<40}{:>6}{:>10}{:>8}{:>8}{:>8}",
                "kind", "maps", "size", "rss", "pss", "dirty"
            );
            for (kind, p) in parts {
                println!(
                    "    {kind:<40}{:>6}{:>10}{:>8}{:>8}{:>8}",
                    p.mappings, p.size_kib, p.rss_kib, p.pss_kib, p.dirty_kib
                );
            }
        }
    }
}
