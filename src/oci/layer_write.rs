//! Writing one layer: a deterministic tar of chosen entries of a tree,
//! compressed with zstd, stored as a blob of the layout. The same entries
//! with the same content and metadata give the same bytes (entries sorted
//! by path, no user or group names, no access times, fixed compression
//! level), so an unchanged layer keeps its digest.
//!
//! Each entry keeps its type, mode (incl. setuid, setgid, sticky), owner,
//! mtime (with nanoseconds, as PAX `mtime`), extended attributes (PAX
//! `SCHILY.xattr.*`, sorted; `security.capability` included, overlay
//! private `trusted.overlay.*` left out), device numbers and symlink
//! target. Entries of the layer that share an inode are written once and
//! then as hard links to the first path. The tree is read through
//! directory descriptors, nothing in it followed. A tar has no socket
//! type: a socket is written as a FIFO with the PAX key
//! [`PAX_SOCKET`](super::layer_read::PAX_SOCKET), which vskel reads back
//! as a socket (other tools make a FIFO, as harmless as a stale socket).
//!
//! The archive is streamed: tar into zstd (level 3, one thread) into a
//! blob, hashing the tar (the `diff_id`) and the compressed bytes (the
//! blob's digest) on the way.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ocidir::oci_spec::image::{Descriptor, MediaType};
use rustix::fs::FileType;
use sha2::{Digest as _, Sha256};
use tar::{EntryType, Header};

use super::layer_read::PAX_SOCKET;
use super::layout::{BlobWriter, ImageLayout, hex, parse_digest};
use super::whiteout::{OPAQUE_MARKER, whiteout_name};
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::meta::Meta;
use crate::view::format::is_private_xattr;

/// The zstd level of every layer (fixed: the level is part of the bytes).
pub const ZSTD_LEVEL: i32 = 3;

/// One thing a layer holds, relative to the source tree's root.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum LayerItem {
    /// The entry at this path (a directory alone, not what is in it).
    Entry(PathBuf),
    /// A whiteout of this path (`DIR/.wh.NAME`).
    Whiteout(PathBuf),
    /// An opaque marker in this directory (`DIR/.wh..wh..opq`).
    Opaque(PathBuf),
}

/// One layer written to the layout.
#[derive(Debug, Clone)]
pub struct WrittenLayer {
    /// The compressed blob's descriptor (media type
    /// `application/vnd.oci.image.layer.v1.tar+zstd`), with the
    /// annotations given to [`write_layer`].
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
    /// Whether the blob was new to the layout (false: the same bytes
    /// were there already).
    pub new: bool,
    /// Entries written (hard links and whiteouts included).
    pub entries: u64,
    /// Bytes of the uncompressed tar.
    pub tar_bytes: u64,
}

/// Counts and hashes what goes through it (the uncompressed tar).
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What an item becomes in the archive.
enum Planned<'a> {
    Entry(&'a Path),
    Whiteout,
    Opaque,
}

/// Write the layer of `items` of `source` into `layout`. Every name in
/// the archive is `prefix` joined with the item's path (`prefix` may be
/// empty); the directories of a non-empty prefix are written first with
/// mode 0755, owner 0:0 and mtime 0. `annotations` go on the descriptor.
pub fn write_layer(
    layout: &ImageLayout,
    source: &TreeRoot,
    items: &[LayerItem],
    prefix: &Path,
    annotations: &[(String, String)],
) -> Result<WrittenLayer> {
    let prefix = relative(prefix);
    let mut planned: Vec<(PathBuf, Planned<'_>)> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            LayerItem::Entry(path) => {
                let path = relative(path);
                if path.as_os_str().is_empty() {
                    continue;
                }
                planned.push((prefix.join(path), Planned::Entry(path)));
            }
            LayerItem::Whiteout(path) => {
                let path = relative(path);
                let Some(name) = path.file_name() else {
                    return Err(Error::Failed(format!(
                        "a whiteout of \"{}\" names no entry",
                        path.display()
                    )));
                };
                let parent = path.parent().unwrap_or(Path::new(""));
                planned.push((
                    prefix.join(parent).join(whiteout_name(name)),
                    Planned::Whiteout,
                ));
            }
            LayerItem::Opaque(path) => {
                let name = OsStr::from_bytes(OPAQUE_MARKER);
                planned.push((prefix.join(relative(path)).join(name), Planned::Opaque));
            }
        }
    }
    planned.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    planned.dedup_by(|a, b| a.0 == b.0);

    let blob = layout.blob_writer()?;
    let encoder = zstd::Encoder::new(blob, ZSTD_LEVEL)
        .map_err(|e| Error::Failed(format!("start zstd: {e}")))?;
    let mut tar = tar::Builder::new(Hashing {
        inner: encoder,
        hasher: Sha256::new(),
        bytes: 0,
    });
    let mut writer = LayerWriter {
        source,
        parent: None,
        links: HashMap::new(),
        entries: 0,
    };
    let archive_err = |e: io::Error| Error::Failed(format!("write layer archive: {e}"));

    let mut dir = PathBuf::new();
    for component in prefix.components() {
        dir.push(component);
        let mut header = fixed_header(EntryType::Directory, 0o755);
        tar.append_data(&mut header, dir_name(&dir), io::empty())
            .map_err(archive_err)?;
        writer.entries += 1;
    }
    for (name, what) in &planned {
        match what {
            Planned::Entry(path) => writer.append(&mut tar, path, name)?,
            Planned::Whiteout | Planned::Opaque => {
                let mut header = fixed_header(EntryType::Regular, 0);
                tar.append_data(&mut header, name, io::empty())
                    .map_err(archive_err)?;
                writer.entries += 1;
            }
        }
    }
    tar.finish().map_err(archive_err)?;
    let hashing = tar.into_inner().map_err(archive_err)?;
    let diff_id = format!("sha256:{}", hex(&hashing.hasher.finalize()));
    let blob: BlobWriter<'_> = hashing
        .inner
        .finish()
        .map_err(|e| Error::Failed(format!("finish zstd: {e}")))?;
    let stored = blob.finish()?;

    let mut descriptor = Descriptor::new(
        MediaType::ImageLayerZstd,
        stored.size,
        parse_digest(&stored.digest)?,
    );
    if !annotations.is_empty() {
        descriptor.set_annotations(Some(annotations.iter().cloned().collect()));
    }
    Ok(WrittenLayer {
        descriptor,
        diff_id,
        new: stored.new,
        entries: writer.entries,
        tar_bytes: hashing.bytes,
    })
}

/// A path without a leading `/` or `./`.
fn relative(path: &Path) -> &Path {
    let mut path = path;
    loop {
        if let Ok(rest) = path.strip_prefix("/") {
            path = rest;
        } else if let Ok(rest) = path.strip_prefix(".") {
            if rest == path {
                return path;
            }
            path = rest;
        } else {
            return path;
        }
    }
}

/// A directory's archive name, with its trailing `/`.
fn dir_name(path: &Path) -> PathBuf {
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    bytes.push(b'/');
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// A header of fixed metadata: owner 0:0, mtime 0, no names.
fn fixed_header(kind: EntryType, mode: u32) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header
}

struct LayerWriter<'a> {
    source: &'a TreeRoot,
    /// The directory last opened, by its path in the source.
    parent: Option<(PathBuf, OwnedFd)>,
    /// Where each inode of the layer was first written.
    links: HashMap<(u64, u64), PathBuf>,
    entries: u64,
}

type Tar<'b> = tar::Builder<Hashing<zstd::Encoder<'static, BlobWriter<'b>>>>;

impl LayerWriter<'_> {
    fn parent_fd(&mut self, parent: &Path) -> Result<&OwnedFd> {
        if self.parent.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = self.source.open_dir(parent)?;
            self.parent = Some((parent.to_path_buf(), fd));
        }
        Ok(&self.parent.as_ref().expect("just set").1)
    }

    /// Append the entry at `path` of the source as `name`.
    fn append(&mut self, tar: &mut Tar<'_>, path: &Path, name: &Path) -> Result<()> {
        let full = self.source.display(path);
        let io_err = |action: &'static str| {
            let full = full.clone();
            move |e: io::Error| Error::io(action, &full, e)
        };
        let shown = full.display().to_string();
        let archive_err = |e: io::Error| Error::Failed(format!("{shown}: write to the layer: {e}"));
        let parent = path.parent().unwrap_or(Path::new(""));
        let cname = sys::cname(path.file_name().unwrap_or_default()).map_err(io_err("name"))?;
        let dir = self
            .parent_fd(parent)?
            .try_clone()
            .map_err(io_err("open"))?;
        let st = sys::stat_at(dir.as_fd(), &cname).map_err(io_err("stat"))?;
        let mut meta = Meta::from_stat(&st);
        let mut file = None;
        if meta.file_type == FileType::RegularFile {
            let fd = sys::open_file_read(dir.as_fd(), &cname).map_err(io_err("open"))?;
            let st = sys::fstat(fd.as_fd()).map_err(io_err("stat"))?;
            meta = Meta::from_stat(&st);
            if meta.file_type != FileType::RegularFile {
                return Err(Error::Failed(format!(
                    "{}: changed type while being read",
                    full.display()
                )));
            }
            file = Some(fd);
        }
        if meta.file_type != FileType::Directory && meta.nlink > 1 {
            if let Some(first) = self.links.get(&(meta.dev, meta.ino)) {
                let mut header = fixed_header(EntryType::Link, meta.mode);
                header.set_uid(u64::from(meta.uid));
                header.set_gid(u64::from(meta.gid));
                header.set_mtime(meta.times.mtime.0.max(0) as u64);
                tar.append_link(&mut header, name, first)
                    .map_err(archive_err)?;
                self.entries += 1;
                return Ok(());
            }
            self.links.insert((meta.dev, meta.ino), name.to_path_buf());
        }

        let meta = match &file {
            Some(fd) => meta.with_xattrs(fd.as_fd()),
            None => meta.with_xattrs_at(dir.as_fd(), &cname),
        }
        .map_err(io_err("read extended attributes"))?;
        let mut xattrs: Vec<(String, &[u8])> = Vec::new();
        for (key, value) in &meta.xattrs {
            if is_private_xattr(key.to_bytes()) {
                continue;
            }
            let key = key.to_str().map_err(|_| {
                Error::Failed(format!(
                    "{}: extended attribute {key:?} is not UTF-8; a tar cannot hold it",
                    full.display()
                ))
            })?;
            xattrs.push((format!("SCHILY.xattr.{key}"), value));
        }
        xattrs.sort();
        let mut pax: Vec<(&str, &[u8])> = Vec::with_capacity(xattrs.len() + 1);
        let (secs, nsecs) = meta.times.mtime;
        let mtime_text;
        if nsecs != 0 {
            let frac = format!("{nsecs:09}");
            mtime_text = format!("{secs}.{}", frac.trim_end_matches('0'));
            pax.push(("mtime", mtime_text.as_bytes()));
        }
        if meta.file_type == FileType::Socket {
            pax.push((PAX_SOCKET, b"1"));
        }
        pax.extend(xattrs.iter().map(|(k, v)| (k.as_str(), *v)));
        tar.append_pax_extensions(pax).map_err(archive_err)?;

        let kind = match meta.file_type {
            FileType::RegularFile => EntryType::Regular,
            FileType::Directory => EntryType::Directory,
            FileType::Symlink => EntryType::Symlink,
            FileType::CharacterDevice => EntryType::Char,
            FileType::BlockDevice => EntryType::Block,
            FileType::Fifo | FileType::Socket => EntryType::Fifo,
            other => {
                return Err(Error::Failed(format!(
                    "{}: a {other:?} cannot be put in a layer",
                    full.display()
                )));
            }
        };
        let mut header = fixed_header(kind, meta.mode);
        header.set_uid(u64::from(meta.uid));
        header.set_gid(u64::from(meta.gid));
        header.set_mtime(secs.max(0) as u64);
        match meta.file_type {
            FileType::RegularFile => {
                header.set_size(meta.size);
                let fd = file.expect("opened above");
                let reader = ExactReader {
                    file: File::from(fd),
                    left: meta.size,
                    path: full.clone(),
                };
                tar.append_data(&mut header, name, reader)
                    .map_err(archive_err)?;
            }
            FileType::Directory => {
                tar.append_data(&mut header, dir_name(name), io::empty())
                    .map_err(archive_err)?;
            }
            FileType::Symlink => {
                let target = sys::readlink_at(dir.as_fd(), &cname).map_err(io_err("read link"))?;
                let target = Path::new(OsStr::from_bytes(target.to_bytes()));
                tar.append_link(&mut header, name, target)
                    .map_err(archive_err)?;
            }
            _ => {
                if matches!(
                    meta.file_type,
                    FileType::CharacterDevice | FileType::BlockDevice
                ) {
                    let rdev = meta.rdev as libc::dev_t;
                    header
                        .set_device_major(rustix::fs::major(rdev))
                        .map_err(archive_err)?;
                    header
                        .set_device_minor(rustix::fs::minor(rdev))
                        .map_err(archive_err)?;
                }
                tar.append_data(&mut header, name, io::empty())
                    .map_err(archive_err)?;
            }
        }
        self.entries += 1;
        Ok(())
    }
}

/// Reads exactly `left` bytes of a file, failing when it ends sooner or
/// has more (it changed while being read).
struct ExactReader {
    file: File,
    left: u64,
    path: PathBuf,
}

impl Read for ExactReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.file.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "{}: grew while being read",
                    self.path.display()
                ))),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.file.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(io::Error::other(format!(
                "{}: shrank while being read",
                self.path.display()
            )));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_strips_root_and_dot() {
        assert_eq!(relative(Path::new("/a/b")), Path::new("a/b"));
        assert_eq!(relative(Path::new("./a")), Path::new("a"));
        assert_eq!(relative(Path::new("")), Path::new(""));
        assert_eq!(relative(Path::new(".")), Path::new(""));
        assert_eq!(dir_name(Path::new("a/b")), Path::new("a/b/"));
    }
}
