//! vskel's record of each vserver it made: `<root>/.vskel/vservers/<name>.toml`.
//!
//! The record says which skel a vserver came from and which of the skel's
//! generations (both needed to upgrade it later), its FQDN, IP and context
//! ID, and whether it is an on-disk tree or a view. Trees under the vservers root without a record (made by
//! other tools) are still listed, as unregistered.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{Layout, MERGED};
use crate::staging::make_private_dir;
use crate::tree::list_names;
use crate::vserver::context::{remove_leftovers, write_atomically};

/// How a vserver exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A materialised, hard-linked tree at `<root>/<name>`.
    Tree,
    /// A FUSE view over the skel's layers.
    View,
    /// A tree vskel has no record of.
    Unregistered,
}

/// What vskel knows of one vserver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The vserver's name.
    pub name: String,
    /// The skel it was made from.
    pub skel: Option<String>,
    /// Its FQDN.
    pub fqdn: Option<String>,
    /// Its IP address.
    pub ip: Option<String>,
    /// Its context ID.
    pub context: Option<u32>,
    /// How it exists.
    pub kind: Kind,
    /// Its root directory.
    pub root: PathBuf,
    /// When it was made (seconds since the epoch).
    pub created: Option<u64>,
    /// The skel's post-create scripts have not run yet: a view made with
    /// `create-vs --view` runs them at its first `vskel sync`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub post_create_pending: bool,
    /// `create-vs` saved this record before making anything and has not
    /// finished: a run killed half-way leaves it, and the next `create-vs`
    /// of the name (or `remove-vs`) removes what that run made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// The skel generation ([`crate::generation`]) the vserver was made
    /// or last synced from; none in records made before generations.
    /// A tree's global paths are the inodes that generation records (no
    /// global file is ever copied instead of linked), so nothing more is
    /// kept per path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// For a view: the generation its tree `<root>/NAME` was last synced
    /// from (its `generation` is the one the view shows, which
    /// `upgrade-vs` moves on); none before its first sync (or in records
    /// older than this field, where `generation` says it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree_generation: Option<u64>,
    /// A tree's global paths given private copies by `vskel detach`: the
    /// vserver's own from then on (`upgrade-vs` never links them back).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detached: Vec<PathBuf>,
}

/// `<root>/.vskel/vservers`.
pub fn records_dir(config: &Config) -> PathBuf {
    Layout::new(config).records()
}

fn record_path(config: &Config, name: &str) -> PathBuf {
    Layout::new(config).record(name)
}

/// Save a record (atomically and durably). The caller holds the vserver's
/// lock (`sync::state::StateFiles::lock`), so temporary files of earlier,
/// interrupted saves of this record can go.
pub fn save(config: &Config, record: &Record) -> Result<()> {
    let dir = records_dir(config);
    make_private_dir(&dir)?;
    let text = toml::to_string(record)
        .map_err(|e| Error::Failed(format!("cannot encode the record of {}: {e}", record.name)))?;
    remove_leftovers(&dir, &Layout::record_file(&record.name));
    write_atomically(&record_path(config, &record.name), text.as_bytes())
}

/// The directories a vserver's context link may point at: its tree
/// `<root>/<name>` and its view's `merged/`.
pub fn roots_of(config: &Config, name: &str) -> [PathBuf; 2] {
    let layout = Layout::new(config);
    [layout.vserver(name), layout.view(name).merged()]
}

/// The vserver whose root (see [`roots_of`]) `target` is, if any.
pub fn owner_of_root(config: &Config, target: &Path) -> Option<String> {
    let name_of = |p: &Path| p.file_name()?.to_str().map(str::to_string);
    let valid = |n: String| {
        crate::validate::validate_name("vserver name", &n)
            .is_ok()
            .then_some(n)
    };
    if target.parent() == Some(config.root.as_path()) {
        return name_of(target).and_then(valid);
    }
    let view_dir = target
        .parent()
        .filter(|_| target.file_name() == Some(MERGED.as_ref()))?;
    if view_dir.parent() == Some(Layout::new(config).views().as_path()) {
        return name_of(view_dir).and_then(valid);
    }
    None
}

/// The record of `name`, if there is one.
pub fn load(config: &Config, name: &str) -> Result<Option<Record>> {
    let path = record_path(config, name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read", &path, e)),
    };
    toml::from_str(&text).map(Some).map_err(|e| {
        Error::Failed(format!(
            "{}: damaged record: {}",
            path.display(),
            e.message()
        ))
    })
}

/// Remove the record of `name` (nothing if there is none).
pub fn remove(config: &Config, name: &str) -> Result<()> {
    let path = record_path(config, name);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove", &path, e)),
        _ => Ok(()),
    }
}

/// Every vserver: the recorded ones and the unrecorded trees in the root.
pub fn list(config: &Config) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for file in list_names(&records_dir(config))? {
        if let Some(name) = Layout::record_name(&file)
            && let Some(record) = load(config, name)?
        {
            records.push(record);
        }
    }
    for name in list_names(&config.root)? {
        let root = Layout::new(config).vserver(&name);
        if records.iter().any(|r| r.name == name) || !is_real_dir(&root) {
            continue;
        }
        records.push(Record {
            context: crate::vserver::context::find_link(&Layout::new(config).contexts(), &root),
            name,
            skel: None,
            fqdn: None,
            ip: None,
            kind: Kind::Unregistered,
            root,
            created: None,
            post_create_pending: false,
            creating: false,
            generation: None,
            tree_generation: None,
            detached: Vec::new(),
        });
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(records)
}

fn is_real_dir(path: &Path) -> bool {
    path.symlink_metadata().map(|m| m.is_dir()).unwrap_or(false)
}
