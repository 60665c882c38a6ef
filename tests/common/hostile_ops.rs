//! The hostile children of the fuzz test, run by this test binary when
//! [`super::hostile::CHILD_ENV`] holds their plan:
//!
//! * `view`: seeded random operations inside a mounted view (its root is
//!   the child's stdin; a root child chroots into it) by several threads:
//!   open files whose names are then replaced by symlinks to the decoy or
//!   the skel before the descriptors are changed (fchmod, fchown,
//!   ftruncate, futimens, fsetxattr) or reopened through /proc/self/fd;
//!   directories swapped for symlinks while descriptors of the old ones are
//!   used; hard links across directories; FIFOs (and device nodes as root);
//!   sparse files; setuid modes; user xattrs; RENAME_EXCHANGE; unlinked open
//!   files changed through their descriptors.
//! * `finding1` / `finding1-proc`: issue 9's finding 1 exactly.
//! * `racer`: a vserver's root in its tree during syncs: inotify tells it
//!   of every name created there and it renames a symlink to the decoy over
//!   it at once; another thread swaps directories for symlinks and entries
//!   for FIFOs and symlinks.
//!
//! Every operation is logged (one line, with its result) to stdout, which
//! the parent sends to a log file. Children only act through descriptors
//! and names inside the view or tree: on their own they cannot reach the
//! decoy (an unprivileged child cannot enter the setup's 0700 directory, a
//! root child is chrooted, the racer acts relative to directory descriptors
//! without following symlinks), so whatever changes there was done by
//! vskel.

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::fs::{
    AtFlags, CWD, FileType, Gid, Mode, OFlags, RenameFlags, Timespec, Timestamps, Uid, XattrFlags,
    inotify,
};
use rustix::io::Errno;

use super::hostile::{Plan, Rng};

/// Leaf names the operations use in every work directory (few, so that
/// threads and processes collide).
const NAMES: &[&str] = &["n0", "n1", "n2", "n3", "n4", "n5"];

/// Modes given to files (setuid and setgid among them).
const MODES: &[u32] = &[
    0o4777, 0o6777, 0o4755, 0o2755, 0o777, 0o1777, 0o644, 0o600, 0o000, 0o755,
];

/// Sizes files are truncated to (the large ones sparse).
const SIZES: &[u64] = &[0, 1, 100, 4096, 1 << 20, 1 << 30];

/// Flags of every open by name: never through a symlink, never blocking
/// on a FIFO.
const OPEN_FLAGS: OFlags = OFlags::NOFOLLOW
    .union(OFlags::NONBLOCK)
    .union(OFlags::CLOEXEC);

/// Descriptors a thread keeps open at most.
const MAX_FDS: usize = 24;

/// A `security.capability` value (cap_net_raw+ep), as in the example.
const CAPABILITY: [u8; 20] = [
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
];

/// Run the child described by `plan`.
pub fn run(plan: Plan) {
    match plan.role.as_str() {
        "view" => view_child(plan),
        "finding1" | "finding1-proc" => finding1_child(plan),
        "racer" => racer_child(plan),
        other => panic!("unknown hostile child role {other:?}"),
    }
}

/// A log longer than this starts again with its last lines, so that a
/// long run does not fill the disk.
const LOG_LIMIT: usize = 16 << 20;

/// Lines a log keeps when it starts again.
const LOG_KEEP: usize = 200;

/// The log: one line per operation on stdout (a file opened for
/// appending).
struct Log {
    label: String,
    start: Instant,
    state: Mutex<LogState>,
}

#[derive(Default)]
struct LogState {
    recent: std::collections::VecDeque<String>,
    written: usize,
}

impl Log {
    fn new(label: &str) -> Log {
        Log {
            label: label.to_string(),
            start: Instant::now(),
            state: Mutex::default(),
        }
    }

    fn line(&self, who: &str, text: &str) {
        let ms = self.start.elapsed().as_millis();
        let line = format!("{ms:>7}ms {}/{who} {text}\n", self.label);
        let mut state = self.state.lock().unwrap();
        let mut out = std::io::stdout().lock();
        // A log that cannot be written is no reason to stop the attack.
        if state.written > LOG_LIMIT && rustix::fs::ftruncate(rustix::stdio::stdout(), 0).is_ok() {
            let _ = out.write_all(b"(log too long: started again with its last lines)\n");
            state.written = 0;
            for old in &state.recent {
                let _ = out.write_all(old.as_bytes());
            }
        }
        let _ = out.write_all(line.as_bytes());
        state.written += line.len();
        if state.recent.len() == LOG_KEEP {
            state.recent.pop_front();
        }
        state.recent.push_back(line);
    }
}

/// An operation's result as a short word.
fn outcome<T>(r: &rustix::io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_string(),
        Err(e) => errno_name(*e),
    }
}

fn errno_name(e: Errno) -> String {
    let name = match e {
        Errno::NOENT => "ENOENT",
        Errno::ACCESS => "EACCES",
        Errno::PERM => "EPERM",
        Errno::EXIST => "EEXIST",
        Errno::ISDIR => "EISDIR",
        Errno::NOTDIR => "ENOTDIR",
        Errno::LOOP => "ELOOP",
        Errno::INVAL => "EINVAL",
        Errno::NOTEMPTY => "ENOTEMPTY",
        Errno::XDEV => "EXDEV",
        Errno::BADF => "EBADF",
        Errno::NXIO => "ENXIO",
        Errno::NOTSUP => "EOPNOTSUPP",
        Errno::NODATA => "ENODATA",
        Errno::BUSY => "EBUSY",
        Errno::AGAIN => "EAGAIN",
        Errno::STALE => "ESTALE",
        Errno::IO => "EIO",
        Errno::FBIG => "EFBIG",
        Errno::NOSPC => "ENOSPC",
        Errno::ROFS => "EROFS",
        Errno::TXTBSY => "ETXTBSY",
        Errno::MLINK => "EMLINK",
        _ => return format!("errno {}", e.raw_os_error()),
    };
    name.to_string()
}

/// The parent of a relative path (`.` for a top-level name).
fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(p, _)| p)
}

// ---------------------------------------------------------------------
// Inside a view.

/// What all threads of a view child share.
struct Shared {
    plan: Plan,
    root: bool,
    proc_fd: OwnedFd,
    log: Log,
    deadline: Instant,
}

/// A descriptor a thread holds, with the path it was opened at.
struct Held {
    fd: OwnedFd,
    path: String,
}

/// One thread's state.
struct Worker<'a> {
    sh: &'a Shared,
    id: usize,
    rng: Rng,
    n: u64,
    fds: Vec<Held>,
    dirfds: Vec<Held>,
    /// Swapped directories: (its name, where it went).
    olds: Vec<(String, String)>,
}

fn view_child(plan: Plan) {
    let log = Log::new(&plan.label);
    // /proc/self/fd stays reachable after a chroot through this descriptor.
    let proc_fd = rustix::fs::openat(
        CWD,
        "/proc/self/fd",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open /proc/self/fd");
    rustix::process::fchdir(rustix::stdio::stdin()).expect("fchdir into the view (stdin)");
    // What one child makes, the others may use.
    rustix::process::umask(Mode::empty());
    if plan.chroot {
        rustix::process::chroot(".").expect("chroot into the view");
        rustix::process::chdir("/").expect("chdir /");
    }
    let root = rustix::process::geteuid().is_root();
    log.line(
        "main",
        &format!(
            "start: seed {} threads {} root {root} chroot {} for {} ms",
            plan.seed, plan.threads, plan.chroot, plan.millis
        ),
    );
    let sh = Shared {
        deadline: Instant::now() + Duration::from_millis(plan.millis),
        plan,
        root,
        proc_fd,
        log,
    };
    let total = AtomicU64::new(0);
    std::thread::scope(|s| {
        for id in 0..sh.plan.threads {
            let (sh, total) = (&sh, &total);
            s.spawn(move || {
                let mut w = Worker {
                    sh,
                    id,
                    rng: Rng::new(sh.plan.seed, id as u64),
                    n: 0,
                    fds: Vec::new(),
                    dirfds: Vec::new(),
                    olds: Vec::new(),
                };
                while Instant::now() < sh.deadline && sh.plan.max_ops.is_none_or(|m| w.n < m) {
                    w.n += 1;
                    w.step();
                }
                total.fetch_add(w.n, Ordering::Relaxed);
            });
        }
    });
    sh.log.line(
        "main",
        &format!("done: {} operations", total.load(Ordering::Relaxed)),
    );
}

impl Worker<'_> {
    fn log(&self, text: &str) {
        self.sh.log.line(&format!("t{} #{}", self.id, self.n), text);
    }

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=6 => self.create(),
            7..=10 => self.open_existing(),
            11..=24 => self.attack_open_file(),
            25..=33 => self.symlink_over(),
            34..=51 => {
                if let Some(i) = self.pick_fd() {
                    self.fd_op(i)
                }
            }
            52..=55 => self.dir_swap(),
            56..=57 => self.dir_restore(),
            58..=64 => self.dirfd_op(),
            65..=68 => self.hard_link(),
            69..=72 => self.mknod(),
            73..=74 => self.sparse(),
            75..=79 => self.rename_exchange(),
            80..=82 => self.rename(),
            83..=87 => self.unlink_open(),
            88..=90 => self.mkdir(),
            91 => self.rmdir(),
            92..=94 => self.close(),
            _ => self.chmod_by_name(),
        }
    }

    /// A path in a work directory, or (as root, sometimes) a skel entry.
    fn path(&mut self) -> String {
        if self.sh.root && !self.sh.plan.attack.is_empty() && self.rng.chance(25) {
            return self.rng.pick(&self.sh.plan.attack).clone();
        }
        self.work_path()
    }

    fn work_path(&mut self) -> String {
        let dir = self.rng.pick(&self.sh.plan.work_dirs).clone();
        format!("{dir}/{}", self.rng.pick(NAMES))
    }

    /// A path to rename or exchange onto: any path, or a directory.
    fn dest(&mut self) -> String {
        if self.rng.chance(10) && !self.sh.plan.swap_dirs.is_empty() {
            return self.rng.pick(&self.sh.plan.swap_dirs).clone();
        }
        self.path()
    }

    /// A symlink target: mostly outside the vserver.
    fn target(&mut self) -> String {
        match self.rng.below(100) {
            0..=79 => self.rng.pick(&self.sh.plan.file_targets).clone(),
            80..=94 => self.rng.pick(&self.sh.plan.dir_targets).clone(),
            95..=97 => "n1".to_string(),
            _ => "../n2".to_string(),
        }
    }

    fn pick_fd(&mut self) -> Option<usize> {
        (!self.fds.is_empty()).then(|| self.rng.below(self.fds.len() as u64) as usize)
    }

    fn hold(&mut self, fd: OwnedFd, path: String) {
        if self.fds.len() >= MAX_FDS {
            self.fds.remove(0);
        }
        self.fds.push(Held { fd, path });
    }

    fn create(&mut self) {
        let p = self.path();
        let mode = *self.rng.pick(&[0o644, 0o600, 0o755, 0o4755]);
        let r = rustix::fs::openat(
            CWD,
            p.as_str(),
            OFlags::CREATE | OFlags::RDWR | OPEN_FLAGS,
            Mode::from_raw_mode(mode),
        );
        self.log(&format!("create {p} {mode:#o} -> {}", outcome(&r)));
        if let Ok(fd) = r {
            self.hold(fd, p);
        }
    }

    fn open_existing(&mut self) {
        let p = if self.sh.root && self.rng.chance(40) && !self.sh.plan.attack.is_empty() {
            self.rng.pick(&self.sh.plan.attack).clone()
        } else {
            self.path()
        };
        let (access, name) = *self.rng.pick(&[
            (OFlags::RDONLY, "r"),
            (OFlags::RDWR, "rw"),
            (OFlags::WRONLY, "w"),
        ]);
        let r = rustix::fs::openat(CWD, p.as_str(), access | OPEN_FLAGS, Mode::empty());
        self.log(&format!("open {p} {name} -> {}", outcome(&r)));
        if let Ok(fd) = r {
            self.hold(fd, p);
        }
    }

    /// Finding 1's sequence with random parts: open a file, replace its
    /// name with a symlink out of the vserver, then change the file
    /// through its descriptor.
    fn attack_open_file(&mut self) {
        let p = self.path();
        let access = if self.sh.root || self.rng.chance(80) {
            OFlags::RDWR
        } else {
            OFlags::RDONLY
        };
        let r = rustix::fs::openat(
            CWD,
            p.as_str(),
            OFlags::CREATE | access | OPEN_FLAGS,
            Mode::from_raw_mode(0o644),
        );
        self.log(&format!("attack: open {p} -> {}", outcome(&r)));
        let Ok(fd) = r else { return };
        self.hold(fd, p.clone());
        let i = self.fds.len() - 1;
        self.replace_by_symlink(&p);
        for _ in 0..=self.rng.below(3) {
            if i < self.fds.len() {
                self.fd_op(i);
            }
        }
    }

    /// Rename a new symlink out of the vserver over `dest`.
    fn replace_by_symlink(&mut self, dest: &str) {
        let target = self.target();
        let tmp = format!(
            "{}/.hz-{}-{}-{}",
            parent_of(dest),
            self.sh.plan.label,
            self.id,
            self.n
        );
        let r = rustix::fs::symlinkat(target.as_str(), CWD, tmp.as_str());
        if r.is_err() {
            self.log(&format!("symlink {tmp} -> {target}: {}", outcome(&r)));
            return;
        }
        let r = rustix::fs::renameat(CWD, tmp.as_str(), CWD, dest);
        self.log(&format!(
            "rename symlink(-> {target}) over {dest} -> {}",
            outcome(&r)
        ));
        if r.is_err() {
            let _ = rustix::fs::unlinkat(CWD, tmp.as_str(), AtFlags::empty());
        }
    }

    fn symlink_over(&mut self) {
        let dest = match self.pick_fd() {
            Some(i) if self.rng.chance(70) => self.fds[i].path.clone(),
            _ => self.dest(),
        };
        self.replace_by_symlink(&dest);
    }

    /// Change held file `i` through its descriptor, one way or another.
    fn fd_op(&mut self, i: usize) {
        let what = self.fds[i].path.clone();
        match self.rng.below(9) {
            0 | 1 => {
                let mode = *self.rng.pick(MODES);
                let r = rustix::fs::fchmod(&self.fds[i].fd, Mode::from_raw_mode(mode));
                self.log(&format!("fchmod fd({what}) {mode:#o} -> {}", outcome(&r)));
            }
            2 => {
                let (uid, gid) = *self.rng.pick(&self.sh.plan.owners);
                let r = rustix::fs::fchown(
                    &self.fds[i].fd,
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                );
                self.log(&format!("fchown fd({what}) {uid}:{gid} -> {}", outcome(&r)));
            }
            3 => {
                let size = *self.rng.pick(SIZES);
                let r = rustix::fs::ftruncate(&self.fds[i].fd, size);
                self.log(&format!("ftruncate fd({what}) {size} -> {}", outcome(&r)));
            }
            4 => {
                let sec = self.rng.below(2_000_000_000) as i64;
                let t = Timespec {
                    tv_sec: sec,
                    tv_nsec: 0,
                };
                let r = rustix::fs::futimens(
                    &self.fds[i].fd,
                    &Timestamps {
                        last_access: t,
                        last_modification: t,
                    },
                );
                self.log(&format!("futimens fd({what}) {sec} -> {}", outcome(&r)));
            }
            5 => self.set_xattr(i),
            6 | 7 => self.proc_reopen(i),
            _ => {
                let offset = *self.rng.pick(&[0u64, 7, 1 << 20]);
                let r = rustix::io::pwrite(&self.fds[i].fd, b"HOSTILE write\n", offset);
                self.log(&format!("pwrite fd({what}) at {offset} -> {}", outcome(&r)));
            }
        }
    }

    fn set_xattr(&mut self, i: usize) {
        let what = self.fds[i].path.clone();
        let mut names = vec!["user.hz0", "user.hz1", "user.decoy"];
        if self.sh.root {
            names.extend([
                "trusted.hz",
                "security.capability",
                "trusted.overlay.opaque",
            ]);
        }
        let name = *self.rng.pick(&names);
        if self.rng.chance(25) {
            let r = rustix::fs::fremovexattr(&self.fds[i].fd, name);
            self.log(&format!(
                "fremovexattr fd({what}) {name} -> {}",
                outcome(&r)
            ));
            return;
        }
        let value: &[u8] = match name {
            "security.capability" => &CAPABILITY,
            "trusted.overlay.opaque" => b"y",
            _ => b"HOSTILE xattr",
        };
        let r = rustix::fs::fsetxattr(&self.fds[i].fd, name, value, XattrFlags::empty());
        self.log(&format!("fsetxattr fd({what}) {name} -> {}", outcome(&r)));
    }

    /// Reopen held file `i` through /proc/self/fd for writing, and write.
    fn proc_reopen(&mut self, i: usize) {
        let what = self.fds[i].path.clone();
        let n = self.fds[i].fd.as_raw_fd().to_string();
        let trunc = self.rng.chance(20);
        let mut flags = OFlags::RDWR | OFlags::NONBLOCK | OFlags::CLOEXEC;
        if trunc {
            flags |= OFlags::TRUNC;
        }
        let r = rustix::fs::openat(&self.sh.proc_fd, n.as_str(), flags, Mode::empty());
        let Ok(fd) = r else {
            self.log(&format!(
                "reopen fd({what}) via /proc/self/fd/{n} rw trunc {trunc} -> {}",
                outcome(&r)
            ));
            return;
        };
        let w = rustix::io::pwrite(&fd, b"HOSTILE write through /proc\n", 0);
        self.log(&format!(
            "reopen fd({what}) via /proc/self/fd/{n} rw trunc {trunc} -> ok; pwrite -> {}",
            outcome(&w)
        ));
        self.hold(fd, what);
    }

    fn dir_swap(&mut self) {
        if self.sh.plan.swap_dirs.is_empty() {
            return;
        }
        let p = self.rng.pick(&self.sh.plan.swap_dirs).clone();
        if let Ok(fd) = rustix::fs::openat(
            CWD,
            p.as_str(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            if self.dirfds.len() >= 8 {
                self.dirfds.remove(0);
            }
            self.dirfds.push(Held {
                fd,
                path: p.clone(),
            });
        }
        let old = format!("{p}.old-{}-{}-{}", self.sh.plan.label, self.id, self.n);
        let r = rustix::fs::renameat(CWD, p.as_str(), CWD, old.as_str());
        self.log(&format!("swap dir: rename {p} to {old} -> {}", outcome(&r)));
        if r.is_err() {
            return;
        }
        let target = self.rng.pick(&self.sh.plan.dir_targets).clone();
        let r = rustix::fs::symlinkat(target.as_str(), CWD, p.as_str());
        self.log(&format!(
            "swap dir: symlink {p} -> {target}: {}",
            outcome(&r)
        ));
        self.olds.push((p, old));
    }

    fn dir_restore(&mut self) {
        if !self.olds.is_empty() && self.rng.chance(60) {
            let k = self.rng.below(self.olds.len() as u64) as usize;
            let (p, old) = self.olds.remove(k);
            let u = rustix::fs::unlinkat(CWD, p.as_str(), AtFlags::empty());
            let r = rustix::fs::renameat(CWD, old.as_str(), CWD, p.as_str());
            self.log(&format!(
                "restore dir: unlink {p} -> {}; rename {old} back -> {}",
                outcome(&u),
                outcome(&r)
            ));
            return;
        }
        if self.sh.plan.swap_dirs.is_empty() {
            return;
        }
        let p = self.rng.pick(&self.sh.plan.swap_dirs).clone();
        let u = rustix::fs::unlinkat(CWD, p.as_str(), AtFlags::empty());
        let m = rustix::fs::mkdirat(CWD, p.as_str(), Mode::from_raw_mode(0o777));
        self.log(&format!(
            "restore dir: unlink {p} -> {}; mkdir -> {}",
            outcome(&u),
            outcome(&m)
        ));
    }

    /// Work through a held directory descriptor (perhaps of a directory
    /// that was swapped for a symlink since).
    fn dirfd_op(&mut self) {
        if self.dirfds.is_empty() {
            let p = self.rng.pick(&self.sh.plan.work_dirs).clone();
            match rustix::fs::openat(
                CWD,
                p.as_str(),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => self.dirfds.push(Held { fd, path: p }),
                Err(e) => {
                    self.log(&format!("open dir {p} -> {}", errno_name(e)));
                    return;
                }
            }
        }
        let k = self.rng.below(self.dirfds.len() as u64) as usize;
        let dir = self.dirfds[k].path.clone();
        let name = *self.rng.pick(NAMES);
        let d = self.dirfds[k].fd.as_fd();
        match self.rng.below(9) {
            0 | 1 => {
                let r = rustix::fs::openat(
                    d,
                    name,
                    OFlags::CREATE
                        | OFlags::RDWR
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                );
                self.log(&format!("dirfd({dir}) create {name} -> {}", outcome(&r)));
                if let Ok(fd) = r {
                    self.hold(fd, format!("{dir}/{name}"));
                }
            }
            2 => {
                let r =
                    rustix::fs::mknodat(d, name, FileType::Fifo, Mode::from_raw_mode(0o4777), 0);
                self.log(&format!("dirfd({dir}) mkfifo {name} -> {}", outcome(&r)));
            }
            3 => {
                let r = rustix::fs::mkdirat(d, name, Mode::from_raw_mode(0o777));
                self.log(&format!("dirfd({dir}) mkdir {name} -> {}", outcome(&r)));
            }
            4 => {
                let target = self.target();
                let d = self.dirfds[k].fd.as_fd();
                let r = rustix::fs::symlinkat(target.as_str(), d, name);
                self.log(&format!(
                    "dirfd({dir}) symlink {name} -> {target}: {}",
                    outcome(&r)
                ));
            }
            5 => {
                let to = *self.rng.pick(NAMES);
                let r = rustix::fs::renameat(d, name, d, to);
                self.log(&format!(
                    "dirfd({dir}) rename {name} {to} -> {}",
                    outcome(&r)
                ));
            }
            6 => {
                let mode = *self.rng.pick(&[0o777, 0o4777, 0o2755, 0o1777, 0o700]);
                let r = rustix::fs::fchmod(d, Mode::from_raw_mode(mode));
                self.log(&format!("dirfd({dir}) fchmod {mode:#o} -> {}", outcome(&r)));
            }
            7 => {
                let r = rustix::fs::fsetxattr(d, "user.hz0", b"HOSTILE", XattrFlags::empty());
                self.log(&format!("dirfd({dir}) fsetxattr -> {}", outcome(&r)));
            }
            _ => {
                let src = self.path();
                let d = self.dirfds[k].fd.as_fd();
                let r = rustix::fs::linkat(CWD, src.as_str(), d, name, AtFlags::empty());
                self.log(&format!(
                    "dirfd({dir}) link {src} as {name} -> {}",
                    outcome(&r)
                ));
            }
        }
    }

    fn hard_link(&mut self) {
        let dst = self.work_path();
        if self.sh.root
            && self.rng.chance(30)
            && let Some(i) = self.pick_fd()
        {
            // An open (perhaps unlinked) file linked back in.
            let what = self.fds[i].path.clone();
            let r = rustix::fs::linkat(&self.fds[i].fd, "", CWD, dst.as_str(), AtFlags::EMPTY_PATH);
            self.log(&format!("link fd({what}) as {dst} -> {}", outcome(&r)));
            return;
        }
        let src = self.path();
        let r = rustix::fs::linkat(CWD, src.as_str(), CWD, dst.as_str(), AtFlags::empty());
        self.log(&format!("link {src} as {dst} -> {}", outcome(&r)));
    }

    fn mknod(&mut self) {
        let p = self.work_path();
        let mode = *self.rng.pick(&[0o644, 0o4777, 0o600]);
        let (kind, dev, what) = if self.sh.root && self.rng.chance(30) {
            let (maj, min) = *self.rng.pick(&[(1u32, 3u32), (1, 5)]);
            (
                FileType::CharacterDevice,
                rustix::fs::makedev(maj, min),
                format!("char {maj}:{min}"),
            )
        } else {
            (FileType::Fifo, 0, "fifo".to_string())
        };
        let r = rustix::fs::mknodat(CWD, p.as_str(), kind, Mode::from_raw_mode(mode), dev);
        self.log(&format!("mknod {p} {what} {mode:#o} -> {}", outcome(&r)));
    }

    fn sparse(&mut self) {
        let p = self.work_path();
        let r = rustix::fs::openat(
            CWD,
            p.as_str(),
            OFlags::CREATE | OFlags::RDWR | OPEN_FLAGS,
            Mode::from_raw_mode(0o644),
        );
        let Ok(fd) = r else {
            self.log(&format!("sparse {p}: open -> {}", outcome(&r)));
            return;
        };
        let t = rustix::fs::ftruncate(&fd, 1 << 30);
        let w = rustix::io::pwrite(&fd, b"middle of a sparse file\n", 1 << 29);
        self.log(&format!(
            "sparse {p}: truncate 1 GiB -> {}; pwrite at 512 MiB -> {}",
            outcome(&t),
            outcome(&w)
        ));
        self.hold(fd, p);
    }

    fn rename_exchange(&mut self) {
        let (a, b) = (self.dest(), self.dest());
        let r = rustix::fs::renameat_with(CWD, a.as_str(), CWD, b.as_str(), RenameFlags::EXCHANGE);
        self.log(&format!("exchange {a} {b} -> {}", outcome(&r)));
    }

    fn rename(&mut self) {
        let (a, b) = (self.work_path(), self.dest());
        let r = rustix::fs::renameat(CWD, a.as_str(), CWD, b.as_str());
        self.log(&format!("rename {a} {b} -> {}", outcome(&r)));
    }

    fn unlink_open(&mut self) {
        let Some(i) = self.pick_fd() else { return };
        let what = self.fds[i].path.clone();
        let r = rustix::fs::unlinkat(CWD, what.as_str(), AtFlags::empty());
        self.log(&format!("unlink open {what} -> {}", outcome(&r)));
        self.fd_op(i);
    }

    fn mkdir(&mut self) {
        let p = self.work_path();
        let r = rustix::fs::mkdirat(CWD, p.as_str(), Mode::from_raw_mode(0o777));
        self.log(&format!("mkdir {p} -> {}", outcome(&r)));
    }

    fn rmdir(&mut self) {
        let p = self.work_path();
        let r = rustix::fs::unlinkat(CWD, p.as_str(), AtFlags::REMOVEDIR);
        self.log(&format!("rmdir {p} -> {}", outcome(&r)));
    }

    fn close(&mut self) {
        if let Some(i) = self.pick_fd() {
            let held = self.fds.remove(i);
            self.log(&format!("close fd({})", held.path));
        }
    }

    fn chmod_by_name(&mut self) {
        let p = self.path();
        let mode = *self.rng.pick(MODES);
        let r = rustix::fs::chmodat(CWD, p.as_str(), Mode::from_raw_mode(mode), AtFlags::empty());
        self.log(&format!("chmod {p} {mode:#o} -> {}", outcome(&r)));
    }
}

// ---------------------------------------------------------------------
// Finding 1, exactly.

/// What `finding1-proc` writes through the reopened descriptor.
const PROC_WRITE: &[u8] = b"HOSTILE write through /proc\n";

/// `fd=open("f", O_CREAT|O_RDWR); symlink(DECOY, "s"); rename("s", "f");`
/// then `fchmod(fd, 04777)` (`finding1`) or a reopen of the file through
/// /proc/self/fd for writing and a write, which must reach the open file
/// (logged as "reached the open file: yes") (`finding1-proc`), in the view
/// that is stdin, in work directory `work_dirs[0]`, the decoy file being
/// `file_targets[0]`.
fn finding1_child(plan: Plan) {
    let log = Log::new(&plan.label);
    let proc_fd = rustix::fs::openat(
        CWD,
        "/proc/self/fd",
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open /proc/self/fd");
    rustix::process::fchdir(rustix::stdio::stdin()).expect("fchdir into the view (stdin)");
    let dir = &plan.work_dirs[0];
    let target = &plan.file_targets[0];
    let (f, s) = (format!("{dir}/finding1-f"), format!("{dir}/finding1-s"));
    let fd = rustix::fs::openat(
        CWD,
        f.as_str(),
        OFlags::CREATE | OFlags::EXCL | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    );
    log.line(
        "main",
        &format!("open {f} O_CREAT|O_RDWR -> {}", outcome(&fd)),
    );
    let fd = fd.expect("create the file");
    let r = rustix::fs::symlinkat(target.as_str(), CWD, s.as_str());
    log.line("main", &format!("symlink {s} -> {target}: {}", outcome(&r)));
    let r = rustix::fs::renameat(CWD, s.as_str(), CWD, f.as_str());
    log.line("main", &format!("rename {s} {f} -> {}", outcome(&r)));
    if plan.role == "finding1" {
        let r = rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o4777));
        log.line("main", &format!("fchmod fd({f}) 04777 -> {}", outcome(&r)));
    } else if plan.role == "finding1-proc" {
        let n = fd.as_raw_fd().to_string();
        let r = rustix::fs::openat(
            &proc_fd,
            n.as_str(),
            OFlags::RDWR | OFlags::CLOEXEC,
            Mode::empty(),
        );
        log.line(
            "main",
            &format!("open /proc/self/fd/{n} O_RDWR -> {}", outcome(&r)),
        );
        let reached = match r {
            Ok(again) => {
                let w = rustix::io::pwrite(&again, PROC_WRITE, 0);
                log.line("main", &format!("pwrite -> {}", outcome(&w)));
                let mut back = vec![0u8; PROC_WRITE.len()];
                let got = rustix::io::pread(&fd, &mut back[..], 0);
                if got.is_ok_and(|n| back[..n] == *PROC_WRITE) {
                    "yes".to_string()
                } else {
                    format!(
                        "no (the open file reads {:?})",
                        String::from_utf8_lossy(&back)
                    )
                }
            }
            Err(e) => format!("no (the reopen failed: {})", errno_name(e)),
        };
        log.line("main", &format!("reached the open file: {reached}"));
    } else {
        unreachable!();
    }
    if let Ok(st) = rustix::fs::fstat(&fd) {
        log.line(
            "main",
            &format!("fstat fd: mode {:#o}", st.st_mode & 0o7777),
        );
    }
}

// ---------------------------------------------------------------------
// Inside a tree, during syncs.

/// A directory's parent descriptor and its name there.
type Parent = (Arc<OwnedFd>, CString);

/// A watched tree directory.
struct WatchedDir {
    fd: Arc<OwnedFd>,
    rel: String,
    /// Its parent's descriptor and its name (none for the top).
    parent: Option<Parent>,
    /// Ready symlinks (name, target) to rename over a new name at once.
    pool: Vec<(CString, String)>,
}

#[derive(Default)]
struct Watched {
    by_wd: HashMap<i32, WatchedDir>,
    inodes: HashSet<(u64, u64)>,
    /// Directories swapped for a symlink: (parent, name, where it went).
    swapped: Vec<(Arc<OwnedFd>, CString, CString)>,
}

struct Racer {
    plan: Plan,
    log: Log,
    deadline: Instant,
    inotify: OwnedFd,
    watched: Mutex<Watched>,
    seq: AtomicU64,
    events: AtomicU64,
    attacked: AtomicU64,
    swaps: AtomicU64,
}

/// Names the racer makes itself start with this.
const RACER_PREFIX: &[u8] = b".hzr-";

/// Directories the racer watches at most (each holds a descriptor).
const MAX_WATCHED: usize = 500;

/// Percentage of names renamed into place that the swapper attacks.
const MOVED_TO_PERCENT: u64 = 30;

/// Symlinks kept ready in each watched directory.
const POOL: usize = 2;

fn racer_child(plan: Plan) {
    let log = Log::new(&plan.label);
    let inotify = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)
        .expect("inotify_init");
    let racer = Racer {
        deadline: Instant::now() + Duration::from_millis(plan.millis),
        plan,
        log,
        inotify,
        watched: Mutex::new(Watched::default()),
        seq: AtomicU64::new(0),
        events: AtomicU64::new(0),
        attacked: AtomicU64::new(0),
        swaps: AtomicU64::new(0),
    };
    let mut rng = Rng::new(racer.plan.seed, 1000);
    racer.scan(&mut rng);
    racer.log.line(
        "main",
        &format!(
            "ready: watching {} directories",
            racer.watched.lock().unwrap().by_wd.len()
        ),
    );
    std::thread::scope(|s| {
        let r = &racer;
        s.spawn(move || r.swapper());
        s.spawn(move || r.chaos());
    });
    racer.log.line(
        "main",
        &format!(
            "summary events={} attacked={} swaps={}",
            racer.events.load(Ordering::Relaxed),
            racer.attacked.load(Ordering::Relaxed),
            racer.swaps.load(Ordering::Relaxed)
        ),
    );
}

impl Racer {
    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn own_name(&self, tag: &str) -> CString {
        CString::new(format!(".hzr-{tag}{}", self.next())).unwrap()
    }

    /// Watch every directory of the tree not watched yet (a full sync may
    /// have put a new tree in place).
    fn scan(&self, rng: &mut Rng) {
        let tree = self.plan.tree.as_ref().expect("racer without a tree");
        let top = match rustix::fs::openat(
            CWD,
            tree.as_path(),
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Arc::new(fd),
            Err(e) => {
                self.log.line(
                    "scan",
                    &format!("open {}: {}", tree.display(), errno_name(e)),
                );
                return;
            }
        };
        let mut queue = vec![(top, String::new(), None::<Parent>)];
        while let Some((fd, rel, parent)) = queue.pop() {
            if self.watched.lock().unwrap().by_wd.len() >= MAX_WATCHED {
                return;
            }
            self.watch(&fd, &rel, parent, rng);
            let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if name.as_bytes().starts_with(RACER_PREFIX)
                    || !entry.file_type().is_ok_and(|t| t.is_dir())
                {
                    continue;
                }
                let cname = CString::new(name.as_bytes()).unwrap();
                if let Ok(child) = rustix::fs::openat(
                    &*fd,
                    cname.as_c_str(),
                    OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    let child_rel = format!("{rel}/{}", name.to_string_lossy());
                    queue.push((Arc::new(child), child_rel, Some((fd.clone(), cname))));
                }
            }
        }
    }

    /// Watch directory `fd` unless it is watched already.
    fn watch(&self, fd: &Arc<OwnedFd>, rel: &str, parent: Option<Parent>, rng: &mut Rng) {
        let Ok(st) = rustix::fs::fstat(&**fd) else {
            return;
        };
        let key = (st.st_dev, st.st_ino);
        if self.watched.lock().unwrap().inodes.contains(&key) {
            return;
        }
        let wd = match inotify::add_watch(
            &self.inotify,
            format!("/proc/self/fd/{}", fd.as_raw_fd()),
            inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::ONLYDIR,
        ) {
            Ok(wd) => wd,
            Err(e) => {
                self.log
                    .line("scan", &format!("watch {rel}/: {}", errno_name(e)));
                return;
            }
        };
        let mut pool = Vec::new();
        for _ in 0..POOL {
            if let Some(p) = self.make_pool_link(fd, rng) {
                pool.push(p);
            }
        }
        let mut w = self.watched.lock().unwrap();
        w.inodes.insert(key);
        w.by_wd.insert(
            wd,
            WatchedDir {
                fd: fd.clone(),
                rel: rel.to_string(),
                parent,
                pool,
            },
        );
    }

    fn file_target(&self, rng: &mut Rng) -> String {
        rng.pick(&self.plan.file_targets).clone()
    }

    fn make_pool_link(&self, dir: &OwnedFd, rng: &mut Rng) -> Option<(CString, String)> {
        let name = self.own_name("p");
        let target = self.file_target(rng);
        rustix::fs::symlinkat(target.as_str(), dir, name.as_c_str())
            .ok()
            .map(|()| (name, target))
    }

    /// Rename a symlink out of the tree over every name something else
    /// creates, as soon as inotify tells.
    fn swapper(&self) {
        let mut rng = Rng::new(self.plan.seed, 1001);
        let mut buf = [std::mem::MaybeUninit::uninit(); 16384];
        let mut reader = inotify::Reader::new(&self.inotify, &mut buf);
        let mut idle = 0u64;
        loop {
            let (wd, mask, name) = match reader.next() {
                Ok(ev) => (ev.wd(), ev.events(), ev.file_name().map(|n| n.to_owned())),
                Err(Errno::AGAIN) => {
                    idle += 1;
                    if idle % 256 == 0 {
                        if Instant::now() > self.deadline {
                            return;
                        }
                        std::thread::yield_now();
                    }
                    continue;
                }
                Err(e) => {
                    self.log
                        .line("swapper", &format!("read inotify: {}", errno_name(e)));
                    return;
                }
            };
            self.events.fetch_add(1, Ordering::Relaxed);
            if mask.contains(inotify::ReadFlags::QUEUE_OVERFLOW) {
                self.log.line("swapper", "inotify queue overflow");
                continue;
            }
            if mask.contains(inotify::ReadFlags::IGNORED) {
                // The directory is gone: forget it (and close it).
                let mut w = self.watched.lock().unwrap();
                if let Some(dir) = w.by_wd.remove(&wd)
                    && let Ok(st) = rustix::fs::fstat(&*dir.fd)
                {
                    w.inodes.remove(&(st.st_dev, st.st_ino));
                }
                continue;
            }
            let Some(name) = name else { continue };
            // Every new name, and some names renamed into place (more would
            // leave syncs little to do beyond the first entries they write).
            if name.as_bytes().starts_with(RACER_PREFIX)
                || (mask.contains(inotify::ReadFlags::MOVED_TO) && !rng.chance(MOVED_TO_PERCENT))
            {
                continue;
            }
            self.attack(wd, mask, &name, &mut rng);
        }
    }

    fn attack(&self, wd: i32, mask: inotify::ReadFlags, name: &CString, rng: &mut Rng) {
        let n = self.next();
        let how = if mask.contains(inotify::ReadFlags::MOVED_TO) {
            "moved in"
        } else {
            "created"
        };
        let (fd, rel, ready) = {
            let mut w = self.watched.lock().unwrap();
            let Some(dir) = w.by_wd.get_mut(&wd) else {
                return;
            };
            (dir.fd.clone(), dir.rel.clone(), dir.pool.pop())
        };
        let shown = format!("{rel}/{}", name.to_string_lossy());
        if mask.contains(inotify::ReadFlags::ISDIR) {
            if rng.chance(50) {
                self.swap_dir(&fd, name, &shown, rng);
            } else if let Ok(sub) = rustix::fs::openat(
                &*fd,
                name.as_c_str(),
                OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                self.watch(
                    &Arc::new(sub),
                    &shown,
                    Some((fd.clone(), name.clone())),
                    rng,
                );
            }
            if let Some(link) = ready {
                self.give_back(wd, link);
            }
            return;
        }
        let (r, target) = match ready {
            Some((pool_name, target)) => (
                rustix::fs::renameat(&*fd, pool_name.as_c_str(), &*fd, name.as_c_str()),
                target,
            ),
            None => {
                let tmp = self.own_name("t");
                let target = self.file_target(rng);
                let r =
                    rustix::fs::symlinkat(target.as_str(), &*fd, tmp.as_c_str()).and_then(|()| {
                        rustix::fs::renameat(&*fd, tmp.as_c_str(), &*fd, name.as_c_str())
                    });
                (r, target)
            }
        };
        if r.is_ok() {
            self.attacked.fetch_add(1, Ordering::Relaxed);
        }
        self.log.line(
            &format!("swapper #{n}"),
            &format!(
                "{shown} {how}: renamed symlink(-> {target}) over it -> {}",
                outcome(&r)
            ),
        );
        if let Some(p) = self.make_pool_link(&fd, rng) {
            self.give_back(wd, p);
        }
    }

    /// Put a ready symlink into the pool of watched directory `wd`.
    fn give_back(&self, wd: i32, link: (CString, String)) {
        if let Some(dir) = self.watched.lock().unwrap().by_wd.get_mut(&wd) {
            dir.pool.push(link);
        }
    }

    /// Rename directory `name` of `fd` away and put a symlink to a
    /// directory outside the tree in its place.
    fn swap_dir(&self, fd: &Arc<OwnedFd>, name: &CString, shown: &str, rng: &mut Rng) {
        let old = self.own_name("d");
        let r = rustix::fs::renameat(&**fd, name.as_c_str(), &**fd, old.as_c_str());
        let target = rng.pick(&self.plan.dir_targets).clone();
        let s = if r.is_ok() {
            rustix::fs::symlinkat(target.as_str(), &**fd, name.as_c_str())
        } else {
            Err(Errno::NOENT)
        };
        if r.is_ok() {
            self.swaps.fetch_add(1, Ordering::Relaxed);
            self.watched
                .lock()
                .unwrap()
                .swapped
                .push((fd.clone(), name.clone(), old));
        }
        self.log.line(
            "swap",
            &format!(
                "directory {shown}: renamed away -> {}; symlink -> {target}: {}",
                outcome(&r),
                outcome(&s)
            ),
        );
    }

    /// Meanwhile: swap directories for symlinks and back, replace entries
    /// by symlinks out of the tree and by FIFOs, hard-link entries across
    /// directories, and watch what a sync made.
    fn chaos(&self) {
        let mut rng = Rng::new(self.plan.seed, 1002);
        let mut last_scan = Instant::now();
        while Instant::now() < self.deadline {
            std::thread::sleep(Duration::from_millis(1 + rng.below(4)));
            if last_scan.elapsed() > Duration::from_millis(100) {
                self.scan(&mut rng);
                last_scan = Instant::now();
            }
            let dirs: Vec<(Arc<OwnedFd>, String, Option<Parent>)> = {
                let w = self.watched.lock().unwrap();
                w.by_wd
                    .values()
                    .map(|d| (d.fd.clone(), d.rel.clone(), d.parent.clone()))
                    .collect()
            };
            if dirs.is_empty() {
                continue;
            }
            let (fd, rel, parent) = rng.pick(&dirs).clone();
            match rng.below(100) {
                0..=19 => {
                    if let Some((pfd, name)) = parent {
                        self.swap_dir(&pfd, &name, &rel, &mut rng);
                    }
                }
                20..=39 => {
                    let back = {
                        let mut w = self.watched.lock().unwrap();
                        (!w.swapped.is_empty()).then(|| {
                            let k = rng.below(w.swapped.len() as u64) as usize;
                            w.swapped.remove(k)
                        })
                    };
                    if let Some((pfd, name, old)) = back {
                        let u = rustix::fs::unlinkat(&*pfd, name.as_c_str(), AtFlags::empty());
                        let r = rustix::fs::renameat(&*pfd, old.as_c_str(), &*pfd, name.as_c_str());
                        self.log.line(
                            "chaos",
                            &format!(
                                "restore directory {:?}: unlink -> {}; rename back -> {}",
                                name,
                                outcome(&u),
                                outcome(&r)
                            ),
                        );
                    }
                }
                40..=89 => {
                    let Some(victim) = pick_entry(&fd, &mut rng) else {
                        continue;
                    };
                    let tmp = self.own_name("c");
                    let fifo = rng.chance(40);
                    let (what, made) = if fifo {
                        (
                            "a FIFO".to_string(),
                            rustix::fs::mknodat(
                                &*fd,
                                tmp.as_c_str(),
                                FileType::Fifo,
                                Mode::from_raw_mode(0o666),
                                0,
                            ),
                        )
                    } else {
                        let target = self.file_target(&mut rng);
                        (
                            format!("symlink(-> {target})"),
                            rustix::fs::symlinkat(target.as_str(), &*fd, tmp.as_c_str()),
                        )
                    };
                    let r = made.and_then(|()| {
                        rustix::fs::renameat(&*fd, tmp.as_c_str(), &*fd, victim.as_c_str())
                    });
                    self.log.line(
                        "chaos",
                        &format!(
                            "replace {rel}/{} by {what} -> {}",
                            victim.to_string_lossy(),
                            outcome(&r)
                        ),
                    );
                }
                _ => {
                    let Some(victim) = pick_entry(&fd, &mut rng) else {
                        continue;
                    };
                    let (to, to_rel, _) = rng.pick(&dirs).clone();
                    let new = self.own_name("h");
                    let r = rustix::fs::linkat(
                        &*fd,
                        victim.as_c_str(),
                        &*to,
                        new.as_c_str(),
                        AtFlags::empty(),
                    );
                    self.log.line(
                        "chaos",
                        &format!(
                            "hard-link {rel}/{} as {to_rel}/{} -> {}",
                            victim.to_string_lossy(),
                            new.to_string_lossy(),
                            outcome(&r)
                        ),
                    );
                }
            }
        }
    }
}

/// A random non-directory entry of `dir` not made by the racer.
fn pick_entry(dir: &OwnedFd, rng: &mut Rng) -> Option<CString> {
    let names: Vec<CString> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .ok()?
        .flatten()
        .filter(|e| {
            !e.file_name().as_bytes().starts_with(RACER_PREFIX)
                && e.file_type().is_ok_and(|t| !t.is_dir())
        })
        .map(|e| CString::new(e.file_name().as_bytes()).unwrap())
        .collect();
    (!names.is_empty()).then(|| rng.pick(&names).clone())
}
