//! `remove-vs`: remove a vserver's tree, config file, context link and
//! record; never the skel's inodes (shared files lose one name, nothing
//! more).
//!
//! The tree is first renamed into the staging area, so it vanishes from
//! `<root>` at once and whole; then it is deleted there, descriptor-relative
//! (a symlink planted inside cannot redirect the deletion).

use std::path::PathBuf;

use serde::Serialize;

use super::context::find_link;
use super::registry;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::staging::Staging;
use crate::validate::validate_name;

/// What `remove-vs` removed.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    /// The vserver's name.
    pub name: String,
    /// Its tree, if it had one.
    pub root: Option<PathBuf>,
    /// Its config file, if it had one.
    pub config_file: Option<PathBuf>,
    /// Its context ID, if it had a link.
    pub context: Option<u32>,
}

/// Remove the vserver `name`.
pub fn remove_vs(config: &Config, name: &str) -> Result<Removed> {
    validate_name("vserver name", name)?;
    let record = registry::load(config, name)?;
    let root = config.vserver_dir(name);
    let conf = config.vserver_conf(name);
    let contexts = config.contexts_dir();
    let context = record
        .as_ref()
        .and_then(|r| r.context)
        .filter(|id| std::fs::read_link(contexts.join(id.to_string())).ok() == Some(root.clone()))
        .or_else(|| find_link(&contexts, &root));
    let has_tree = root.symlink_metadata().is_ok();
    let has_conf = conf.symlink_metadata().is_ok();
    if !has_tree && !has_conf && record.is_none() && context.is_none() {
        return Err(Error::Usage(format!(
            "no vserver named \"{name}\" ({} does not exist); `vskel list` shows the vservers",
            root.display()
        )));
    }

    let trash = if has_tree {
        let trash = Staging::create(config, &format!("rm-{name}"))?;
        std::fs::rename(&root, trash.path().join("tree"))
            .map_err(|e| Error::io("move out of the vservers root", &root, e))?;
        Some(trash)
    } else {
        None
    };
    if let Some(id) = context {
        let link = contexts.join(id.to_string());
        std::fs::remove_file(&link).map_err(|e| Error::io("remove", &link, e))?;
    }
    if has_conf {
        std::fs::remove_file(&conf).map_err(|e| Error::io("remove", &conf, e))?;
    }
    registry::remove(config, name)?;
    if let Some(trash) = trash {
        trash.discard()?;
    }
    Ok(Removed {
        name: name.to_string(),
        root: has_tree.then_some(root),
        config_file: has_conf.then_some(conf),
        context,
    })
}
