//! What an upgrade reports: the paths of each decision, their counts,
//! and the generations it went between.

use std::path::PathBuf;

use serde::Serialize;

use super::Strategy;
use super::plan::Action;

/// The paths of each decision, and how many.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Decided {
    /// N put in place over O.
    #[serde(serialize_with = "crate::report_path::list")]
    pub taken: Vec<PathBuf>,
    /// The vserver's entry kept (N is O).
    #[serde(serialize_with = "crate::report_path::list")]
    pub kept: Vec<PathBuf>,
    /// Already N.
    #[serde(serialize_with = "crate::report_path::list")]
    pub converged: Vec<PathBuf>,
    /// New in N, put in place.
    #[serde(serialize_with = "crate::report_path::list")]
    pub added: Vec<PathBuf>,
    /// Gone in N, removed.
    #[serde(serialize_with = "crate::report_path::list")]
    pub removed: Vec<PathBuf>,
    /// V, O and N all differ.
    #[serde(serialize_with = "crate::report_path::list")]
    pub conflicting: Vec<PathBuf>,
}

impl Decided {
    pub(super) fn push(&mut self, action: Action, path: PathBuf) {
        match action {
            Action::Take => self.taken.push(path),
            Action::Keep => self.kept.push(path),
            Action::Converge => self.converged.push(path),
            Action::Add => self.added.push(path),
            Action::Remove => self.removed.push(path),
            Action::Conflict => self.conflicting.push(path),
        }
    }

    /// (name, count) of each decision.
    pub fn counts(&self) -> [(&'static str, usize); 6] {
        [
            ("taken", self.taken.len()),
            ("kept", self.kept.len()),
            ("converged", self.converged.len()),
            ("added", self.added.len()),
            ("removed", self.removed.len()),
            ("conflicting", self.conflicting.len()),
        ]
    }
}

/// Counts of [`Decided`], for the JSON report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    /// Taken.
    pub taken: usize,
    /// Kept.
    pub kept: usize,
    /// Converged.
    pub converged: usize,
    /// Added.
    pub added: usize,
    /// Removed.
    pub removed: usize,
    /// Conflicting.
    pub conflicting: usize,
}

/// What an upgrade of one vserver did (with `plan`: would do).
#[derive(Debug, Clone, Serialize)]
pub struct Upgraded {
    /// The vserver.
    pub name: String,
    /// Its skel.
    pub skel: String,
    /// The generation it had.
    pub from: u64,
    /// The generation it has now.
    pub to: u64,
    /// Only planned: nothing was written.
    pub plan: bool,
    /// The conflict strategy.
    pub strategy: Strategy,
    /// An interrupted upgrade was finished.
    pub resumed: bool,
    /// How many of each decision.
    pub counts: Counts,
    /// The decisions.
    pub paths: Decided,
}

/// One vserver's upgrade, as its report names it.
pub(super) struct Run {
    pub name: String,
    pub skel: String,
    pub from: u64,
    pub to: u64,
    pub strategy: Strategy,
    pub resumed: bool,
}

impl Run {
    /// The report of the run with `decided` (sorted here); with `plan`,
    /// of what it would do.
    pub(super) fn report(&self, mut decided: Decided, plan: bool) -> Upgraded {
        sort(&mut decided);
        Upgraded {
            name: self.name.clone(),
            skel: self.skel.clone(),
            from: self.from,
            to: if plan { self.from } else { self.to },
            plan,
            strategy: self.strategy,
            resumed: self.resumed,
            counts: counts(&decided),
            paths: decided,
        }
    }

    /// The report of a `--plan` run: `decisions` listed, nothing written.
    pub(super) fn planned(&self, decisions: Vec<(super::plan::Span, Action)>) -> Upgraded {
        let mut decided = Decided::default();
        for (span, action) in decisions {
            decided.push(action, span.path);
        }
        self.report(decided, true)
    }
}

fn sort(d: &mut Decided) {
    for list in [
        &mut d.taken,
        &mut d.kept,
        &mut d.converged,
        &mut d.added,
        &mut d.removed,
        &mut d.conflicting,
    ] {
        list.sort();
    }
}

fn counts(d: &Decided) -> Counts {
    Counts {
        taken: d.taken.len(),
        kept: d.kept.len(),
        converged: d.converged.len(),
        added: d.added.len(),
        removed: d.removed.len(),
        conflicting: d.conflicting.len(),
    }
}
