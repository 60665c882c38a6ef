//! `diff` of a view: what it shows against what it would show with an
//! empty upper layer (its rendered `static/`, the skel's `local/` and
//! `global/` of its generation).
//!
//! Both sides are resolved by the view's own core ([`Overlay`], opened
//! read-only, mounted or not), so whiteouts, opaque and redirected
//! directories count exactly as the view shows them: the upper layer is
//! read fd-relative and never followed. The walk goes only where the
//! upper layer has a directory; a name the view shows from the same lower
//! entry as the empty stack is the skel's, unchanged. Otherwise a name
//! only the view shows is added, one only the skel's layers show (a
//! whiteout, or below an opaque directory) removed, and one both show
//! (a copy-up, or a name made again) compared with the lower entry it
//! covers ([`super::facts`]). A mounted view may change while it is
//! read: the diff is of the moment each directory is read.

use std::collections::BTreeSet;
use std::ffi::{CString, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::facts::{self, Facts};
use super::{Change, Status};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::generation::Kind;
use crate::sys;
use crate::view::node::{ROOT_ID, child_path};
use crate::view::overlay::Overlay;
use crate::view::types::{DirInfo, Errno, Resolved, split};
use crate::view::walk::{Entry, TreeSink};
use crate::vserver::view;

/// The skel, generation and changes of view `name`.
pub fn changes(config: &Config, name: &str) -> Result<(String, Option<u64>, Vec<Change>)> {
    // Opened under the skel's lifecycle lock (as `sync` does), so a
    // split-skel cannot give it half of each generation.
    let view = view::open(config, name)?;
    let pin = crate::skel::lifecycle::lock(&view.skel)?;
    let view = view::open(config, name)?;
    let overlay = Overlay::open_layers(&view.layers)?;
    drop(pin);
    let mut differ = Differ {
        overlay: &overlay,
        out: Vec::new(),
    };
    let root = overlay
        .dir_info(ROOT_ID)
        .map_err(|e| Error::io("open", &view.layers.upper, e))?;
    differ.root()?;
    differ.dir(&root, &root.lower_only())?;
    Ok((view.skel.name, view.generation, differ.out))
}

struct Differ<'a> {
    overlay: &'a Overlay,
    out: Vec<Change>,
}

impl Differ<'_> {
    /// The root's own metadata: the upper layer's root against the top
    /// lower layer's.
    fn root(&mut self) -> Result<()> {
        let Some(lower) = self.overlay.lower_layers().first() else {
            return Ok(());
        };
        let upper = self.overlay.upper_layer();
        let err = |e| Error::io("compare", upper.path(), e);
        let (up_st, low_st) = (
            sys::fstat(upper.fd()).map_err(err)?,
            sys::fstat(lower.fd()).map_err(err)?,
        );
        let new = Facts::on_disk(upper.fd(), c".", &up_st).map_err(err)?;
        let old = Facts::on_disk(lower.fd(), c".", &low_st).map_err(err)?;
        if let Some(changed) = facts::compare(&old, &new).map_err(err)? {
            let sizes = (Kind::Dir, 0);
            self.out
                .push(Change::modified(Path::new(""), changed, sizes, sizes));
        }
        Ok(())
    }

    /// Directory `now` as the view shows it, against `base`, the same
    /// path with only the lower layers.
    fn dir(&mut self, now: &DirInfo, base: &DirInfo) -> Result<()> {
        let list = |d: &DirInfo| {
            self.overlay
                .list(d)
                .map_err(|e| Error::io("list", shown(&d.path), e))
        };
        let names: BTreeSet<OsString> = list(now)?
            .into_iter()
            .chain(list(base)?)
            .map(|l| l.name)
            .collect();
        for name in names {
            let rel = child_path(&now.path, &name);
            let resolve = |d: &DirInfo| match self.overlay.resolve(d, &name) {
                Ok(r) => Ok(Some(r)),
                Err(e) if e == Errno::NOENT || e == Errno::NOTDIR => Ok(None),
                Err(e) => Err(Error::io("resolve", shown(&rel), e)),
            };
            match (resolve(now)?, resolve(base)?) {
                (None, None) => {}
                // The skel's own entry, shown as it is.
                (Some(n), Some(b)) if !n.found.upper && n.found.lower == b.found.lower => {}
                (Some(n), None) => self.all(Status::Added, &rel, &n.as_dir(rel.clone()), &n)?,
                (None, Some(b)) => {
                    self.all(
                        Status::Removed,
                        &rel,
                        &b.as_dir(rel.clone()).lower_only(),
                        &b,
                    )?;
                }
                (Some(n), Some(b)) => {
                    self.compare(&rel, &n, &b)?;
                    let (n_dir, b_dir) = (is_dir(&n), is_dir(&b));
                    let (now_dir, base_dir) =
                        (n.as_dir(rel.clone()), b.as_dir(rel.clone()).lower_only());
                    match (n_dir, b_dir) {
                        (true, true) => self.dir(&now_dir, &base_dir)?,
                        (true, false) => self.below(Status::Added, &now_dir)?,
                        (false, true) => self.below(Status::Removed, &base_dir)?,
                        (false, false) => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// `r` at `rel` and, for a directory (`as_dir`), everything below it.
    fn all(&mut self, status: Status, rel: &Path, as_dir: &DirInfo, r: &Resolved) -> Result<()> {
        self.out.push(whole(status, rel, r));
        if is_dir(r) {
            self.below(status, as_dir)?;
        }
        Ok(())
    }

    /// Everything below directory `dir`.
    fn below(&mut self, status: Status, dir: &DirInfo) -> Result<()> {
        let mut sink = Whole {
            status,
            out: &mut self.out,
        };
        self.overlay.walk(dir, &mut sink)
    }

    /// Both sides have `rel`: how does the view's `now` differ from `base`?
    fn compare(&mut self, rel: &Path, now: &Resolved, base: &Resolved) -> Result<()> {
        let err = |e| Error::io("compare", shown(rel), e);
        let (now_dir, now_name) = self.layer_entry(rel, now)?;
        let (base_dir, base_name) = self.layer_entry(rel, base)?;
        let new = Facts::on_disk(now_dir.as_fd(), &now_name, &now.stat).map_err(err)?;
        let old = Facts::on_disk(base_dir.as_fd(), &base_name, &base.stat).map_err(err)?;
        self.out
            .extend(Change::between(rel, &old, &new).map_err(err)?);
        Ok(())
    }

    /// The layer directory holding what `r` (at `rel` in the view) shows,
    /// and its name there.
    fn layer_entry(&self, rel: &Path, r: &Resolved) -> Result<(OwnedFd, CString)> {
        let (layer, path) = r.shown(rel);
        let (parent, name) = split(&path);
        let dir = self.overlay.layer_tree(layer).open_dir(parent)?;
        let name = sys::cname(name).map_err(|e| Error::io("name", shown(rel), e))?;
        Ok((dir, name))
    }
}

/// Collects every entry of a walk as added or removed.
struct Whole<'a> {
    status: Status,
    out: &'a mut Vec<Change>,
}

impl TreeSink for Whole<'_> {
    fn dir(&mut self, entry: &Entry<'_>) -> Result<()> {
        self.leaf(entry)
    }

    fn leaf(&mut self, entry: &Entry<'_>) -> Result<()> {
        self.out.push(whole(self.status, entry.rel, entry.resolved));
        Ok(())
    }

    fn end_dir(&mut self, _entry: &Entry<'_>) -> Result<()> {
        Ok(())
    }
}

#[allow(clippy::unnecessary_cast)] // field widths differ per architecture
fn whole(status: Status, rel: &Path, r: &Resolved) -> Change {
    Change::whole(status, rel, Kind::of_stat(&r.stat), r.stat.st_size as u64)
}

fn is_dir(r: &Resolved) -> bool {
    r.found.kind == rustix::fs::FileType::Directory
}

fn shown(rel: &Path) -> String {
    super::shown(rel)
}
