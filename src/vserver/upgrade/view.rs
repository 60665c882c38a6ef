//! `upgrade-vs` of a view vserver: bring it from the generation its record
//! names (O) to the skel's current one (N).
//!
//! A view shows the skel's layers of its generation under its own upper
//! layer ([`crate::vserver::view`]); moving it to N changes what every
//! path the vserver never touched shows, and leaves the upper layer's
//! entries over it. So only paths that changed between O and N are
//! decided ([`super::plan`]), with V read from the upper layer without
//! following a symlink:
//! - the upper layer has nothing there (nor a whiteout, opaque directory
//!   or non-directory above it): V is O, and N simply shows once the view
//!   is on N;
//! - the upper layer's entry (a copy-up or the vserver's own) is V, and
//!   compared with O and N as a tree's file is ([`super::observe`], the
//!   overlay's own xattrs left out): a copy equal to O gives way to N
//!   (removed), a conflict keeps it and writes N beside it as
//!   `PATH.vskel-new` (copied into the upper layer, never linked: the
//!   upper layer is the vserver's to write), `take-new` moves it to
//!   `PATH.vskel-old`;
//! - a whiteout there (the vserver removed the path), or a path hidden
//!   above it: V is absent.
//!
//! The view's rendered `static/` layer is brought to N as well. A
//! mounted view is unmounted first (refused if busy, before anything is
//! written), upgraded under the vserver's lock and the journal of
//! [`crate::vserver::upgrade_journal`] (a mount is refused while one is there, and the next
//! run finishes it), and mounted again in the background at the same
//! place: the kernel's caches are those of a new mount.

use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path};

use rustix::fs::Stat;

use super::apply::{self, Placer};
use super::observe::{self, Against};
use super::plan::{self, Action, Seen, Span};
use super::report::{Decided, Run, Upgraded};
use super::{NEW_SUFFIX, OLD_SUFFIX, Request, Strategy, Target, tokens_of};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::{self, Entry, Kind, Part};
use crate::mount::PidFile;
use crate::skel::Skel;
use crate::staging::Staging;
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tokens::Tokens;
use crate::tree::TreeRoot;
use crate::view::format;
use crate::vserver::mount::unmount;
use crate::vserver::registry;
use crate::vserver::upgrade_journal::Journal;
use crate::vserver::view::{ViewDirs, prune_kept_generations};

/// What the view shows at one path, from its upper layer.
enum Shown {
    /// Nothing of the upper layer at or above it: the skel's layers show.
    Lower,
    /// A whiteout, or a non-directory above it: the vserver removed it
    /// (or what holds it); no directory to write beside it.
    Hidden,
    /// The upper layer's directory holding the path, and what it has
    /// there (none: absent below an opaque directory; a whiteout).
    Upper {
        dir: OwnedFd,
        name: CString,
        stat: Option<Stat>,
        whiteout: bool,
        /// An opaque or redirected directory above: the skel's layers do
        /// not show here.
        covered: bool,
    },
}

/// Look `rel` up in the upper layer.
fn look(upper: &TreeRoot, rel: &Path) -> Result<Shown> {
    let err = |e| Error::io("look up", upper.display(rel), e);
    let names: Vec<&std::ffi::OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some((leaf, parents)) = names.split_last() else {
        return Ok(Shown::Lower);
    };
    let mut dir = sys::open_dir_beneath(upper.fd(), Path::new("")).map_err(err)?;
    let mut covered = format::is_opaque(dir.as_fd()).map_err(err)?;
    for part in parents {
        let name = sys::cname(part).map_err(err)?;
        let Some(st) = sys::absent_as_none(sys::stat_at(dir.as_fd(), &name)).map_err(err)? else {
            return Ok(if covered { Shown::Hidden } else { Shown::Lower });
        };
        if observe::kind_of(&st) != Kind::Dir {
            return Ok(Shown::Hidden);
        }
        dir = sys::open_subdir(dir.as_fd(), &name).map_err(err)?;
        covered = covered
            || format::is_opaque(dir.as_fd()).map_err(err)?
            || format::redirect_of(dir.as_fd()).map_err(err)?.is_some();
    }
    let name = sys::cname(leaf).map_err(err)?;
    let stat = sys::absent_as_none(sys::stat_at(dir.as_fd(), &name)).map_err(err)?;
    if stat.is_none() && !covered {
        return Ok(Shown::Lower);
    }
    let whiteout = stat.as_ref().is_some_and(format::is_whiteout);
    Ok(Shown::Upper {
        dir,
        name,
        stat,
        whiteout,
        covered,
    })
}

/// The decision at one path.
fn decide(shown: &Shown, span: &Span, skel: &Skel, tokens: &Tokens) -> Result<Action> {
    let absent = || Seen {
        is_old: span.old.is_none(),
        is_new: span.new.is_none(),
        kind: None,
    };
    let seen = match shown {
        // V is O; nothing of the vserver's is at stake.
        Shown::Lower => {
            return Ok(match (&span.old, &span.new) {
                (_, None) => Action::Remove,
                (None, Some(_)) => Action::Add,
                _ => Action::Take,
            });
        }
        Shown::Hidden => absent(),
        Shown::Upper {
            stat: None | Some(_),
            whiteout: true,
            ..
        }
        | Shown::Upper { stat: None, .. } => absent(),
        Shown::Upper {
            dir,
            name,
            stat: Some(st),
            ..
        } => {
            let err = |e| Error::io("compare", &span.path, e);
            let is_old = match &span.old {
                Some(o) => observe::is(dir.as_fd(), name, st, o, Against::Old).map_err(err)?,
                None => false,
            };
            let is_new = match &span.new {
                Some(n) => {
                    let file = super::skel_path(skel, n);
                    observe::is(dir.as_fd(), name, st, n, Against::New(&file, tokens))
                        .map_err(err)?
                }
                None => false,
            };
            Seen {
                is_old,
                is_new,
                kind: Some(observe::kind_of(st)),
            }
        }
    };
    Ok(plan::decide(span, seen))
}

/// Upgrade the view of `target`.
pub(super) fn upgrade_view(config: &Config, target: Target, request: &Request) -> Result<Upgraded> {
    let Target {
        mut record,
        skel,
        from,
    } = target;
    let name = record.name.clone();
    let dirs = ViewDirs::new(config, &name);
    let lock = StateFiles::new(config, &name).lock()?;
    let journal = Journal::new(config, &name);
    let begun = journal.load()?;
    let (from, to, strategy) = match &begun {
        Some(b) => (b.from, b.to, super::strategy_named(&name, &b.strategy)?),
        None => {
            let to = generation::current(&skel.dirs)?.ok_or_else(|| {
                Error::Failed(format!("skel {} has no recorded generation", skel.name))
            })?;
            (from, to, request.strategy)
        }
    };
    let upper = TreeRoot::open(&dirs.upper())?;
    let tokens = tokens_of(config, &record);
    let spans = plan::spans(&skel.dirs, from, to)?;
    let mut decisions = Vec::with_capacity(spans.len());
    for span in spans {
        let action = decide(&look(&upper, &span.path)?, &span, &skel, &tokens)?;
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
    let mut decided = Decided::default();
    if request.plan {
        return Ok(run.planned(decisions));
    }
    super::refuse_conflicts(&name, strategy, &decisions)?;
    if from == to && begun.is_none() {
        return Ok(run.report(decided, false));
    }
    // Unmounted before anything is written (a busy view is refused here).
    let mounted_at = match PidFile::read(&dirs.pid_file())? {
        Some((owner, true)) => {
            unmount(config, &name, false).map_err(|e| {
                Error::Failed(format!(
                    "view \"{name}\" cannot be upgraded while it is in use: {e}; nothing changed"
                ))
            })?;
            Some(owner.mountpoint)
        }
        _ => None,
    };
    if begun.is_none() {
        journal.begin(from, to, strategy.name())?;
    } else if let Some(b) = &begun {
        let statics = TreeRoot::open(&dirs.static_dir())?;
        for temp in &b.temps {
            apply::remove_temp(&upper, temp)?;
            apply::remove_temp(&statics, temp)?;
        }
    }
    let staging = Staging::create(config, &format!("upgrade-{name}"))?;
    let scratch =
        sys::open_root(staging.path()).map_err(|e| Error::io("open", staging.path(), e))?;
    let statics = TreeRoot::open(&dirs.static_dir())?;
    let mut into_upper = super::placer(
        config,
        &skel,
        &upper,
        scratch.as_fd(),
        &tokens,
        Some(&journal),
    )?;
    into_upper.copy_global = true;
    let into_static = super::placer(
        config,
        &skel,
        &statics,
        scratch.as_fd(),
        &tokens,
        Some(&journal),
    )?;
    for (span, _) in &decisions {
        put_static(&into_static, &statics, span)?;
    }
    for (span, _) in decisions {
        // Decided again where it is done (the same, or a no-op, when an
        // interrupted run did it already).
        let shown = look(&upper, &span.path)?;
        let action = decide(&shown, &span, &skel, &tokens)?;
        apply_one(&into_upper, &upper, &shown, &span, action, strategy)?;
        decided.push(action, span.path);
    }
    for tree in [&upper, &statics] {
        sys::syncfs(tree.fd()).map_err(|e| Error::io("flush to disk", tree.path(), e))?;
    }
    // The tree (if synced) stays on the generation it was synced from.
    record.tree_generation = record.tree_generation.or(record.generation);
    record.generation = Some(to);
    registry::save(config, &record)?;
    journal.clear()?;
    staging.discard()?;
    drop(lock);
    for gone in prune_kept_generations(config, &skel)? {
        tracing::info!("removed {}: no view uses it any more", gone.display());
    }
    if let Some(at) = mounted_at {
        remount(&name, at.as_deref(), &request.remount_args)?;
    }
    Ok(run.report(decided, false))
}

/// Mount the view again in the background where it was.
fn remount(name: &str, at: Option<&Path>, args: &[OsString]) -> Result<()> {
    // `vskel mount` run as a command (this binary, even if a package
    // upgrade replaced its file), not served from here: it asks the
    // daemon when one runs, so a daemon's view stays the daemon's.
    let out = std::process::Command::new("/proc/self/exe")
        .args(args)
        .args(["mount", "--format", "json", name])
        .args(at.map(Path::as_os_str))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::io("run", "vskel mount", e))?;
    if !out.status.success() {
        return Err(Error::Failed(format!(
            "view \"{name}\" was upgraded but could not be mounted again ({}): {} \
             (`vskel mount {name}` mounts it)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Bring the view's rendered `static/` layer to N at `span`'s path.
fn put_static(placer: &Placer<'_>, statics: &TreeRoot, span: &Span) -> Result<()> {
    let is_static = |e: &Option<Entry>| e.as_ref().is_some_and(|e| e.part == Part::Static);
    if !is_static(&span.new) && !is_static(&span.old) {
        return Ok(());
    }
    let parent = span.path.parent().unwrap_or(Path::new(""));
    let Some(leaf) = span.path.file_name() else {
        return Ok(());
    };
    let dir = match sys::open_dir_beneath(statics.fd(), parent) {
        Ok(dir) => dir,
        Err(e) if sys::is_absent(&e) && !is_static(&span.new) => return Ok(()),
        Err(e) => return Err(Error::io("open", statics.display(parent), e)),
    };
    let leaf = sys::cname(leaf).map_err(|e| Error::io("name", &span.path, e))?;
    match &span.new {
        Some(n) if n.part == Part::Static => placer.put(n, dir.as_fd(), &leaf, &span.path),
        _ => {
            let st = sys::absent_as_none(sys::stat_at(dir.as_fd(), &leaf))
                .map_err(|e| Error::io("stat", statics.display(&span.path), e))?;
            if let Some(st) = st {
                let is_dir = observe::kind_of(&st) == Kind::Dir;
                apply::remove(dir.as_fd(), &leaf, is_dir, &statics.display(&span.path))?;
            }
            Ok(())
        }
    }
}

/// Do `action` at `span`'s path in the upper layer.
fn apply_one(
    placer: &Placer<'_>,
    upper: &TreeRoot,
    shown: &Shown,
    span: &Span,
    action: Action,
    strategy: Strategy,
) -> Result<()> {
    let Shown::Upper {
        dir,
        name,
        stat,
        whiteout,
        covered,
    } = shown
    else {
        return Ok(()); // the skel's layers show (N, once on N), or nothing can
    };
    let dir = dir.as_fd();
    let shown_path = upper.display(&span.path);
    let v_dir = stat
        .as_ref()
        .is_some_and(|s| observe::kind_of(s) == Kind::Dir && !whiteout);
    let new_file = span.new.as_ref().filter(|n| n.kind != Kind::Dir);
    match action {
        Action::Keep | Action::Converge => {}
        // V is the upper's copy of O (or a whiteout where O had nothing):
        // it gives way to N.
        Action::Take | Action::Add | Action::Remove => {
            if stat.is_some() {
                if v_dir {
                    if let Some(n) = span.new.as_ref().filter(|n| n.kind == Kind::Dir) {
                        let meta = placer.meta_of(n)?;
                        apply::set_dir_meta(dir, name, &meta, &shown_path)?;
                    } else {
                        apply::remove(dir, name, true, &shown_path)?;
                    }
                } else {
                    apply::remove(dir, name, false, &shown_path)?;
                }
            }
            if *covered && let Some(n) = new_file {
                placer.put(n, dir, name, &span.path)?;
            }
        }
        Action::Conflict => match strategy {
            Strategy::KeepLocal | Strategy::Fail => {
                if let Some(n) = new_file {
                    let beside = apply::with_suffix(name, NEW_SUFFIX, &shown_path)?;
                    placer.put(n, dir, &beside, &span.path)?;
                }
            }
            Strategy::TakeNew => {
                if stat.is_some() && !whiteout {
                    apply::move_aside(dir, name, OLD_SUFFIX, &shown_path)?;
                } else if *whiteout {
                    apply::remove(dir, name, false, &shown_path)?;
                }
                if *covered && let Some(n) = new_file {
                    placer.put(n, dir, name, &span.path)?;
                }
            }
        },
    }
    Ok(())
}
