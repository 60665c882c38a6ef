//! A generation's content id: one digest of everything a generation says
//! a skel holds (per part and path: kind, mode, owner, size, mtime,
//! device number, xattrs, content hash, and which paths share an inode),
//! but nothing of the host it is on (inode numbers, devices, ctimes).
//! Two hosts with the same skel content get the same id, which is how
//! `import-vs` finds that a host has a vserver's skel generation already.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::entry::{Entry, Kind, Part};

/// The prefix of a content id.
const PREFIX: &str = "blake3:";

/// The content id of `entries` (a generation's, sorted as records are).
pub fn content_id(entries: &[Entry]) -> String {
    // The first path of each shared inode, per part, names its group.
    let mut first: HashMap<(Part, u64, u64), &Path> = HashMap::new();
    let mut hasher = blake3::Hasher::new();
    for e in entries {
        let group = if e.kind == Kind::Dir {
            None
        } else {
            let path = *first.entry((e.part, e.dev, e.ino)).or_insert(&e.path);
            (path != e.path).then_some(path)
        };
        hash_entry(&mut hasher, e, group);
    }
    format!("{PREFIX}{}", hasher.finalize().to_hex())
}

fn hash_entry(h: &mut blake3::Hasher, e: &Entry, group: Option<&Path>) {
    let field = |h: &mut blake3::Hasher, bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(h, e.part.dir_name().as_bytes());
    field(h, e.path.as_os_str().as_bytes());
    field(h, format!("{:?}", e.kind).as_bytes());
    let size = if e.kind == Kind::Dir { 0 } else { e.size };
    for n in [
        u64::from(e.mode),
        u64::from(e.uid),
        u64::from(e.gid),
        size,
        e.mtime.0 as u64,
        e.mtime.1 as u64,
        e.rdev,
    ] {
        h.update(&n.to_le_bytes());
    }
    h.update(&(e.xattrs.len() as u64).to_le_bytes());
    for (name, value) in &e.xattrs {
        field(h, name);
        field(h, value);
    }
    field(h, e.hash.as_ref().map_or(&[][..], |x| &x[..]));
    field(h, group.map_or(&[][..], |p| p.as_os_str().as_bytes()));
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn file(path: &str, ino: u64, dev: u64) -> Entry {
        Entry {
            part: Part::Global,
            path: PathBuf::from(path),
            kind: Kind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size: 3,
            mtime: (1, 2),
            ctime: (ino as i64, 0),
            rdev: 0,
            dev,
            ino,
            xattrs: Vec::new(),
            hash: Some([7; 32]),
        }
    }

    #[test]
    fn ignores_the_host_but_not_the_link_groups() {
        let a = [file("a", 10, 1), file("b", 10, 1)];
        let moved = [file("a", 99, 5), file("b", 99, 5)];
        let apart = [file("a", 10, 1), file("b", 11, 1)];
        assert_eq!(content_id(&a), content_id(&moved));
        assert_ne!(content_id(&a), content_id(&apart));
        let mut older = a.clone();
        older[1].mtime = (0, 2);
        assert_ne!(content_id(&a), content_id(&older));
    }
}
