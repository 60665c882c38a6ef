//! Reading one layer into a directory, as hostile input: the blob's
//! digest and size are checked (and its uncompressed digest against the
//! config's `diff_id`), every name is checked before anything is made
//! (no absolute name, no `..`, nothing through a symlink or a
//! non-directory; a hard link only to an earlier non-directory entry of
//! the layer or a non-directory the target holds; a symlink whose
//! relative target climbs above the target's root is refused, an
//! absolute one is taken as inside it), and
//! only regular files, directories, symlinks, hard links, devices and
//! FIFOs are accepted. OCI whiteouts are applied ([`Whiteouts`]).
//!
//! The layer is read twice: a first pass checks both digests and every
//! entry's name, type and limits (a name component of at most 255 bytes,
//! a path of at most 4096, an extended attribute value of at most
//! 64 KiB) without making anything, so a damaged or refused layer leaves
//! the target as it was; the second pass makes the entries, checking
//! every name again against what is on disk (directories opened with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and checks the digests again
//! at its end. A refusal met only in the second pass (a directory of the
//! target that is a symlink where an entry goes, a target changed between
//! the passes) can leave part of the layer made: the caller unpacks into
//! a staging directory it throws away on error, so a refused or damaged
//! layer leaves nothing behind.
//!
//! Overlay-private extended attributes (`trusted.overlay.*`) in a layer
//! are dropped: only [`Whiteouts::KernelOverlay`] writes them, from the
//! layer's whiteouts.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ocidir::oci_spec::image::{Descriptor, MediaType};
use rustix::fs::FileType;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use super::layout::{ImageLayout, blob_hex, hex};
use super::whiteout::{Name, classify};
use crate::error::{Error, Result};
use crate::sys::{self, Times};
use crate::tree::TreeRoot;
use crate::tree::meta::Meta;
use crate::tree::remove::remove_tree_at;
use crate::view::format::{is_private_xattr, make_whiteout, set_opaque};

/// Longest name component accepted.
pub const MAX_NAME: usize = 255;
/// Longest path (entry name, link target) accepted.
pub const MAX_PATH: usize = 4096;
/// Largest extended attribute value accepted.
pub const MAX_XATTR_VALUE: usize = 64 * 1024;
/// The PAX key prefix of an extended attribute.
const PAX_XATTR: &str = "SCHILY.xattr.";
/// The PAX key (value `1`) that marks a FIFO entry as a socket: a tar has
/// no socket type. Refused on any other entry type.
pub const PAX_SOCKET: &str = "VSKEL.socket";

/// What to do with a whiteout or an opaque marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Remove what it names from the target (an image's root
    /// filesystem is being built: layers are applied one over another).
    Remove,
    /// Write it in kernel overlayfs' format (a character device 0/0; the
    /// `trusted.overlay.opaque` xattr), for a view's upper layer.
    KernelOverlay,
}

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Applied {
    /// Entries made (files, directories, links, devices).
    pub entries: u64,
    /// Whiteouts and opaque markers applied.
    pub whiteouts: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
}

/// Unpack the layer `desc` of `layout` into `target`. `diff_id` is the
/// config's digest of the uncompressed tar. Only entries under `prefix`
/// are taken (with the prefix stripped; an entry elsewhere is refused);
/// `prefix` may be empty. Existing entries of the target at an entry's
/// path are replaced by a new inode (never written through: a hard-linked
/// file keeps its other names' content). Directories get their times
/// after everything in them is made.
pub fn apply_layer(
    layout: &ImageLayout,
    desc: &Descriptor,
    diff_id: &str,
    target: &TreeRoot,
    prefix: &Path,
    whiteouts: Whiteouts,
) -> Result<Applied> {
    let layer = desc.digest().to_string();
    if blob_hex(diff_id).is_none() {
        return Err(Error::Failed(format!(
            "layer {layer}: diff_id \"{diff_id}\" is not a sha256 digest"
        )));
    }
    let prefix = clean_path(prefix.as_os_str().as_bytes())
        .map_err(|why| Error::Usage(format!("layer prefix \"{}\": {why}", prefix.display())))?;
    let ctx = Context {
        layer: &layer,
        prefix,
    };

    // First pass: check everything, make nothing.
    let mut checker = Checker::new(target);
    read_layer(layout, desc, diff_id, &ctx, &mut |entry| {
        if let Some(item) = ctx.parse(entry)? {
            checker.check(&ctx, &item)?;
        }
        Ok(())
    })?;

    // Second pass: make the entries, checking again.
    let mut checker = Checker::new(target);
    let mut applier = Applier {
        target,
        mode: whiteouts,
        made: HashSet::new(),
        dirs: Vec::new(),
        opaque: Vec::new(),
        parent: None,
        applied: Applied::default(),
    };
    read_layer(layout, desc, diff_id, &ctx, &mut |entry| {
        if let Some(item) = ctx.parse(entry)? {
            checker.check(&ctx, &item)?;
            applier.apply(&ctx, item, entry)?;
        }
        Ok(())
    })?;
    applier.finish(&ctx)
}

/// One tar entry of the layer as the read passes see it.
type LayerEntry<'a, 'b> = tar::Entry<'a, &'b mut dyn Read>;

/// Read the layer's tar, handing each entry to `each`, and check the
/// blob's digest and size and the tar's `diff_id` at its end.
fn read_layer(
    layout: &ImageLayout,
    desc: &Descriptor,
    diff_id: &str,
    ctx: &Context<'_>,
    each: &mut dyn FnMut(&mut LayerEntry<'_, '_>) -> Result<()>,
) -> Result<()> {
    let damaged = |e: io::Error| Error::Failed(format!("layer {} is damaged: {e}", ctx.layer));
    let blob = layout.open_blob(desc)?;
    let stream: Box<dyn Read + '_> = match desc.media_type() {
        MediaType::ImageLayerZstd => Box::new(zstd::Decoder::new(blob).map_err(damaged)?),
        MediaType::ImageLayer => blob,
        other => {
            return Err(Error::Failed(format!(
                "layer {}: media type {other} is not supported (only \
                 application/vnd.oci.image.layer.v1.tar and its +zstd form)",
                ctx.layer
            )));
        }
    };
    let mut hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
    };
    {
        let reader: &mut dyn Read = &mut hashing;
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(damaged)? {
            let mut entry = entry.map_err(damaged)?;
            each(&mut entry)?;
        }
    }
    // The rest of the tar (its end blocks and padding), and the end of
    // the blob, where its size and digest are checked.
    io::copy(&mut hashing, &mut io::sink()).map_err(damaged)?;
    let got = format!("sha256:{}", hex(&hashing.hasher.finalize()));
    if got != diff_id {
        return Err(Error::Failed(format!(
            "layer {}: its uncompressed digest is {got}, the image's diff_id says {diff_id}",
            ctx.layer
        )));
    }
    Ok(())
}

/// Hashes what is read through it (the uncompressed tar).
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// What the passes share: the layer's name (for messages) and the prefix.
struct Context<'a> {
    layer: &'a str,
    prefix: Vec<Vec<u8>>,
}

/// What one entry makes.
#[derive(Debug)]
enum What {
    File {
        size: u64,
    },
    Dir,
    Symlink(CString),
    HardLink(PathBuf),
    /// A device node, FIFO or socket, with its device number (0 but for a
    /// device).
    Node(FileType, u64),
    Whiteout,
    Opaque,
}

/// One checked entry: its path relative to the target (empty: the root)
/// and what it makes. For a whiteout the path is what it removes; for an
/// opaque marker, its directory.
#[derive(Debug)]
struct Item {
    name: String,
    path: PathBuf,
    what: What,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Item {
    fn meta(&self, file_type: FileType) -> Meta {
        Meta {
            file_type,
            mode: self.mode,
            uid: self.uid,
            gid: self.gid,
            times: Times {
                atime: self.mtime,
                mtime: self.mtime,
            },
            size: 0,
            nlink: 1,
            dev: 0,
            ino: 0,
            rdev: 0,
            xattrs: self.xattrs.clone(),
        }
    }

    fn times(&self) -> Times {
        Times {
            atime: self.mtime,
            mtime: self.mtime,
        }
    }
}

/// Split a name into its components: no absolute name, no `..`, `.` and
/// empty components dropped, each component and the whole within limits.
fn clean_path(raw: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    if raw.first() == Some(&b'/') {
        return Err("an absolute name".into());
    }
    if raw.len() > MAX_PATH {
        return Err(format!("a name longer than {MAX_PATH} bytes"));
    }
    if raw.contains(&0) {
        return Err("a name with a NUL byte".into());
    }
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("a name with a \"..\" component".into()),
            _ if part.len() > MAX_NAME => {
                return Err(format!("a name component longer than {MAX_NAME} bytes"));
            }
            _ => out.push(part.to_vec()),
        }
    }
    Ok(out)
}

fn join(parts: &[Vec<u8>]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&parts.join(&b'/')))
}

/// Seconds and nanoseconds of a PAX `mtime` (`SECS[.FRACTION]`).
fn parse_pax_time(text: &str) -> Option<(i64, i64)> {
    let (secs, frac) = match text.split_once('.') {
        Some((s, f)) => (s, f),
        None => (text, ""),
    };
    let secs: i64 = secs.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    Some((secs, digits.parse().ok()?))
}

impl Context<'_> {
    fn refuse(&self, name: &str, why: impl std::fmt::Display) -> Error {
        Error::Failed(format!(
            "layer {}: entry \"{name}\" refused: {why}",
            self.layer
        ))
    }

    /// Strip the prefix: `Ok(None)` for one of the prefix's own
    /// directories, an error for a name outside it.
    fn strip<'p>(
        &self,
        name: &str,
        parts: &'p [Vec<u8>],
        is_dir: bool,
    ) -> Result<Option<&'p [Vec<u8>]>> {
        let p = self.prefix.len();
        if parts.len() >= p && parts[..p] == self.prefix[..] {
            return Ok(Some(&parts[p..]));
        }
        if is_dir && parts.len() < p && self.prefix[..parts.len()] == *parts {
            return Ok(None);
        }
        Err(self.refuse(
            name,
            format!("not under the prefix \"{}\"", join(&self.prefix).display()),
        ))
    }

    /// Parse and check one entry on its own; `None` for an entry to skip.
    fn parse(&self, entry: &mut LayerEntry<'_, '_>) -> Result<Option<Item>> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let refuse = |why: String| self.refuse(&name, why);
        let header = entry.header();
        let kind = header.entry_type();
        let bad_header = |e: io::Error| refuse(format!("a damaged header: {e}"));
        let mode = header.mode().map_err(bad_header)? & 0o7777;
        let uid = header.uid().map_err(bad_header)?;
        let gid = header.gid().map_err(bad_header)?;
        let (Ok(uid), Ok(gid)) = (u32::try_from(uid), u32::try_from(gid)) else {
            return Err(refuse(format!("owner {uid}:{gid} out of range")));
        };
        let mut mtime = (
            i64::try_from(header.mtime().map_err(bad_header)?).unwrap_or(i64::MAX),
            0,
        );
        let device = match kind {
            EntryType::Char | EntryType::Block => {
                let major = header.device_major().map_err(bad_header)?.unwrap_or(0);
                let minor = header.device_minor().map_err(bad_header)?.unwrap_or(0);
                rustix::fs::makedev(major, minor)
            }
            _ => 0,
        };
        let link = entry.link_name_bytes().map(|l| l.into_owned());
        let size = entry.size();

        let mut xattrs = Vec::new();
        let mut socket = false;
        if let Some(pax) = entry.pax_extensions().map_err(bad_header)? {
            for ext in pax {
                let ext = ext.map_err(bad_header)?;
                let Ok(key) = ext.key() else {
                    return Err(refuse("a PAX key that is not UTF-8".into()));
                };
                if key == PAX_SOCKET {
                    socket = kind == EntryType::Fifo && ext.value_bytes() == b"1";
                    if !socket {
                        return Err(refuse(format!("{PAX_SOCKET} on a {:?} entry", kind)));
                    }
                } else if key == "mtime" {
                    let text = ext.value().unwrap_or("");
                    mtime = parse_pax_time(text)
                        .ok_or_else(|| refuse(format!("a PAX mtime \"{text}\"")))?;
                } else if let Some(xname) = key.strip_prefix(PAX_XATTR) {
                    if xname.is_empty() || xname.len() > MAX_NAME {
                        return Err(refuse(format!("an extended attribute name \"{xname}\"")));
                    }
                    let value = ext.value_bytes();
                    if value.len() > MAX_XATTR_VALUE {
                        return Err(refuse(format!(
                            "extended attribute {xname} of {} bytes (at most {MAX_XATTR_VALUE})",
                            value.len()
                        )));
                    }
                    if is_private_xattr(xname.as_bytes()) {
                        continue;
                    }
                    let cname = CString::new(xname)
                        .map_err(|_| refuse("an extended attribute name with NUL".into()))?;
                    xattrs.push((cname, value.to_vec()));
                }
            }
        }
        xattrs.sort();
        xattrs.dedup_by(|a, b| a.0 == b.0);

        let parts = clean_path(&raw).map_err(refuse)?;
        let is_dir = kind == EntryType::Directory;
        let Some(rel) = self.strip(&name, &parts, is_dir)? else {
            return Ok(None);
        };
        let path = join(rel);
        let item = |path: PathBuf, what: What| Item {
            name: name.clone(),
            path,
            what,
            mode,
            uid,
            gid,
            mtime,
            xattrs: xattrs.clone(),
        };
        if rel.is_empty() {
            // The root: only a directory's metadata is taken.
            return Ok(is_dir.then(|| item(PathBuf::new(), What::Dir)));
        }
        let last = OsStr::from_bytes(rel.last().expect("not empty"));
        let parent = join(&rel[..rel.len() - 1]);
        match classify(last) {
            Name::Opaque => return Ok(Some(item(parent, What::Opaque))),
            Name::Whiteout(hidden) => {
                let hidden = hidden.as_bytes();
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    return Err(refuse("a whiteout of no name".into()));
                }
                return Ok(Some(item(
                    parent.join(OsStr::from_bytes(hidden)),
                    What::Whiteout,
                )));
            }
            Name::Plain => {}
        }
        let what = match kind {
            EntryType::Regular | EntryType::Continuous => What::File { size },
            EntryType::Directory => What::Dir,
            EntryType::Symlink => {
                let target = link.unwrap_or_default();
                if target.is_empty() || target.len() > MAX_PATH {
                    return Err(refuse(format!(
                        "a symlink target of {} bytes",
                        target.len()
                    )));
                }
                if target[0] != b'/' {
                    let mut depth = rel.len() as i64 - 1;
                    for part in target.split(|&b| b == b'/') {
                        match part {
                            b"" | b"." => {}
                            b".." => {
                                depth -= 1;
                                if depth < 0 {
                                    return Err(refuse(format!(
                                        "symlink to \"{}\" climbs above the root",
                                        String::from_utf8_lossy(&target)
                                    )));
                                }
                            }
                            _ => depth += 1,
                        }
                    }
                }
                What::Symlink(
                    CString::new(target).map_err(|_| refuse("a symlink target with NUL".into()))?,
                )
            }
            EntryType::Link => {
                let target = link.unwrap_or_default();
                let shown = String::from_utf8_lossy(&target).into_owned();
                let parts = clean_path(&target)
                    .map_err(|why| refuse(format!("hard link to \"{shown}\": {why}")))?;
                let rel = self
                    .strip(&name, &parts, false)
                    .map_err(|_| refuse(format!("hard link to \"{shown}\", outside the prefix")))?
                    .unwrap_or_default();
                if rel.is_empty() {
                    return Err(refuse(format!("hard link to \"{shown}\", the root")));
                }
                What::HardLink(join(rel))
            }
            EntryType::Char => What::Node(FileType::CharacterDevice, device),
            EntryType::Block => What::Node(FileType::BlockDevice, device),
            EntryType::Fifo if socket => What::Node(FileType::Socket, 0),
            EntryType::Fifo => What::Node(FileType::Fifo, 0),
            other => {
                return Err(refuse(format!(
                    "entry type {:?} is not accepted",
                    other.as_byte() as char
                )));
            }
        };
        Ok(Some(item(path, what)))
    }
}

/// What the layer made so far, by path (true: a directory), to refuse an
/// entry below a non-directory of the layer and a hard link to a
/// directory.
struct Checker<'a> {
    target: &'a TreeRoot,
    kinds: HashMap<PathBuf, bool>,
}

impl<'a> Checker<'a> {
    fn new(target: &'a TreeRoot) -> Self {
        Checker {
            target,
            kinds: HashMap::new(),
        }
    }

    /// Does the target hold a non-directory at `rel` (reached with no
    /// symlink followed)?
    fn target_has_non_dir(&self, rel: &Path) -> bool {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let Ok(dir) = sys::open_dir_beneath(self.target.fd(), parent) else {
            return false;
        };
        let Ok(name) = sys::cname(rel.file_name().unwrap_or_default()) else {
            return false;
        };
        sys::stat_at(dir.as_fd(), &name)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode as _) != FileType::Directory)
    }

    fn through_non_dir(&self, path: &Path) -> Option<PathBuf> {
        path.ancestors()
            .skip(1)
            .take_while(|a| !a.as_os_str().is_empty())
            .find(|a| self.kinds.get(*a) == Some(&false))
            .map(Path::to_path_buf)
    }

    fn check(&mut self, ctx: &Context<'_>, item: &Item) -> Result<()> {
        if let Some(at) = self.through_non_dir(&item.path) {
            return Err(ctx.refuse(
                &item.name,
                format!("under \"{}\", which is not a directory", at.display()),
            ));
        }
        match &item.what {
            What::HardLink(target) => {
                if target == &item.path {
                    return Err(ctx.refuse(&item.name, "a hard link to itself"));
                }
                if self.kinds.get(target) == Some(&true) {
                    return Err(ctx.refuse(
                        &item.name,
                        format!("hard link to the directory \"{}\"", target.display()),
                    ));
                }
                if !self.kinds.contains_key(target) && !self.target_has_non_dir(target) {
                    return Err(ctx.refuse(
                        &item.name,
                        format!(
                            "hard link to \"{}\", which neither the layer nor the target \
                             holds as a non-directory",
                            target.display()
                        ),
                    ));
                }
                if let Some(at) = self.through_non_dir(target) {
                    return Err(ctx.refuse(
                        &item.name,
                        format!(
                            "hard link to \"{}\", under the non-directory \"{}\"",
                            target.display(),
                            at.display()
                        ),
                    ));
                }
                self.kinds.insert(item.path.clone(), false);
            }
            What::Whiteout => {}
            What::Opaque => {
                if self.kinds.get(&item.path) == Some(&false) {
                    return Err(ctx.refuse(&item.name, "an opaque marker in a non-directory"));
                }
            }
            What::Dir => {
                self.kinds.insert(item.path.clone(), true);
            }
            _ => {
                self.kinds.insert(item.path.clone(), false);
            }
        }
        Ok(())
    }
}

/// The second pass: makes the entries in the target.
struct Applier<'a> {
    target: &'a TreeRoot,
    mode: Whiteouts,
    /// Paths this layer made (entries and the directories made for them).
    made: HashSet<PathBuf>,
    /// Directories whose times are set at the end.
    dirs: Vec<(PathBuf, Times)>,
    /// Opaque directories, cleared at the end ([`Whiteouts::Remove`]).
    opaque: Vec<PathBuf>,
    /// The directory last opened.
    parent: Option<(PathBuf, OwnedFd)>,
    applied: Applied,
}

/// Is this the error of a path through a symlink or a non-directory?
fn is_not_a_dir(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::ENOTDIR | libc::EXDEV)
    )
}

impl Applier<'_> {
    fn io(&self, action: &'static str, rel: &Path) -> impl Fn(io::Error) -> Error + use<> {
        let path = self.target.display(rel);
        move |e| Error::io(action, &path, e)
    }

    /// The directory `rel` of the target, made (0755, root's) with its
    /// missing parents when `create`; `None` when absent and not made.
    fn dir(
        &mut self,
        ctx: &Context<'_>,
        name: &str,
        rel: &Path,
        create: bool,
    ) -> Result<Option<OwnedFd>> {
        if let Some((path, fd)) = &self.parent
            && path == rel
        {
            return Ok(Some(fd.try_clone().map_err(self.io("open", rel))?));
        }
        let through = |e: io::Error| {
            ctx.refuse(
                name,
                format!(
                    "\"{}\" of the target is a symlink or not a directory ({e})",
                    rel.display()
                ),
            )
        };
        let fd = match sys::open_dir_beneath(self.target.fd(), rel) {
            Ok(fd) => fd,
            Err(e) if is_not_a_dir(&e) => return Err(through(e)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                if !create {
                    return Ok(None);
                }
                let mut fd = sys::open_dir_beneath(self.target.fd(), Path::new(""))
                    .map_err(self.io("open", Path::new("")))?;
                let mut at = PathBuf::new();
                for part in rel.components() {
                    at.push(part);
                    let cname = sys::cname(part.as_os_str()).map_err(self.io("name", &at))?;
                    fd = match sys::open_subdir(fd.as_fd(), &cname) {
                        Ok(sub) => sub,
                        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                            match sys::mkdir_at(fd.as_fd(), &cname, 0o755) {
                                Ok(()) => {}
                                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                                Err(e) => {
                                    return Err(Error::io(
                                        "make directory",
                                        self.target.display(&at),
                                        e,
                                    ));
                                }
                            }
                            self.made.insert(at.clone());
                            sys::open_subdir(fd.as_fd(), &cname).map_err(through)?
                        }
                        Err(e) => return Err(through(e)),
                    };
                }
                fd
            }
            Err(e) => return Err(Error::io("open directory", self.target.display(rel), e)),
        };
        let copy = fd.try_clone().map_err(self.io("open", rel))?;
        self.parent = Some((rel.to_path_buf(), fd));
        Ok(Some(copy))
    }

    /// Remove whatever `name` in `dir` is (absent is fine).
    fn remove(&mut self, dir: BorrowedFd<'_>, name: &CString, rel: &Path) -> Result<()> {
        // A removed directory may be the one last opened.
        self.parent = None;
        match remove_tree_at(dir, name) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(Error::io("remove", self.target.display(rel), e)),
        }
    }

    fn apply(&mut self, ctx: &Context<'_>, item: Item, data: &mut dyn Read) -> Result<()> {
        let rel = item.path.clone();
        if rel.as_os_str().is_empty() {
            let root = sys::open_dir_beneath(self.target.fd(), Path::new(""))
                .map_err(self.io("open", &rel))?;
            item.meta(FileType::Directory)
                .apply_to_fd(root.as_fd())
                .map_err(self.io("set metadata", &rel))?;
            self.dirs.push((rel, item.times()));
            self.applied.entries += 1;
            return Ok(());
        }
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name =
            sys::cname(rel.file_name().unwrap_or_default()).map_err(self.io("name", &rel))?;
        match &item.what {
            What::Whiteout => {
                self.applied.whiteouts += 1;
                if self.made.contains(&rel) {
                    // A whiteout hides only what the layers below had.
                    return Ok(());
                }
                match self.mode {
                    Whiteouts::Remove => {
                        if let Some(dir) = self.dir(ctx, &item.name, &parent_rel, false)? {
                            self.remove(dir.as_fd(), &name, &rel)?;
                        }
                    }
                    Whiteouts::KernelOverlay => {
                        let dir = self.dir(ctx, &item.name, &parent_rel, true)?.expect("made");
                        self.remove(dir.as_fd(), &name, &rel)?;
                        make_whiteout(dir.as_fd(), &name)
                            .map_err(self.io("make whiteout", &rel))?;
                    }
                }
                return Ok(());
            }
            What::Opaque => {
                self.applied.whiteouts += 1;
                match self.mode {
                    Whiteouts::Remove => self.opaque.push(rel),
                    Whiteouts::KernelOverlay => {
                        let dir = self.dir(ctx, &item.name, &rel, true)?.expect("made");
                        set_opaque(dir.as_fd()).map_err(self.io("mark opaque", &rel))?;
                        self.made.insert(rel);
                    }
                }
                return Ok(());
            }
            _ => {}
        }

        let dir = self.dir(ctx, &item.name, &parent_rel, true)?.expect("made");
        let existing = sys::absent_as_none(sys::stat_at(dir.as_fd(), &name))
            .map_err(self.io("stat", &rel))?
            .map(|st| FileType::from_raw_mode(st.st_mode as _));
        match &item.what {
            What::Dir => {
                if existing != Some(FileType::Directory) {
                    if existing.is_some() {
                        self.remove(dir.as_fd(), &name, &rel)?;
                    }
                    sys::mkdir_at(dir.as_fd(), &name, 0o700)
                        .map_err(self.io("make directory", &rel))?;
                }
                let sub = sys::open_subdir(dir.as_fd(), &name).map_err(self.io("open", &rel))?;
                item.meta(FileType::Directory)
                    .apply_to_fd(sub.as_fd())
                    .map_err(self.io("set metadata", &rel))?;
                self.dirs.push((rel.clone(), item.times()));
            }
            What::File { size } => {
                if existing == Some(FileType::Directory) {
                    self.remove(dir.as_fd(), &name, &rel)?;
                }
                let tmp = sys::random_name(".vskel-oci-").map_err(self.io("name", &rel))?;
                let fd =
                    sys::create_file(dir.as_fd(), &tmp, 0o600).map_err(self.io("create", &rel))?;
                let result = write_file(fd, data, *size, &item)
                    .and_then(|()| sys::rename_replace(dir.as_fd(), &tmp, dir.as_fd(), &name));
                if let Err(e) = result {
                    let _ = sys::unlink_at(dir.as_fd(), &tmp);
                    return Err(Error::io("write", self.target.display(&rel), e));
                }
                self.applied.bytes += size;
            }
            What::Symlink(target) => {
                if existing.is_some() {
                    self.remove(dir.as_fd(), &name, &rel)?;
                }
                sys::symlink_at(target, dir.as_fd(), &name)
                    .map_err(self.io("make symlink", &rel))?;
                self.set_meta(dir.as_fd(), &name, &rel, item.meta(FileType::Symlink))?;
            }
            What::HardLink(to) => {
                let to_parent = to.parent().unwrap_or(Path::new(""));
                let to_name =
                    sys::cname(to.file_name().unwrap_or_default()).map_err(self.io("name", to))?;
                let missing = || {
                    ctx.refuse(
                        &item.name,
                        format!(
                            "hard link to \"{}\", which the target does not hold as a \
                             non-directory",
                            to.display()
                        ),
                    )
                };
                let to_dir = match sys::open_dir_beneath(self.target.fd(), to_parent) {
                    Ok(fd) => fd,
                    Err(e) if sys::is_absent(&e) || is_not_a_dir(&e) => return Err(missing()),
                    Err(e) => {
                        return Err(Error::io(
                            "open directory",
                            self.target.display(to_parent),
                            e,
                        ));
                    }
                };
                let to_st = match sys::stat_at(to_dir.as_fd(), &to_name) {
                    Ok(st) => st,
                    Err(e) if sys::is_absent(&e) => return Err(missing()),
                    Err(e) => return Err(Error::io("stat", self.target.display(to), e)),
                };
                if FileType::from_raw_mode(to_st.st_mode as _) == FileType::Directory {
                    return Err(missing());
                }
                if existing.is_some() {
                    let st = sys::stat_at(dir.as_fd(), &name).map_err(self.io("stat", &rel))?;
                    if sys::same_inode(&st, &to_st) {
                        self.made.insert(rel);
                        self.applied.entries += 1;
                        return Ok(());
                    }
                    self.remove(dir.as_fd(), &name, &rel)?;
                }
                sys::link_at(to_dir.as_fd(), &to_name, dir.as_fd(), &name)
                    .map_err(self.io("hard-link", &rel))?;
            }
            What::Node(kind, rdev) => {
                if existing.is_some() {
                    self.remove(dir.as_fd(), &name, &rel)?;
                }
                let action = match kind {
                    FileType::Fifo => "make FIFO",
                    FileType::Socket => "make socket",
                    _ => "make device",
                };
                sys::mknod_at(dir.as_fd(), &name, *kind, 0o600, *rdev)
                    .map_err(self.io(action, &rel))?;
                self.set_meta(dir.as_fd(), &name, &rel, item.meta(*kind))?;
            }
            What::Whiteout | What::Opaque => unreachable!("handled above"),
        }
        self.made.insert(rel);
        self.applied.entries += 1;
        Ok(())
    }

    /// Apply metadata to what was just made at `name`, through a handle
    /// checked to be of the type made.
    fn set_meta(&self, dir: BorrowedFd<'_>, name: &CString, rel: &Path, meta: Meta) -> Result<()> {
        let handle = sys::open_handle_at(dir, name).map_err(self.io("open", rel))?;
        let st = sys::fstat(handle.as_fd()).map_err(self.io("stat", rel))?;
        if FileType::from_raw_mode(st.st_mode as _) != meta.file_type {
            return Err(Error::Failed(format!(
                "{}: replaced while being made",
                self.target.display(rel).display()
            )));
        }
        meta.apply_to_handle(handle.as_fd())
            .map_err(self.io("set metadata", rel))
    }

    /// Clear the opaque directories and set directory times (deepest
    /// first).
    fn finish(mut self, ctx: &Context<'_>) -> Result<Applied> {
        let opaque = std::mem::take(&mut self.opaque);
        for rel in opaque {
            let Some(dir) = self.dir(ctx, &rel.display().to_string(), &rel, false)? else {
                continue;
            };
            self.clear_unmade(dir.as_fd(), &rel)?;
        }
        self.dirs
            .sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (rel, times) in &self.dirs {
            let fd = match sys::open_dir_beneath(self.target.fd(), rel) {
                Ok(fd) => fd,
                // Removed by a whiteout of the layer, or replaced.
                Err(e) if sys::is_absent(&e) || is_not_a_dir(&e) => continue,
                Err(e) => return Err(Error::io("open directory", self.target.display(rel), e)),
            };
            sys::futimens(fd.as_fd(), *times).map_err(self.io("set times", rel))?;
        }
        Ok(self.applied)
    }

    /// Remove everything below `dir` this layer did not make.
    fn clear_unmade(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        for entry in sys::read_dir(dir).map_err(self.io("read directory", rel))? {
            let child = rel.join(OsStr::from_bytes(entry.name.to_bytes()));
            if !self.made.contains(&child) {
                self.remove(dir, &entry.name, &child)?;
                continue;
            }
            match sys::open_subdir(dir, &entry.name) {
                Ok(sub) => self.clear_unmade(sub.as_fd(), &child)?,
                Err(e) if is_not_a_dir(&e) => {}
                Err(e) => return Err(Error::io("open directory", self.target.display(&child), e)),
            }
        }
        Ok(())
    }
}

/// Write a regular file's data and metadata to its new inode.
fn write_file(fd: OwnedFd, data: &mut dyn Read, size: u64, item: &Item) -> io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 18, File::from(fd));
    let copied = io::copy(&mut data.take(size), &mut out)?;
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the layer ends inside this file ({copied} of {size} bytes)"),
        ));
    }
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    item.meta(FileType::RegularFile).apply_to_fd(file.as_fd())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_refuses_escapes() {
        assert_eq!(
            clean_path(b"./a//b/").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
        assert!(clean_path(b"").unwrap().is_empty());
        assert!(clean_path(b"./").unwrap().is_empty());
        for bad in [&b"/etc/x"[..], b"../x", b"a/../../x", b"a/.."] {
            assert!(clean_path(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(clean_path(&[b'a'; 256]).is_err());
        assert!(clean_path(&[b'a'; 255]).is_ok());
    }

    #[test]
    fn pax_times() {
        assert_eq!(parse_pax_time("12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("1.0000000019"), Some((1, 1)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
