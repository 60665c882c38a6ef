//! `detach` as an op: give one tree vserver private copies of files it
//! shares with its skel (for a vserver that must diverge: a binary patched
//! for it alone), recorded in its record so that `upgrade-vs` keeps them
//! as the vserver's own and never links them back.
//!
//! Each copy keeps content, owner, mode, xattrs and times, is made in
//! private scratch space and put in place by one rename
//! ([`crate::tree::place::install`], which lifts a protected file's
//! immutable attribute for that rename only and sets it again on the
//! inode the skel and the other vservers keep sharing).

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;

use super::observe::{self, Here};
use super::revert::relative;
use super::{Request, check};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::Kind;
use crate::layout::Layout;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::entry::{CopySpec, copy_entry};
use crate::tree::place;
use crate::vserver::registry::{self, Kind as VsKind};

/// What `detach` did.
#[derive(Debug, Clone, Serialize)]
pub struct Detached {
    /// The vserver.
    pub name: String,
    /// Paths now private copies.
    #[serde(serialize_with = "crate::report_path::list")]
    pub detached: Vec<PathBuf>,
    /// Paths that were not shared with the skel (left as they are).
    #[serde(serialize_with = "crate::report_path::list")]
    pub already_private: Vec<PathBuf>,
}

/// Give tree vserver `name` private copies of the shared files `paths`.
pub fn detach(config: &Config, name: &str, paths: &[PathBuf]) -> Result<Detached> {
    let request = Request {
        names: vec![name.to_string()],
        ..Request::default()
    };
    let target = check(config, &request)?
        .pop()
        .ok_or_else(|| Error::Failed(format!("no vserver {name}")))?;
    if target.record.kind != VsKind::Tree {
        return Err(Error::Usage(format!(
            "vserver {name} is a view: its files are copied on write already, \
             nothing of it is shared to detach"
        )));
    }
    let rels = paths
        .iter()
        .map(|p| relative(p))
        .collect::<Result<Vec<_>>>()?;
    let _lock = StateFiles::new(config, name).lock()?;
    let mut record = registry::load(config, name)?
        .ok_or_else(|| Error::Failed(format!("no vserver \"{name}\" is recorded")))?;
    let tree = TreeRoot::open(&Layout::new(config).vserver(name))?;
    let global = TreeRoot::open(&target.skel.global())?;
    let staging = Staging::create(config, &format!("detach-{name}"))?;
    let scratch =
        sys::open_root(staging.path()).map_err(|e| Error::io("open", staging.path(), e))?;
    let mut done = Detached {
        name: name.to_string(),
        detached: Vec::new(),
        already_private: Vec::new(),
    };
    for rel in rels {
        let shown = tree.display(&rel);
        let Here::At {
            dir,
            name: leaf,
            stat: Some(st),
        } = observe::look(&tree, &rel)?
        else {
            return Err(Error::Failed(format!(
                "{}: no such file in the vserver",
                shown.display()
            )));
        };
        if observe::kind_of(&st) != Kind::File {
            return Err(Error::Usage(format!(
                "{}: not a regular file (only files are shared and detached)",
                shown.display()
            )));
        }
        let in_skel = match observe::look(&global, &rel)? {
            Here::At { stat, .. } => stat,
            Here::Blocked => None,
        };
        let shared = in_skel.is_some_and(|g| {
            (sys::dev_of(&g), sys::ino_of(&g)) == (sys::dev_of(&st), sys::ino_of(&st))
        });
        if !shared {
            done.already_private.push(rel);
            continue;
        }
        let copied = copy_entry(dir.as_fd(), &leaf, scratch.as_fd(), None, &CopySpec::ALL)
            .map_err(|e| Error::io("copy", &shown, e))?;
        place::install(copied.made, dir.as_fd(), &leaf, &mut |_| Ok(()))
            .map_err(|e| Error::io("put in place", &shown, e))?;
        if !record.detached.contains(&rel) {
            record.detached.push(rel.clone());
        }
        done.detached.push(rel);
    }
    sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
    record.detached.sort();
    registry::save(config, &record)?;
    staging.discard()?;
    Ok(done)
}
