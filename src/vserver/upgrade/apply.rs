//! Putting a skel's entry into a vserver's live tree: made in a private
//! scratch directory (global hard-linked to the generation's inode where
//! [`crate::protect::shared_by_link`] allows, else copied; local copied,
//! static rendered with the vserver's tokens, directories made with the
//! skel's metadata) and installed by one rename through
//! [`crate::tree::place`], the random names it uses inside the tree
//! journalled first; and the other changes an upgrade makes (metadata of
//! a directory kept in place, a vserver's entry moved aside, an entry
//! removed), all relative to descriptors, never through a symlink.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::config::Protect;
use crate::error::{Error, Result};
use crate::generation::{Entry, Kind, Part};
use crate::protect::shared_by_link;
use crate::sys;
use crate::tokens::{Tokens, render};
use crate::tree::TreeRoot;
use crate::tree::entry::{CopySpec, Transform, copy_entry};
use crate::tree::meta::Meta;
use crate::tree::place::{self, Temp};
use crate::vserver::upgrade_journal::Journal;

/// What placing needs.
pub struct Placer<'a> {
    /// The vserver's tree.
    pub tree: &'a TreeRoot,
    /// The skel's parts.
    pub parts: [(Part, Option<TreeRoot>); 3],
    /// The private scratch directory.
    pub scratch: BorrowedFd<'a>,
    /// The vserver's tokens (static/).
    pub tokens: &'a Tokens,
    /// How global inodes are protected.
    pub protect: Protect,
    /// Where random names used inside the tree are journalled.
    pub journal: Option<&'a Journal>,
    /// Global entries are all copied, not linked (into a view's writable
    /// upper layer, which must never hold a skel inode); without it, those
    /// [`shared_by_link`] rules out under `protect` are copied.
    pub copy_global: bool,
}

impl Placer<'_> {
    fn part(&self, part: Part, rel: &Path) -> Result<&TreeRoot> {
        self.parts
            .iter()
            .find(|(p, _)| *p == part)
            .and_then(|(_, t)| t.as_ref())
            .ok_or_else(|| {
                Error::Failed(format!(
                    "the skel has no {} for {}",
                    part.dir_name(),
                    rel.display()
                ))
            })
    }

    /// The skel's source of `e`: its directory and name.
    fn source(&self, e: &Entry) -> Result<(std::os::fd::OwnedFd, CString)> {
        let root = self.part(e.part, &e.path)?;
        let parent = e.path.parent().unwrap_or(Path::new(""));
        let dir = root.open_dir(parent)?;
        let name = sys::cname(e.path.file_name().unwrap_or_default())
            .map_err(|err| Error::io("name", &e.path, err))?;
        Ok((dir, name))
    }

    /// The skel's metadata of `e` (directories: kept in place).
    pub fn meta_of(&self, e: &Entry) -> Result<Meta> {
        let root = self.part(e.part, &e.path)?;
        let fd = root.open_dir(&e.path)?;
        let st =
            sys::fstat(fd.as_fd()).map_err(|err| Error::io("stat", root.display(&e.path), err))?;
        Meta::from_stat(&st)
            .with_xattrs(fd.as_fd())
            .map_err(|err| Error::io("read xattrs", root.display(&e.path), err))
    }

    /// Put the skel's `e` at `name` in `dir` (the tree's directory of
    /// `rel`'s parent), replacing what is there.
    pub fn put(&self, e: &Entry, dir: BorrowedFd<'_>, name: &CStr, rel: &Path) -> Result<()> {
        let made = self.make(e, rel)?;
        let parent = rel.parent().unwrap_or(Path::new(""));
        let journal = self.journal;
        let mut note = |temp: &CStr| match journal {
            Some(j) => j.note_temp(&parent.join(sys::os_name(temp))),
            None => Ok(()),
        };
        place::install(made, dir, name, &mut note)
            .map_err(|err| Error::io("put in place", self.tree.display(rel), err))
    }

    fn make(&self, e: &Entry, rel: &Path) -> Result<Temp<'_>> {
        let err = |action, err| Error::io(action, self.tree.display(rel), err);
        if e.kind == Kind::Dir {
            let meta = self.meta_of(e)?;
            let (temp, fd) = place::make_dir(self.scratch, None).map_err(|x| err("make", x))?;
            meta.apply_to_fd(fd.as_fd())
                .map_err(|x| err("set metadata", x))?;
            return Ok(temp);
        }
        let (src_dir, src_name) = self.source(e)?;
        let src_dir = src_dir.as_fd();
        match e.part {
            Part::Global if !self.copy_global && shared_by_link(self.protect, e.kind) => {
                let scratch = self.scratch;
                place::make_link(scratch, None, Some(e.inode()), |at| {
                    match sys::link_at(src_dir, &src_name, scratch, at) {
                        Err(x) if x.raw_os_error() == Some(libc::EPERM) => {
                            crate::tree::copy::link_unlocked(src_dir, &src_name, scratch, at)
                        }
                        other => other,
                    }
                })
                .map_err(|x| err("hard-link", x))
            }
            Part::Global | Part::Local | Part::Static => {
                let tokens = self.tokens;
                let rendering = move |b: &[u8]| render(b, tokens).bytes;
                let spec = CopySpec {
                    transform: (e.part == Part::Static).then_some(&rendering as &Transform<'_>),
                    ..CopySpec::ALL
                };
                copy_entry(src_dir, &src_name, self.scratch, None, &spec)
                    .map(|c| c.made)
                    .map_err(|x| err("copy", x))
            }
        }
    }
}

/// Give the directory `name` in `dir` (the vserver's, kept in place) the
/// metadata `meta`.
pub fn set_dir_meta(dir: BorrowedFd<'_>, name: &CStr, meta: &Meta, shown: &Path) -> Result<()> {
    let fd = sys::open_subdir(dir, name).map_err(|e| Error::io("open", shown, e))?;
    meta.apply_to_fd(fd.as_fd())
        .map_err(|e| Error::io("set metadata", shown, e))
}

/// Rename `name` in `dir` to `name` + `suffix` beside it (replacing).
pub fn move_aside(dir: BorrowedFd<'_>, name: &CStr, suffix: &str, shown: &Path) -> Result<()> {
    let aside = with_suffix(name, suffix, shown)?;
    sys::rename_replace(dir, name, dir, &aside).map_err(|e| Error::io("rename", shown, e))
}

/// `name` + `suffix`.
pub fn with_suffix(name: &CStr, suffix: &str, shown: &Path) -> Result<CString> {
    let mut bytes = name.to_bytes().to_vec();
    bytes.extend_from_slice(suffix.as_bytes());
    CString::new(bytes).map_err(|_| Error::Failed(format!("{}: bad name", shown.display())))
}

/// Remove `name` in `dir`: a directory only if empty (false if it is
/// not), anything else always.
pub fn remove(dir: BorrowedFd<'_>, name: &CStr, is_dir: bool, shown: &Path) -> Result<bool> {
    let done = if is_dir {
        sys::rmdir_at(dir, name)
    } else {
        crate::tree::remove::unlink_entry(dir, name)
    };
    match done {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST)) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
        Err(e) => Err(Error::io("remove", shown, e)),
    }
}

/// Remove a random name an interrupted upgrade noted (`rel` in `tree`),
/// if it is still there.
pub fn remove_temp(tree: &TreeRoot, rel: &Path) -> Result<()> {
    let parent = rel.parent().unwrap_or(Path::new(""));
    let Some(name) = rel.file_name() else {
        return Ok(());
    };
    if !name
        .as_encoded_bytes()
        .starts_with(place::TEMP_PREFIX.as_bytes())
    {
        return Ok(());
    }
    let dir = match sys::open_dir_beneath(tree.fd(), parent) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(Error::io("open", tree.display(parent), e)),
    };
    let name = sys::cname(name).map_err(|e| Error::io("name", rel, e))?;
    match crate::tree::remove::remove_tree_at(dir.as_fd(), &name) {
        Err(e) if e.raw_os_error() != Some(libc::ENOENT) => {
            Err(Error::io("remove", tree.display(rel), e))
        }
        _ => Ok(()),
    }
}
