//! `merge-skel`: put a skel's global/ and local/ together into its
//! temporary vserver `<root>/tmp_skel_SKEL`, where `chroot ... dpkg -i`
//! and `apt-get` work, until `split-skel` turns it back into the skel.
//!
//! The temporary vserver is a tree: global/ hard-linked (dpkg replaces a
//! file by rename, so a changed file gets a new inode and the skel's stays
//! as it was; copied instead when global files are protected, since a
//! rename over an immutable file fails), local/ copied (maintainer scripts
//! and logs write in place).
//! local/ brings the skel's `dev/` nodes and `tmp/` (1777); merge adds an
//! empty `proc/` (a mount point, as `create-vs` makes it) and copies
//! static's account files (`etc/passwd`, `group`, `shadow`, `gshadow`) as
//! they are, so that maintainer scripts calling `adduser` or `getent` work.
//! split-skel never takes those back (static/ is per-vserver; see
//! [`super::accounts`]). Before it is put in
//! place, `global.bak/` and `local.bak/` are remade as hard-linked
//! snapshots of the skel (VSkel keeps them too) and the skel's `merged`
//! marker written; the tree appears last, whole, by one rename.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::warn;

use super::lifecycle::{self, exists, temp_is_taken};
use super::{Skel, accounts};
use crate::config::{Config, Protect};
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::progress::Progress;
use crate::staging::{Staging, split_parent};
use crate::tree::TreeRoot;
use crate::tree::copy::{CopyCounts, CopyOptions, Everything, How, Target, copy_tree};
use crate::tree::meta::Meta;
use crate::{generation, protect, sys};

/// Mode of the temporary vserver's `proc/` (as `create-vs` makes it).
const PROC_MODE: u32 = 0o555;

/// What `merge-skel` made.
#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    /// The skel.
    pub skel: String,
    /// The temporary vserver's tree.
    #[serde(serialize_with = "crate::report_path::path")]
    pub path: PathBuf,
    /// The skel's generation it was made from.
    pub generation: u64,
    /// What the copies did (global linked, local copied).
    pub counts: CopyCounts,
}

/// Merge skel `name` into `<root>/tmp_skel_NAME`.
pub fn merge_skel(config: &Config, name: &str, progress: &Progress) -> Result<MergeReport> {
    let skel = Skel::open(config, name)?;
    protect::check_supported(config.protect)?;
    refuse(config, &skel)?; // before the lock writes its file; again under it
    let _lock = lifecycle::lock(&skel)?;
    super::split::recover(config, &skel, progress)?;
    refuse(config, &skel)?;
    let temp = Layout::new(config).vserver(&Layout::temp_vserver_name(name));
    let marker = skel.dirs.merged_marker();
    if lifecycle::exists(&marker)? {
        if lifecycle::exists(&temp)? {
            return Err(Error::Usage(format!(
                "skel \"{name}\" is merged already into {}; change it there and run \
                 `vskel split-skel {name}`",
                temp.display()
            )));
        }
        warn!("an interrupted merge-skel of {name} left its marker; merging again");
        std::fs::remove_file(&marker).map_err(|e| Error::io("remove", &marker, e))?;
    }
    if let Some(why) = temp_is_taken(config, name)? {
        return Err(Error::Usage(format!(
            "cannot merge skel \"{name}\": {why}; remove it first"
        )));
    }
    let generation = generation::ensure(
        &skel.dirs,
        "merge-skel",
        progress,
        generation::Store::of(config),
    )?;

    let staging = Staging::create(config, &format!("merge-{name}"))?;
    let tree = staging.path().join("tree");
    let global_bak = staging.path().join("global.bak");
    let local_bak = staging.path().join("local.bak");
    for dir in [&tree, &global_bak, &local_bak] {
        std::fs::create_dir(dir).map_err(|e| Error::io("make directory", dir, e))?;
    }
    progress.start(&format!("merging skel {name}"));
    let global = TreeRoot::open(&skel.global())?;
    let local = TreeRoot::open(&skel.local())?;
    // A protected global file is immutable, and dpkg's rename over it
    // fails (EPERM): then global/ is copied too.
    let global_how = if config.protect == Protect::None {
        How::Link
    } else {
        How::Copy
    };
    let mut counts = CopyCounts::default();
    for (source, into, how) in [
        (&global, &tree, global_how),
        (&local, &tree, How::Copy),
        (&global, &global_bak, How::Link),
        (&local, &local_bak, How::Link),
    ] {
        let report = copy_tree(
            source,
            &[Target {
                tree: TreeRoot::open(into)?,
                how,
            }],
            &Everything,
            CopyOptions {
                protect: config.protect,
                progress,
            },
        )?;
        if into == &tree {
            counts += report.counts;
        }
    }
    add_script_needs(&skel, &TreeRoot::open(&tree)?)?;
    let staged = TreeRoot::open(staging.path())?;
    sys::syncfs(staged.fd()).map_err(|e| Error::io("flush to disk", staging.path(), e))?;
    // The old snapshots go into the staging directory (removed with it).
    for (new, bak, old) in [
        (&global_bak, skel.dirs.global_bak(), "old-global.bak"),
        (&local_bak, skel.dirs.local_bak(), "old-local.bak"),
    ] {
        if lifecycle::exists(&bak)? {
            rename(&bak, &staging.path().join(old))?;
        }
        rename(new, &bak)?;
    }
    lifecycle::write_durably(&marker, format!("{generation}\n").as_bytes())?;
    rename(&tree, &temp)?;
    progress.finish();
    staging.discard()?;
    Ok(MergeReport {
        skel: name.to_string(),
        path: temp,
        generation,
        counts,
    })
}

/// Give the temporary vserver `tree` (still in staging) what maintainer
/// scripts need and global/ and local/ lack: an empty `proc/` and static's
/// account files. The directories keep their times, so split-skel sees no
/// change of theirs.
fn add_script_needs(skel: &Skel, tree: &TreeRoot) -> Result<()> {
    let st = sys::fstat(tree.fd()).map_err(|e| Error::io("stat", tree.path(), e))?;
    let root_times = Meta::from_stat(&st).times;
    let proc = Path::new("proc");
    match sys::mkdir_at(tree.fd(), c"proc", PROC_MODE) {
        Ok(()) => {
            sys::chmod_at(tree.fd(), c"proc", PROC_MODE)
                .map_err(|e| Error::io("set mode", tree.display(proc), e))?;
            sys::lutimens_at(tree.fd(), c"proc", root_times)
                .map_err(|e| Error::io("set times", tree.display(proc), e))?;
        }
        // A hand-made skel's local/ brought one: it stays as it is.
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(Error::io("make directory", tree.display(proc), e)),
    }
    accounts::copy_into(skel, tree)?;
    sys::futimens(tree.fd(), root_times).map_err(|e| Error::io("set times", tree.path(), e))
}

/// Why skel `skel` cannot be merged now, if it cannot.
fn refuse(config: &Config, skel: &Skel) -> Result<()> {
    let name = &skel.name;
    if lifecycle::is_merged(config, skel)? {
        return Err(Error::Usage(format!(
            "skel \"{name}\" is merged already into {}; change it there and run \
             `vskel split-skel {name}`",
            Layout::new(config)
                .vserver(&Layout::temp_vserver_name(name))
                .display()
        )));
    }
    if exists(&skel.dirs.merged_marker())? {
        return Ok(()); // an interrupted merge: done again below
    }
    if let Some(why) = temp_is_taken(config, name)? {
        return Err(Error::Usage(format!(
            "cannot merge skel \"{name}\": {why}; remove it first"
        )));
    }
    Ok(())
}

/// Rename `from` to `to`, which must not exist.
fn rename(from: &Path, to: &Path) -> Result<()> {
    let (fp, fname) = split_parent(from)?;
    let (tp, tname) = split_parent(to)?;
    let fd = sys::open_root(fp).map_err(|e| Error::io("open directory", fp, e))?;
    let td = sys::open_root(tp).map_err(|e| Error::io("open directory", tp, e))?;
    sys::rename_noreplace(fd.as_fd(), &fname, td.as_fd(), &tname)
        .map_err(|e| Error::io("rename into place", to, e))
}
