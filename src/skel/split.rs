//! `split-skel`: turn the temporary vserver `<root>/tmp_skel_SKEL` back
//! into the skel, with the configured `global` rules (the same placement
//! as `build-skel`; static/ is never touched), keeping the skel's inode
//! for every entry that did not change.
//!
//! The new global/ and local/ are built beside the old ones, in
//! `<skel>/split.new/`: hard-linked clones of the skel's parts, changed
//! where the temporary vserver differs (each new or changed entry
//! hard-linked from it), with its directories' metadata, protected. Only
//! then is the journal `split.new/COMMIT` written, and each part swapped
//! in by one `RENAME_EXCHANGE`; the old part goes to the generation's kept
//! tree `generations/G.tree/` ([`crate::layout::GenerationFiles::tree`]).
//! A view mounted on generation G holds the old directories open and
//! keeps showing them, whole, until `upgrade-vs` moves it on: no view
//! ever sees the skel half split. A run killed before the journal leaves
//! the skel as it was (the next command removes `split.new`); one killed
//! after it is finished by the next command (the journal's inode numbers
//! tell a part already swapped in). Then the new generation is recorded
//! and the temporary vserver removed. A split that changes nothing swaps
//! nothing in. [`split_from`] does the work for any source tree:
//! `rollback-skel` splits an earlier generation's kept parts back in.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;
use serde::Serialize;

use super::Skel;
use super::journal::{Commit, decode, encode};
use super::lifecycle::{self, exists};
use super::policy::{BuildPolicy, TO_LOCAL, TO_STATIC};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{GLOBAL, LOCAL, Layout};
use crate::progress::Progress;
use crate::staging::{Staging, make_private_dir, split_parent};
use crate::tree::TreeRoot;
use crate::tree::compare::{CompareSpec, Side, same_entry};
use crate::tree::copy::{
    CopyOptions, EntryInfo, Everything, How, Place, Policy, Target, copy_tree,
};
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::meta::Meta;
use crate::tree::remove::{remove_tree_at, unlink_entry};
use crate::{generation, protect, sys};

/// The journal's name in `split.new/`.
const COMMIT: &str = "COMMIT";
/// Where new and changed entries are linked first, in `split.new/`.
const STAGE: &str = "stage";
/// The parts a split changes, in order (index 0 global, 1 local).
const PARTS: [&str; 2] = [GLOBAL, LOCAL];

/// What `split-skel` did.
#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// The skel.
    pub skel: String,
    /// Its generation now.
    pub generation: u64,
    /// Entries added or replaced.
    pub put: u64,
    /// Entries removed.
    pub removed: u64,
    /// Directories made.
    pub dirs: u64,
}

/// One change to a part's clone.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    /// Remove the entry (a directory with all it holds) if present.
    Remove(usize, PathBuf),
    /// Make the directory if missing (replacing a non-directory).
    MakeDir(usize, PathBuf),
    /// Rename `split.new/stage/N` over the entry.
    Put(usize, PathBuf, u64),
}

/// Where an entry of the temporary vserver goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Skip,
    /// Into part 0 (global) or 1 (local), and whether a directory's
    /// contents are taken too.
    Into(usize, bool),
}

/// Split skel `name`'s temporary vserver back into it.
pub fn split_skel(config: &Config, name: &str, progress: &Progress) -> Result<SplitReport> {
    let skel = Skel::open(config, name)?;
    let pending = exists(&skel.dirs.split_dir())?;
    if !pending && !lifecycle::is_merged(config, &skel)? {
        return Err(not_merged(name));
    }
    let _lock = lifecycle::lock(&skel)?;
    if recover(config, &skel, progress)? {
        let generation = generation::current(&skel.dirs)?.unwrap_or(0);
        return Ok(SplitReport {
            skel: name.to_string(),
            generation,
            put: 0,
            removed: 0,
            dirs: 0,
        });
    }
    if !lifecycle::is_merged(config, &skel)? {
        return Err(not_merged(name));
    }
    let temp = TreeRoot::open(&temp_path(config, name))?;
    super::accounts::warn_changed(&skel, &temp);
    split_from(config, &skel, &temp, progress)
}

/// Make `temp` (a tree of global and local entries, as the temporary
/// vserver is) the skel's global/ and local/ with the configured rules,
/// keeping the skel's inode for every entry that did not change, and
/// record the new generation; the caller holds the lifecycle lock and
/// has finished any interrupted split.
pub(super) fn split_from(
    config: &Config,
    skel: &Skel,
    temp: &TreeRoot,
    progress: &Progress,
) -> Result<SplitReport> {
    let name = &skel.name;
    let from = generation::ensure(
        &skel.dirs,
        "split-skel",
        progress,
        generation::Store::of(config),
    )?;
    let split_dir = skel.dirs.split_dir();
    make_private_dir(&split_dir)?;
    progress.start(&format!("splitting skel {name}"));
    let clones = clone_parts(config, skel, &split_dir, progress)?;
    let stage_path = split_dir.join(STAGE);
    make_private_dir(&stage_path)?;
    let stage =
        sys::open_root(&stage_path).map_err(|e| Error::io("open directory", &stage_path, e))?;
    let mut planner = Planner {
        config,
        temp,
        parts: &clones,
        stage: stage.as_fd(),
        ops: Vec::new(),
        next: 0,
        copied: HashMap::new(),
    };
    planner.walk(Path::new(""))?;
    let ops = planner.ops;
    for op in &ops {
        apply(&clones, stage.as_fd(), op)?;
    }
    let mut dirs_changed = 0;
    sync_dir_meta(config, temp, &clones, Path::new(""), &mut dirs_changed)?;
    if ops.is_empty() && dirs_changed == 0 {
        // Nothing to swap in: the skel stays as it is, every inode and
        // its generation with it (no kept tree of the current generation).
        drop(clones);
        remove_path(&split_dir)?;
        clean_up(config, skel)?;
        progress.finish();
        return Ok(SplitReport {
            skel: name.to_string(),
            generation: from,
            put: 0,
            removed: 0,
            dirs: 0,
        });
    }
    protect::protect_tree(&clones[0], config.protect)?;
    for clone in &clones {
        sys::syncfs(clone.fd()).map_err(|e| Error::io("flush to disk", clone.path(), e))?;
    }
    let mut parts = [0; 2];
    for (ino, clone) in parts.iter_mut().zip(&clones) {
        let st = sys::fstat(clone.fd()).map_err(|e| Error::io("stat", clone.path(), e))?;
        *ino = sys::ino_of(&st);
    }
    let commit = Commit { from, parts };
    lifecycle::write_durably(&split_dir.join(COMMIT), &encode(&commit))?;
    let report = SplitReport {
        skel: name.to_string(),
        generation: finish(config, skel, &commit, progress)?,
        put: ops.iter().filter(|o| matches!(o, Op::Put(..))).count() as u64,
        removed: ops.iter().filter(|o| matches!(o, Op::Remove(..))).count() as u64,
        dirs: ops.iter().filter(|o| matches!(o, Op::MakeDir(..))).count() as u64,
    };
    progress.finish();
    Ok(report)
}

/// Make `split.new/global` and `split.new/local`: hard-linked clones of
/// the skel's parts (a protected inode is unlocked for its link).
fn clone_parts(
    config: &Config,
    skel: &Skel,
    split_dir: &Path,
    progress: &Progress,
) -> Result<[TreeRoot; 2]> {
    let mut clones = Vec::with_capacity(PARTS.len());
    for part in PARTS {
        let live = TreeRoot::open(&skel.dirs.dir.join(part))?;
        let path = split_dir.join(part);
        make_private_dir(&path)?;
        let clone = TreeRoot::open(&path)?;
        copy_tree(
            &live,
            &[Target {
                tree: TreeRoot::open(&path)?,
                how: How::Link,
            }],
            &Everything,
            CopyOptions {
                protect: config.protect,
                progress,
            },
        )?;
        clones.push(clone);
    }
    let [global, local] = <[TreeRoot; 2]>::try_from(clones)
        .map_err(|_| Error::Failed("split-skel: two parts expected".into()))?;
    Ok([global, local])
}

/// Finish or roll back an interrupted split of `skel`; true if one was
/// finished.
pub fn recover(config: &Config, skel: &Skel, progress: &Progress) -> Result<bool> {
    let split_dir = skel.dirs.split_dir();
    if !exists(&split_dir)? {
        return Ok(false);
    }
    let journal = split_dir.join(COMMIT);
    match std::fs::read(&journal) {
        Ok(text) => {
            let commit = decode(&text).ok_or_else(|| {
                Error::Failed(format!("{}: damaged split journal", journal.display()))
            })?;
            tracing::warn!("finishing an interrupted split-skel of {}", skel.name);
            finish(config, skel, &commit, progress)?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(
                "removing {} left by an interrupted split-skel of {} (the skel is as it was)",
                split_dir.display(),
                skel.name
            );
            remove_path(&split_dir)?;
            Ok(false)
        }
        Err(e) => Err(Error::io("read", &journal, e)),
    }
}

/// Swap the committed parts in, record the generation and clean up;
/// every step can be done again.
fn finish(config: &Config, skel: &Skel, commit: &Commit, progress: &Progress) -> Result<u64> {
    let split_dir = skel.dirs.split_dir();
    let kept = skel.dirs.generations().tree(commit.from);
    for (part, ino) in PARTS.iter().zip(commit.parts) {
        swap_in(skel, &split_dir, &kept, part, ino)?;
    }
    let generation = generation::record(
        &skel.dirs,
        "split-skel",
        progress,
        generation::Store::of(config),
    )?
    .generation;
    clean_up(config, skel)?;
    remove_path(&split_dir)?;
    Ok(generation)
}

/// Remove the temporary vserver and the merged marker, if there.
fn clean_up(config: &Config, skel: &Skel) -> Result<()> {
    let temp_path = temp_path(config, &skel.name);
    if exists(&temp_path)? {
        let staging = Staging::create(config, &format!("split-{}", skel.name))?;
        let (parent, name) = split_parent(&temp_path)?;
        let pfd = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
        let sfd = sys::open_root(staging.path())
            .map_err(|e| Error::io("open directory", staging.path(), e))?;
        sys::rename_noreplace(pfd.as_fd(), &name, sfd.as_fd(), &name)
            .map_err(|e| Error::io("move away", &temp_path, e))?;
        staging.discard()?;
    }
    let marker = skel.dirs.merged_marker();
    if exists(&marker)? {
        std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
    }
    Ok(())
}

/// Swap `split.new/PART` (root inode `ino`) in as the skel's `PART` and
/// move the old one to `kept/PART`, unless done already.
fn swap_in(skel: &Skel, split_dir: &Path, kept: &Path, part: &str, ino: u64) -> Result<()> {
    let skel_dir = sys::open_root(&skel.dirs.dir)
        .map_err(|e| Error::io("open directory", &skel.dirs.dir, e))?;
    let split = sys::open_root(split_dir).map_err(|e| Error::io("open directory", split_dir, e))?;
    let name = sys::cname(OsStr::new(part)).map_err(|e| Error::io("name", split_dir, e))?;
    let live_path = skel.dirs.dir.join(part);
    let live =
        sys::stat_at(skel_dir.as_fd(), &name).map_err(|e| Error::io("stat", &live_path, e))?;
    if sys::ino_of(&live) != ino {
        sys::rename_exchange(split.as_fd(), &name, skel_dir.as_fd(), &name)
            .map_err(|e| Error::io("swap in", &live_path, e))?;
        sys::fsync(skel_dir.as_fd()).map_err(|e| Error::io("flush to disk", &live_path, e))?;
    }
    // What is left in split.new is the old part (unless moved already).
    let old_path = split_dir.join(part);
    if let Some(old) = stat_opt(split.as_fd(), &name, &old_path)? {
        make_private_dir(kept)?;
        let kept_dir = sys::open_root(kept).map_err(|e| Error::io("open directory", kept, e))?;
        // A part of this generation kept already (by a split that changed
        // nothing, made before such splits were skipped) stays: a view may
        // hold it open. This one goes beside it, and both go when the
        // generation's tree is pruned.
        let kept_name = if stat_opt(kept_dir.as_fd(), &name, &kept.join(part))?.is_some() {
            sys::cname(OsStr::new(&format!("{part}.{}", sys::ino_of(&old))))
                .map_err(|e| Error::io("name", kept, e))?
        } else {
            name.clone()
        };
        sys::rename_noreplace(split.as_fd(), &name, kept_dir.as_fd(), &kept_name)
            .map_err(|e| Error::io("keep the old part as", kept.join(part), e))?;
        sys::fsync(kept_dir.as_fd()).map_err(|e| Error::io("flush to disk", kept, e))?;
    }
    Ok(())
}

fn not_merged(name: &str) -> Error {
    Error::Usage(format!(
        "skel \"{name}\" is not merged: there is nothing to split (`vskel merge-skel {name}` \
         makes its temporary vserver)"
    ))
}

fn temp_path(config: &Config, skel: &str) -> PathBuf {
    Layout::new(config).vserver(&Layout::temp_vserver_name(skel))
}

fn remove_path(path: &Path) -> Result<()> {
    let (parent, name) = split_parent(path)?;
    let pfd = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
    match remove_tree_at(pfd.as_fd(), &name) {
        Ok(()) => Ok(()),
        Err(e) if sys::is_absent(&e) => Ok(()),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// Where `rel` (of type `file_type`) of the temporary vserver goes: where
/// `build-skel` would put it (`BuildPolicy`, so the two cannot drift),
/// except that nothing goes to static/ (per-vserver, never taken back) and
/// what build leaves out or makes itself (`proc`, the skel's own minimal
/// `dev`, `etc/hosts`, `etc/hostname`) is neither taken nor removed.
/// Mounts inside the temporary vserver are the walk's concern.
fn classify(config: &Config, rel: &Path, file_type: FileType) -> Class {
    if rel.as_os_str().is_empty() {
        return Class::Into(TO_LOCAL, true);
    }
    let policy = BuildPolicy {
        rules: &config.global,
        exclude: &config.exclude,
        source_dev: 0,
        excluded_dirs: HashSet::new(),
    };
    let place = policy.place(&EntryInfo {
        rel,
        file_type,
        dev_ino: None,
        parent_target: TO_LOCAL,
    });
    match place {
        Place::Skip | Place::Into(TO_STATIC) => Class::Skip,
        Place::Into(part) => Class::Into(part, true),
        Place::EmptyDir(part) => Class::Into(part, false),
    }
}

struct Planner<'a> {
    config: &'a Config,
    temp: &'a TreeRoot,
    parts: &'a [TreeRoot; 2],
    stage: BorrowedFd<'a>,
    ops: Vec<Op>,
    next: u64,
    /// Immutable inodes of the source staged as copies (a protected
    /// inode cannot be renamed into place), by (dev, ino): their other
    /// names link to the first copy, so hard-link groups stay groups.
    copied: HashMap<(u64, u64), CString>,
}

fn open_opt(tree: &TreeRoot, rel: &Path) -> Result<Option<OwnedFd>> {
    match sys::open_dir_beneath(tree.fd(), rel) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if sys::is_absent(&e) || e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(None),
        Err(e) => Err(Error::io("open directory", tree.display(rel), e)),
    }
}

fn stat_opt(
    dir: BorrowedFd<'_>,
    name: &std::ffi::CStr,
    shown: &Path,
) -> Result<Option<rustix::fs::Stat>> {
    sys::absent_as_none(sys::stat_at(dir, name)).map_err(|e| Error::io("stat", shown, e))
}

fn kind(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

impl Planner<'_> {
    /// Put the source's entry `name` (stat `st`) in the stage as
    /// `staged`: a hard link, or, for an immutable inode (a rollback's
    /// source is a kept generation, protected), a copy that is not
    /// immutable (split protects the new global/ once it is in place).
    fn stage_entry(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &CStr,
        st: &rustix::fs::Stat,
        staged: &CStr,
    ) -> std::io::Result<()> {
        let id = (sys::dev_of(st), sys::ino_of(st));
        if let Some(first) = self.copied.get(&id) {
            return sys::link_at(self.stage, first, self.stage, staged);
        }
        match sys::link_at(dir, name, self.stage, staged) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                copy_entry(dir, name, self.stage, Some(staged), &CopySpec::ALL)?
                    .made
                    .keep();
                self.copied.insert(id, staged.to_owned());
                Ok(())
            }
            other => other,
        }
    }

    fn walk(&mut self, rel: &Path) -> Result<()> {
        let tdir = self.temp.open_dir(rel)?;
        let pdirs = [
            open_opt(&self.parts[0], rel)?,
            open_opt(&self.parts[1], rel)?,
        ];
        let entries = sys::read_dir(tdir.as_fd())
            .map_err(|e| Error::io("read directory", self.temp.display(rel), e))?;
        let spec = CompareSpec {
            keep_xattr: &|_| true,
            content: true,
            links: false,
        };
        for entry in &entries {
            let crel = rel.join(sys::os_name(&entry.name));
            let shown = self.temp.display(&crel);
            let Some(tst) = stat_opt(tdir.as_fd(), &entry.name, &shown)? else {
                continue;
            };
            let ft = kind(&tst);
            let Class::Into(p, descend) = classify(self.config, &crel, ft) else {
                continue;
            };
            let pst = match &pdirs[p] {
                Some(pd) => stat_opt(pd.as_fd(), &entry.name, &shown)?,
                None => None,
            };
            if ft == FileType::Directory {
                if sys::dev_of(&tst) != self.temp.dev() {
                    continue; // a mount in the temporary vserver
                }
                if pst.as_ref().map(kind) != Some(FileType::Directory) {
                    self.ops.push(Op::MakeDir(p, crel.clone()));
                }
                if descend {
                    self.walk(&crel)?;
                }
                continue;
            }
            if let (Some(pst), Some(pd)) = (&pst, &pdirs[p]) {
                if sys::same_inode(pst, &tst) {
                    continue;
                }
                let same = kind(pst) != FileType::Directory
                    && same_entry(
                        Side {
                            dir: pd.as_fd(),
                            name: &entry.name,
                            stat: pst,
                        },
                        Side {
                            dir: tdir.as_fd(),
                            name: &entry.name,
                            stat: &tst,
                        },
                        &spec,
                    )
                    .map_err(|e| Error::io("compare", &shown, e))?;
                if same {
                    continue;
                }
            }
            let n = self.next;
            self.next += 1;
            let staged =
                sys::cname(OsStr::new(&n.to_string())).map_err(|e| Error::io("name", &shown, e))?;
            self.stage_entry(tdir.as_fd(), &entry.name, &tst, &staged)
                .map_err(|e| Error::io("link into split.new", &shown, e))?;
            self.ops.push(Op::Put(p, crel, n));
        }
        // What the skel has here and the temporary vserver no longer has
        // (in this part).
        for (p, pd) in pdirs.iter().enumerate() {
            let Some(pd) = pd else { continue };
            let here = self.parts[p].display(rel);
            for entry in
                sys::read_dir(pd.as_fd()).map_err(|e| Error::io("read directory", &here, e))?
            {
                let crel = rel.join(sys::os_name(&entry.name));
                let shown = self.parts[p].display(&crel);
                let Some(pst) = stat_opt(pd.as_fd(), &entry.name, &shown)? else {
                    continue;
                };
                if classify(self.config, &crel, kind(&pst)) == Class::Skip {
                    continue;
                }
                let tst = stat_opt(tdir.as_fd(), &entry.name, &shown)?;
                let in_p = |c: Class| matches!(c, Class::Into(q, _) if q == p);
                let keep = match &tst {
                    None => false,
                    Some(t) if kind(t) == FileType::Directory => {
                        kind(&pst) == FileType::Directory
                            || in_p(classify(self.config, &crel, FileType::Directory))
                    }
                    Some(t) => in_p(classify(self.config, &crel, kind(t))),
                };
                if !keep {
                    self.ops.push(Op::Remove(p, crel));
                }
            }
        }
        Ok(())
    }
}

/// Do one step (again).
fn apply(parts: &[TreeRoot; 2], stage: BorrowedFd<'_>, op: &Op) -> Result<()> {
    let (p, rel) = match op {
        Op::Remove(p, rel) | Op::MakeDir(p, rel) | Op::Put(p, rel, _) => (*p, rel),
    };
    let tree = &parts[p];
    let shown = tree.display(rel);
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let name = sys::cname(rel.file_name().unwrap_or_default())
        .map_err(|e| Error::io("name", &shown, e))?;
    let dir = match open_opt(tree, parent_rel)? {
        Some(dir) => dir,
        None if matches!(op, Op::Remove(..)) => return Ok(()),
        None => {
            return Err(Error::Failed(format!(
                "{}: parent directory missing",
                shown.display()
            )));
        }
    };
    let current = stat_opt(dir.as_fd(), &name, &shown)?;
    match op {
        Op::Remove(..) => {
            if current.is_some() {
                remove_tree_at(dir.as_fd(), &name).map_err(|e| Error::io("remove", &shown, e))?;
            }
        }
        Op::MakeDir(..) => match current.as_ref().map(kind) {
            Some(FileType::Directory) => {}
            Some(_) => {
                remove_tree_at(dir.as_fd(), &name).map_err(|e| Error::io("remove", &shown, e))?;
                sys::mkdir_at(dir.as_fd(), &name, 0o700)
                    .map_err(|e| Error::io("make directory", &shown, e))?;
            }
            None => sys::mkdir_at(dir.as_fd(), &name, 0o700)
                .map_err(|e| Error::io("make directory", &shown, e))?,
        },
        Op::Put(_, _, n) => {
            let staged =
                sys::cname(OsStr::new(&n.to_string())).map_err(|e| Error::io("name", &shown, e))?;
            if stat_opt(stage, &staged, &shown)?.is_none() {
                return Ok(()); // done before
            }
            if current.as_ref().map(kind) == Some(FileType::Directory) {
                remove_tree_at(dir.as_fd(), &name).map_err(|e| Error::io("remove", &shown, e))?;
            }
            match sys::rename_replace(stage, &staged, dir.as_fd(), &name) {
                // An immutable (protected) entry refuses to be replaced:
                // unlink it (crash-safely, see `tree::unlock`), then rename.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && current.is_some() => {
                    unlink_entry(dir.as_fd(), &name).map_err(|e| Error::io("remove", &shown, e))?;
                    sys::rename_replace(stage, &staged, dir.as_fd(), &name)
                        .map_err(|e| Error::io("rename into place", &shown, e))?;
                }
                other => other.map_err(|e| Error::io("rename into place", &shown, e))?,
            }
        }
    }
    Ok(())
}

/// Give every directory of the skel's parts the metadata the temporary
/// vserver's has at the same path.
fn sync_dir_meta(
    config: &Config,
    temp: &TreeRoot,
    parts: &[TreeRoot; 2],
    rel: &Path,
    changed: &mut u64,
) -> Result<()> {
    let tdir = sync_meta_at(temp, parts, rel, changed)?;
    let entries = sys::read_dir(tdir.as_fd())
        .map_err(|e| Error::io("read directory", temp.display(rel), e))?;
    for entry in entries {
        let crel = rel.join(sys::os_name(&entry.name));
        let Some(st) = stat_opt(tdir.as_fd(), &entry.name, &crel)? else {
            continue;
        };
        if kind(&st) != FileType::Directory || sys::dev_of(&st) != temp.dev() {
            continue;
        }
        match classify(config, &crel, FileType::Directory) {
            Class::Into(_, true) => sync_dir_meta(config, temp, parts, &crel, changed)?,
            Class::Into(_, false) => drop(sync_meta_at(temp, parts, &crel, changed)?),
            Class::Skip => {}
        }
    }
    Ok(())
}

/// Give the parts' directories `rel` the temporary vserver's metadata
/// (owner, mode, mtime, xattrs) where it differs (counted in `changed`);
/// returns the temporary vserver's directory.
fn sync_meta_at(
    temp: &TreeRoot,
    parts: &[TreeRoot; 2],
    rel: &Path,
    changed: &mut u64,
) -> Result<OwnedFd> {
    let meta_of = |tree: &TreeRoot, fd: BorrowedFd<'_>| -> Result<Meta> {
        let st = sys::fstat(fd).map_err(|e| Error::io("stat", tree.display(rel), e))?;
        let mut meta = Meta::from_stat(&st)
            .with_xattrs(fd)
            .map_err(|e| Error::io("read xattrs", tree.display(rel), e))?;
        meta.xattrs.sort();
        Ok(meta)
    };
    let tdir = temp.open_dir(rel)?;
    let want = meta_of(temp, tdir.as_fd())?;
    for part in parts {
        let Some(pd) = open_opt(part, rel)? else {
            continue;
        };
        let have = meta_of(part, pd.as_fd())?;
        if (
            want.mode,
            want.uid,
            want.gid,
            want.times.mtime,
            &want.xattrs,
        ) != (
            have.mode,
            have.uid,
            have.gid,
            have.times.mtime,
            &have.xattrs,
        ) {
            want.apply_to_fd(pd.as_fd())
                .map_err(|e| Error::io("set metadata", part.display(rel), e))?;
            *changed += 1;
        }
    }
    Ok(tdir)
}

/// Finish or roll back every `split-skel` a killed run left (a skel with
/// a `split.new/` whose lifecycle lock is free), so that no command works
/// on a skel half split. Run at the start of every command; a skel whose
/// split is running now is left to it. Never fails: problems are warnings.
pub fn finish_interrupted_splits(config: &Config, progress: &Progress) {
    let layout = Layout::new(config);
    let names = match crate::tree::list_names(&layout.skels()) {
        Ok(names) => names,
        Err(e) => {
            tracing::warn!("cannot look for interrupted split-skel runs: {e}");
            return;
        }
    };
    for name in names {
        let dirs = layout.skel(&name);
        match exists(&dirs.split_dir()) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::warn!("{e}");
                continue;
            }
        }
        let result = (|| -> Result<()> {
            let skel = Skel::open(config, &name)?;
            let path = skel.dirs.lifecycle_lock();
            let Some(_lock) =
                sys::open_try_locked(&path).map_err(|e| Error::io("open and lock", &path, e))?
            else {
                return Ok(()); // a split-skel of it is running now
            };
            recover(config, &skel, progress).map(drop)
        })();
        if let Err(e) = result {
            tracing::warn!("skel {name}: an interrupted split-skel could not be finished: {e}");
        }
    }
}
