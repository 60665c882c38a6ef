//! `unify` as an op (util-vserver's vhashify/vunify): hard-link a tree
//! vserver's files that are identical to its skel's global files at the
//! same paths to the skel's inodes, one file at a time, atomically.
//!
//! Candidates are the global regular files of the generation the
//! vserver's record names (symlinks, devices and FIFOs are never linked:
//! under protection [`crate::protect::shared_by_link`] keeps them each
//! vserver's own copies), and only while the skel still has the recorded
//! inode there (same device and inode, kind, mode, owner, size, mtime):
//! unify never links a vserver to a skel file changed since. The
//! vserver's file is identical when its kind, mode, owner, size and mtime
//! (unless `ignore_mtime`: then it takes the skel's) match the record;
//! only then are its xattrs read and its content hashed (BLAKE3), through
//! the descriptor that was checked to be the file at that name, and
//! compared with the record's.
//!
//! The tree is hostile: parents are opened with
//! [`sys::open_dir_beneath`] (no symlink followed), the file is compared
//! by descriptor, and it is replaced by hard-linking the skel's inode
//! under a random name in the private staging directory
//! ([`place::make_link`], checked to be the recorded inode) and one
//! `rename()` over the vserver's name. Right before that rename the name
//! is checked once more to be the inode that was hashed, unchanged (same
//! size, mtime and ctime: any write, chmod, chown or xattr change moves
//! the ctime). What is left is the moment between that check and the
//! rename: a vserver's root writing its own copy then loses that write,
//! as with any file replaced by rename; no other vserver, and nothing
//! outside the tree, is affected, because the name is in a directory
//! opened beneath the tree and the rename replaces only that name. So
//! the check narrows the window rather than closing it, which would need
//! a compare-and-rename the kernel does not have.
//!
//! Renames change a directory's mtime: a directory files were replaced
//! in gets its access and modification times back (a vserver changing
//! that directory at the same moment may see its own change's time go).
//!
//! `EMLINK` (the skel inode has as many names as the filesystem allows)
//! keeps the copy (counted). With `protect = "immutable"` the kernel
//! allows neither a link nor a rename of the skel's inode, so its flag is
//! lifted (crash-safely, [`crate::tree::unlock`]) for the link, the
//! checks and the rename of that one file, and set again. Bytes
//! reclaimed count a copy's allocated blocks once its last name was
//! replaced. The vserver's lock is held throughout; a view is refused.
//!
//! Trust in the skel: the skel's file is taken to hold the recorded
//! content when its inode, size and mtime are the recorded ones (it is
//! not hashed again). Under `protect = "none"` a vserver's root can write
//! a shared inode in place and set its mtime back; finding that is
//! `verify`'s work, and unify then links one more vserver to it.
//!
//! Parts: [`run`] takes each candidate from the comparison to the
//! rename, [`same`] says what counts as the same file.

mod run;
mod same;

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;

use self::run::Run;
use super::registry::{self, Kind as VsKind, Record};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Kind, Part};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::skel::Skel;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tree::TreeRoot;

/// What to unify.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The tree vserver.
    pub name: String,
    /// Compare and report, write nothing.
    pub dry_run: bool,
    /// Files whose mtime alone differs are linked too (and take the
    /// skel's mtime).
    pub ignore_mtime: bool,
}

/// What `unify` did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unified {
    /// The vserver.
    pub name: String,
    /// Its skel.
    pub skel: String,
    /// The skel generation compared with.
    pub generation: u64,
    /// Nothing was written.
    pub dry_run: bool,
    /// Global regular files of the generation.
    pub candidates: u64,
    /// Already the skel's inode.
    pub already_shared: u64,
    /// Linked to the skel's inode (with `dry_run`: would be).
    pub linked: u64,
    /// Bytes of disk space given back (with `dry_run`: would be).
    pub bytes_reclaimed: u64,
    /// Identical, but kept as a copy: the skel inode has too many links
    /// (`EMLINK`).
    pub emlink_copies: u64,
    /// Left alone: content or metadata differ.
    pub different: u64,
    /// Left alone: absent, not a regular file, or below something that
    /// is not a plain directory.
    pub absent: u64,
    /// Left alone: the skel's file is no longer the recorded inode.
    pub skel_changed: u64,
    /// Left alone: the file changed while it was compared.
    pub changed_meanwhile: u64,
    /// The paths linked (with `dry_run`: that would be).
    #[serde(serialize_with = "crate::report_path::list")]
    pub paths: Vec<PathBuf>,
}

/// Unify tree vserver `request.name` with its skel.
pub fn unify(config: &Config, request: &Request, progress: &Progress) -> Result<Unified> {
    let name = &request.name;
    crate::validate::validate_name("vserver name", name)?;
    // Checked before the lock is taken (which writes its file), and once
    // more under it: a remove-vs or upgrade-vs may have ended meanwhile.
    checked_record(config, name)?;
    let _lock = StateFiles::new(config, name).lock()?;
    let record = checked_record(config, name)?;
    let skel_name = record.skel.clone().unwrap_or_default();
    let generation_n = record.generation.unwrap_or_default();
    let skel = Skel::open(config, &skel_name)?;
    let tree_path = Layout::new(config).vserver(name);
    crate::tree::require_one_filesystem(&[&tree_path, &skel.global()])?;
    let tree = TreeRoot::open(&tree_path)?;
    let global = TreeRoot::open(&skel.global())?;
    let recorded = generation::load(&skel.dirs, generation_n)?;
    let staging = if request.dry_run {
        None
    } else {
        Some(Staging::create(config, &format!("unify-{name}"))?)
    };
    let scratch = match &staging {
        Some(s) => Some(sys::open_root(s.path()).map_err(|e| Error::io("open", s.path(), e))?),
        None => None,
    };
    let mut run = Run::new(
        &tree,
        &global,
        scratch.as_ref().map(|s| s.as_fd()),
        config.protect,
        request.ignore_mtime,
        Unified {
            name: name.clone(),
            skel: skel.name.clone(),
            generation: generation_n,
            dry_run: request.dry_run,
            ..Unified::default()
        },
    );
    progress.start(&format!("unifying {name}"));
    for e in recorded
        .entries()
        .iter()
        .filter(|e| e.part == Part::Global && e.kind == Kind::File)
    {
        run.one(e)?;
        progress.inc(1);
    }
    let out = run.finish()?;
    progress.finish();
    if scratch.is_some() {
        sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
    }
    drop(scratch);
    if let Some(staging) = staging {
        staging.discard()?;
    }
    Ok(out)
}

/// The record of tree vserver `name`, or why it cannot be unified.
fn checked_record(config: &Config, name: &str) -> Result<Record> {
    let record = registry::load(config, name)?
        .ok_or_else(|| Error::Failed(format!("no vserver \"{name}\" is recorded")))?;
    if record.creating {
        return Err(Error::Failed(format!(
            "vserver {name} is being created, or its create-vs was interrupted \
             (`vskel create-vs` of {name} again, or `vskel remove-vs {name}`, clears it)"
        )));
    }
    match record.kind {
        VsKind::Tree => {}
        VsKind::View => {
            return Err(Error::Failed(format!(
                "vserver {name} is a view: it reads the skel's files from the skel itself, and \
                 the copies it made of them live in its upper layer ({}), which unify does not \
                 touch; a view's file that should be the skel's again is reset with \
                 `vskel upgrade-vs {name}` when the skel changes it, or by removing the copy \
                 from the upper layer while the view is unmounted",
                Layout::new(config).view(name).upper().display()
            )));
        }
        VsKind::Unregistered => {
            return Err(Error::Failed(format!(
                "vserver {name} is not one vskel made (it has no record)"
            )));
        }
    }
    if record.skel.is_none() {
        return Err(Error::Failed(format!("the record of {name} names no skel")));
    }
    if record.generation.is_none() {
        return Err(Error::Failed(format!(
            "vserver {name} was made before skel generations were recorded: vskel cannot tell \
             which skel files it was made from, so it cannot unify it"
        )));
    }
    Ok(record)
}
