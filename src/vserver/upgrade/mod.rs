//! `upgrade-vs`, `revert` and `detach` as ops: bring a tree vserver from the skel
//! generation its record names (O) to the skel's current one (N), deciding
//! only the paths that changed between them ([`plan`]: cost proportional
//! to the change, not to the tree), against what the vserver has now
//! ([`observe`]); and reset single paths to the skel's current version.
//!
//! An upgrade holds the vserver's lock. It decides every path first
//! (`--plan` stops there; strategy `fail` stops there when any path
//! conflicts), journals itself durably ([`super::upgrade_journal`]) and then places each
//! entry atomically ([`apply`]): new and changed entries in path order,
//! removals deepest first, directory metadata last. The record gets
//! generation N only at the end, so a killed upgrade is finished by the
//! next run (each step, decided again, is then a no-op or the same step).
//! A view is upgraded in its upper and static layers instead ([`view`]).

pub mod apply;
pub mod detach;
pub mod observe;
pub mod plan;
pub mod report;
pub mod revert;
pub mod view;

use std::os::fd::AsFd;
use std::path::PathBuf;

use serde::Serialize;

use self::apply::Placer;
pub use self::detach::{Detached, detach};
use self::observe::{Against, Here};
use self::plan::{Action, Seen, Span};
use self::report::Run;
pub use self::report::{Counts, Decided, Upgraded};
pub use self::revert::{Reverted, revert};
use super::registry::{self, Kind as VsKind, Record};
use super::upgrade_journal::Journal;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Kind, Part};
use crate::layout::Layout;
use crate::skel::Skel;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tokens::Tokens;
use crate::tree::TreeRoot;

/// Suffix of the skel's version written beside a kept conflicting entry.
pub const NEW_SUFFIX: &str = ".vskel-new";
/// Suffix of the vserver's version kept beside a replaced conflicting one.
pub const OLD_SUFFIX: &str = ".vskel-old";

/// What to do with a path where the vserver, O and N all differ.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Keep the vserver's; write N beside it as `PATH.vskel-new`.
    #[default]
    KeepLocal,
    /// Put N in place; keep the vserver's as `PATH.vskel-old`.
    TakeNew,
    /// Change nothing if any path conflicts.
    Fail,
}

impl Strategy {
    /// Its name on the command line and in the journal.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::KeepLocal => "keep-local",
            Strategy::TakeNew => "take-new",
            Strategy::Fail => "fail",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Strategy::KeepLocal, Strategy::TakeNew, Strategy::Fail]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// What to upgrade.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The vservers (empty with `all`).
    pub names: Vec<String>,
    /// Every tree vserver (of `skel`, if given).
    pub all: bool,
    /// Only vservers of this skel.
    pub skel: Option<String>,
    /// Decide and report, write nothing.
    pub plan: bool,
    /// The conflict strategy.
    pub strategy: Strategy,
    /// vskel's global arguments (`--config ...`), for mounting an upgraded
    /// view again in the background.
    pub remount_args: Vec<std::ffi::OsString>,
}

/// One vserver to upgrade, checked.
struct Target {
    record: Record,
    skel: Skel,
    from: u64,
}

/// Upgrade the vservers `request` names; every input is checked before
/// anything is written.
pub fn upgrade_vs(config: &Config, request: &Request) -> Result<Vec<Upgraded>> {
    let targets = check(config, request)?;
    targets
        .into_iter()
        .map(|t| match t.record.kind {
            VsKind::View => view::upgrade_view(config, t, request),
            _ => upgrade_one(config, t, request),
        })
        .collect()
}

fn check(config: &Config, request: &Request) -> Result<Vec<Target>> {
    if request.all != request.names.is_empty() {
        return Err(Error::Usage(
            "name the vservers to upgrade, or give --all (not both)".into(),
        ));
    }
    if let Some(skel) = &request.skel {
        Skel::open(config, skel)?;
    }
    let records: Vec<Record> = if request.all {
        let mut trees = Vec::new();
        for r in registry::list(config)? {
            if request.skel.is_some() && r.skel != request.skel {
                continue;
            }
            if !r.creating && r.skel.is_some() {
                trees.push(r);
            }
        }
        trees
    } else {
        let mut out = Vec::new();
        for name in &request.names {
            crate::validate::validate_name("vserver name", name)?;
            let record = registry::load(config, name)?
                .ok_or_else(|| Error::Failed(format!("no vserver \"{name}\" is recorded")))?;
            out.push(record);
        }
        out
    };
    let mut targets = Vec::new();
    for record in records {
        let name = &record.name;
        if record.creating {
            return Err(Error::Failed(format!(
                "vserver {name} is being created, or its create-vs was interrupted \
                 (`vskel create-vs` of {name} again, or `vskel remove-vs {name}`, clears it)"
            )));
        }
        let skel_name = record
            .skel
            .clone()
            .ok_or_else(|| Error::Failed(format!("the record of {name} names no skel")))?;
        if request.skel.as_ref().is_some_and(|s| *s != skel_name) {
            return Err(Error::Failed(format!(
                "vserver {name} is of skel {skel_name}, not {}",
                request.skel.as_deref().unwrap_or_default()
            )));
        }
        let from = record.generation.ok_or_else(|| {
            Error::Failed(format!(
                "vserver {name} was made before skel generations were recorded: vskel cannot \
                 tell what it was made from, so it cannot upgrade it"
            ))
        })?;
        let skel = Skel::open(config, &skel_name)?;
        targets.push(Target { record, skel, from });
    }
    Ok(targets)
}

/// The strategy an interrupted upgrade of `name` journalled.
fn strategy_named(name: &str, strategy: &str) -> Result<Strategy> {
    Strategy::from_name(strategy).ok_or_else(|| {
        Error::Failed(format!(
            "the upgrade journal of {name} names no known strategy"
        ))
    })
}

/// With strategy `fail`, stop before anything is written when any path
/// conflicts.
fn refuse_conflicts(name: &str, strategy: Strategy, decisions: &[(Span, Action)]) -> Result<()> {
    let list: Vec<String> = decisions
        .iter()
        .filter(|d| d.1 == Action::Conflict)
        .map(|d| format!("/{}", d.0.path.display()))
        .collect();
    if strategy == Strategy::Fail && !list.is_empty() {
        return Err(Error::Failed(format!(
            "upgrade of {name} stopped, nothing changed: {} conflicting paths \
             (strategy fail): {}",
            list.len(),
            list.join(", ")
        )));
    }
    Ok(())
}

/// The tokens of vserver `record` (what its static files are rendered with).
pub(crate) fn tokens_of(config: &Config, record: &Record) -> Tokens {
    Tokens::for_vserver(
        &record.name,
        record.ip.as_deref().unwrap_or_default(),
        record.fqdn.as_deref().unwrap_or_default(),
        record.context.unwrap_or_default(),
        &Layout::new(config).vserver(&record.name),
        record.skel.as_deref().unwrap_or_default(),
        &config.tokens,
    )
}

fn placer<'a>(
    config: &Config,
    skel: &Skel,
    tree: &'a TreeRoot,
    scratch: std::os::fd::BorrowedFd<'a>,
    tokens: &'a Tokens,
    journal: Option<&'a Journal>,
) -> Result<Placer<'a>> {
    let open = |p: PathBuf| -> Result<Option<TreeRoot>> {
        if p.is_dir() {
            TreeRoot::open(&p).map(Some)
        } else {
            Ok(None)
        }
    };
    Ok(Placer {
        tree,
        parts: [
            (Part::Global, open(skel.global())?),
            (Part::Local, open(skel.local())?),
            (Part::Static, open(skel.static_dir())?),
        ],
        scratch,
        tokens,
        protect: config.protect,
        journal,
        copy_global: false,
    })
}

fn skel_path(skel: &Skel, e: &Entry) -> PathBuf {
    let root = match e.part {
        Part::Global => skel.global(),
        Part::Local => skel.local(),
        Part::Static => skel.static_dir(),
    };
    root.join(&e.path)
}

/// Compare V with O and N.
fn seen(here: &Here, span: &Span, skel: &Skel, tokens: &Tokens, tree: &TreeRoot) -> Result<Seen> {
    let Here::At { dir, name, stat } = here else {
        return Ok(Seen {
            is_old: false,
            is_new: span.new.is_none(),
            kind: None,
        });
    };
    let Some(st) = stat else {
        return Ok(Seen {
            is_old: span.old.is_none(),
            is_new: span.new.is_none(),
            kind: None,
        });
    };
    let err = |e| Error::io("compare", tree.display(&span.path), e);
    let is_old = match &span.old {
        Some(o) => observe::is(dir.as_fd(), name, st, o, Against::Old).map_err(err)?,
        None => false,
    };
    let is_new = match &span.new {
        Some(n) => {
            let file = skel_path(skel, n);
            observe::is(dir.as_fd(), name, st, n, Against::New(&file, tokens)).map_err(err)?
        }
        None => false,
    };
    Ok(Seen {
        is_old,
        is_new,
        kind: Some(observe::kind_of(st)),
    })
}

fn upgrade_one(config: &Config, target: Target, request: &Request) -> Result<Upgraded> {
    let Target {
        mut record,
        skel,
        from,
    } = target;
    let name = record.name.clone();
    let _lock = StateFiles::new(config, &name).lock()?;
    let journal = Journal::new(config, &name);
    let tree = TreeRoot::open(&Layout::new(config).vserver(&name))?;
    let begun = journal.load()?;
    let (from, to, strategy) = match &begun {
        Some(b) => (b.from, b.to, strategy_named(&name, &b.strategy)?),
        None => {
            let to = generation::current(&skel.dirs)?.ok_or_else(|| {
                Error::Failed(format!("skel {} has no recorded generation", skel.name))
            })?;
            (from, to, request.strategy)
        }
    };
    let tokens = tokens_of(config, &record);
    let spans = plan::spans(&skel.dirs, from, to)?;
    let mut decisions = Vec::with_capacity(spans.len());
    let mut decided = Decided::default();
    let detached: std::collections::BTreeSet<PathBuf> = record.detached.iter().cloned().collect();
    let seen = |here: &Here, span: &Span| -> Result<Seen> {
        let mut seen = seen(here, span, &skel, &tokens, &tree)?;
        // A detached file is the vserver's own, whatever it holds.
        seen.is_old &= !detached.contains(&span.path);
        Ok(seen)
    };
    for span in spans {
        let here = observe::look(&tree, &span.path)?;
        let action = plan::decide(&span, seen(&here, &span)?);
        decisions.push((span, action));
    }
    let run = Run {
        name: name.clone(),
        skel: skel.name.clone(),
        from,
        to,
        strategy,
        resumed: begun.is_some(),
    };
    if request.plan {
        return Ok(run.planned(decisions));
    }
    refuse_conflicts(&name, strategy, &decisions)?;
    if begun.is_none() {
        journal.begin(from, to, strategy.name())?;
    } else if let Some(b) = &begun {
        for temp in &b.temps {
            apply::remove_temp(&tree, temp)?;
        }
    }
    let staging = Staging::create(config, &format!("upgrade-{name}"))?;
    let scratch =
        sys::open_root(staging.path()).map_err(|e| Error::io("open", staging.path(), e))?;
    let placer = placer(
        config,
        &skel,
        &tree,
        scratch.as_fd(),
        &tokens,
        Some(&journal),
    )?;
    let mut dir_metas = Vec::new();
    let mut removals = Vec::new();
    for (span, _) in decisions {
        // Decided again where it is done: a parent this upgrade has just
        // made (a type change taken) is there now, and no descriptor is
        // kept open per path between the passes.
        let here = observe::look(&tree, &span.path)?;
        let action = plan::decide(&span, seen(&here, &span)?);
        let Here::At {
            dir,
            name: leaf,
            stat,
        } = &here
        else {
            decided.push(action, span.path.clone());
            continue;
        };
        let shown = tree.display(&span.path);
        let v_dir = stat
            .as_ref()
            .is_some_and(|s| observe::kind_of(s) == Kind::Dir);
        match action {
            Action::Remove => {
                removals.push((span, v_dir));
                continue;
            }
            Action::Keep => {}
            Action::Converge => {
                // A directory's times are not compared: set them anyway.
                if let Some(n) = span.new.as_ref().filter(|n| n.kind == Kind::Dir && v_dir) {
                    dir_metas.push((span.path.clone(), n.clone()));
                }
                if let (Some(n), Some(st)) = (&span.new, stat)
                    && n.part == Part::Global
                    && !detached.contains(&span.path)
                    && n.kind != Kind::Dir
                    && (sys::dev_of(st), sys::ino_of(st)) != n.inode()
                    // A copy equal to N is what a tree has of an entry not
                    // shared by link: nothing to converge.
                    && (placer.copy_global || crate::protect::shared_by_link(placer.protect, n.kind))
                {
                    placer.put(n, dir.as_fd(), leaf, &span.path)?;
                }
            }
            Action::Take | Action::Add => {
                if let Some(n) = &span.new {
                    if n.kind == Kind::Dir && v_dir {
                        dir_metas.push((span.path.clone(), n.clone()));
                    } else {
                        placer.put(n, dir.as_fd(), leaf, &span.path)?;
                        if n.kind == Kind::Dir {
                            dir_metas.push((span.path.clone(), n.clone()));
                        }
                    }
                }
            }
            Action::Conflict => match strategy {
                Strategy::KeepLocal | Strategy::Fail => {
                    if let Some(n) = span.new.as_ref().filter(|n| n.kind != Kind::Dir) {
                        let beside = apply::with_suffix(leaf, NEW_SUFFIX, &shown)?;
                        placer.put(n, dir.as_fd(), &beside, &span.path)?;
                    }
                }
                Strategy::TakeNew => {
                    if stat.is_some() {
                        apply::move_aside(dir.as_fd(), leaf, OLD_SUFFIX, &shown)?;
                    }
                    if let Some(n) = &span.new {
                        placer.put(n, dir.as_fd(), leaf, &span.path)?;
                        if n.kind == Kind::Dir {
                            dir_metas.push((span.path.clone(), n.clone()));
                        }
                    }
                }
            },
        }
        decided.push(action, span.path);
    }
    for (span, v_dir) in removals.into_iter().rev() {
        let Here::At {
            dir, name: leaf, ..
        } = observe::look(&tree, &span.path)?
        else {
            // Its parent went: nothing is there to remove.
            decided.push(Action::Converge, span.path);
            continue;
        };
        let shown = tree.display(&span.path);
        let gone = apply::remove(dir.as_fd(), &leaf, v_dir, &shown)?;
        decided.push(
            if gone {
                Action::Remove
            } else {
                Action::Conflict
            },
            span.path,
        );
    }
    for (rel, n) in dir_metas.into_iter().rev() {
        if let Here::At {
            dir, name: leaf, ..
        } = observe::look(&tree, &rel)?
        {
            let meta = placer.meta_of(&n)?;
            apply::set_dir_meta(dir.as_fd(), &leaf, &meta, &tree.display(&rel))?;
        }
    }
    sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
    record.generation = Some(to);
    registry::save(config, &record)?;
    journal.clear()?;
    staging.discard()?;
    Ok(run.report(decided, false))
}
