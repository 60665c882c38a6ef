//! `verify` as an op: are the files a skel shares with its vservers still
//! shared, and still what the skel's generation records?
//!
//! Per skel, per generation the named vservers are on, the skel's side is
//! checked once ([`skel_side`]: a shared inode changed in place, a lost
//! immutable attribute, a skel file missing); then each tree vserver's
//! global paths ([`tree_side`]: broken off, replaced, or a symlink or
//! device shared by link that protection cannot guard). A skel finding
//! is reported for every vserver whose path is that inode, and names them
//! all (`shared_by`: every tree vserver of the skel whose path is the
//! inode, and the views on that generation, which show it). A view's
//! writable layer is its own: only the skel's side is checked for it.
//! Nothing is written but the hash cache ([`cache`]).

pub mod cache;
pub mod lookup;
pub mod skel_side;
pub mod tree_side;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use self::cache::Cache;
use self::lookup::Looker;
use self::skel_side::SkelFinding;
use super::registry::{self, Kind as VsKind, Record};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Generation};
use crate::layout::Layout;
use crate::skel::Skel;
use crate::tree::TreeRoot;

/// What is wrong at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Problem {
    /// The vserver has a copy of the skel's file instead of its inode.
    BrokenOff,
    /// The vserver has something else there (or nothing).
    Replaced,
    /// Under protection, the vserver shares by hard link a global entry
    /// no attribute can guard (a symlink, device, FIFO or socket a tree
    /// made before vskel copied them): any vserver's root could change it
    /// for all. `repair` gives the vserver a private copy.
    SharedUnprotected,
    /// The shared inode no longer matches its record.
    ChangedInPlace,
    /// The shared inode lacks its immutable attribute.
    LostProtection,
    /// The skel lacks the file its record has.
    MissingInSkel,
}

impl Problem {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Problem::BrokenOff => "broken-off",
            Problem::Replaced => "replaced",
            Problem::SharedUnprotected => "shared-unprotected",
            Problem::ChangedInPlace => "changed-in-place",
            Problem::LostProtection => "lost-protection",
            Problem::MissingInSkel => "missing-in-skel",
        }
    }

    /// Is it the skel's (shared by every vserver of the inode)?
    pub fn is_skel_side(self) -> bool {
        matches!(
            self,
            Problem::ChangedInPlace | Problem::LostProtection | Problem::MissingInSkel
        )
    }
}

/// One thing wrong.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The path as the vserver sees it (`/usr/bin/env`).
    pub path: String,
    /// What is wrong.
    pub kind: Problem,
    /// How, for people.
    pub detail: String,
    /// For a shared inode: every vserver whose path it is.
    pub shared_by: Vec<String>,
    /// The recorded entry.
    #[serde(skip)]
    pub entry: Entry,
}

/// What `verify` found in one vserver.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    /// The vserver.
    pub name: String,
    /// Its skel.
    pub skel: String,
    /// The skel generation it is on.
    pub generation: u64,
    /// Tree or view.
    pub kind: VsKind,
    /// Global paths checked.
    pub checked: u64,
    /// What is wrong (empty: clean).
    pub findings: Vec<Finding>,
}

/// What to verify.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The vservers (empty with `all`).
    pub names: Vec<String>,
    /// Every tree and view vskel made.
    pub all: bool,
}

/// Verify the vservers `request` names.
pub fn verify(config: &Config, request: &Request) -> Result<Vec<Verified>> {
    let targets = targets(config, request)?;
    let everyone = registry::list(config)?;
    let mut by_skel: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for t in &targets {
        by_skel
            .entry(t.skel.clone().unwrap_or_default())
            .or_default()
            .push(t);
    }
    let mut out = Vec::new();
    for (skel_name, records) in by_skel {
        let skel = Skel::open(config, &skel_name)?;
        let mut cache = Cache::load(&skel.dirs);
        let mut by_generation: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_generation
                .entry(r.generation.unwrap_or_default())
                .or_default()
                .push(r);
        }
        for (number, records) in by_generation {
            let generation = generation::load(&skel.dirs, number)?;
            let global = TreeRoot::open(&global_of(&skel, number)?)?;
            let skel_found = skel_side::check(&generation, &global, config.protect, &mut cache)?;
            let shared = shared_by(config, &skel_name, number, &skel_found, &everyone)?;
            let checked = generation
                .entries()
                .iter()
                .filter(|e| e.part == generation::Part::Global)
                .count() as u64;
            let done: Vec<Verified> = records
                .par_iter()
                .map(|r| {
                    let findings = one(config, r, &generation, &skel_found, &shared)?;
                    Ok(Verified {
                        name: r.name.clone(),
                        skel: skel_name.clone(),
                        generation: number,
                        kind: r.kind,
                        checked,
                        findings,
                    })
                })
                .collect::<Result<_>>()?;
            out.extend(done);
        }
        if let Err(e) = cache.save() {
            tracing::warn!("{e}");
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The skel's `global/` as generation `number` has it: its own when that
/// is the current generation, else the one kept for it by `split-skel`
/// (the skel's own if none was kept).
pub fn global_of(skel: &Skel, number: u64) -> Result<PathBuf> {
    if generation::current(&skel.dirs)? != Some(number) {
        let kept = skel
            .dirs
            .generations()
            .tree(number)
            .join(crate::layout::GLOBAL);
        if kept.is_dir() {
            return Ok(kept);
        }
    }
    Ok(skel.global())
}

/// The findings of one vserver: its tree's, then the skel's it shares.
fn one(
    config: &Config,
    record: &Record,
    generation: &Generation,
    skel_found: &[SkelFinding],
    shared: &BTreeMap<PathBuf, Vec<String>>,
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let tree = if record.kind == VsKind::Tree {
        Some(TreeRoot::open(&Layout::new(config).vserver(&record.name))?)
    } else {
        None
    };
    if let Some(tree) = &tree {
        for f in tree_side::check(tree, generation, config.protect)? {
            // A path given a private copy by `vskel detach` is the vserver's.
            if record.detached.contains(&f.entry.path) {
                continue;
            }
            findings.push(finding(f.entry, f.problem, f.detail, Vec::new()));
        }
    }
    let mut looker = tree.as_ref().map(Looker::new);
    for f in skel_found {
        let affects = match (&mut looker, f.problem) {
            (Some(l), Problem::ChangedInPlace | Problem::LostProtection) => {
                l.inode_at(&f.entry.path)? == Some(f.entry.inode())
            }
            _ => true,
        };
        if affects {
            let by = shared.get(&f.entry.path).cloned().unwrap_or_default();
            findings.push(finding(f.entry.clone(), f.problem, f.detail.clone(), by));
        }
    }
    findings.sort_by(|a, b| (&a.entry.path, a.kind).cmp(&(&b.entry.path, b.kind)));
    Ok(findings)
}

fn finding(entry: Entry, kind: Problem, detail: String, shared_by: Vec<String>) -> Finding {
    Finding {
        path: shown(&entry.path),
        kind,
        detail,
        shared_by,
        entry,
    }
}

/// `/` + `rel`, for people.
pub fn shown(rel: &Path) -> String {
    format!("/{}", rel.display())
}

/// For each changed or unprotected shared inode: every vserver of the
/// skel whose path is that inode (trees, looked up; views on generation
/// `number`, which show the skel's file).
fn shared_by(
    config: &Config,
    skel: &str,
    number: u64,
    skel_found: &[SkelFinding],
    everyone: &[Record],
) -> Result<BTreeMap<PathBuf, Vec<String>>> {
    let wanted: Vec<&SkelFinding> = skel_found
        .iter()
        .filter(|f| matches!(f.problem, Problem::ChangedInPlace | Problem::LostProtection))
        .collect();
    let mut out: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    if wanted.is_empty() {
        return Ok(out);
    }
    for r in everyone {
        if r.creating || r.skel.as_deref() != Some(skel) {
            continue;
        }
        match r.kind {
            VsKind::Tree => {
                let path = Layout::new(config).vserver(&r.name);
                let tree = match TreeRoot::open(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                };
                let mut looker = Looker::new(&tree);
                for f in &wanted {
                    if looker.inode_at(&f.entry.path)? == Some(f.entry.inode()) {
                        out.entry(f.entry.path.clone())
                            .or_default()
                            .push(r.name.clone());
                    }
                }
            }
            VsKind::View if r.generation == Some(number) => {
                for f in &wanted {
                    out.entry(f.entry.path.clone())
                        .or_default()
                        .push(r.name.clone());
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The records `request` names, checked (before anything is read).
fn targets(config: &Config, request: &Request) -> Result<Vec<Record>> {
    if request.all != request.names.is_empty() {
        return Err(Error::Usage(
            "name the vservers, or give --all (not both)".into(),
        ));
    }
    if request.all {
        return Ok(registry::list(config)?
            .into_iter()
            .filter(|r| {
                !r.creating
                    && r.skel.is_some()
                    && r.generation.is_some()
                    && matches!(r.kind, VsKind::Tree | VsKind::View)
            })
            .collect());
    }
    let mut out = Vec::new();
    for name in &request.names {
        crate::validate::validate_name("vserver name", name)?;
        let record = registry::load(config, name)?
            .ok_or_else(|| Error::Failed(format!("no vserver \"{name}\" is recorded")))?;
        if record.creating {
            return Err(Error::Failed(format!(
                "vserver {name} is being created, or its create-vs was interrupted"
            )));
        }
        if record.skel.is_none() || record.generation.is_none() {
            return Err(Error::Failed(format!(
                "vserver {name} was made before skel generations were recorded: there is \
                 no record to verify it against"
            )));
        }
        out.push(record);
    }
    Ok(out)
}
