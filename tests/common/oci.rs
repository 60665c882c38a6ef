//! Helpers for the OCI export/import tests: a private registry (Debian's
//! `docker-registry`), `skopeo copy`, podman with state of its own, and
//! canonical listings that compare trees across hosts (no inode numbers:
//! hard-link groups are named by their first path).
//!
//! The tools are not on a clean machine: a test calls
//! [`require_tools`] first, which skips it visibly, or fails it when
//! `CI=true` (CI installs them, so a missing one is an error there).
//!
//! This file uses nothing of `super`, so a benchmark can include it with
//! `#[path = "../tests/common/oci.rs"]`.
#![allow(dead_code)] // each test binary uses a different part

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tempfile::TempDir;

/// How long the registry may take to answer `GET /v2/`.
const REGISTRY_START: Duration = Duration::from_secs(20);
/// How long the registry may take to stop after SIGTERM before SIGKILL.
const REGISTRY_STOP: Duration = Duration::from_secs(2);
/// Ports tried when another process takes the free one first.
const PORT_ATTEMPTS: usize = 3;
/// Bytes of the registry's log shown when it does not start.
const LOG_TAIL: usize = 4000;
/// Differing paths [`listing_diff`] shows.
const DIFF_SHOWN: usize = 20;
/// Extended attributes of the overlay filesystem, not part of a tree.
const OVERLAY_XATTRS: &str = "trusted.overlay.";
/// `RLIMIT_NPROC` given to podman's containers: conmon itself runs with
/// 32768 here, and the runtime cannot raise a container's limit above
/// that without CAP_SYS_RESOURCE.
const CONTAINER_NPROC: u64 = 4096;
/// `RLIMIT_NOFILE` ceiling given to podman's containers (the kernel's
/// default `fs.nr_open`).
const CONTAINER_NOFILE: u64 = 1 << 20;

/// The path of executable `name` on `PATH`.
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| fs::metadata(p).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
}

/// Whether every tool of `names` is installed. A missing one skips the
/// test with a visible `SKIPPED:` line on stderr (returns false), or
/// fails it when `CI=true`: CI installs them (`.ci/run`), so there a
/// missing tool is never a silent pass.
pub fn require_tools(test: &str, names: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    for name in names {
        if tool(name).is_none() {
            assert!(
                !ci,
                "{test}: {name} not installed, and CI=true (.ci/run installs it)"
            );
            eprintln!("SKIPPED: {test}: {name} not installed");
            return false;
        }
    }
    true
}

/// A private `docker-registry` (distribution 2.8) on 127.0.0.1, no
/// auth, storing in a temporary directory; stopped and removed on drop.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
    dir: TempDir,
}

impl Registry {
    /// Start one on a free port and wait until `GET /v2/` answers 200
    /// (panics with the tail of its log if it does not within 20 s).
    pub fn start() -> Registry {
        let binary = tool("docker-registry").expect("docker-registry not installed");
        for attempt in 1..=PORT_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("vskel-registry-")
                .tempdir()
                .expect("temp dir");
            let addr = format!("127.0.0.1:{}", free_port());
            let config = dir.path().join("config.yml");
            fs::write(&config, registry_config(&dir.path().join("data"), &addr)).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).unwrap();
            let child = Command::new(&binary)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
            let mut registry = Registry { addr, child, dir };
            let Err(why) = registry.wait_ready() else {
                return registry;
            };
            let log = log_tail(&log_path);
            // Someone took the port between our probe and the bind: the
            // next attempt takes another (dropping this one stops it).
            if !(log.contains("address already in use") && attempt < PORT_ATTEMPTS) {
                panic!(
                    "docker-registry on {}: {why}; its log:\n{log}",
                    registry.addr
                );
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// `docker://127.0.0.1:PORT/REPO:TAG`.
    pub fn docker_ref(&self, repo: &str, tag: &str) -> String {
        format!("docker://{}/{repo}:{tag}", self.addr)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + REGISTRY_START;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited ({status})"));
            }
            if v2_answers_200(&self.addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("no 200 from /v2/ in {REGISTRY_START:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after 2 s; reaped either way.
    fn stop(&mut self) {
        if self.child.try_wait().unwrap_or(None).is_some() {
            return;
        }
        let pid = rustix::process::Pid::from_child(&self.child);
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::TERM) {
            eprintln!("docker-registry: SIGTERM: {e}");
        }
        let deadline = Instant::now() + REGISTRY_STOP;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    eprintln!("docker-registry: wait: {e}");
                    break;
                }
            }
        }
        if let Err(e) = self.child.kill() {
            eprintln!("docker-registry: SIGKILL: {e}");
        }
        if let Err(e) = self.child.wait() {
            eprintln!("docker-registry: wait: {e}");
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
        // The TempDir field removes the directory after this.
    }
}

/// A port no one listens on now (bound to port 0, then released).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The registry's config: filesystem storage in `data`, `addr`, warnings
/// only, no access log, no auth; a fixed secret (else it warns).
fn registry_config(data: &Path, addr: &str) -> String {
    format!(
        "version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: {addr}\n  secret: vskel-tests\n",
        data.display()
    )
}

/// Whether `GET http://ADDR/v2/` answers 200.
fn v2_answers_200(addr: &str) -> bool {
    let Ok(sock) = addr.parse() else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&sock, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let status = answer.split(|&b| b == b'\n').next().unwrap_or_default();
    let status = String::from_utf8_lossy(status);
    status.starts_with("HTTP/1.") && status.split(' ').nth(1) == Some("200")
}

fn log_tail(path: &Path) -> String {
    let log = fs::read(path).unwrap_or_default();
    String::from_utf8_lossy(&log[log.len().saturating_sub(LOG_TAIL)..]).into_owned()
}

/// `skopeo copy FROM TO` (any transports: `oci:DIR:TAG`,
/// `docker://HOST/REPO:TAG`, ...), TLS not verified (the test registry
/// speaks plain HTTP; the flags matter only for `docker://`) and no
/// signature policy (the host's `policy.json` plays no part). Panics
/// with skopeo's stderr if it fails.
pub fn skopeo_copy(from: &str, to: &str) {
    let out = Command::new(tool("skopeo").expect("skopeo not installed"))
        .args([
            "--insecure-policy",
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            from,
            to,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo copy {from} {to}: {}",
        String::from_utf8_lossy(&out.stderr).trim_end()
    );
}

/// One entry of a [`canonical_listing`]: what must survive an export and
/// an import on another host. No inode numbers: a hard-link group is
/// named by its first path (`group`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canon {
    /// `f` file, `d` directory, `l` symlink, `c`/`b` char/block device,
    /// `p` FIFO, `s` socket.
    pub kind: char,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// None for directories (their size is the filesystem's business).
    pub size: Option<u64>,
    /// Seconds and nanoseconds (directories too).
    pub mtime: (i64, i64),
    /// SHA-256 (hex) of a regular file's content.
    pub hash: Option<String>,
    /// A symlink's target.
    pub link: Option<PathBuf>,
    /// Device number of a device node, else 0.
    pub rdev: u64,
    /// Extended attributes, sorted, without `trusted.overlay.*`.
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// For a regular file whose inode other paths of the listing share:
    /// the lexicographically smallest of them (itself included). None
    /// for a file alone in the listing even if linked from outside it
    /// (say, a skel file linked into vservers): that is the host's
    /// business, not the tree's.
    pub group: Option<PathBuf>,
}

/// A canonical listing, by relative path.
pub type CanonListing = BTreeMap<PathBuf, Canon>;

/// Every entry below `dir` (not `dir` itself, symlinks not followed), by
/// path relative to `dir`.
pub fn canonical_listing(dir: &Path) -> CanonListing {
    let mut walk = Walk::default();
    walk.dir(dir, Path::new(""));
    walk.finish()
}

/// A skel's content in one listing: `global/`, `local/`, `static/`
/// (each with its own top directory, keys prefixed by the part),
/// `configfile` and `scripts/`; hard-link groups across all of them.
/// Parts a skel does not have are absent. Not its `generations/` or
/// other bookkeeping.
pub fn skel_listing(skel_dir: &Path) -> CanonListing {
    let mut walk = Walk::default();
    for part in ["global", "local", "static", "configfile", "scripts"] {
        if fs::symlink_metadata(skel_dir.join(part)).is_ok() {
            walk.entry(skel_dir, Path::new(part));
        }
    }
    walk.finish()
}

/// Collects entries, then names the hard-link groups.
#[derive(Default)]
struct Walk {
    out: CanonListing,
    inodes: HashMap<(u64, u64), Vec<PathBuf>>,
}

impl Walk {
    /// `base/rel` and, if a directory, everything below it.
    fn entry(&mut self, base: &Path, rel: &Path) {
        let path = base.join(rel);
        let meta =
            fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let ft = meta.file_type();
        let kind = if ft.is_file() {
            'f'
        } else if ft.is_dir() {
            'd'
        } else if ft.is_symlink() {
            'l'
        } else if ft.is_char_device() {
            'c'
        } else if ft.is_block_device() {
            'b'
        } else if ft.is_fifo() {
            'p'
        } else if ft.is_socket() {
            's'
        } else {
            panic!("{}: unknown file type", path.display())
        };
        if kind == 'f' && meta.nlink() > 1 {
            self.inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.to_path_buf());
        }
        let canon = Canon {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: (kind != 'd').then(|| meta.size()),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            hash: (kind == 'f').then(|| sha256_file(&path)),
            link: (kind == 'l').then(|| {
                fs::read_link(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            }),
            rdev: if matches!(kind, 'c' | 'b') {
                meta.rdev()
            } else {
                0
            },
            xattrs: tree_xattrs(&path),
            group: None,
        };
        self.out.insert(rel.to_path_buf(), canon);
        if kind == 'd' {
            self.dir(base, rel);
        }
    }

    /// Everything below directory `base/rel`.
    fn dir(&mut self, base: &Path, rel: &Path) {
        let path = base.join(rel);
        let mut names: Vec<_> = fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            self.entry(base, &rel.join(name));
        }
    }

    fn finish(mut self) -> CanonListing {
        for paths in self.inodes.into_values().filter(|p| p.len() > 1) {
            let first = paths.iter().min().unwrap().clone();
            for p in paths {
                self.out.get_mut(&p).unwrap().group = Some(first.clone());
            }
        }
        self.out
    }
}

fn sha256_file(path: &Path) -> String {
    let mut file = fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Extended attributes (not following a symlink), sorted, without the
/// overlay filesystem's own.
fn tree_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = xattr::list(path)
        .unwrap_or_else(|e| panic!("list xattrs of {}: {e}", path.display()))
        .map(|name| name.to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(OVERLAY_XATTRS))
        .map(|name| {
            let value = xattr::get(path, &name)
                .unwrap_or_else(|e| panic!("{} of {}: {e}", name, path.display()))
                .unwrap_or_default();
            (name, value)
        })
        .collect();
    out.sort();
    out
}

/// The first 20 paths where `a` and `b` differ, each with both sides,
/// and a count of all, for an assertion message; empty when equal.
pub fn listing_diff(a: &CanonListing, b: &CanonListing) -> Vec<String> {
    let paths: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    let differing: Vec<&PathBuf> = paths
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .collect();
    let mut out: Vec<String> = differing
        .iter()
        .take(DIFF_SHOWN)
        .map(|p| {
            let side = |l: &CanonListing| match l.get(*p) {
                Some(c) => format!("{c:?}"),
                None => "(absent)".to_string(),
            };
            format!(
                "{}:\n  first:  {}\n  second: {}",
                p.display(),
                side(a),
                side(b)
            )
        })
        .collect();
    if differing.len() > DIFF_SHOWN {
        out.push(format!("... {} differing paths in all", differing.len()));
    }
    out
}

/// Every blob of the image layout `layout` (`blobs/sha256/`), by digest
/// (`sha256:HEX`), with its size. "What a push would upload" after an
/// older tag is [`new_blob_bytes`] of the two.
pub fn blob_bytes(layout: &Path) -> BTreeMap<String, u64> {
    let dir = layout.join("blobs/sha256");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.unwrap();
            let size = e.metadata().unwrap().len();
            (format!("sha256:{}", e.file_name().to_string_lossy()), size)
        })
        .collect()
}

/// The digests tag `tag` of `layout` refers to: its manifest, config
/// and layers (read from `index.json` and the manifest; one platform
/// manifest, not an index of them).
pub fn tag_blobs(layout: &Path, tag: &str) -> BTreeSet<String> {
    let json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
        let path = layout.join("blobs/sha256").join(hex);
        serde_json::from_slice(
            &fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let index_path = layout.join("index.json");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let manifest = index["manifests"]
        .as_array()
        .expect("index.json: manifests")
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("{}: no tag {tag}", layout.display()))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let m = json(&manifest);
    let mut out = BTreeSet::from([
        manifest,
        m["config"]["digest"].as_str().unwrap().to_string(),
    ]);
    for layer in m["layers"].as_array().expect("manifest: layers") {
        out.insert(layer["digest"].as_str().unwrap().to_string());
    }
    out
}

/// Bytes of the blobs of `tag` that are not in `before` (a
/// [`blob_bytes`] of the layout, or the registry, before the tag was
/// written): what a push of the tag would upload.
pub fn new_blob_bytes(layout: &Path, tag: &str, before: &BTreeMap<String, u64>) -> u64 {
    let now = blob_bytes(layout);
    tag_blobs(layout, tag)
        .iter()
        .filter(|d| !before.contains_key(*d))
        .map(|d| now[d])
        .sum()
}

/// podman as root with state of its own (`--root`, `--runroot` in a
/// temporary directory, reset and removed on drop), set up for a VM
/// without systemd as PID 1, a hybrid cgroup v1 tree and no
/// CAP_SYS_RESOURCE (all found on the development VM, podman 4.3.1):
///
/// * `--runtime runc`: crun 1.8 refuses hybrid cgroups ("cgroups in
///   hybrid mode not supported, drop all controllers from cgroupv2");
///   runc 1.1 runs there.
/// * `--cgroup-manager cgroupfs`, `--events-backend file`: no systemd,
///   no journald.
/// * `--storage-driver overlay` (0.3 s a run of the Debian tree, where
///   vfs copies it: 7 s); its bind mount goes with `system reset`.
/// * [`Podman::run`] passes `--ulimit nofile=..., nproc=...` within the
///   hard limits: podman raises `RLIMIT_NOFILE` to 2^20 by default, and
///   the runtime cannot without CAP_SYS_RESOURCE ("setrlimit
///   RLIMIT_NOFILE: Operation not permitted"); `--ulimit host` does not
///   help in podman 4.3.
/// * `--network none`: no netavark or CNI needed.
/// * podman 4.3 names an `oci:DIR:TAG` image `localhost/DIR` and refuses
///   a DIR with capitals ("repository name must be lowercase"), which
///   temporary directories have: [`Podman::run_layout`] goes through a
///   lowercase symlink in the state directory (itself lowercase).
pub struct Podman {
    /// `/tmp/vskel-podman-PID-N`: lowercase (see above).
    dir: PathBuf,
    links: std::cell::Cell<u32>,
}

impl Podman {
    pub fn new() -> Podman {
        let base = Path::new("/tmp");
        let dir = (0..)
            .map(|n| base.join(format!("vskel-podman-{}-{n}", std::process::id())))
            .find(|d| match fs::create_dir(d) {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
                Err(e) => panic!("{}: {e}", d.display()),
            })
            .unwrap();
        Podman {
            dir,
            links: std::cell::Cell::new(0),
        }
    }

    /// The state directory (`--root` and `--runroot` are below it).
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// [`Podman::run_sh`] of image `tag` of the layout at `layout`.
    pub fn run_layout(&self, layout: &Path, tag: &str, script: &str) -> String {
        let n = self.links.get();
        self.links.set(n + 1);
        let link = self.dir.join(format!("layout{n}"));
        let target =
            fs::canonicalize(layout).unwrap_or_else(|e| panic!("{}: {e}", layout.display()));
        std::os::unix::fs::symlink(&target, &link).unwrap();
        self.run_sh(&format!("oci:{}:{tag}", link.display()), script)
    }

    /// `podman` with this instance's state and the flags above.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(tool("podman").expect("podman not installed"));
        cmd.arg("--root")
            .arg(self.dir.join("root"))
            .arg("--runroot")
            .arg(self.dir.join("runroot"))
            .args([
                "--storage-driver",
                "overlay",
                "--runtime",
                "runc",
                "--cgroup-manager",
                "cgroupfs",
                "--events-backend",
                "file",
            ])
            .stdin(Stdio::null());
        cmd
    }

    /// `podman run --rm --network none IMAGE /bin/sh -c SCRIPT` (IMAGE as
    /// podman takes it, e.g. `oci:DIR:TAG` with a lowercase DIR), which
    /// must succeed; its stdout.
    pub fn run_sh(&self, image: &str, script: &str) -> String {
        let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .maximum
            .unwrap_or(CONTAINER_NOFILE)
            .min(CONTAINER_NOFILE);
        let out = self
            .command()
            .args(["run", "--rm", "--network", "none"])
            .arg(format!("--ulimit=nofile={nofile}:{nofile}"))
            .arg(format!(
                "--ulimit=nproc={CONTAINER_NPROC}:{CONTAINER_NPROC}"
            ))
            .args([image, "/bin/sh", "-c", script])
            .output()
            .expect("run podman");
        assert!(
            out.status.success(),
            "podman run {image} {script:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim_end()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Default for Podman {
    fn default() -> Self {
        Podman::new()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let reset = self
            .command()
            .args(["system", "reset", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match reset {
            Ok(out) if !out.status.success() => eprintln!(
                "podman system reset: {}",
                String::from_utf8_lossy(&out.stderr).trim_end()
            ),
            Err(e) => eprintln!("podman system reset: {e}"),
            _ => {}
        }
        // Whatever is still mounted below (a reset that failed) goes
        // lazily, so the directory can be removed.
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = self.dir.to_string_lossy().into_owned();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!("remove {}: {e}", self.dir.display());
        }
    }
}

/// Whether podman can run containers here: installed, with runc, and
/// `podman info` answers with this module's flags.
pub fn podman_runs_oci() -> bool {
    if tool("podman").is_none() || tool("runc").is_none() {
        return false;
    }
    let podman = Podman::new();
    podman
        .command()
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
