//! Helpers for the lifecycle crash tests: a setup on a filesystem that
//! supports `chattr +i`, a seeded PRNG, killing a command at a chosen
//! moment, and the invariants every command must leave behind (protected
//! skel files keep `+i`, every context ID belongs to one registered
//! vserver, no temporary file is left).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::Setup;

/// SplitMix64: small, seedable, good enough to pick delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (near enough).
    pub fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

/// A u64 from the environment (decimal or 0x-hex), or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            let parsed = match v.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => v.parse(),
            };
            parsed.unwrap_or_else(|e| panic!("{name}={v:?}: {e}"))
        }
        Err(std::env::VarError::NotPresent) => default,
        Err(e) => panic!("{name}: {e}"),
    }
}

/// Does the filesystem holding `dir` take the immutable attribute?
fn supports_immutable(dir: &Path) -> bool {
    let probe = tempfile::NamedTempFile::new_in(dir).unwrap();
    let file = probe.as_file();
    let flags = rustix::fs::ioctl_getflags(file);
    flags.is_ok_and(|f| {
        rustix::fs::ioctl_setflags(file, f | rustix::fs::IFlags::IMMUTABLE).is_ok()
            && rustix::fs::ioctl_setflags(file, f).is_ok()
    })
}

/// A loop-mounted ext4 image, unmounted (and its image removed) on drop.
struct LoopExt4 {
    mountpoint: PathBuf,
    /// Holds the image and the mount point.
    dir: Option<tempfile::TempDir>,
}

impl LoopExt4 {
    /// Size of the image (sparse): room for a Debian skel and a few trees.
    const SIZE: &'static str = "3G";

    fn new(base: &Path) -> LoopExt4 {
        let dir = tempfile::Builder::new()
            .prefix("lifecycle-ext4-")
            .tempdir_in(base)
            .unwrap();
        let image = dir.path().join("image");
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        let run = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(Command::new("truncate")
            .args(["-s", Self::SIZE])
            .arg(&image));
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mountpoint));
        LoopExt4 {
            mountpoint,
            dir: Some(dir),
        }
    }
}

impl Drop for LoopExt4 {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.mountpoint)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            // Never delete through a mount that is still there.
            eprintln!("cannot unmount {}; left", self.mountpoint.display());
            std::mem::forget(self.dir.take());
        }
    }
}

/// A setup whose config says `protect = "immutable"`, on a filesystem that
/// supports it; everything is made mutable again on drop so it can go.
pub struct ProtectedSetup {
    pub setup: Setup,
    _ext4: Option<LoopExt4>,
}

impl ProtectedSetup {
    pub fn new() -> ProtectedSetup {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let forced = std::env::var_os(LOOP_ENV).is_some();
        if !forced && supports_immutable(base) {
            return ProtectedSetup {
                setup: Setup::new(PROTECT),
                _ext4: None,
            };
        }
        eprintln!(
            "NOTE: using a loop-mounted ext4 image ({})",
            if forced {
                format!("{LOOP_ENV} is set")
            } else {
                format!("{} does not support chattr +i", base.display())
            }
        );
        let ext4 = LoopExt4::new(base);
        assert!(
            supports_immutable(&ext4.mountpoint),
            "ext4 without chattr +i"
        );
        ProtectedSetup {
            setup: Setup::new_in(&ext4.mountpoint, PROTECT),
            _ext4: Some(ext4),
        }
    }
}

impl Drop for ProtectedSetup {
    fn drop(&mut self) {
        let _ = Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(self.setup.dir.path())
            .status();
    }
}

const PROTECT: &str = "protect = \"immutable\"\n";
/// Set to use the loop-mounted ext4 image even where the target directory
/// supports `chattr +i`.
const LOOP_ENV: &str = "VSKEL_TEST_LOOP_EXT4";

/// How a command that was to be killed ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// SIGKILL got it.
    Killed,
    /// It exited before the kill, with this code, after this long.
    Exited(i32, Duration),
}

/// Run `vskel ARGS` and SIGKILL it after `delay` (unless it ended first).
pub fn run_killed_after(setup: &Setup, args: &[&str], delay: Duration) -> Ended {
    let mut child = setup
        .vskel_process()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < delay {
        if let Some(status) = child.try_wait().unwrap() {
            return Ended::Exited(status.code().unwrap_or(-1), started.elapsed());
        }
        std::thread::sleep(Duration::from_micros(200).min(delay.saturating_sub(started.elapsed())));
    }
    if let Some(status) = child.try_wait().unwrap() {
        return Ended::Exited(status.code().unwrap_or(-1), started.elapsed());
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    match status.code() {
        Some(code) => Ended::Exited(code, started.elapsed()),
        None => Ended::Killed,
    }
}

/// How long `vskel ARGS` takes to run to completion (it must succeed).
pub fn timed(setup: &Setup, args: &[&str]) -> Duration {
    let started = Instant::now();
    let out = setup.vskel_process().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "vskel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed()
}

/// `vskel ARGS`: (exit code, stderr).
pub fn run(setup: &Setup, args: &[&str]) -> (i32, String) {
    let out = setup.vskel_process().args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Regular files below `dir` that lack the immutable attribute (one
/// `statx` each, as `lsattr` would see it).
pub fn lacking_immutable(dir: &Path) -> Vec<PathBuf> {
    use rustix::fs::{AtFlags, StatxAttributes, StatxFlags, statx};
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                dirs.push(entry.path());
            } else if ft.is_file() {
                let st = statx(
                    rustix::fs::CWD,
                    entry.path(),
                    AtFlags::SYMLINK_NOFOLLOW,
                    StatxFlags::BASIC_STATS,
                )
                .unwrap();
                assert!(
                    st.stx_attributes_mask.contains(StatxAttributes::IMMUTABLE),
                    "statx does not report the immutable attribute here"
                );
                if !st.stx_attributes.contains(StatxAttributes::IMMUTABLE) {
                    out.push(entry.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// A vserver's record as saved in `<root>/.vskel/vservers/NAME.toml`.
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: String,
    pub root: PathBuf,
    pub context: Option<u64>,
    pub creating: bool,
}

/// Every record, by vserver name.
pub fn records(setup: &Setup) -> BTreeMap<String, Record> {
    let dir = setup.root.join(".vskel/vservers");
    let mut out = BTreeMap::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return out;
    };
    for entry in entries {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let Some(vs) = name
            .strip_suffix(".toml")
            .filter(|_| !name.starts_with('.'))
        else {
            continue;
        };
        let text = fs::read_to_string(dir.join(&name)).unwrap();
        let value: toml::Table = toml::from_str(&text).unwrap();
        out.insert(
            vs.to_string(),
            Record {
                kind: value["kind"].as_str().unwrap().to_string(),
                root: PathBuf::from(value["root"].as_str().unwrap()),
                context: value
                    .get("context")
                    .and_then(|c| c.as_integer())
                    .map(|c| c as u64),
                creating: value
                    .get("creating")
                    .and_then(|c| c.as_bool())
                    .unwrap_or(false),
            },
        );
    }
    out
}

/// What is wrong with the context IDs and the temporary files: every
/// `<etc>/contexts/<id>` must point at a registered vserver's root, each
/// registered vserver must own exactly the one ID its record names, and
/// no temporary file may be left in the contexts, records, etc and
/// unlock-record directories or in staging.
pub fn problems(setup: &Setup) -> Vec<String> {
    let mut out = Vec::new();
    let records = records(setup);
    let contexts = setup.etc.join("contexts");
    let mut owned: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for entry in fs::read_dir(&contexts).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        if name == "nextid" || name == ".lock" {
            continue;
        }
        let Ok(id) = name.parse::<u64>() else {
            out.push(format!(
                "{}: left in the contexts directory",
                entry.path().display()
            ));
            continue;
        };
        if !entry.file_type().unwrap().is_symlink() {
            out.push(format!("{}: not a symlink", entry.path().display()));
            continue;
        }
        let target = fs::read_link(entry.path()).unwrap();
        match records.iter().find(|(_, r)| r.root == target) {
            Some((vs, r)) if !r.creating => owned.entry(vs.clone()).or_default().push(id),
            Some((vs, _)) => out.push(format!(
                "context {id} -> {}: the record of {vs} is still marked creating",
                target.display()
            )),
            None => out.push(format!(
                "context {id} -> {}: leaked (no registered vserver has that root)",
                target.display()
            )),
        }
    }
    for (vs, r) in &records {
        if r.creating {
            out.push(format!("{vs}: record still marked creating"));
            continue;
        }
        let ids = owned.get(vs).cloned().unwrap_or_default();
        if ids.len() != 1 || r.context != ids.first().copied() {
            out.push(format!(
                "{vs}: owns context IDs {ids:?}, its record names {:?}",
                r.context
            ));
        }
    }
    // (directory, whether an entry there is left behind)
    type LeftBehind = fn(&str) -> bool;
    let checks: [(PathBuf, LeftBehind); 4] = [
        (setup.etc.clone(), |n| n.starts_with('.')),
        (setup.root.join(".vskel/vservers"), |n| n.starts_with('.')),
        (setup.root.join(".vskel/unlocked"), |n| n != ".lock"),
        (setup.root.join(".vskel/staging"), |_| true),
    ];
    for (dir, left) in checks {
        for entry in fs::read_dir(&dir).into_iter().flatten() {
            let entry = entry.unwrap();
            if left(&entry.file_name().to_string_lossy()) {
                out.push(format!("{}: left behind", entry.path().display()));
            }
        }
    }
    out
}

/// The kind of every entry below `dir`, by relative path: enough to tell
/// a complete tree from a partial one, cheaply.
pub fn shape(dir: &Path) -> BTreeMap<PathBuf, char> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(rel) = dirs.pop() {
        for entry in fs::read_dir(dir.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let ft = entry.file_type().unwrap();
            let path = rel.join(entry.file_name());
            let kind = if ft.is_dir() {
                dirs.push(path.clone());
                'd'
            } else if ft.is_file() {
                'f'
            } else if ft.is_symlink() {
                'l'
            } else if ft.is_char_device() || ft.is_block_device() {
                'c'
            } else {
                'o'
            };
            out.insert(path, kind);
        }
    }
    out
}
