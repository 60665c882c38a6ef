//! Stopping a busy view with signals, on a real `vskel overlay` mount: a
//! SIGTERM while a file is open in it detaches it after the grace period
//! (it leaves the mount table, the server serves the open file and ends
//! once it is closed), and a second SIGTERM ends the grace at once.

mod common;

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use common::mount::is_mounted;
use common::{MountGuard, Setup, require_root};

/// How long anything here may take (a bound, not a measurement).
const WAIT: Duration = Duration::from_secs(30);

/// A foreground overlay server, its stderr lines arriving on `log`.
struct Server {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// `vskel overlay -f` of `base/{a,upper,work}` at `base/merged`,
    /// returned once the mount is live.
    fn start(setup: &Setup, base: &Path) -> Server {
        let mut child = setup
            .vskel_process()
            .env("VSKEL_LOG", "info")
            .args(["overlay", "-f", "-o"])
            .arg(format!(
                "lowerdir={},upperdir={},workdir={}",
                base.join("a").display(),
                base.join("upper").display(),
                base.join("work").display()
            ))
            .arg(base.join("merged"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The report on stdout comes once the mount is live.
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert!(ready.starts_with("mounted overlay"), "{ready:?}");
        let (send, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Server {
            child,
            log,
            seen: Vec::new(),
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Wait for a log line containing `text`; the lines seen so far.
    fn wait_for_line(&mut self, text: &str) -> &[String] {
        let start = Instant::now();
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = WAIT.saturating_sub(start.elapsed());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no log line with {text:?} ({e}); log: {:#?}", self.seen),
            }
        }
        &self.seen
    }

    /// Wait for the server to exit; it must succeed.
    fn wait_for_exit(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "{status}: {:#?}", self.seen);
                return;
            }
            assert!(start.elapsed() < WAIT, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Layers with a file `f` and an empty mount point.
fn layers(setup: &Setup) -> PathBuf {
    let base = setup.dir.path().join("ov");
    for sub in ["a", "upper", "work", "merged"] {
        fs::create_dir_all(base.join(sub)).unwrap();
    }
    fs::write(base.join("a/f"), "from a\n").unwrap();
    base
}

fn wait_until_unmounted(mountpoint: &Path) {
    let start = Instant::now();
    while is_mounted(mountpoint) {
        assert!(
            start.elapsed() < WAIT,
            "{} is still mounted",
            mountpoint.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_detaches_a_busy_view_after_the_grace_period() {
    if !require_root("sigterm_detaches_a_busy_view_after_the_grace_period") {
        return;
    }
    let setup = Setup::new("");
    let base = layers(&setup);
    let merged = base.join("merged");
    let _guard = MountGuard(merged.clone());
    let mut server = Server::start(&setup, &base);
    let mut open = File::open(merged.join("f")).unwrap();

    server.signal("TERM");
    server.wait_for_line("is busy");
    wait_until_unmounted(&merged);
    server.wait_for_line("detached the busy view");
    // Detached, not killed: the open file is still served.
    assert!(server.is_running());
    let mut text = String::new();
    open.read_to_string(&mut text).unwrap();
    assert_eq!(text, "from a\n");
    // The server ends once its last user leaves.
    drop(open);
    server.wait_for_exit();
}

#[test]
fn a_second_sigterm_ends_the_grace_period() {
    if !require_root("a_second_sigterm_ends_the_grace_period") {
        return;
    }
    let setup = Setup::new("");
    let base = layers(&setup);
    let merged = base.join("merged");
    let _guard = MountGuard(merged.clone());
    let mut server = Server::start(&setup, &base);
    let open = File::open(merged.join("f")).unwrap();

    server.signal("TERM");
    server.wait_for_line("is busy");
    server.signal("TERM");
    let seen = server.wait_for_line("detached the busy view").to_vec();
    wait_until_unmounted(&merged);
    // The second signal ended the grace, not the end of the period.
    let ended = seen
        .iter()
        .position(|l| l.contains("ending the grace period"));
    let detached = seen
        .iter()
        .position(|l| l.contains("detached the busy view"));
    assert!(
        ended.is_some() && ended < detached,
        "the second SIGTERM did not end the grace: {seen:#?}"
    );
    drop(open);
    server.wait_for_exit();
}
