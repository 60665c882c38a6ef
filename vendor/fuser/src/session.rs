//! Filesystem session
//!
//! A session runs a filesystem implementation while it is being mounted to a specific mount
//! point. A session begins by mounting the filesystem and ends by unmounting it. While the
//! filesystem is mounted, the session loop receives, dispatches and replies to kernel requests
//! for filesystem operations under its mount point.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::fd::BorrowedFd;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::thread::{self};
use std::time::Duration;
use std::time::Instant;

use log::debug;
use log::error;
use log::info;
use log::warn;
use nix::poll::PollFd;
use nix::poll::PollFlags;
use nix::poll::PollTimeout;
use nix::poll::poll;
use nix::unistd::Uid;
use nix::unistd::geteuid;
use parking_lot::Mutex;

use crate::Errno;
use crate::Filesystem;
use crate::KernelConfig;
use crate::MountOption;
use crate::ReplyEmpty;
use crate::Request;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::dev_fuse::DevFuse;
use crate::ll;
use crate::ll::Operation;
use crate::ll::ResponseErrno;
use crate::ll::Version;
use crate::ll::flags::init_flags::InitFlags;
use crate::ll::fuse_abi as abi;
use crate::mnt::Mount;
use crate::mnt::mount_options::Config;
use crate::mnt::mount_options::check_option_conflicts;
use crate::notify::Notifier;
use crate::read_buf::FuseReadBuf;
use crate::reply::Reply;
use crate::reply::ReplyRaw;
use crate::reply::ReplySender;
use crate::request::RequestWithSender;

/// The max size of write requests from the kernel. The absolute minimum is 4k,
/// FUSE recommends at least 128k, max 16M. The FUSE default is 16M on macOS
/// and 128k on other systems.
pub(crate) const MAX_WRITE_SIZE: usize = 16 * 1024 * 1024;

#[derive(Default, Debug, Eq, PartialEq, Clone, Copy)]
/// How requests should be filtered based on the calling UID.
pub enum SessionACL {
    /// Allow requests from any user. Corresponds to the `allow_other` mount option.
    All,
    /// Allow requests from root. Corresponds to the `allow_root` mount option.
    RootAndOwner,
    /// Allow requests from the owning UID. This is FUSE's default mode of operation.
    #[default]
    Owner,
}

impl SessionACL {
    /// Returns the mount option string for kernel/fusermount/libfuse paths.
    /// Both `All` and `RootAndOwner` map to `allow_other` - the kernel only
    /// understands `allow_other`, and fuser enforces the root-only restriction internally.
    #[allow(dead_code)]
    pub(crate) fn to_mount_option(self) -> Option<&'static str> {
        match self {
            SessionACL::All | SessionACL::RootAndOwner => Some("allow_other"),
            SessionACL::Owner => None,
        }
    }
}

/// Calls `destroy` on drop.
#[derive(Debug)]
pub(crate) struct FilesystemHolder<FS: Filesystem> {
    pub(crate) fs: Option<FS>,
}

impl<FS: Filesystem> FilesystemHolder<FS> {
    fn destroy(&mut self) {
        if let Some(mut fs) = self.fs.take() {
            fs.destroy();
        }
    }
}

impl<FS: Filesystem> Drop for FilesystemHolder<FS> {
    fn drop(&mut self) {
        self.destroy();
    }
}

#[derive(Debug)]
struct UmountOnDrop {
    mount: Arc<Mutex<Option<Mount>>>,
}

impl UmountOnDrop {
    fn umount(&self) -> io::Result<()> {
        if let Some(mount) = self.mount.lock().take() {
            mount.umount()?;
        }
        Ok(())
    }
}

impl Drop for UmountOnDrop {
    fn drop(&mut self) {
        match self.umount() {
            Ok(()) => {}
            // Unmounted already (`umount` by whoever ended the session):
            // nothing is wrong.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!("filesystem already unmounted: {}", e);
            }
            Err(e) => warn!("Failed to umount filesystem: {}", e),
        }
    }
}

/// The session data structure
#[derive(Debug)]
pub struct Session<FS: Filesystem> {
    /// Filesystem operation implementations. None after `destroy` called.
    pub(crate) filesystem: FilesystemHolder<FS>,
    /// Communication channel to the kernel driver
    pub(crate) ch: Channel,
    /// Handle to the mount.  Dropping this unmounts.
    mount: UmountOnDrop,
    /// Whether to restrict access to owner, root + owner, or unrestricted
    /// Used to implement `allow_root` and `auto_unmount`
    pub(crate) allowed: SessionACL,
    /// User that launched the fuser process
    pub(crate) session_owner: Uid,
    /// FUSE protocol version, as reported by the kernel.
    /// The field is set to `Some` when the init message is received.
    pub(crate) proto_version: Option<Version>,
    pub(crate) config: Config,
}

impl<FS: Filesystem> AsFd for Session<FS> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.ch.as_fd()
    }
}

impl<FS: Filesystem> Session<FS> {
    /// Create a new session by mounting the given filesystem to the given mountpoint
    /// # Errors
    /// Returns an error if the options are incorrect, or if the fuse device can't be mounted.
    pub fn new<P: AsRef<Path>>(
        filesystem: FS,
        mountpoint: P,
        options: &Config,
    ) -> io::Result<Session<FS>> {
        check_option_conflicts(options)?;

        let mountpoint = mountpoint.as_ref();
        info!("Mounting {}", mountpoint.display());
        // If AutoUnmount is requested, but not AllowRoot or AllowOther, return an error
        // because fusermount needs allow_root or allow_other to handle the auto_unmount option
        if options.mount_options.contains(&MountOption::AutoUnmount)
            && options.acl == SessionACL::Owner
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("auto_unmount requires acl != Owner, got: {:?}", options.acl),
            ));
        }
        let (file, mount) = Mount::new(mountpoint, &options.mount_options, options.acl)?;

        let ch = Channel::new(file);

        let mut session = Session {
            filesystem: FilesystemHolder {
                fs: Some(filesystem),
            },
            ch,
            mount: UmountOnDrop {
                mount: Arc::new(Mutex::new(Some(mount))),
            },
            allowed: options.acl,
            session_owner: geteuid(),
            proto_version: None,
            config: options.clone(),
        };

        session.handshake()?;

        Ok(session)
    }

    /// Wrap an existing /dev/fuse file descriptor. This doesn't mount the
    /// filesystem anywhere; that must be done separately.
    pub fn from_fd(
        filesystem: FS,
        fd: OwnedFd,
        acl: SessionACL,
        config: Config,
    ) -> io::Result<Self> {
        let ch = Channel::new(Arc::new(DevFuse(File::from(fd))));
        let mut session = Session {
            filesystem: FilesystemHolder {
                fs: Some(filesystem),
            },
            ch,
            mount: UmountOnDrop {
                mount: Arc::new(Mutex::new(None)),
            },
            allowed: acl,
            session_owner: geteuid(),
            proto_version: None,
            config,
        };

        session.handshake()?;

        Ok(session)
    }

    /// Run the session loop in a background thread. If the returned handle is dropped,
    /// the filesystem is unmounted and the given session ends.
    pub fn spawn(self) -> io::Result<BackgroundSession> {
        let sender = self.ch.sender();
        // Take the fuse_session, so that we can unmount it
        let mount = std::mem::take(&mut *self.mount.mount.lock());
        let guard = thread::Builder::new()
            .name("fuser-bg".to_string())
            .spawn(move || self.run())?;
        Ok(BackgroundSession {
            guard,
            sender,
            mount,
        })
    }

    /// Run the session loop that receives kernel requests and dispatches them to method
    /// calls into the filesystem. This read-dispatch-loop is non-concurrent to prevent
    /// having multiple buffers (which take up much memory), but the filesystem methods
    /// may run concurrent by spawning threads.
    /// # Errors
    /// Returns any final error when the session comes to an end.
    pub fn run(self) -> io::Result<()> {
        let Session {
            filesystem,
            ch,
            mount: _do_not_umount_yet,
            allowed,
            session_owner,
            proto_version: _,
            config,
        } = self;

        let mut filesystem = Arc::new(filesystem);

        if let Some(max_threads) = config.max_threads {
            let reply = run_growing(
                WorkerPool::new(max_threads, config.clone_fd)?,
                filesystem.clone(),
                ch,
                allowed,
                session_owner,
            )?;
            let Some(filesystem) = Arc::get_mut(&mut filesystem) else {
                return Err(io::Error::other(
                    "BUG: must have one refcount for filesystem",
                ));
            };
            filesystem.destroy();
            return reply;
        }

        let n_threads = config.n_threads.unwrap_or(1);

        if !cfg!(target_os = "linux") && n_threads != 1 {
            // TODO: check whether it works on macOS/FreeBSD and enable if it works.
            return Err(io::Error::other(
                "n_threads != 1 is only supported on Linux",
            ));
        }

        let Some(n_threads_minus_one) = n_threads.checked_sub(1) else {
            return Err(io::Error::other("n_threads"));
        };

        let mut channels = Vec::with_capacity(n_threads);

        for _ in 0..n_threads_minus_one {
            if config.clone_fd {
                #[cfg(target_os = "linux")]
                {
                    channels.push(ch.clone_fd()?);
                    continue;
                }
                #[cfg(not(target_os = "linux"))]
                {
                    return Err(io::Error::other("clone_fd is only supported on Linux"));
                }
            } else {
                channels.push(ch.clone());
            }
        }
        channels.push(ch);

        let mut threads = Vec::with_capacity(n_threads);

        for (i, ch) in channels.into_iter().enumerate() {
            let thread_name = format!("fuser-{i}");
            let event_loop = SessionEventLoop {
                thread_name: thread_name.clone(),
                filesystem: filesystem.clone(),
                ch,
                allowed,
                session_owner,
                pool: None,
                slot: 0,
            };
            threads.push(
                thread::Builder::new()
                    .name(thread_name)
                    .spawn(move || event_loop.event_loop())?,
            );
        }

        let mut reply: io::Result<()> = Ok(());
        for thread in threads {
            let res = match thread.join() {
                Ok(res) => res,
                Err(_) => {
                    return Err(io::Error::other("event loop thread panicked"));
                }
            };
            if let Err(e) = res {
                if reply.is_ok() {
                    reply = Err(e);
                }
            }
        }

        let Some(filesystem) = Arc::get_mut(&mut filesystem) else {
            return Err(io::Error::other(
                "BUG: must have one refcount for filesystem",
            ));
        };

        filesystem.destroy();

        reply
    }

    fn handshake(&mut self) -> io::Result<()> {
        let mut buf = FuseReadBuf::new();
        let buf = buf.as_mut();

        loop {
            // Read the init request from the kernel
            let size = match self.ch.receive_retrying(buf) {
                Ok(size) => size,
                Err(nix::errno::Errno::ENODEV) => {
                    return Err(io::Error::new(
                        io::ErrorKind::NotConnected,
                        "FUSE device disconnected during handshake",
                    ));
                }
                Err(err) => return Err(err.into()),
            };

            // Parse the request
            let request = match ll::AnyRequest::try_from(&buf[..size]) {
                Ok(request) => request,
                Err(err) => {
                    error!("{err}");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, err.to_string()));
                }
            };

            // Extract the init operation
            let op = match request.operation() {
                Ok(op) => op,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "Failed to parse FUSE operation",
                    ));
                }
            };

            let init = match op {
                ll::Operation::Init(init) => init,
                _ => {
                    error!("Received non-init FUSE operation before init: {}", request);
                    // Send error response and return error - non-init during handshake is invalid
                    <ReplyRaw as Reply>::new(
                        request.unique(),
                        ReplySender::Channel(self.ch.sender()),
                    )
                    .send_ll(&ResponseErrno(ll::Errno::EIO));
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "Received non-init FUSE operation during handshake",
                    ));
                }
            };

            let v = init.version();
            if v.0 > abi::FUSE_KERNEL_VERSION {
                // Kernel has a newer major version than we support.
                // Send our version and wait for a second INIT request with a compatible version.
                debug!(
                    "INIT: Kernel version {} > our version {}, sending our version and waiting for next init",
                    v.0,
                    abi::FUSE_KERNEL_VERSION
                );
                let response = init.reply_version_only();
                <ReplyRaw as Reply>::new(request.unique(), ReplySender::Channel(self.ch.sender()))
                    .send_ll(&response);
                continue;
            }

            // We don't support ABI versions before 7.6
            if v < Version(7, 6) {
                error!("Unsupported FUSE ABI version {v}");
                <ReplyRaw as Reply>::new(request.unique(), ReplySender::Channel(self.ch.sender()))
                    .send_ll(&ResponseErrno(ll::Errno::EPROTO));
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("Unsupported FUSE ABI version {v}"),
                ));
            }

            let mut config = KernelConfig::new(init.capabilities(), init.max_readahead(), v);

            // Call filesystem init method and give it a chance to return an error
            let Some(filesystem) = &mut self.filesystem.fs else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "Bug: filesystem must be initialized during handshake",
                ));
            };
            let res = filesystem.init(Request::ref_cast(request.header()), &mut config);
            if let Err(error) = res {
                let errno = Errno::from_i32(error.raw_os_error().unwrap_or(0));
                <ReplyRaw as Reply>::new(request.unique(), ReplySender::Channel(self.ch.sender()))
                    .send_ll(&ResponseErrno(errno));
                return Err(error);
            }

            // Remember the ABI version supported by kernel and mark the session initialized.
            self.proto_version = Some(v);

            // Log capability status for debugging
            for bit in 0..64 {
                let bitflags = InitFlags::from_bits_retain(1 << bit);
                if bitflags == InitFlags::FUSE_INIT_EXT {
                    continue;
                }
                let bitflag_is_known = InitFlags::all().contains(bitflags);
                let kernel_supports = init.capabilities().contains(bitflags);
                let we_requested = config.requested.contains(bitflags);
                // On macOS, there's a clash between linux and macOS constants,
                // so we pick macOS ones (last).
                let name = if let Some((name, _)) = bitflags.iter_names().last() {
                    Cow::Borrowed(name)
                } else {
                    Cow::Owned(format!("(1 << {bit})"))
                };
                if we_requested && kernel_supports {
                    debug!("capability {name} enabled")
                } else if we_requested {
                    debug!("capability {name} not supported by kernel")
                } else if kernel_supports {
                    debug!("capability {name} not requested by client")
                } else if bitflag_is_known {
                    debug!("capability {name} not supported nor requested")
                }
            }

            // Reply with our desired version and settings.
            debug!(
                "INIT response: ABI {}.{}, flags {:#x}, max readahead {}, max write {}",
                abi::FUSE_KERNEL_VERSION,
                abi::FUSE_KERNEL_MINOR_VERSION,
                init.capabilities() & config.requested,
                config.max_readahead,
                config.max_write
            );

            let response = init.reply(&config);
            <ReplyRaw as Reply>::new(request.unique(), ReplySender::Channel(self.ch.sender()))
                .send_ll(&response);

            return Ok(());
        }
    }

    /// Unmount the filesystem
    pub fn unmount(&mut self) -> io::Result<()> {
        self.mount.umount()
    }

    /// Returns a thread-safe object that can be used to unmount the Filesystem
    pub fn unmount_callable(&mut self) -> SessionUnmounter {
        SessionUnmounter {
            mount: self.mount.mount.clone(),
        }
    }

    /// Returns an object that can be used to send notifications to the kernel
    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.ch.sender())
    }
}

#[derive(Debug)]
/// A thread-safe object that can be used to unmount a Filesystem
pub struct SessionUnmounter {
    mount: Arc<Mutex<Option<Mount>>>,
}

impl SessionUnmounter {
    /// Unmount the filesystem
    pub fn unmount(&mut self) -> io::Result<()> {
        if let Some(mount) = std::mem::take(&mut *self.mount.lock()) {
            mount.umount()?;
        }
        Ok(())
    }
}

/// A pool that grows with the load starts another worker when its workers
/// have found requests waiting (and no other worker to read them) while
/// serving requests of two callers or more, this many times in a row. Once
/// or twice is common with a serial client too, whose next request comes
/// while the kernel's own (an asynchronous `RELEASE`, a `FORGET`) is
/// served; parallel clients keep the queue full.
const QUEUED_TO_GROW: u32 = 8;

/// A worker of a pool that grows with the load ends when it has served a
/// request while this many others wait and no worker has found requests
/// queued for `QUIET`: a pool grown for parallel clients shrinks back for a
/// serial one, which would otherwise wake each of them in turn again.
const MAX_IDLE: usize = 2;

/// See `MAX_IDLE`.
const QUIET: Duration = Duration::from_millis(100);

/// A pool that grows with the load keeps at least this many workers (or
/// its bound, if lower) while the CPUs are busy: with one, the kernel's
/// asynchronous requests of a serial client (`RELEASE`, `FORGET`) are served
/// before its next request instead of beside it; more make each request of
/// a serial client wake a worker that must wait for a busy CPU (measured on
/// 2 vCPUs beside two CPU-bound loops: create 10k 1.0-2.0 s on two workers,
/// 1.9-3.9 s on four).
const BUSY_FLOOR: usize = 2;

/// ... and this many while the CPUs have room. A serial client's next
/// request often comes while the worker that answered the last one is
/// still on its way back to read; the kernel then wakes a worker waiting in
/// read as well, in turn. With two, that worker has last run on the
/// client's CPU and runs there before the client; with four, it has mostly
/// run on another (measured on an idle 2-vCPU VM: a cold walk of 134k
/// entries 4.6 s on two workers, 3.3-4.1 s on four).
const IDLE_FLOOR: usize = 4;

/// How often a pool that grows with the load looks at the CPUs: one
/// worker, after a request, reads the running tasks of /proc/loadavg.
/// The tasks running beside the one that looks (its client, just woken,
/// is one of them) are averaged over the looks, each weighing a quarter
/// (about 200 ms); the CPUs are busy once that average is more than half a
/// task above the CPUs, and have room again once it is half a task below
/// them. The average starts at 0 (room) when the pool is made: the first
/// looks would see the mount's own tasks.
/// (Instantaneous counts flapped: a `find | wc` on 2 CPUs often showed 3
/// running, and each flap started and ended two workers.)
const LOAD_SAMPLE: Duration = Duration::from_millis(50);

/// Runs a session whose pool grows with the load (`Config::max_threads`):
/// starts the floor's workers (`BUSY_FLOOR` or `IDLE_FLOOR`) and joins every worker, also those started later, then
/// returns the first error a worker ended with. The outer error says a worker
/// panicked.
fn run_growing<FS: Filesystem>(
    pool: WorkerPool,
    filesystem: Arc<FilesystemHolder<FS>>,
    ch: Channel,
    allowed: SessionACL,
    session_owner: Uid,
) -> io::Result<io::Result<()>> {
    let pool = Arc::new(pool);
    pool.workers.store(1, Ordering::SeqCst);
    let floor = pool.floor.load(Ordering::SeqCst);
    let first = SessionEventLoop {
        thread_name: "fuser-0".to_string(),
        filesystem,
        ch,
        allowed,
        session_owner,
        pool: Some(pool.clone()),
        slot: pool.claim_slot().unwrap_or(0),
    };
    // The others of the smallest pool (a worker that cannot be started is
    // logged, and the pool goes on with what it has).
    for _ in 1..floor {
        first.start_worker(&pool);
    }
    let handle = thread::Builder::new()
        .name(first.thread_name.clone())
        .spawn(move || first.event_loop())?;
    pool.handles.lock().push(handle);
    // A worker pushes the handle of every worker it starts before it ends,
    // so once the list is empty every worker has been joined.
    loop {
        let Some(handle) = pool.handles.lock().pop() else {
            break;
        };
        pool.joined(handle);
    }
    if pool.panicked.load(Ordering::SeqCst) {
        return Err(io::Error::other("event loop thread panicked"));
    }
    Ok(pool.failure.lock().take().map_or(Ok(()), Err))
}

/// The shared state of a pool that grows with the load: how many workers
/// there are and how many of them wait for a request, and the handles
/// `run` joins.
#[derive(Debug)]
pub(crate) struct WorkerPool {
    /// At most this many workers; lowered to the workers there are when
    /// one cannot be started.
    bound: AtomicUsize,
    /// Give each new worker its own cloned fd.
    clone_fd: bool,
    /// Workers started (or being started).
    workers: AtomicUsize,
    /// Workers waiting in receive.
    idle: AtomicUsize,
    /// Requests in a row after which the worker that took them found more
    /// waiting and no other worker to read them.
    queued: AtomicU32,
    /// The workers to join.
    handles: Mutex<Vec<JoinHandle<io::Result<()>>>>,
    /// The names given so far.
    named: AtomicUsize,
    /// The first error a worker ended with.
    failure: Mutex<Option<io::Error>>,
    /// Did a worker panic?
    panicked: AtomicBool,
    /// When the pool started.
    started: Instant,
    /// When a worker last found requests queued (milliseconds since
    /// `started`).
    last_queued: AtomicU64,
    /// The workers kept however quiet the mount is: `IDLE_FLOOR` while the
    /// CPUs have room, `BUSY_FLOOR` while they are busy.
    floor: AtomicUsize,
    /// The CPUs this process may run on.
    cpus: usize,
    /// When the CPUs were last looked at (milliseconds since `started`).
    last_sample: AtomicU64,
    /// The average of the tasks running beside the worker that looked, in
    /// sixteenths (`LOAD_SAMPLE`).
    beside: AtomicU32,
    /// One slot per possible worker: `FREE_SLOT`, or the caller (the
    /// request header's pid; 0 while the worker waits, and for the kernel's
    /// own requests) of the request the worker that claimed it serves.
    serving: Box<[AtomicU32]>,
}

/// The floor for an average of `beside` (sixteenths of a task) tasks
/// running beside a worker on `cpus` CPUs, where the floor was `floor`.
fn floor_for(beside: u32, cpus: usize, floor: usize) -> usize {
    let cpus = u32::try_from(cpus).unwrap_or(u32::MAX / 32);
    if beside > cpus * 16 + 8 {
        BUSY_FLOOR
    } else if beside + 8 <= cpus * 16 {
        IDLE_FLOOR
    } else {
        floor
    }
}

/// The running tasks of /proc/loadavg's text (its fourth field,
/// `running/total`).
fn running_tasks(loadavg: &str) -> Option<usize> {
    loadavg.split_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

/// A slot of `WorkerPool::serving` no worker has claimed.
const FREE_SLOT: u32 = u32::MAX;

impl WorkerPool {
    /// Claims a free slot of `serving` for a new worker; `None` when every
    /// slot is taken (the pool is at its bound).
    fn claim_slot(&self) -> Option<usize> {
        self.serving.iter().position(|slot| {
            slot.compare_exchange(FREE_SLOT, 0, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        })
    }

    /// Do the requests in service, `caller`'s (in `slot`) included, come
    /// from two callers or more? Requests of one caller (a serial client:
    /// its own requests and the `RELEASE` of its close) never need more
    /// workers than the pool has, however long they queue on a busy CPU;
    /// caller 0 (the kernel's `FORGET`, a process outside the mount's pid
    /// namespace) is nobody.
    fn serves_two_callers(&self, slot: usize, caller: u32) -> bool {
        let mut first = (caller != 0).then_some(caller);
        for (i, other) in self.serving.iter().enumerate() {
            let other = other.load(Ordering::SeqCst);
            if i == slot || other == FREE_SLOT || other == 0 {
                continue;
            }
            match first {
                None => first = Some(other),
                Some(seen) if seen != other => return true,
                Some(_) => {}
            }
        }
        false
    }

    /// Milliseconds since the pool started.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Notes that a worker found requests queued and no other to read them.
    fn note_queued(&self) {
        self.last_queued.store(self.now_ms(), Ordering::SeqCst);
    }

    /// How long since a worker last found requests queued.
    fn since_queued(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_queued.load(Ordering::SeqCst)),
        )
    }

    /// Joins a worker, keeping the first error and whether it panicked.
    fn joined(&self, handle: JoinHandle<io::Result<()>>) {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.failure.lock().get_or_insert(e);
            }
            Err(_) => self.panicked.store(true, Ordering::SeqCst),
        }
    }

    /// Should a worker that has served a request leave? Yes while
    /// `MAX_IDLE` others wait for requests and none has found requests
    /// queued for `QUIET` (and it is not the last).
    fn leave(&self) -> bool {
        self.idle.load(Ordering::SeqCst) >= MAX_IDLE
            && self.since_queued() > QUIET
            && self
                .workers
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n > self.floor.load(Ordering::SeqCst)).then_some(n - 1)
                })
                .is_ok()
    }

    /// How many tasks run beside the caller (which is running)? `None`
    /// when /proc/loadavg cannot be read.
    fn running_beside() -> Option<u32> {
        match std::fs::read_to_string("/proc/loadavg") {
            Ok(text) => running_tasks(&text).map(|running| {
                u32::try_from(running.saturating_sub(1)).unwrap_or(u32::MAX / 32)
            }),
            Err(e) => {
                debug!("cannot read /proc/loadavg: {e}");
                None
            }
        }
    }

    /// Looks at the CPUs if `LOAD_SAMPLE` has passed since the last look
    /// (one worker looks, the others go on), and moves the floor as
    /// `LOAD_SAMPLE` says. Returns whether the floor went up, so the caller
    /// starts the workers it needs.
    fn sample_load(&self) -> bool {
        let now = self.now_ms();
        let last = self.last_sample.load(Ordering::SeqCst);
        if now.saturating_sub(last) < LOAD_SAMPLE.as_millis() as u64
            || self
                .last_sample
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        let Some(now_beside) = Self::running_beside() else {
            return false;
        };
        // Only the worker that won the look above writes the average.
        let old = self.beside.load(Ordering::SeqCst);
        let sample = now_beside.saturating_mul(16).min(u32::MAX / 4);
        let beside = (old * 3 + sample) / 4;
        self.beside.store(beside, Ordering::SeqCst);
        let floor = self.floor.load(Ordering::SeqCst);
        let wanted = floor_for(beside, self.cpus, floor);
        self.floor.store(wanted, Ordering::SeqCst);
        wanted > floor
    }

    fn new(max_threads: usize, clone_fd: bool) -> io::Result<Self> {
        if max_threads == 0 {
            return Err(io::Error::other("max_threads"));
        }
        if !cfg!(target_os = "linux") && (max_threads != 1 || clone_fd) {
            return Err(io::Error::other(
                "max_threads != 1 and clone_fd are only supported on Linux",
            ));
        }
        let cpus = thread::available_parallelism().map_or(1, |n| n.get());
        Ok(WorkerPool {
            bound: AtomicUsize::new(max_threads),
            floor: AtomicUsize::new(IDLE_FLOOR),
            cpus,
            last_sample: AtomicU64::new(0),
            beside: AtomicU32::new(0),
            clone_fd,
            workers: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            queued: AtomicU32::new(0),
            named: AtomicUsize::new(1),
            failure: Mutex::new(None),
            panicked: AtomicBool::new(false),
            started: Instant::now(),
            last_queued: AtomicU64::new(0),
            handles: Mutex::new(Vec::new()),
            serving: (0..max_threads)
                .map(|_| AtomicU32::new(FREE_SLOT))
                .collect(),
        })
    }
}

pub(crate) struct SessionEventLoop<FS: Filesystem> {
    /// Cache thread name for faster `debug!`.
    pub(crate) thread_name: String,
    pub(crate) ch: Channel,
    pub(crate) filesystem: Arc<FilesystemHolder<FS>>,
    pub(crate) allowed: SessionACL,
    pub(crate) session_owner: Uid,
    /// The pool this worker belongs to, if it grows with the load.
    pub(crate) pool: Option<Arc<WorkerPool>>,
    /// This worker's slot of the pool's `serving` (unused without a pool).
    pub(crate) slot: usize,
}

impl<FS: Filesystem> SessionEventLoop<FS> {
    fn event_loop(&self) -> io::Result<()> {
        // Buffer for receiving requests from the kernel. Only one is allocated and
        // it is reused immediately after dispatching to conserve memory and allocations.
        let mut buf = FuseReadBuf::new();
        let buf = buf.as_mut();
        let mut served = false;
        loop {
            if served && self.pool.as_ref().is_some_and(|pool| pool.leave()) {
                if let Some(pool) = &self.pool {
                    pool.serving[self.slot].store(FREE_SLOT, Ordering::SeqCst);
                }
                return Ok(());
            }
            if served && let Some(pool) = &self.pool {
                if pool.sample_load() {
                    self.fill_floor(pool);
                }
            }
            served = true;
            // Read the next request from the given channel to kernel driver
            // The kernel driver makes sure that we get exactly one request per read
            let (received, others_idle) = match &self.pool {
                Some(pool) => {
                    pool.serving[self.slot].store(0, Ordering::SeqCst);
                    pool.idle.fetch_add(1, Ordering::SeqCst);
                    let received = self.ch.receive_retrying(buf);
                    let others_idle = pool.idle.fetch_sub(1, Ordering::SeqCst) - 1;
                    (received, others_idle)
                }
                None => (self.ch.receive_retrying(buf), 0),
            };
            match received {
                Ok(size) => match RequestWithSender::new(self.ch.sender(), &buf[..size]) {
                    // Dispatch request
                    Some(req) => {
                        if let Some(pool) = &self.pool {
                            self.count_queued(pool, others_idle, req.request.pid().as_raw() as u32);
                        }
                        if let Ok(Operation::Destroy(_)) = req.request.operation() {
                            req.reply::<ReplyEmpty>().ok();
                            return Ok(());
                        } else {
                            req.dispatch(self)
                        }
                    }
                    // Quit loop on illegal request
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "Invalid request",
                        ));
                    }
                },
                Err(nix::errno::Errno::ENODEV) => return Ok(()),
                Err(err) => return Err(err.into()),
            }
        }
    }
}

impl<FS: Filesystem> SessionEventLoop<FS> {
    /// Counts a request from `caller` this worker took while `others_idle`
    /// other workers waited: towards another worker when none waited, more
    /// requests wait, and the requests in service come from two callers or
    /// more; anything else starts the count again.
    fn count_queued(&self, pool: &Arc<WorkerPool>, others_idle: usize, caller: u32) {
        pool.serving[self.slot].store(caller, Ordering::SeqCst);
        if others_idle == 0 && pool.serves_two_callers(self.slot, caller) && self.requests_wait() {
            pool.note_queued();
            let queued = pool.queued.fetch_add(1, Ordering::SeqCst) + 1;
            if queued >= QUEUED_TO_GROW {
                pool.queued.store(0, Ordering::SeqCst);
                self.start_worker(pool);
            }
        } else {
            pool.queued.store(0, Ordering::SeqCst);
        }
    }

    /// Do requests wait in the kernel's queue for a worker to read them?
    /// (A worker that just replied is still on its way back to receive, so
    /// "no worker waits" alone is true after most requests of a serial
    /// client.) A failed poll says no.
    fn requests_wait(&self) -> bool {
        let mut fds = [PollFd::new(self.ch.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            // The device is always writable: POLLOUT is in every answer.
            Ok(_) => fds[0]
                .revents()
                .is_some_and(|events| events.contains(PollFlags::POLLIN)),
            Err(e) => {
                debug!("{}: cannot poll the FUSE device: {e}", self.thread_name);
                false
            }
        }
    }

    /// Starts workers until `pool` has its floor (or its bound).
    fn fill_floor(&self, pool: &Arc<WorkerPool>) {
        while pool.workers.load(Ordering::SeqCst) < pool.floor.load(Ordering::SeqCst)
            && pool.workers.load(Ordering::SeqCst) < pool.bound.load(Ordering::SeqCst)
        {
            let before = pool.workers.load(Ordering::SeqCst);
            self.start_worker(pool);
            if pool.workers.load(Ordering::SeqCst) <= before {
                break; // could not start one (logged)
            }
        }
    }

    /// Starts one more worker of `pool` if it is below its bound. A worker
    /// that cannot be started is logged, and the pool stays as it is.
    fn start_worker(&self, pool: &Arc<WorkerPool>) {
        let Ok(workers) = pool
            .workers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < pool.bound.load(Ordering::SeqCst)).then_some(n + 1)
            })
        else {
            return;
        };
        let Some(slot) = pool.claim_slot() else {
            // Every slot taken: more workers than the bound (cannot be).
            pool.workers.fetch_sub(1, Ordering::SeqCst);
            return;
        };
        let index = pool.named.fetch_add(1, Ordering::SeqCst);
        let ch = if pool.clone_fd {
            #[cfg(target_os = "linux")]
            let cloned = self.ch.clone_fd();
            #[cfg(not(target_os = "linux"))]
            let cloned = Err(io::Error::other("clone_fd is only supported on Linux"));
            cloned
        } else {
            Ok(self.ch.clone())
        };
        let thread_name = format!("fuser-{index}");
        let started = ch.and_then(|ch| {
            let event_loop = SessionEventLoop {
                thread_name: thread_name.clone(),
                ch,
                filesystem: self.filesystem.clone(),
                allowed: self.allowed,
                session_owner: self.session_owner,
                pool: Some(pool.clone()),
                slot,
            };
            thread::Builder::new()
                .name(thread_name)
                .spawn(move || event_loop.event_loop())
        });
        match started {
            Ok(handle) => {
                let mut handles = pool.handles.lock();
                // Join the workers that left, so their handles do not pile up.
                let (ended, running) = std::mem::take(&mut *handles)
                    .into_iter()
                    .partition::<Vec<_>, _>(|h| h.is_finished());
                *handles = running;
                handles.push(handle);
                drop(handles);
                for handle in ended {
                    pool.joined(handle);
                }
            }
            Err(e) => {
                pool.serving[slot].store(FREE_SLOT, Ordering::SeqCst);
                pool.workers.fetch_sub(1, Ordering::SeqCst);
                pool.bound.fetch_min(workers, Ordering::SeqCst);
                warn!("cannot start event loop thread {index}, going on with {workers}: {e}");
            }
        }
    }
}

/// The background session data structure
#[derive(Debug)]
pub struct BackgroundSession {
    /// Thread guard of the background session
    pub guard: JoinHandle<io::Result<()>>,
    /// Object for creating Notifiers for client use
    sender: ChannelSender,
    /// Ensures the filesystem is unmounted when the session ends
    mount: Option<Mount>,
}

impl BackgroundSession {
    /// Unmount the filesystem and join the background thread.
    pub fn umount_and_join(mut self) -> io::Result<()> {
        if let Some(mount) = self.mount.take() {
            mount.umount()?;
        }
        self.join()
    }

    /// Returns an object that can be used to send notifications to the kernel
    pub fn notifier(&self) -> Notifier {
        Notifier::new(self.sender.clone())
    }

    /// Join the filesystem thread.
    pub fn join(self) -> io::Result<()> {
        self.guard
            .join()
            .map_err(|_panic: Box<dyn std::any::Any + Send>| {
                io::Error::new(
                    io::ErrorKind::Other,
                    "filesystem background thread panicked",
                )
            })?
    }
}
