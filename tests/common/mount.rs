//! The one guard for a mount a test makes: dropped, it unmounts (`umount`,
//! falling back to a lazy `umount -l` when the mount is busy), waits until
//! nothing is mounted there any more and until a server named with the
//! mount point on its command line (a FUSE server) has exited, so the same
//! layers can be mounted again at once. A mount that cannot be undone
//! fails the test: no test leaves a stale mount behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// How long an unmount (and its server's exit) may take.
const GONE_TIMEOUT: Duration = Duration::from_secs(20);

/// A mount point, unmounted when dropped. Make it before mounting, so a
/// mount command that fails half-way is undone too.
pub struct MountGuard(pub PathBuf);

impl MountGuard {
    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Unmount now (what dropping does); an error if something stays
    /// mounted or its server keeps running.
    pub fn unmount(&self) -> Result<(), String> {
        let start = Instant::now();
        // Mounts may be stacked: undo them all.
        while mounted_fs_type(&self.0).is_some() {
            let plain = Command::new("umount").arg(&self.0).output();
            if !matches!(&plain, Ok(out) if out.status.success()) {
                let lazy = Command::new("umount").arg("-l").arg(&self.0).output();
                if let Ok(out) = &lazy
                    && !out.status.success()
                    && mounted_fs_type(&self.0).is_some()
                {
                    return Err(format!(
                        "umount -l {}: {}",
                        self.0.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ));
                }
            }
            if start.elapsed() > GONE_TIMEOUT {
                return Err(format!("{} stays mounted", self.0.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // A FUSE server goes on after the unmount until it has handled the
        // last requests; mounting the same layers again before it is gone
        // races with it.
        while server_running(&self.0) {
            if start.elapsed() > GONE_TIMEOUT {
                return Err(format!(
                    "the server of {} is still running",
                    self.0.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            // Failing a test that already fails would abort the process.
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// The filesystem type mounted at `mnt` (the visible one, the last
/// mounted there, per /proc/self/mountinfo), if any.
pub fn mounted_fs_type(mnt: &Path) -> Option<String> {
    let canon = fs::canonicalize(mnt).unwrap_or_else(|_| mnt.to_path_buf());
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .filter(|line| {
            line.split(' ').nth(4).is_some_and(|at| {
                let at = unescape(at);
                Path::new(&at) == canon || Path::new(&at) == mnt
            })
        })
        .filter_map(|line| {
            line.split(" - ")
                .nth(1)?
                .split(' ')
                .next()
                .map(String::from)
        })
        .next_back()
}

/// Is something mounted at `mnt`?
pub fn is_mounted(mnt: &Path) -> bool {
    mounted_fs_type(mnt).is_some()
}

/// A mountinfo path with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is there a process (a FUSE server) with `mnt` as an argument?
pub fn server_running(mnt: &Path) -> bool {
    let want = mnt.as_os_str().as_encoded_bytes();
    let me = std::process::id().to_string();
    let Ok(procs) = fs::read_dir("/proc") else {
        return false;
    };
    procs.flatten().any(|p| {
        let name = p.file_name();
        let name = name.to_string_lossy();
        name.bytes().all(|b| b.is_ascii_digit())
            && name != me
            && fs::read(p.path().join("cmdline"))
                .map(|c| c.split(|&b| b == 0).any(|arg| arg == want))
                .unwrap_or(false)
    })
}
