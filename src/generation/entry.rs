//! One path of a generation: which part of the skel it is in, what it is
//! (kind, mode, owner, size, times, xattrs), its content hash and the
//! inode it has in the skel; and how two such entries compare.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// A content hash (BLAKE3, 32 bytes).
pub type Hash = [u8; 32];

/// The part of a skel a path is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Part {
    /// `global/`: hard-linked into every vserver.
    Global,
    /// `local/`: copied.
    Local,
    /// `static/`: copied with tokens replaced.
    Static,
}

impl Part {
    /// Every part, in record order.
    pub const ALL: [Part; 3] = [Part::Global, Part::Local, Part::Static];

    /// The part's directory name in the skel.
    pub fn dir_name(self) -> &'static str {
        match self {
            Part::Global => crate::layout::GLOBAL,
            Part::Local => crate::layout::LOCAL,
            Part::Static => crate::layout::STATIC,
        }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
}

impl Kind {
    /// The kind of what `st` describes.
    #[allow(clippy::unnecessary_cast)] // field widths differ per architecture
    pub fn of_stat(st: &rustix::fs::Stat) -> Kind {
        Kind::of_file_type(rustix::fs::FileType::from_raw_mode(st.st_mode as _))
    }

    /// The kind of a file type (an unknown one counts as a regular file).
    pub fn of_file_type(file_type: rustix::fs::FileType) -> Kind {
        match file_type {
            rustix::fs::FileType::Directory => Kind::Dir,
            rustix::fs::FileType::Symlink => Kind::Symlink,
            rustix::fs::FileType::CharacterDevice => Kind::Char,
            rustix::fs::FileType::BlockDevice => Kind::Block,
            rustix::fs::FileType::Fifo => Kind::Fifo,
            rustix::fs::FileType::Socket => Kind::Socket,
            _ => Kind::File,
        }
    }
}

/// One path of one part of a skel, as a generation recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The part it is in.
    pub part: Part,
    /// Its path relative to the part's root (empty: the root itself).
    pub path: PathBuf,
    /// What it is.
    pub kind: Kind,
    /// Permission bits incl. setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Status-change time when recorded. Not part of what the entry is
    /// ([`Entry::same_as`] ignores it): linking a global inode into a
    /// vserver changes it.
    pub ctime: (i64, i64),
    /// Device number, for device nodes (0 otherwise).
    pub rdev: u64,
    /// Device of the filesystem holding it in the skel.
    pub dev: u64,
    /// Its inode number in the skel.
    pub ino: u64,
    /// Extended attributes (name, value), sorted by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// BLAKE3 of a regular file's data or a symlink's target; none for
    /// the other kinds.
    pub hash: Option<Hash>,
}

impl Entry {
    /// Its inode in the skel: (device, inode number).
    pub fn inode(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// The key it is looked up by.
    pub fn key(&self) -> (Part, &Path) {
        (self.part, &self.path)
    }

    /// Is `other` the same entry: same content and metadata and, for
    /// anything but a directory, the same skel inode (only the ctime may
    /// differ)? Two generations differ at a path exactly where this is
    /// false. A directory is never shared with a vserver, and `split-skel`
    /// makes the skel's directories anew: its identity is its metadata.
    pub fn same_as(&self, other: &Entry) -> bool {
        (self.kind == Kind::Dir || self.inode() == other.inode()) && self.same_content(other)
    }

    /// Does `other` hold the same content and metadata, whatever its
    /// inode (kind, mode, owner, size, mtime, device number, xattrs,
    /// hash)? What an upgrade asks of a vserver's file that is not the
    /// skel's inode. A directory's size is the filesystem's business (it
    /// depends on the directory's history), not its content.
    pub fn same_content(&self, other: &Entry) -> bool {
        self.part == other.part
            && self.path == other.path
            && self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && (self.kind == Kind::Dir || self.size == other.size)
            && self.mtime == other.mtime
            && self.rdev == other.rdev
            && self.xattrs == other.xattrs
            && self.hash == other.hash
    }
}

/// Order of entries in a record: by part, then by the path's bytes.
pub fn key_cmp(a: (Part, &Path), b: (Part, &Path)) -> std::cmp::Ordering {
    use std::os::unix::ffi::OsStrExt;
    a.0.cmp(&b.0)
        .then_with(|| a.1.as_os_str().as_bytes().cmp(b.1.as_os_str().as_bytes()))
}
