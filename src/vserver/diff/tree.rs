//! `diff` of a tree: the vserver's tree against the skel generation its
//! record names, or, when it names none, against the skel as it is now
//! (scanned as a generation would be, nothing written).
//!
//! What the tree should hold at a path is the generation's entry of the
//! top part that has it (`static/` over `local/` over `global/`, as
//! `create-vs` lays them). A global entry whose skel inode the tree has is
//! unchanged without reading it; anything else is compared by
//! [`super::facts`], content by the recorded hash. A `static/` file is
//! the skel's file rendered with the vserver's tokens: compared with
//! that rendering while the skel's file is still the recorded one, else
//! (its rendering is gone) by mtime, as `upgrade-vs` does. `proc/` is
//! `create-vs`'s mount point, not the skel's; directories of another
//! filesystem (mounts of a running vserver) are not entered.
//!
//! The tree is hostile: it is walked fd-relative, nothing in it followed.

use std::collections::{BTreeMap, HashSet};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use super::facts::{Data, Facts};
use super::{Change, Status};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Kind, Part};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::skel::Skel;
use crate::sys;
use crate::tokens::{Tokens, render};
use crate::tree::TreeRoot;
use crate::view::node::child_path;
use crate::vserver::registry::Record;
use crate::vserver::upgrade::tokens_of;

/// `create-vs`'s mount point for the vserver's `/proc`.
const PROC: &str = "proc";

/// The skel, generation and changes of tree vserver `record`.
pub fn changes(config: &Config, record: &Record) -> Result<(String, Option<u64>, Vec<Change>)> {
    let skel_name = record.skel.clone().ok_or_else(|| {
        Error::Failed(format!(
            "the record of vserver \"{}\" names no skel: there is nothing to compare it with",
            record.name
        ))
    })?;
    let skel = Skel::open(config, &skel_name)?;
    let entries = match record.generation {
        Some(n) => generation::load(&skel.dirs, n)?.entries().to_vec(),
        None => generation::scan::scan(&skel.dirs, None, &Progress::hidden())?.entries,
    };
    let mut expected: BTreeMap<PathBuf, &Entry> = BTreeMap::new();
    for part in Part::ALL {
        for e in entries.iter().filter(|e| e.part == part) {
            expected.insert(e.path.clone(), e);
        }
    }
    let tree = TreeRoot::open(&Layout::new(config).vserver(&record.name))?;
    let statics = match skel.static_dir() {
        dir if dir.is_dir() => Some(TreeRoot::open(&dir)?),
        _ => None,
    };
    let mut differ = Differ {
        tree: &tree,
        expected: &expected,
        statics: statics.as_ref(),
        tokens: tokens_of(config, record),
        seen: HashSet::new(),
        pruned: Vec::new(),
        out: Vec::new(),
    };
    differ.root()?;
    differ.dir(tree.fd(), Path::new(""))?;
    let Differ {
        seen, pruned, out, ..
    } = differ;
    let mut out = out;
    for (path, e) in &expected {
        let gone = !path.as_os_str().is_empty()
            && !seen.contains(path)
            && !pruned.iter().any(|p| path.starts_with(p));
        if gone {
            out.push(Change::whole(Status::Removed, path, e.kind, e.size));
        }
    }
    Ok((skel_name, record.generation, out))
}

struct Differ<'a> {
    tree: &'a TreeRoot,
    expected: &'a BTreeMap<PathBuf, &'a Entry>,
    /// The skel's `static/` (its files rendered are the tree's).
    statics: Option<&'a TreeRoot>,
    tokens: Tokens,
    /// Every path the tree has.
    seen: HashSet<PathBuf>,
    /// Directories not entered (`proc/`, other filesystems).
    pruned: Vec<PathBuf>,
    out: Vec<Change>,
}

impl Differ<'_> {
    /// The root's own metadata.
    fn root(&mut self) -> Result<()> {
        let err = |e| Error::io("compare", self.tree.path(), e);
        let st = sys::fstat(self.tree.fd()).map_err(err)?;
        if let Some(e) = self.expected.get(Path::new("")) {
            self.compare(self.tree.fd(), c".", &st, Path::new(""), e)?;
        }
        Ok(())
    }

    fn dir(&mut self, dir: BorrowedFd<'_>, rel: &Path) -> Result<()> {
        let entries =
            sys::read_dir(dir).map_err(|e| Error::io("read", self.tree.display(rel), e))?;
        for entry in entries {
            let path = child_path(rel, sys::os_name(&entry.name));
            if rel.as_os_str().is_empty() && path == Path::new(PROC) {
                self.pruned.push(path);
                continue;
            }
            let Some(st) = sys::absent_as_none(sys::stat_at(dir, &entry.name))
                .map_err(|e| Error::io("stat", self.tree.display(&path), e))?
            else {
                continue; // gone meanwhile
            };
            self.seen.insert(path.clone());
            let kind = Kind::of_stat(&st);
            match self.expected.get(&path) {
                Some(e) => self.compare(dir, &entry.name, &st, &path, e)?,
                #[allow(clippy::unnecessary_cast)]
                None => self
                    .out
                    .push(Change::whole(Status::Added, &path, kind, st.st_size as u64)),
            }
            if kind != Kind::Dir {
                continue;
            }
            if sys::dev_of(&st) != self.tree.dev() {
                self.pruned.push(path);
                continue;
            }
            let sub = match sys::open_subdir(dir, &entry.name) {
                Ok(sub) => sub,
                // Replaced (by a non-directory, a symlink) since the stat.
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(Error::io("open", self.tree.display(&path), e)),
            };
            self.dir(sub.as_fd(), &path)?;
        }
        Ok(())
    }

    /// `name` in `dir` (at `rel`) against its expected entry `e`.
    fn compare(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &std::ffi::CStr,
        st: &rustix::fs::Stat,
        rel: &Path,
        e: &Entry,
    ) -> Result<()> {
        let err = |x| Error::io("compare", self.tree.display(rel), x);
        let mut old = Facts::recorded(e);
        // The skel's own inode, as recorded: the skel's entry, unchanged
        // (its content is `verify`'s to check).
        if e.part == Part::Global
            && e.kind != Kind::Dir
            && (sys::dev_of(st), sys::ino_of(st)) == e.inode()
            && same_stat(&old, st)
        {
            return Ok(());
        }
        if e.part == Part::Static && e.kind == Kind::File {
            (old.size, old.data) = self.rendered(e)?;
        }
        let new = Facts::on_disk(dir, name, st).map_err(err)?;
        self.out
            .extend(Change::between(rel, &old, &new).map_err(err)?);
        Ok(())
    }

    /// The size and content of static file `e` rendered for this vserver:
    /// from the skel's file while it is the one recorded, else unknown.
    #[allow(clippy::unnecessary_cast)] // field widths differ per architecture
    fn rendered(&self, e: &Entry) -> Result<(u64, Data<'static>)> {
        let unknown = Ok((e.size, Data::Unknown));
        let Some(statics) = self.statics else {
            return unknown;
        };
        let shown = statics.display(&e.path);
        let (parent, leaf) = crate::view::types::split(&e.path);
        let dir = match sys::open_dir_beneath(statics.fd(), parent) {
            Ok(dir) => dir,
            Err(x) if sys::is_absent(&x) => return unknown,
            Err(x) => return Err(Error::io("open", statics.display(parent), x)),
        };
        let leaf = sys::cname(leaf).map_err(|x| Error::io("name", &shown, x))?;
        let Some(st) = sys::absent_as_none(sys::stat_at(dir.as_fd(), &leaf))
            .map_err(|x| Error::io("stat", &shown, x))?
        else {
            return unknown;
        };
        let mtime = (st.st_mtime as i64, st.st_mtime_nsec as i64);
        let same = (sys::dev_of(&st), sys::ino_of(&st)) == e.inode()
            && st.st_size as u64 == e.size
            && mtime == e.mtime;
        if !same {
            return unknown;
        }
        let fd =
            sys::open_file_read(dir.as_fd(), &leaf).map_err(|x| Error::io("open", &shown, x))?;
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut std::fs::File::from(fd), &mut bytes)
            .map_err(|x| Error::io("read", &shown, x))?;
        let out = render(&bytes, &self.tokens).bytes;
        Ok((
            out.len() as u64,
            Data::Hash(Some(*blake3::hash(&out).as_bytes())),
        ))
    }
}

/// Do kind, mode, owner, size and mtime of `st` match `f`?
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn same_stat(f: &Facts<'_>, st: &rustix::fs::Stat) -> bool {
    Kind::of_stat(st) == f.kind
        && st.st_mode as u32 & crate::tree::meta::PERMISSION_BITS == f.mode
        && (st.st_uid as u32, st.st_gid as u32) == (f.uid, f.gid)
        && st.st_size as u64 == f.size
        && (st.st_mtime as i64, st.st_mtime_nsec as i64) == f.mtime
}
