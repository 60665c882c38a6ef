//! Helpers shared by the integration tests: a temporary vskel setup (config,
//! vservers root, etc dir, defaults dir) and ways to look at trees.
#![allow(dead_code)] // each test binary uses a different part

pub mod debs;
pub mod hostile;
pub mod hostile_ops;
pub mod mount;
pub mod oci;
pub mod smallfs;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

pub mod lifecycle;

pub use mount::MountGuard;

/// A temporary vskel installation; its immutable files are unlocked when
/// it is dropped, so that its directory can be removed.
pub struct Setup {
    /// Holds everything; removed on drop.
    pub dir: TempDir,
    /// The config file.
    pub config: PathBuf,
    /// `root` (vservers root).
    pub root: PathBuf,
    /// `etc` (vserver configs and contexts).
    pub etc: PathBuf,
    /// `defaults` (scripts/, configfile.default).
    pub defaults: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let unprotected = fs::read_to_string(&self.config)
            .is_ok_and(|c| c.lines().any(|l| l.trim() == "protect = \"none\""));
        if unprotected {
            return;
        }
        // `chattr -R` does not follow symlinks; its complaints about
        // device nodes and sockets do not matter here.
        let _ = std::process::Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(self.dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl Setup {
    /// A setup with the default config plus `extra` TOML lines; shared
    /// files unprotected (`protect = "none"`) unless `extra` sets
    /// `protect` (most tests change skel files in place to make a new
    /// generation; [`Setup::with_default_protection`] tests the default).
    pub fn new(extra: &str) -> Self {
        Setup::new_in(Path::new(env!("CARGO_TARGET_TMPDIR")), extra)
    }

    /// A setup with vskel's own default protection (no `protect` key).
    pub fn with_default_protection(extra: &str) -> Self {
        Setup::new_in_raw(Path::new(env!("CARGO_TARGET_TMPDIR")), extra)
    }

    /// [`Setup::new`], in a new directory below `base` (a filesystem of
    /// the test's own, say).
    pub fn new_in(base: &Path, extra: &str) -> Self {
        let sets_protect = extra.lines().any(|l| l.trim_start().starts_with("protect"));
        if sets_protect {
            Setup::new_in_raw(base, extra)
        } else {
            Setup::new_in_raw(base, &format!("protect = \"none\"\n{extra}"))
        }
    }

    fn new_in_raw(base: &Path, extra: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("vskel-test-")
            .tempdir_in(base)
            .expect("temp dir");
        let root = dir.path().join("vservers");
        let etc = dir.path().join("etc-vservers");
        let defaults = dir.path().join("etc-vskel");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(&defaults).unwrap();
        let config = dir.path().join("vskel.toml");
        fs::write(
            &config,
            format!("root = {root:?}\netc = {etc:?}\ndefaults = {defaults:?}\n{extra}\n"),
        )
        .unwrap();
        Setup {
            dir,
            config,
            root,
            etc,
            defaults,
        }
    }

    /// `vskel ARGS`, which must succeed; its stdout.
    pub fn run_ok(&self, args: &[&str]) -> String {
        let out = self.vskel().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "vskel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `vskel -c CONFIG` with no terminal, quiet logs and CI set.
    pub fn vskel(&self) -> Command {
        let mut cmd = Command::cargo_bin("vskel").expect("vskel binary");
        cmd.arg("--config")
            .arg(&self.config)
            .env("CI", "true")
            .env("VSKEL_LOG", "warn")
            .env_remove("VSKEL_CONFIG");
        cmd
    }

    /// `vskel -c CONFIG` as a plain process (to spawn, time or kill),
    /// with the same environment as [`Setup::vskel`].
    pub fn vskel_process(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vskel"));
        cmd.arg("--config")
            .arg(&self.config)
            .env("CI", "true")
            .env("VSKEL_LOG", "warn")
            .env_remove("VSKEL_CONFIG");
        cmd
    }

    /// The built-in example root tree, made once per setup.
    pub fn example_source(&self) -> PathBuf {
        let src = self.dir.path().join("example-root");
        if !src.exists() {
            vskel::example::make_example_root(&src).expect("example tree");
        }
        src
    }

    /// Build skel `name` from the example tree.
    pub fn build_example_skel(&self, name: &str) -> PathBuf {
        let src = self.example_source();
        self.vskel()
            .args(["build-skel", name, "--from"])
            .arg(&src)
            .assert()
            .success();
        self.root.join(".skel").join(name)
    }

    /// Build skel `name` from the real Debian tree (`debian_rootfs`).
    pub fn build_debian_skel(&self, name: &str) -> PathBuf {
        let rootfs = debian_rootfs();
        self.vskel()
            .args(["build-skel", name, "--from"])
            .arg(&rootfs)
            .assert()
            .success();
        self.root.join(".skel").join(name)
    }

    /// `create-vs --view SKEL NAME NAME.example.org IP`, which must
    /// succeed; returns the view's directory `<root>/.views/NAME`.
    pub fn create_view(&self, skel: &str, name: &str, ip: &str) -> PathBuf {
        self.vskel()
            .args([
                "create-vs",
                "--view",
                skel,
                name,
                &format!("{name}.example.org"),
                ip,
            ])
            .assert()
            .success();
        self.root.join(".views").join(name)
    }

    /// `create-vs SKEL NAME NAME.example.org IP`, which must succeed.
    pub fn create(&self, skel: &str, name: &str, ip: &str) -> PathBuf {
        self.vskel()
            .args(["create-vs", skel, name, &format!("{name}.example.org"), ip])
            .assert()
            .success();
        self.root.join(name)
    }
}

/// What a snapshot records of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ino: u64,
    pub nlink: u64,
    pub link: Option<PathBuf>,
    pub content: Option<Vec<u8>>,
}

/// Every entry below `dir` (not following symlinks), by relative path.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

fn walk(base: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
    let path = base.join(rel);
    let meta = fs::symlink_metadata(&path).unwrap();
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "special"
    };
    out.insert(
        rel.to_path_buf(),
        Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: if ft.is_dir() { 0 } else { meta.size() },
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ino: meta.ino(),
            nlink: meta.nlink(),
            link: ft.is_symlink().then(|| fs::read_link(&path).unwrap()),
            content: ft.is_file().then(|| fs::read(&path).unwrap()),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            walk(base, &rel.join(name), out);
        }
    }
}

/// Device and inode of a path (not following a symlink).
pub fn dev_ino(path: &Path) -> (u64, u64) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// Extended attributes of a path (not following a symlink), sorted.
pub fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = xattr::list(path)
        .unwrap()
        .map(|name| {
            let value = xattr::get(path, &name).unwrap().unwrap_or_default();
            (name.to_string_lossy().into_owned(), value)
        })
        .collect();
    out.sort();
    out
}

/// Tests that need root (real hard links owned by others, chroot, chattr,
/// mounts) fail without it, saying so: a test that cannot run is never
/// counted as passed. Returns true (so callers read `if !require_root(..)
/// { return; }` as "only as root").
pub fn require_root(test: &str) -> bool {
    assert!(
        rustix::process::geteuid().is_root(),
        "{test} needs root (CI runs as root): run the tests as root"
    );
    true
}

/// Where the debootstrap fixture lives (`VSKEL_ROOTFS` overrides).
pub const DEFAULT_ROOTFS: &str = "/var/tmp/vskel-fixtures/rootfs-bookworm";

/// The real Debian minbase tree from `../shared/fixtures/make-rootfs.sh`,
/// built on first use and cached; a lock keeps concurrent tests from
/// building it twice.
pub fn debian_rootfs() -> PathBuf {
    let dir = std::env::var_os("VSKEL_ROOTFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOTFS));
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    let lock_path = dir.with_extension("lock");
    let lock = fs::File::create(&lock_path).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    if !dir.join(".vskel-rootfs-complete").exists() {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/make-rootfs.sh");
        assert!(
            script.exists(),
            "{} is missing: the shared fixtures must sit beside the checkout",
            script.display()
        );
        let status = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "make-rootfs.sh failed");
    }
    dir
}

/// Bytes on disk of everything below `dirs`, each inode counted once
/// (like `du -s a b c`).
pub fn disk_usage(dirs: &[&Path]) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    for dir in dirs {
        for (rel, _) in snapshot_meta_only(dir) {
            let m = fs::symlink_metadata(dir.join(&rel)).unwrap();
            if seen.insert((m.dev(), m.ino())) {
                total += m.blocks() * 512;
            }
        }
    }
    total
}

/// Relative paths below `dir` (no contents read).
fn snapshot_meta_only(dir: &Path) -> Vec<(PathBuf, bool)> {
    let mut out = vec![(PathBuf::new(), true)];
    let mut i = 0;
    while i < out.len() {
        let (rel, is_dir) = out[i].clone();
        i += 1;
        if !is_dir {
            continue;
        }
        for entry in fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let is_dir = entry.file_type().unwrap().is_dir();
            out.push((rel.join(entry.file_name()), is_dir));
        }
    }
    out
}

/// A real Debian package to install in tests (`apt-get download hello`,
/// cached beside the rootfs fixture).
pub fn hello_deb() -> PathBuf {
    let dir = Path::new(DEFAULT_ROOTFS).with_file_name("debs");
    fs::create_dir_all(&dir).unwrap();
    let lock = fs::File::create(dir.join(".lock")).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let find = || {
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| {
                let name = p.file_name().unwrap().to_string_lossy();
                name.starts_with("hello_") && name.ends_with(".deb")
            })
    };
    if let Some(deb) = find() {
        return deb;
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("apt-get download hello || (apt-get update -qq && apt-get download hello)")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "apt-get download hello failed");
    find().expect("hello .deb after download")
}

/// Every file below `dir` with its content hash and metadata, for
/// "nothing changed" checks on big trees.
pub fn fingerprint(dir: &Path) -> BTreeMap<PathBuf, (Entry, Option<u64>)> {
    use std::hash::{Hash, Hasher};
    snapshot(dir)
        .into_iter()
        .map(|(path, mut entry)| {
            let hash = entry.content.take().map(|c| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                c.hash(&mut h);
                h.finish()
            });
            (path, (entry, hash))
        })
        .collect()
}

/// Run `script` with /bin/sh inside `root` (chroot), with a clean
/// environment; it must succeed. Returns its stdout.
pub fn chroot_sh(root: &Path, script: &str) -> String {
    let out = std::process::Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "chroot {} {script:?}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One entry of a canonical listing: what a synced tree must get right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canonical {
    pub kind: &'static str,
    pub mode: u32,
    pub owner: (u32, u32),
    pub size: u64,
    pub mtime: (i64, i64),
    /// Hash of a regular file's content.
    pub content: Option<u64>,
    pub link: Option<PathBuf>,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Shares an inode with the skel.
    pub shares_skel: bool,
    /// The first path (in order) of its hard-link group within the tree.
    pub group: Option<PathBuf>,
}

/// A canonical listing, by path relative to the tree.
pub type Listing = BTreeMap<PathBuf, Canonical>;

/// The canonical listing of a vserver tree made from `skel` (the skel's
/// directory, whose inodes count as shared).
pub fn canonical(tree: &Path, skel: &Path) -> Listing {
    let skel_inodes: HashSet<(u64, u64)> = snapshot_meta_only(skel)
        .into_iter()
        .map(|(rel, _)| dev_ino(&skel.join(rel)))
        .collect();
    let mut first_of: HashMap<(u64, u64), PathBuf> = HashMap::new();
    fingerprint(tree)
        .into_iter()
        .map(|(rel, (e, hash))| {
            let di = dev_ino(&tree.join(&rel));
            let group = (e.kind != "dir" && e.nlink > 1)
                .then(|| first_of.entry(di).or_insert_with(|| rel.clone()).clone());
            let entry = Canonical {
                kind: e.kind,
                mode: e.mode,
                owner: (e.uid, e.gid),
                size: e.size,
                mtime: e.mtime,
                content: hash,
                link: e.link,
                xattrs: xattrs(&tree.join(&rel)),
                shares_skel: e.kind != "dir" && skel_inodes.contains(&di),
                group,
            };
            (rel, entry)
        })
        .collect()
}

/// The differences between two listings, one line each (`a` is "first",
/// `b` "second").
pub fn diff(a: &Listing, b: &Listing) -> Vec<String> {
    let mut out = Vec::new();
    for (path, ea) in a {
        match b.get(path) {
            None => out.push(format!("{}: only in the first tree", path.display())),
            Some(eb) if ea != eb => out.push(format!("{}: {ea:?} vs {eb:?}", path.display())),
            _ => {}
        }
    }
    for path in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("{}: only in the second tree", path.display()));
    }
    out
}
