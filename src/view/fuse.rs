//! The FUSE adapter: each `fuser::Filesystem` method calls the overlay core
//! and turns its result into the reply: fuser's types (attributes, errnos,
//! file types) are built here and nowhere else. No filesystem logic lives
//! here.
//!
//! Every request that changes the view runs inside the write gate
//! ([`super::gate`]), so `vskel sync` can hold all changes while it
//! flattens a mounted view: setattr, mknod, mkdir, unlink, rmdir, symlink,
//! rename, link, create, write, fallocate, setxattr, removexattr, and an
//! open that may write (writable or `O_TRUNC`: it copies up). During a hold
//! those wait in the gate's queue; reads, lookups, getattr, readdir,
//! xattr reads, flush, fsync and release are served as usual. For the gate
//! to see every write, passthrough is used for lower (read-only) files only
//! ([`super::passthrough`]). Write-only opens of upper files are direct
//! (`FOPEN_DIRECT_IO`), and the kernel's requests to clear suid and sgid
//! (`FUSE_HANDLE_KILLPRIV_V2`) are done by [`super::killpriv`].

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, OpenInFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::FileType;
use tracing::{debug, warn};

use super::files::{XattrReply, opens_for_writing, xattr_name, xattr_reply};
use super::gate::WriteGate;
use super::handles::{Handle, OpenFile};
use super::listing::entries_after;
use super::mutate::{Caller, Make, SetAttr, SetTime};
use super::overlay::{NEGATIVE_TTL, Overlay};
use super::passthrough::{Backings, Mode};
use super::types::{Attrs, Entry, Errno, Layer, OpResult};

/// Open files need no FLUSH: writes go to the layer file as they come.
const NO_FLUSH: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// A write-only open of an upper file bypasses the page cache: one
/// `write(2)` is one WRITE (not one per page run), and the kernel asks no
/// `security.capability` before it (it leaves killing privileges on a
/// direct write to the server, see [`super::killpriv`]). Nothing is lost:
/// a write-only file is never read or mapped through this handle.
const DIRECT: FopenFlags = FopenFlags::FOPEN_DIRECT_IO;

/// Filesystems stacked below a passthrough file (ours are plain ones).
const PASSTHROUGH_STACK_DEPTH: u32 = 1;

/// Offsets of `.` and `..` in a listing; entries follow.
const DOT_ENTRIES: u64 = 2;

/// The view as a FUSE filesystem.
#[derive(Debug)]
pub struct ViewFs {
    state: Arc<ViewState>,
}

/// What the requests share (also with changes parked during a hold).
#[derive(Debug)]
pub struct ViewState {
    overlay: Overlay,
    backings: Backings,
    /// Held by `vskel sync` to stop changes (see [`super::control`]).
    gate: Arc<WriteGate>,
    /// Tells the kernel to drop cached attributes (set once mounted).
    notifier: Arc<OnceLock<fuser::Notifier>>,
}

impl ViewFs {
    /// Serve `overlay`, its changes passing `gate`; `notifier` is filled in
    /// once the session exists.
    pub fn new(
        overlay: Overlay,
        gate: Arc<WriteGate>,
        notifier: Arc<OnceLock<fuser::Notifier>>,
    ) -> Self {
        ViewFs {
            state: Arc::new(ViewState {
                overlay,
                backings: Backings::default(),
                gate,
                notifier,
            }),
        }
    }

    /// Run a change of the view inside the write gate (parked on a thread
    /// of its own while a hold lasts).
    fn change(&self, change: impl FnOnce(&ViewState) + Send + 'static) {
        let state = self.state.clone();
        self.state.gate.run(move || change(&state));
    }
}

impl ViewState {
    /// After a change: the kernel drops its cached attributes of the nodes
    /// whose attributes changed as a side effect.
    fn tell_kernel(&self) {
        let touched = self.overlay.take_touched();
        let Some(notifier) = self.notifier.get() else {
            return;
        };
        for id in touched {
            // A negative offset: attributes only, no page cache.
            if let Err(e) = notifier.inval_inode(INodeNo(id), -1, 0) {
                debug!("invalidating node {id}: {e}");
            }
        }
    }

    /// Keep an open file; returns its handle.
    fn keep_open(
        &self,
        node: u64,
        fd: std::os::fd::OwnedFd,
        layer: Layer,
        mode: &Mode,
    ) -> FileHandle {
        let fh = self.overlay.handles().insert(Handle::File(OpenFile {
            node,
            file: Arc::new(fd.into()),
            layer,
            backing: mode.holds_backing(),
        }));
        FileHandle(fh)
    }

    /// Open node `ino` (a writable open runs inside the gate); `kill`: the
    /// caller's group when an `O_TRUNC` open is to clear suid and sgid.
    fn open(&self, ino: INodeNo, flags: OpenFlags, kill: Option<u32>, reply: ReplyOpen) {
        let (fd, layer) = match self.overlay.open(ino.0, flags.0, kill) {
            Ok(opened) => opened,
            Err(e) => {
                failed(&("open", ino.0, flags.0), e);
                return reply.error(kernel(e));
            }
        };
        let mode = self
            .backings
            .acquire(ino.0, fd.as_fd(), layer, |fd| reply.open_backing(fd));
        let fh = self.keep_open(ino.0, fd, layer, &mode);
        match &mode {
            Mode::Passthrough(id) => reply.opened_passthrough(fh, NO_FLUSH, id),
            Mode::Served if write_only(flags.0) => reply.opened(fh, NO_FLUSH | DIRECT),
            Mode::Served => reply.opened(fh, NO_FLUSH),
            Mode::ServedDirect(id) => {
                reply.opened_passthrough(fh, NO_FLUSH | FopenFlags::FOPEN_DIRECT_IO, id)
            }
        }
        self.tell_kernel();
    }

    /// Make file `name` in `parent` and open it (runs inside the gate).
    fn create(
        &self,
        parent: INodeNo,
        name: &OsStr,
        (mode, umask, flags): (u32, u32, i32),
        caller: Caller,
        reply: ReplyCreate,
    ) {
        let made = self
            .overlay
            .make(parent.0, name, Make::File { mode }, umask, caller);
        match made {
            Ok((entry, Some(fd))) => {
                let id = entry.attr.id;
                // A new file is in the upper layer: served, unless the node
                // still has a backing from an earlier life.
                let mode = self
                    .backings
                    .acquire(id, fd.as_fd(), Layer::Upper, |fd| reply.open_backing(fd));
                let fh = self.keep_open(id, fd, Layer::Upper, &mode);
                let generation = Generation(entry.generation);
                let cache = if write_only(flags) {
                    DIRECT
                } else {
                    FopenFlags::empty()
                };
                match &mode {
                    Mode::Served => reply.created(
                        &entry.ttl,
                        &file_attr(&entry.attr),
                        generation,
                        fh,
                        NO_FLUSH | cache,
                    ),
                    Mode::Passthrough(backing) | Mode::ServedDirect(backing) => reply
                        .created_passthrough(
                            &entry.ttl,
                            &file_attr(&entry.attr),
                            generation,
                            fh,
                            NO_FLUSH | FopenFlags::FOPEN_DIRECT_IO,
                            backing,
                        ),
                }
            }
            Ok((_, None)) => reply.error(kernel(Errno::IO)),
            Err(e) => reply.error(kernel(e)),
        }
        self.tell_kernel();
    }

    /// Write `data` at `offset` through handle `fh`; `kill`: the caller's
    /// group when the write is to clear suid and sgid.
    fn write(
        &self,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        kill: Option<u32>,
        reply: ReplyWrite,
    ) {
        match self
            .overlay
            .handles()
            .file(fh.0)
            .and_then(|f| Overlay::write(&f, offset, data, kill))
        {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(kernel(e)),
        }
    }
}

/// An open with `flags` is write-only (`O_WRONLY`, not `O_RDWR`).
fn write_only(flags: i32) -> bool {
    let flags = rustix::fs::OFlags::from_bits_retain(flags as _);
    flags & rustix::fs::OFlags::ACCMODE == rustix::fs::OFlags::WRONLY
}

/// The caller's group, when the kernel asks this change to clear suid and
/// sgid.
fn kill_for(req: &Request, asked: bool) -> Option<u32> {
    asked.then(|| req.gid())
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// A time the kernel asks to set.
fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    }
}

/// The errno the kernel gets for a core error.
fn kernel(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.raw_os_error())
}

/// Kernel attributes of a node.
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn file_attr(a: &Attrs) -> FileAttr {
    let st = &a.stat;
    let time = |sec: i64, nsec: i64| {
        if sec >= 0 {
            UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
        } else {
            UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::from_nanos(nsec as u64)
        }
    };
    let kind = FileType::from_raw_mode(st.st_mode as _);
    FileAttr {
        ino: INodeNo(a.id),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime as i64, st.st_atime_nsec as i64),
        mtime: time(st.st_mtime as i64, st.st_mtime_nsec as i64),
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        crtime: UNIX_EPOCH,
        kind: fuse_kind(kind),
        perm: (st.st_mode as u32 & 0o7777) as u16,
        // A merged directory's link count is not known (as in overlayfs).
        nlink: if a.merged_dir { 1 } else { st.st_nlink as u32 },
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// The attributes that tell the kernel a name does not exist: node ID 0
/// (the kernel then keeps a negative entry for the entry TTL; nothing to
/// forget later).
fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// fuser's file type for rustix's.
fn fuse_kind(kind: FileType) -> fuser::FileType {
    match kind {
        FileType::Directory => fuser::FileType::Directory,
        FileType::Symlink => fuser::FileType::Symlink,
        FileType::CharacterDevice => fuser::FileType::CharDevice,
        FileType::BlockDevice => fuser::FileType::BlockDevice,
        FileType::Fifo => fuser::FileType::NamedPipe,
        FileType::Socket => fuser::FileType::Socket,
        _ => fuser::FileType::RegularFile,
    }
}

/// Log a request that failed: at debug for what callers cause (no such
/// name, exists, not empty, no permission, ...), at warn for the server's
/// own faults (I/O errors, a full disk, out of descriptors or memory),
/// which an administrator must see.
fn failed(what: &dyn std::fmt::Debug, e: Errno) {
    if is_server_fault(e) {
        warn!("{what:?} failed: {e:?}");
    } else {
        debug!("{what:?}: {e:?}");
    }
}

/// Errors that say the server or its disk is in trouble, not the caller.
fn is_server_fault(e: Errno) -> bool {
    [
        Errno::IO,
        Errno::NOSPC,
        Errno::DQUOT,
        Errno::MFILE,
        Errno::NFILE,
        Errno::NOMEM,
        Errno::BADF,
    ]
    .contains(&e)
}

fn reply_entry(reply: ReplyEntry, what: &dyn std::fmt::Debug, result: OpResult<Entry>) {
    match result {
        Ok(e) => reply.entry(&e.ttl, &file_attr(&e.attr), Generation(e.generation)),
        Err(e) => {
            failed(what, e);
            reply.error(kernel(e))
        }
    }
}

fn reply_empty(reply: ReplyEmpty, what: &dyn std::fmt::Debug, result: OpResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => {
            failed(what, e);
            reply.error(kernel(e))
        }
    }
}

fn reply_xattr(reply: ReplyXattr, value: OpResult<Vec<u8>>, size: u32) {
    match value.and_then(|v| xattr_reply(v, size)) {
        Ok(XattrReply::Size(n)) => reply.size(n),
        Ok(XattrReply::Data(d)) => reply.data(&d),
        Err(e) => reply.error(kernel(e)),
    }
}

/// The file type bits of a `mode` as sent with `mknod`.
fn kind_of_mode(mode: u32) -> FileType {
    FileType::from_raw_mode(mode as _)
}

impl Filesystem for ViewFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Passthrough needs the kernel's consent and one level of stacking
        // (the layer files are on a plain filesystem).
        if config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(PASSTHROUGH_STACK_DEPTH).is_ok()
        {
            self.state.backings.enable();
        } else {
            debug!("kernel offers no FUSE passthrough: reads and writes are served");
        }
        // FUSE_CACHE_SYMLINKS: the kernel keeps what READLINK returned in
        // the link's page cache. A symlink's target never changes: one
        // made again under a node ID the kernel still holds gets a new
        // generation, so the kernel makes a new inode for it. Without it
        // every walk through a link (`/bin -> usr/bin` in a merged-/usr
        // tree) asked the server again.
        // FUSE_HANDLE_KILLPRIV_V2: vskel clears suid and sgid on a write,
        // truncate or O_TRUNC open when the kernel asks (see `killpriv`);
        // the kernel then sends no GETATTR and SETATTR of its own for it.
        for wanted in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            if let Err(missing) = config.add_capabilities(wanted) {
                debug!("kernel lacks {missing:?}");
            }
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // A name no layer has is answered as a negative entry the kernel
        // keeps (see `NEGATIVE_TTL`), not as ENOENT (which it asks again).
        match self.state.overlay.lookup(parent.0, name) {
            Err(e) if e == Errno::NOENT => {
                reply.entry(&NEGATIVE_TTL, &negative_attr(), Generation(0))
            }
            other => reply_entry(reply, &("lookup", parent.0, name), other),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.state.overlay.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.state.overlay.getattr_of(ino.0, fh.map(|fh| fh.0));
        match result {
            Ok((attr, ttl)) => reply.attr(&ttl, &file_attr(&attr)),
            Err(e) => {
                failed(&("getattr", ino.0), e);
                reply.error(kernel(e))
            }
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        // Nothing to set: `chown(f, -1, -1)`, whose suid/sgid clearing the
        // kernel leaves to vskel with FUSE_HANDLE_KILLPRIV_V2.
        let nothing = mode.is_none()
            && uid.is_none()
            && gid.is_none()
            && size.is_none()
            && atime.is_none()
            && mtime.is_none();
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(set_time),
            mtime: mtime.map(set_time),
            kill_suidgid: kill_for(req, kill_suidgid),
            chown_nothing: nothing.then(|| caller(req)),
        };
        self.change(move |fs| {
            let result = fs.overlay.setattr(ino.0, &change, fh.map(|fh| fh.0));
            match result {
                Ok((attr, ttl)) => reply.attr(&ttl, &file_attr(&attr)),
                Err(e) => {
                    failed(&("setattr", ino.0, change), e);
                    reply.error(kernel(e))
                }
            }
            fs.tell_kernel();
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.state.overlay.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(kernel(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let what = match kind_of_mode(mode) {
            FileType::RegularFile => Make::File { mode },
            FileType::Directory => return reply.error(kernel(Errno::INVAL)),
            kind => Make::Node {
                kind,
                mode,
                rdev: u64::from(rdev),
            },
        };
        let (name, caller) = (name.to_owned(), caller(req));
        self.change(move |fs| {
            let result = fs.overlay.make(parent.0, &name, what, umask, caller);
            reply_entry(
                reply,
                &("mknod", parent.0, &name),
                result.map(|(entry, _file)| entry),
            );
            fs.tell_kernel();
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let (name, caller) = (name.to_owned(), caller(req));
        self.change(move |fs| {
            let result = fs
                .overlay
                .make(parent.0, &name, Make::Dir { mode }, umask, caller);
            reply_entry(
                reply,
                &("mkdir", parent.0, &name),
                result.map(|(entry, _)| entry),
            );
            fs.tell_kernel();
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.change(move |fs| {
            reply_empty(
                reply,
                &("unlink", parent.0, &name),
                fs.overlay.unlink(parent.0, &name),
            );
            fs.tell_kernel();
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_owned();
        self.change(move |fs| {
            reply_empty(
                reply,
                &("rmdir", parent.0, &name),
                fs.overlay.rmdir(parent.0, &name),
            );
            fs.tell_kernel();
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let target = match crate::sys::cname(target.as_os_str()) {
            Ok(t) => t,
            Err(_) => return reply.error(kernel(Errno::INVAL)),
        };
        let (name, caller) = (link_name.to_owned(), caller(req));
        self.change(move |fs| {
            let result = fs.overlay.make(
                parent.0,
                &name,
                Make::Symlink { target: &target },
                0,
                caller,
            );
            reply_entry(
                reply,
                &("symlink", parent.0, &name),
                result.map(|(entry, _)| entry),
            );
            fs.tell_kernel();
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let flags = rustix::fs::RenameFlags::from_bits_truncate(flags.bits());
        let (name, newname) = (name.to_owned(), newname.to_owned());
        self.change(move |fs| {
            reply_empty(
                reply,
                &("rename", parent.0, &name, newparent.0, &newname),
                fs.overlay
                    .rename(parent.0, &name, newparent.0, &newname, flags),
            );
            fs.tell_kernel();
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = newname.to_owned();
        self.change(move |fs| {
            reply_entry(
                reply,
                &("link", ino.0, newparent.0, &newname),
                fs.overlay.link(ino.0, newparent.0, &newname),
            );
            fs.tell_kernel();
        });
    }

    fn open(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        open_in_flags: OpenInFlags,
        reply: ReplyOpen,
    ) {
        if opens_for_writing(flags.0) {
            let kill = kill_for(
                req,
                open_in_flags.contains(OpenInFlags::FUSE_OPEN_KILL_SUIDGID),
            );
            // It copies up, possibly several hard-link names.
            self.change(move |fs| fs.open(ino, flags, kill, reply));
        } else {
            self.state.open(ino, flags, None, reply);
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self
            .state
            .overlay
            .handles()
            .file(fh.0)
            .and_then(|f| Overlay::read(&f, offset, size))
        {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(kernel(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill = kill_for(
            req,
            write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID),
        );
        match self.state.gate.try_write() {
            Some(_writing) => self.state.write(fh, offset, data, kill, reply),
            // A hold: copy the data out of the request buffer and wait.
            None => {
                let data = data.to_vec();
                self.change(move |fs| fs.write(fh, offset, &data, kill, reply));
            }
        }
    }

    /// Nothing to do on close: writes go straight to the backing file, and
    /// POSIX locks are the kernel's (no lock operations are served). So the
    /// first FLUSH is answered ENOSYS, after which the kernel sends none:
    /// one request less for every `close(2)` of a file.
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some(Handle::File(open)) = self.state.overlay.handles().remove(fh.0)
            && open.backing
        {
            self.state.backings.release(open.node);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        let result = self.state.overlay.handles().file(fh.0).and_then(|f| {
            if datasync {
                f.sync_data()
            } else {
                f.sync_all()
            }
            .map_err(super::types::errno)
        });
        reply_empty(reply, &"fsync", result);
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // No state per open directory: readdir works from offsets alone.
        // On ENOSYS the kernel stops sending opendir and releasedir and
        // keeps what it read in its own cache (every change of a
        // directory goes through this mount, and the kernel drops the
        // cache then).
        reply.error(kernel(Errno::NOSYS));
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let list = match self.state.overlay.listing(ino.0) {
            Ok(list) => list,
            Err(e) => return reply.error(kernel(e)),
        };
        if offset < DOT_ENTRIES {
            let parent = self.state.overlay.parent_of(ino.0);
            for (id, next, name) in [(ino.0, 1, "."), (parent, DOT_ENTRIES, "..")] {
                if next > offset && reply.add(INodeNo(id), next, fuser::FileType::Directory, name) {
                    return reply.ok();
                }
            }
        }
        for item in entries_after(&list, offset) {
            let id = match item.ino {
                Some(id) => id,
                None => self
                    .state
                    .overlay
                    .peek_ino(ino.0, &item.name)
                    .unwrap_or(u64::MAX),
            };
            if reply.add(INodeNo(id), item.cookie, fuse_kind(item.kind), &item.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        // `.` and `..` carry no lookup (the kernel does not count them).
        if offset < DOT_ENTRIES {
            let parent = self.state.overlay.parent_of(ino.0);
            for (id, next, name) in [(ino.0, 1, "."), (parent, DOT_ENTRIES, "..")] {
                if next <= offset {
                    continue;
                }
                let attr = match self.state.overlay.getattr(id) {
                    Ok((attr, _)) => attr,
                    Err(e) => return reply.error(kernel(e)),
                };
                if reply.add(
                    INodeNo(id),
                    next,
                    name,
                    &Duration::ZERO,
                    &file_attr(&attr),
                    Generation(0),
                ) {
                    return reply.ok();
                }
            }
        }
        let result = self.state.overlay.list_plus(ino.0, offset, |item, entry| {
            !reply.add(
                INodeNo(entry.attr.id),
                item.cookie,
                &item.name,
                &entry.ttl,
                &file_attr(&entry.attr),
                Generation(entry.generation),
            )
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(kernel(e)),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.state.overlay.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                super::types::NAME_MAX as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(kernel(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let name = match xattr_name(name) {
            Ok(name) => name,
            Err(e) => return reply.error(kernel(e)),
        };
        let value = value.to_vec();
        self.change(move |fs| {
            let result = fs.overlay.setxattr(ino.0, &name, &value, flags);
            reply_empty(reply, &"setxattr", result);
            fs.tell_kernel();
        });
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let value = xattr_name(name).and_then(|n| self.state.overlay.getxattr(ino.0, &n));
        reply_xattr(reply, value, size);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(reply, self.state.overlay.listxattr(ino.0), size);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = match xattr_name(name) {
            Ok(name) => name,
            Err(e) => return reply.error(kernel(e)),
        };
        self.change(move |fs| {
            let result = fs.overlay.removexattr(ino.0, &name);
            reply_empty(reply, &"removexattr", result);
            fs.tell_kernel();
        });
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks access.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        _open_in_flags: OpenInFlags,
        reply: ReplyCreate,
    ) {
        // The kernel handles O_APPEND; O_TRUNC (and so a kill) means
        // nothing for a new file.
        let (name, caller) = (name.to_owned(), caller(req));
        self.change(move |fs| fs.create(parent, &name, (mode, umask, flags), caller, reply));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.change(move |fs| {
            let result = fs.overlay.handles().file(fh.0).and_then(|f| {
                let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as _);
                rustix::fs::fallocate(&*f, flags, offset, length)
                    .map_err(|e| super::types::errno(e.into()))
            });
            reply_empty(reply, &"fallocate", result);
        });
    }

    fn destroy(&mut self) {
        debug!(
            "view unmounted; {} nodes were held",
            self.state.overlay.node_count()
        );
    }
}
