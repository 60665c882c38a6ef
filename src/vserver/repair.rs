//! `repair` as an op: mend what `verify` finds, where it can be mended.
//!
//! * broken off (a copy with the skel's content and metadata): the skel's
//!   inode is hard-linked in the private scratch directory and renamed
//!   over the copy, as `upgrade-vs` places a global entry
//!   ([`crate::vserver::upgrade::apply::Placer`]), after checking again
//!   that the copy still is one;
//! * shared-unprotected (under protection, a symlink, device, FIFO or
//!   socket hard-linked to the skel's, which no attribute can guard): a
//!   copy of the skel's entry is made in the scratch directory and renamed
//!   over the link, breaking it off
//!   ([`crate::protect::shared_by_link`]);
//! * a lost immutable attribute: set again;
//! * a shared inode changed in place: its recorded content is written
//!   back into that same inode (every vserver shares it) from the skel's
//!   content store ([`crate::generation::objects`]), its immutable
//!   attribute lifted meanwhile through the crash-safe
//!   [`crate::tree::unlock`], then its owner, mode, xattrs and mtime set
//!   from the record; with no stored copy, only metadata can be restored
//!   (if the content is still the recorded one), else it says so; a
//!   symlink, device or FIFO gets its owner, mode, xattrs and mtime back
//!   without ever being opened;
//! * anything else remains: a replaced file is the vserver's own now
//!   (`vskel revert NAME PATH` resets it), a skel file missing needs the
//!   skel mended.

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::OFlags;
use serde::Serialize;

use super::registry::Kind as VsKind;
use super::upgrade::apply::Placer;
use super::upgrade::observe::{self, Against};
use super::verify::lookup::{Found, Looker};
use super::verify::{self, Finding, Problem, Request, Verified};
use crate::config::{Config, Protect};
use crate::error::{Error, Result};
use crate::generation::objects::{self, hash_of};
use crate::generation::{Entry, Kind, Part};
use crate::layout::{Layout, SkelDirs};
use crate::skel::Skel;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tokens::Tokens;
use crate::tree::TreeRoot;

/// One thing `repair` mended.
#[derive(Debug, Clone, Serialize)]
pub struct Mended {
    /// The path as the vserver sees it.
    pub path: String,
    /// What was wrong.
    pub kind: Problem,
    /// What was done.
    pub action: String,
}

/// What `repair` did in one vserver, and what remains.
#[derive(Debug, Clone, Serialize)]
pub struct Repaired {
    /// The vserver.
    pub name: String,
    /// What was mended.
    pub done: Vec<Mended>,
    /// What remains wrong.
    pub remaining: Vec<Finding>,
}

/// The outcome of mending one shared inode, for every vserver sharing it.
type Outcome = std::result::Result<String, String>;

/// Repair the vservers `request` names.
pub fn repair(config: &Config, request: &Request) -> Result<Vec<Repaired>> {
    let verified = verify::verify(config, request)?;
    let mut skel_done: HashMap<(String, (u64, u64), Problem), Outcome> = HashMap::new();
    let mut out = Vec::new();
    for v in verified {
        out.push(repair_one(config, v, &mut skel_done)?);
    }
    Ok(out)
}

fn repair_one(
    config: &Config,
    v: Verified,
    skel_done: &mut HashMap<(String, (u64, u64), Problem), Outcome>,
) -> Result<Repaired> {
    let mut done = Vec::new();
    let mut remaining = Vec::new();
    if v.findings.is_empty() {
        return Ok(Repaired {
            name: v.name,
            done,
            remaining,
        });
    }
    let skel = Skel::open(config, &v.skel)?;
    let global = TreeRoot::open(&verify::global_of(&skel, v.generation)?)?;
    // Changed content first: restoring it sets the attribute too.
    let mut findings = v.findings;
    findings.sort_by_key(|f| f.kind != Problem::ChangedInPlace);
    let mut relink = Vec::new();
    for f in findings {
        let outcome = match f.kind {
            Problem::BrokenOff | Problem::SharedUnprotected => {
                relink.push(f);
                continue;
            }
            Problem::ChangedInPlace | Problem::LostProtection => {
                let key = (v.skel.clone(), f.entry.inode(), f.kind);
                skel_done
                    .entry(key)
                    .or_insert_with(|| mend_shared(&skel.dirs, &global, &f, config.protect))
                    .clone()
            }
            Problem::Replaced => Err(format!(
                "{}; it is the vserver's own now (`vskel revert {} {}` resets it to the skel's)",
                f.detail, v.name, f.path
            )),
            Problem::MissingInSkel => Err(format!(
                "{}; the skel itself needs mending (vskel cannot)",
                f.detail
            )),
        };
        settle(f, outcome, &mut done, &mut remaining);
    }
    if !relink.is_empty() && v.kind == VsKind::Tree {
        for (f, outcome) in relink_all(config, &v.name, &global, relink)? {
            settle(f, outcome, &mut done, &mut remaining);
        }
    }
    Ok(Repaired {
        name: v.name,
        done,
        remaining,
    })
}

fn settle(f: Finding, outcome: Outcome, done: &mut Vec<Mended>, remaining: &mut Vec<Finding>) {
    match outcome {
        Ok(action) => done.push(Mended {
            path: f.path,
            kind: f.kind,
            action,
        }),
        Err(why) => remaining.push(Finding { detail: why, ..f }),
    }
}

/// Mend a shared inode (changed in place, or unprotected); an error is
/// reported as what remains.
fn mend_shared(skel: &SkelDirs, global: &TreeRoot, f: &Finding, protect: Protect) -> Outcome {
    let result = match f.kind {
        Problem::ChangedInPlace => restore(skel, global, &f.entry, protect),
        _ => protect_again(global, &f.entry).map(|()| Ok("immutable attribute set again".into())),
    };
    match result {
        Ok(outcome) => outcome,
        Err(e) => Err(format!("{}; repairing it failed: {e}", f.detail)),
    }
}

/// The skel's file of `e`, open for reading, if it still is `e`'s inode.
fn open_shared(global: &TreeRoot, e: &Entry) -> Result<std::os::fd::OwnedFd> {
    let shown = global.display(&e.path);
    let dir = global.open_dir(e.path.parent().unwrap_or(Path::new("")))?;
    let name = leaf(&e.path)?;
    let fd = sys::open_file_read(dir.as_fd(), &name).map_err(|x| Error::io("open", &shown, x))?;
    let st = sys::fstat(fd.as_fd()).map_err(|x| Error::io("stat", &shown, x))?;
    if (sys::dev_of(&st), sys::ino_of(&st)) != e.inode() {
        return Err(Error::Failed(format!(
            "{}: no longer the recorded inode",
            shown.display()
        )));
    }
    Ok(fd)
}

fn protect_again(global: &TreeRoot, e: &Entry) -> Result<()> {
    let fd = open_shared(global, e)?;
    sys::set_immutable(fd.as_fd(), true)
        .map(|_| ())
        .map_err(|x| Error::io("set immutable attribute", global.display(&e.path), x))
}

/// Write the recorded content and metadata of `e` back into its inode.
fn restore(skel: &SkelDirs, global: &TreeRoot, e: &Entry, protect: Protect) -> Result<Outcome> {
    if e.kind != Kind::File {
        return restore_special(global, e);
    }
    let shown = global.display(&e.path);
    let io = |action, x| Error::io(action, &shown, x);
    let fd = open_shared(global, e)?;
    let stored = match e.hash {
        Some(h) => objects::open_checked(skel, &h)?,
        None => None,
    };
    let content_ok = || -> Result<bool> {
        let again = open_shared(global, e)?;
        Ok(Some(hash_of(again).map_err(|x| io("read", x))?) == e.hash)
    };
    if stored.is_none() && !content_ok()? {
        return Ok(Err(format!(
            "its content differs from the record and the skel's content store has no copy \
             of it: vskel cannot restore it (replace the skel's file and record a new \
             generation, e.g. with `vskel merge-skel {0}` / `vskel split-skel {0}`)",
            skel.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        )));
    }
    let lifted = crate::tree::unlock::lift(fd.as_fd()).map_err(|x| io("lift immutable", x))?;
    let written = (|| -> std::io::Result<()> {
        let target = match &stored {
            Some(_) => sys::reopen_handle(fd.as_fd(), OFlags::WRONLY | OFlags::TRUNC)?,
            None => sys::reopen_handle(fd.as_fd(), OFlags::RDONLY)?,
        };
        if let Some(src) = &stored {
            sys::copy_data(src.as_fd(), target.as_fd(), e.size)?;
            sys::fsync(target.as_fd())?;
        }
        set_meta(target.as_fd(), e)
    })();
    let flagged = match lifted {
        Some(l) => l.restore(),
        None if protect == Protect::Immutable => sys::set_immutable(fd.as_fd(), true).map(|_| ()),
        None => Ok(()),
    };
    written.map_err(|x| io("restore", x))?;
    flagged.map_err(|x| io("set immutable attribute", x))?;
    if !content_ok()? {
        return Ok(Err(
            "restored, but its content still differs from the record (changed again?)".into(),
        ));
    }
    Ok(Ok(if stored.is_some() {
        "content and metadata restored from the skel's content store".into()
    } else {
        "metadata restored (the content was still the recorded one)".into()
    }))
}

/// Give the skel's symlink, device, FIFO or socket of `e` its recorded
/// owner, mode, xattrs and mtime back, in place. It is never opened: the
/// owner and times are set through its parent directory without
/// following it (`lchown`, `utimensat(AT_SYMLINK_NOFOLLOW)`), the mode and
/// xattrs through an `O_PATH` handle of the entry itself. What it points
/// to (a symlink's target, a device number) cannot change in place.
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn restore_special(global: &TreeRoot, e: &Entry) -> Result<Outcome> {
    let shown = global.display(&e.path);
    let io = |action, x| Error::io(action, &shown, x);
    let dir = global.open_dir(e.path.parent().unwrap_or(Path::new("")))?;
    let dir = dir.as_fd();
    let name = leaf(&e.path)?;
    let handle = sys::open_handle_at(dir, &name).map_err(|x| io("open", x))?;
    let st = sys::fstat(handle.as_fd()).map_err(|x| io("stat", x))?;
    let is_recorded = |st: &rustix::fs::Stat| {
        (sys::dev_of(st), sys::ino_of(st)) == e.inode() && Kind::of_stat(st) == e.kind
    };
    if !is_recorded(&st) {
        return Err(Error::Failed(format!(
            "{}: no longer the recorded inode",
            shown.display()
        )));
    }
    match e.kind {
        Kind::Symlink => {
            let target = sys::readlink_at(dir, &name).map_err(|x| io("read link", x))?;
            if Some(*blake3::hash(target.as_bytes()).as_bytes()) != e.hash {
                return Ok(Err("its target differs from the record".into()));
            }
        }
        Kind::Char | Kind::Block if st.st_rdev as u64 != e.rdev => {
            return Ok(Err("its device number differs from the record".into()));
        }
        _ => {}
    }
    sys::lchown_at(dir, &name, e.uid, e.gid).map_err(|x| io("change the owner of", x))?;
    // The name is still the handle's inode (nothing else is changed).
    let again = sys::stat_at(dir, &name).map_err(|x| io("stat", x))?;
    if !is_recorded(&again) {
        return Err(Error::Failed(format!(
            "{}: replaced while it was repaired",
            shown.display()
        )));
    }
    let h = handle.as_fd();
    if e.kind != Kind::Symlink && st.st_mode as u32 & 0o7777 != e.mode {
        sys::chmod_handle(h, e.mode).map_err(|x| io("change the mode of", x))?;
    }
    let mut now = Vec::new();
    for n in sys::list_xattrs_handle(h).map_err(|x| io("read xattrs", x))? {
        let value = sys::get_xattr_handle(h, &n).map_err(|x| io("read xattrs", x))?;
        now.push((n.into_bytes(), value));
    }
    now.sort();
    if now != e.xattrs {
        for (n, _) in &now {
            if !e.xattrs.iter().any(|(r, _)| r == n) {
                let n =
                    CString::new(n.clone()).map_err(|x| io("name", std::io::Error::other(x)))?;
                sys::remove_xattr_handle(h, &n).map_err(|x| io("remove xattr", x))?;
            }
        }
        for (n, value) in &e.xattrs {
            let n = CString::new(n.clone()).map_err(|x| io("name", std::io::Error::other(x)))?;
            sys::set_xattr_handle(h, &n, value, rustix::fs::XattrFlags::empty())
                .map_err(|x| io("set xattr", x))?;
        }
    }
    let atime = (st.st_atime as i64, st.st_atime_nsec as i64);
    sys::lutimens_at(
        dir,
        &name,
        sys::Times {
            atime,
            mtime: e.mtime,
        },
    )
    .map_err(|x| io("set the times of", x))?;
    Ok(Ok(format!(
        "owner, mode, xattrs and mtime restored (a {}: nothing else of it can change in place)",
        super::verify::skel_side::kind_name(e.kind)
    )))
}

/// Owner, mode, xattrs (exactly the recorded ones) and mtime of `e`.
#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn set_meta(fd: BorrowedFd<'_>, e: &Entry) -> std::io::Result<()> {
    sys::fchown(fd, e.uid, e.gid)?;
    sys::fchmod(fd, e.mode)?;
    for name in sys::flist_xattrs(fd)? {
        if !e
            .xattrs
            .iter()
            .any(|(n, _)| n.as_slice() == name.as_bytes())
        {
            sys::remove_xattr_handle(fd, &name)?;
        }
    }
    for (name, value) in &e.xattrs {
        let name = CString::new(name.clone()).map_err(std::io::Error::other)?;
        sys::fset_xattr(fd, &name, value)?;
    }
    let st = sys::fstat(fd)?;
    sys::futimens(
        fd,
        sys::Times {
            atime: (st.st_atime as i64, st.st_atime_nsec as i64),
            mtime: e.mtime,
        },
    )
}

/// Link the skel's inode over each broken-off copy, and put a private
/// copy over each entry shared by link that protection cannot guard
/// (each checked again first: one that changed since remains, as the
/// vserver's).
fn relink_all(
    config: &Config,
    name: &str,
    global: &TreeRoot,
    found: Vec<Finding>,
) -> Result<Vec<(Finding, Outcome)>> {
    let _lock = StateFiles::new(config, name).lock()?;
    let tree = TreeRoot::open(&Layout::new(config).vserver(name))?;
    let staging = Staging::create(config, &format!("repair-{name}"))?;
    let scratch =
        sys::open_root(staging.path()).map_err(|e| Error::io("open", staging.path(), e))?;
    let tokens = Tokens::new();
    let placer = Placer {
        tree: &tree,
        parts: [
            (Part::Global, Some(TreeRoot::open(global.path())?)),
            (Part::Local, None),
            (Part::Static, None),
        ],
        scratch: scratch.as_fd(),
        tokens: &tokens,
        protect: config.protect,
        journal: None,
        copy_global: false,
    };
    let mut looker = Looker::new(&tree);
    let mut out = Vec::new();
    for f in found {
        let e = &f.entry;
        let shown = tree.display(&e.path);
        // Broken off: still a copy? Shared unprotected: still the skel's
        // inode? (Else the vserver changed it since: its own now.)
        let still = match looker.look(&e.path)? {
            Found::At {
                dir,
                name: at,
                stat: Some(st),
            } => {
                let skels = (sys::dev_of(&st), sys::ino_of(&st)) == e.inode();
                if f.kind == Problem::SharedUnprotected {
                    skels
                } else {
                    !skels
                        && observe::is(dir, &at, &st, e, Against::Old)
                            .map_err(|x| Error::io("compare", &shown, x))?
                }
            }
            _ => false,
        };
        if !still {
            out.push((
                f,
                Err("it changed since it was checked: the vserver's own now".into()),
            ));
            continue;
        }
        // The placer links what `shared_by_link` allows and copies the
        // rest: a copy made beside and renamed over the shared link.
        let parent = e.path.parent().unwrap_or(Path::new(""));
        let dir = tree.open_dir(parent)?;
        placer.put(e, dir.as_fd(), &leaf(&e.path)?, &e.path)?;
        let done = if crate::protect::shared_by_link(config.protect, e.kind) {
            "linked to the skel's inode again".to_string()
        } else {
            format!(
                "given a private copy of the skel's {} (no attribute can protect a shared one)",
                super::verify::skel_side::kind_name(e.kind)
            )
        };
        out.push((f, Ok(done)));
    }
    staging.discard()?;
    Ok(out)
}

fn leaf(rel: &Path) -> Result<CString> {
    sys::cname(rel.file_name().unwrap_or_default()).map_err(|e| Error::io("name", rel, e))
}
