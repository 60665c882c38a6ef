//! `revert` as an op: reset single paths of a tree vserver to its skel's
//! current version, placed as an upgrade places them.

use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::observe::{self, Here};
use super::{Request, apply, check, placer, tokens_of};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Kind, Part};
use crate::layout::Layout;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tree::TreeRoot;

/// What `revert` did.
#[derive(Debug, Clone, Serialize)]
pub struct Reverted {
    /// The vserver.
    pub name: String,
    /// The skel generation the paths were reset to.
    pub generation: u64,
    /// The paths reset.
    #[serde(serialize_with = "crate::report_path::list")]
    pub paths: Vec<PathBuf>,
}

/// Reset `paths` of tree vserver `name` to its skel's current version,
/// which must be the vserver's generation (global re-linked, or copied where [`crate::protect::shared_by_link`]
/// rules a link out; local copied, static re-rendered; a directory gets
/// the skel's metadata, its contents are left alone).
pub fn revert(config: &Config, name: &str, paths: &[PathBuf]) -> Result<Reverted> {
    let request = Request {
        names: vec![name.to_string()],
        ..Request::default()
    };
    let mut targets = check(config, &request)?;
    let target = targets
        .pop()
        .ok_or_else(|| Error::Failed(format!("no vserver {name}")))?;
    if target.record.kind != crate::vserver::registry::Kind::Tree {
        return Err(Error::Usage(format!(
            "vserver {name} is a view: remove the path in the view (its upper layer) \
             and the skel's version shows again"
        )));
    }
    let to = generation::current(&target.skel.dirs)?.ok_or_else(|| {
        Error::Failed(format!(
            "skel {} has no recorded generation",
            target.skel.name
        ))
    })?;
    // Paths of a tree are its generation's (the link rule of README,
    // "Generations"): one on an older generation would mix two.
    if let Some(on) = target.record.generation
        && on != to
    {
        return Err(Error::Usage(format!(
            "vserver {name} is on generation {on} of skel {}, whose current generation is \
             {to}: bring it there first (`vskel upgrade-vs {name}`), then revert",
            target.skel.name
        )));
    }
    let record_n = generation::load(&target.skel.dirs, to)?;
    let mut wanted = Vec::new();
    for p in paths {
        let rel = relative(p)?;
        let entry = [Part::Static, Part::Local, Part::Global]
            .into_iter()
            .find_map(|part| record_n.entry(part, &rel))
            .ok_or_else(|| {
                Error::Usage(format!(
                    "/{}: the skel has no such path to revert to",
                    rel.display()
                ))
            })?;
        wanted.push((rel, entry.clone()));
    }
    let _lock = StateFiles::new(config, name).lock()?;
    let tree = TreeRoot::open(&Layout::new(config).vserver(name))?;
    let tokens = tokens_of(config, &target.record);
    let staging = Staging::create(config, &format!("revert-{name}"))?;
    let scratch =
        sys::open_root(staging.path()).map_err(|e| Error::io("open", staging.path(), e))?;
    let placer = placer(config, &target.skel, &tree, scratch.as_fd(), &tokens, None)?;
    let mut done = Vec::new();
    for (rel, entry) in wanted {
        let Here::At {
            dir,
            name: leaf,
            stat,
        } = observe::look(&tree, &rel)?
        else {
            return Err(Error::Failed(format!(
                "{}: a parent directory is missing or not a directory",
                tree.display(&rel).display()
            )));
        };
        let v_dir = stat
            .as_ref()
            .is_some_and(|s| observe::kind_of(s) == Kind::Dir);
        if entry.kind == Kind::Dir && v_dir {
            let meta = placer.meta_of(&entry)?;
            apply::set_dir_meta(dir.as_fd(), &leaf, &meta, &tree.display(&rel))?;
        } else {
            placer.put(&entry, dir.as_fd(), &leaf, &rel)?;
        }
        done.push(rel);
    }
    staging.discard()?;
    // A detached path reverted is the skel's again.
    if let Some(mut record) = crate::vserver::registry::load(config, name)?
        && record.detached.iter().any(|d| done.contains(d))
    {
        record.detached.retain(|d| !done.contains(d));
        crate::vserver::registry::save(config, &record)?;
    }
    Ok(Reverted {
        name: name.to_string(),
        generation: to,
        paths: done,
    })
}

/// A path as the vserver sees it (`/etc/motd`), relative to its root.
pub(super) fn relative(p: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(Error::Usage(format!(
                    "{}: not a path inside the vserver",
                    p.display()
                )));
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::Usage("the vserver's root cannot be reverted".into()));
    }
    Ok(out)
}
