//! `vskel daemon` serving real views: started as a child process on a
//! real setup (skel from the built-in example, views made by `create-vs
//! --view`), with a real systemd-style notify socket. Three views with one
//! broken; a view server killed with SIGKILL and started again while the
//! others serve; `vskel mount`/`unmount`/`sync`/`status` and
//! `mount.fuse.vskel` through the daemon; reload after an edit of the config; SIGTERM unmounting all; and
//! the daemon killed with SIGKILL, its views stale, cleared by the next
//! daemon. The socket protocol's hostile inputs are tests/daemon_protocol.rs.

mod common;

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{MountGuard, Setup, require_root};
use serde_json::Value;

/// How long the tests wait for the daemon or a view to get somewhere.
const WAIT: Duration = Duration::from_secs(30);

/// A daemon child with its notify socket. Dropped: SIGKILL if still
/// running; the mount guards (dropped after) undo what is left.
struct Daemon {
    child: Child,
    notify: UnixDatagram,
}

impl Daemon {
    /// Start `vskel daemon` with `$NOTIFY_SOCKET` at `<dir>/notify-N`, and
    /// wait for its `READY=1`.
    fn start(setup: &Setup, n: u32) -> Daemon {
        let path = setup.dir.path().join(format!("notify-{n}"));
        let _ = fs::remove_file(&path);
        let notify = UnixDatagram::bind(&path).unwrap();
        notify.set_read_timeout(Some(WAIT)).unwrap();
        let child = setup
            .vskel_process()
            .arg("daemon")
            .env("NOTIFY_SOCKET", &path)
            .env("VSKEL_LOG", "info")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let daemon = Daemon { child, notify };
        daemon.wait_message("READY=1");
        daemon
    }

    /// Read notify messages until one has `line`; the messages read.
    fn wait_message(&self, line: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = self
                .notify
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {line} from the daemon ({e}); got {seen:?}"));
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let found = message.lines().any(|l| l == line);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// Wait for its exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(start.elapsed() < WAIT, "the daemon does not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A setup whose daemon serves `views` (TOML list) at `<dir>/run/vskel.sock`,
/// with views web1 and web2 made, and guards for their mount points.
fn setup(views: &str) -> (Setup, Vec<MountGuard>) {
    let setup = Setup::new("");
    let socket = setup.dir.path().join("run").join("vskel.sock");
    let config = fs::read_to_string(&setup.config).unwrap();
    fs::write(
        &setup.config,
        format!("{config}\n[daemon]\nsocket = {socket:?}\nviews = {views}\n"),
    )
    .unwrap();
    setup.build_example_skel("base");
    let mut guards = Vec::new();
    for (name, ip) in [("web1", "10.0.0.1"), ("web2", "10.0.0.2")] {
        let dir = setup.create_view("base", name, ip);
        guards.push(MountGuard(dir.join("merged")));
    }
    (setup, guards)
}

/// `vskel status --format json`, by name.
fn status(setup: &Setup) -> Vec<Value> {
    let out = setup.run_ok(&["status", "--format", "json"]);
    let report: Value = serde_json::from_str(&out).unwrap();
    report["vservers"].as_array().unwrap().clone()
}

fn of<'a>(vservers: &'a [Value], name: &str) -> &'a Value {
    vservers
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {vservers:?}"))
}

/// Wait until `done` holds of the status.
fn wait_status(setup: &Setup, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let now = status(setup);
        if done(&now) {
            return now;
        }
        assert!(start.elapsed() < WAIT, "{what}: {now:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The view serves: a file of the skel reads through its mount.
fn serves(merged: &Path) -> bool {
    fs::read_to_string(merged.join("etc/hostname")).is_ok()
}

/// Is anything mounted at `path` (per /proc/self/mountinfo)?
fn mounted(path: &Path) -> bool {
    let path = path.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path))
}

fn merged(setup: &Setup, name: &str) -> PathBuf {
    setup.root.join(".views").join(name).join("merged")
}

#[test]
fn views_are_served_supervised_and_unmounted_on_sigterm() {
    if !require_root("views_are_served_supervised_and_unmounted_on_sigterm") {
        return;
    }
    let (setup, _guards) = setup(r#"["web1", "web2", "web3"]"#);
    // web3: a view whose upper layer is gone (broken layers).
    let web3 = setup.create_view("base", "web3", "10.0.0.3");
    let _guard3 = MountGuard(web3.join("merged"));
    fs::remove_dir_all(web3.join("upper")).unwrap();
    let mut daemon = Daemon::start(&setup, 1);
    let (web1, web2) = (merged(&setup, "web1"), merged(&setup, "web2"));
    assert!(serves(&web1) && serves(&web2));
    let now = status(&setup);
    for name in ["web1", "web2"] {
        let view = of(&now, name);
        assert_eq!(view["mounted"], true, "{view}");
        assert_eq!(view["served_by"], "daemon", "{view}");
        assert!(view["pid"].as_u64().is_some(), "{view}");
    }
    let broken = of(&now, "web3");
    assert_eq!(broken["mounted"], false, "{broken}");
    assert!(
        broken["error"]
            .as_str()
            .is_some_and(|e| e.contains("upper")),
        "the broken view's error names its layer: {broken}"
    );
    // Its server killed, web1 is mounted again (a new server) while web2
    // serves on.
    let old = of(&now, "web1")["pid"].as_u64().unwrap();
    let web2_pid = of(&now, "web2")["pid"].clone();
    assert!(
        Command::new("kill")
            .args(["-9", &old.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let now = wait_status(&setup, "web1 served again", |s| {
        let v = of(s, "web1");
        v["served_by"] == "daemon" && v["pid"].as_u64().is_some_and(|p| p != old)
    });
    assert!(serves(&web1), "web1 serves again");
    assert!(serves(&web2));
    assert_eq!(of(&now, "web2")["pid"], web2_pid, "web2 kept its server");
    // `vskel mount` of a served view does not start a second server.
    let out = setup.run_ok(&["mount", "web2"]);
    assert!(out.contains("served by the daemon"), "{out}");
    assert_eq!(of(&status(&setup), "web2")["pid"], web2_pid);
    // A view that cannot be mounted, asked for by a command: the error
    // goes back, and the daemon does not go on trying.
    let out = setup.vskel().args(["mount", "nosuch"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no vserver named \"nosuch\""),
        "{out:?}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        status(&setup).iter().all(|v| v["name"] != "nosuch"),
        "not looked after"
    );
    // A file written through the view, synced through the daemon.
    fs::write(web2.join("etc/motd"), "through the daemon\n").unwrap();
    let out = setup.run_ok(&["sync", "web2"]);
    assert!(out.contains("writes were held"), "{out}");
    assert_eq!(
        fs::read_to_string(setup.root.join("web2/etc/motd")).unwrap(),
        "through the daemon\n"
    );
    // Unmounted through the daemon, it stays unmounted; mounted again.
    setup.run_ok(&["unmount", "web2"]);
    assert!(!mounted(&web2));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!mounted(&web2), "not restarted after `vskel unmount`");
    // mount(8)'s helper (`mount -t fuse.vskel base:web2 ...`) goes
    // through the daemon too.
    let out = Command::new(env!("CARGO_BIN_EXE_vskel"))
        .args(["mount.fuse.vskel", "base:web2"])
        .arg(&web2)
        .arg("-o")
        .arg(format!("config={}", setup.config.display()))
        .env("VSKEL_LOG", "warn")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("served by the daemon"),
        "{out:?}"
    );
    assert!(serves(&web2));
    assert_eq!(of(&status(&setup), "web2")["served_by"], "daemon");
    // SIGTERM: every view unmounted, a busy one lazily; exit 0.
    let busy = fs::File::open(web1.join("etc/hostname")).unwrap();
    daemon.signal("TERM");
    daemon.wait_message("STOPPING=1");
    let exit = daemon.wait();
    assert!(exit.success(), "{exit:?}");
    drop(busy);
    assert!(!mounted(&web1), "the busy view was detached");
    assert!(!mounted(&web2));
    assert!(!setup.dir.path().join("run/vskel.sock").exists());
}

#[test]
fn a_killed_daemon_is_replaced_and_reload_follows_the_config() {
    if !require_root("a_killed_daemon_is_replaced_and_reload_follows_the_config") {
        return;
    }
    let (setup, _guards) = setup(r#"["web1"]"#);
    let (web1, web2) = (merged(&setup, "web1"), merged(&setup, "web2"));
    let mut daemon = Daemon::start(&setup, 1);
    assert!(serves(&web1));
    assert!(!mounted(&web2), "web2 is not configured");
    // Reload after an edit: web2 mounted, web1 unmounted.
    let config = fs::read_to_string(&setup.config).unwrap();
    fs::write(
        &setup.config,
        config.replace(r#"views = ["web1"]"#, r#"views = ["web2"]"#),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_status(&setup, "web2 mounted, web1 not", |s| {
        of(s, "web2")["served_by"] == "daemon" && of(s, "web1")["mounted"] == false
    });
    assert!(serves(&web2));
    // The daemon and its servers killed at once (an OOM kill, systemd's
    // final SIGKILL): web2's mount is left stale.
    // (The server first: the daemon starts it again only after a 1 s
    // backoff, and is gone by then. A stopped server would be woken by
    // the SIGHUP of its orphaned process group and unmount.)
    let server = of(&status(&setup), "web2")["pid"]
        .as_u64()
        .unwrap()
        .to_string();
    let kill = |pid: &str| {
        assert!(
            Command::new("kill")
                .args(["-KILL", pid])
                .status()
                .unwrap()
                .success()
        );
    };
    kill(&server);
    kill(&daemon.pid().to_string());
    daemon.wait();
    let stale = wait_status(&setup, "web2 stale", |s| of(s, "web2")["stale"] == true);
    assert_eq!(of(&stale, "web2")["mounted"], true);
    // The next daemon clears the stale mount and mounts the view again.
    let _next = Daemon::start(&setup, 2);
    assert!(serves(&web2), "remounted by the next daemon");
    assert_eq!(of(&status(&setup), "web2")["served_by"], "daemon");
}

#[test]
fn a_daemon_killed_alone_takes_its_views_down_with_it() {
    if !require_root("a_daemon_killed_alone_takes_its_views_down_with_it") {
        return;
    }
    let (setup, _guards) = setup(r#"["web1", "web2"]"#);
    let mut daemon = Daemon::start(&setup, 1);
    let (web1, web2) = (merged(&setup, "web1"), merged(&setup, "web2"));
    assert!(serves(&web1) && serves(&web2));
    // Its servers hold a pipe to it: they unmount and exit.
    daemon.child.kill().unwrap();
    daemon.wait();
    let start = Instant::now();
    while mounted(&web1) || mounted(&web2) {
        assert!(start.elapsed() < WAIT, "the views outlive their daemon");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn an_upgraded_view_stays_the_daemons() {
    if !require_root("an_upgraded_view_stays_the_daemons") {
        return;
    }
    let (setup, _guards) = setup(r#"["web1"]"#);
    let web1 = merged(&setup, "web1");
    let _daemon = Daemon::start(&setup, 1);
    let before = of(&status(&setup), "web1")["pid"].as_u64().unwrap();
    // A new generation of the skel, made as package work makes it.
    setup.run_ok(&["merge-skel", "base"]);
    let temp = setup.root.join("tmp_skel_base");
    fs::write(temp.join("usr/bin/added-by-v2"), "v2\n").unwrap();
    setup.run_ok(&["split-skel", "base"]);
    assert!(
        !web1.join("usr/bin/added-by-v2").exists(),
        "pinned to its generation"
    );
    // upgrade-vs unmounts the view, upgrades it and mounts it again:
    // through the daemon, which serves it with a new server.
    setup.run_ok(&["upgrade-vs", "web1"]);
    let now = wait_status(&setup, "web1 served by the daemon again", |s| {
        let v = of(s, "web1");
        v["served_by"] == "daemon" && v["pid"].as_u64().is_some_and(|p| p != before)
    });
    assert_eq!(of(&now, "web1")["error"], Value::Null);
    assert_eq!(
        fs::read_to_string(web1.join("usr/bin/added-by-v2")).unwrap(),
        "v2\n"
    );
}
