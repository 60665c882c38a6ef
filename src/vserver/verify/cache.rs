//! Which of a skel's inodes `verify` hashed and found as recorded, and
//! at which ctime: `<skel>/generations/verified`, one line per inode
//! (`dev ino ctime_s ctime_ns hash`), rewritten whole under a new name and
//! renamed over.
//!
//! An inode's ctime changes with every change of its content or metadata
//! (and with every link or unlink), and no one can set it: a ctime equal
//! to the one cached, together with mode, owner, size and mtime equal to
//! the record, vouches for the content without reading it. Only inodes
//! whose content, xattrs and metadata all matched are noted; a damaged or
//! missing file is an empty cache (everything is hashed again).

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::generation::Hash;
use crate::layout::SkelDirs;
use crate::sys;

/// The file's name under `generations/`.
pub const CACHE_FILE: &str = "verified";
/// Its first line.
const HEADER: &str = "vskel-verified 1";
/// Prefix of the file while it is written.
const TEMP_PREFIX: &str = ".verified-";

type Inode = (u64, u64);
type Ctime = (i64, i64);

/// The cache of one skel.
pub struct Cache {
    dir: PathBuf,
    seen: HashMap<Inode, (Ctime, Hash)>,
    changed: bool,
}

impl Cache {
    /// The skel's cache as last saved (empty if none or damaged).
    pub fn load(skel: &SkelDirs) -> Cache {
        let dir = skel.generations().dir;
        let path = dir.join(CACHE_FILE);
        let seen = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).unwrap_or_else(|| {
                tracing::debug!("{}: damaged; every file is hashed again", path.display());
                HashMap::new()
            }),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("{}: {e}; every file is hashed again", path.display());
                }
                HashMap::new()
            }
        };
        Cache {
            dir,
            seen,
            changed: false,
        }
    }

    /// Was `inode` found with content `hash` at this very `ctime`?
    pub fn vouches(&self, inode: Inode, ctime: Ctime, hash: &Hash) -> bool {
        self.seen
            .get(&inode)
            .is_some_and(|(c, h)| *c == ctime && h == hash)
    }

    /// `inode` was found as recorded (content `hash`) at `ctime`.
    pub fn note(&mut self, inode: Inode, ctime: Ctime, hash: Hash) {
        if self.seen.insert(inode, (ctime, hash)) != Some((ctime, hash)) {
            self.changed = true;
        }
    }

    /// `inode` is not as recorded.
    pub fn forget(&mut self, inode: Inode) {
        if self.seen.remove(&inode).is_some() {
            self.changed = true;
        }
    }

    /// Write the cache if it changed (a failure only costs hashing again).
    pub fn save(&self) -> Result<()> {
        if !self.changed {
            return Ok(());
        }
        let mut text = format!("{HEADER}\n");
        for ((dev, ino), ((cs, cn), hash)) in &self.seen {
            text.push_str(&format!(
                "{dev} {ino} {cs} {cn} {}\n",
                crate::generation::objects::hex(hash)
            ));
        }
        let shown = self.dir.join(CACHE_FILE);
        let dir = sys::open_root(&self.dir).map_err(|e| Error::io("open", &self.dir, e))?;
        let suffix = sys::unguessable_suffix().map_err(|e| Error::io("name", &shown, e))?;
        let temp = sys::cname(format!("{TEMP_PREFIX}{suffix}").as_ref())
            .map_err(|e| Error::io("name", &shown, e))?;
        let name = sys::cname(CACHE_FILE.as_ref()).map_err(|e| Error::io("name", &shown, e))?;
        let written = (|| {
            let mut file = std::fs::File::from(sys::create_file(dir.as_fd(), &temp, 0o600)?);
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            sys::rename_replace(dir.as_fd(), &temp, dir.as_fd(), &name)
        })();
        if let Err(e) = written {
            if let Err(rm) = sys::absent_as_none(sys::unlink_at(dir.as_fd(), &temp)) {
                tracing::warn!("cannot remove a partial {}: {rm}", shown.display());
            }
            return Err(Error::io("write", shown, e));
        }
        Ok(())
    }
}

fn parse(text: &str) -> Option<HashMap<Inode, (Ctime, Hash)>> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut out = HashMap::new();
    for line in lines {
        let f: Vec<&str> = line.split(' ').collect();
        let [dev, ino, cs, cn, hex] = f[..] else {
            return None;
        };
        out.insert(
            (dev.parse().ok()?, ino.parse().ok()?),
            ((cs.parse().ok()?, cn.parse().ok()?), unhex(hex)?),
        );
    }
    Some(out)
}

fn unhex(hex: &str) -> Option<Hash> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_reads_back_and_a_torn_one_is_empty() {
        let hash = [7u8; 32];
        let line = format!("3 42 100 5 {}", crate::generation::objects::hex(&hash));
        let text = format!("{HEADER}\n{line}\n");
        let map = parse(&text).unwrap();
        assert_eq!(map.get(&(3, 42)), Some(&((100, 5), hash)));
        assert!(parse(&text[..text.len() - 3]).is_none());
        assert!(parse("other 1\n").is_none());
    }
}
