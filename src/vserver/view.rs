//! A vserver kept as a view: the layer stack a mount of it serves, and
//! holding its writes. Its directory, `<root>/.views/NAME/` (paths from
//! [`crate::layout`]):
//!
//! ```text
//! <root>/.views/NAME/
//!   static/     the skel's static/ rendered with the vserver's tokens (read-only to the view)
//!   upper/      the writable layer (kernel overlayfs format)
//!   work/       scratch space for copy-up, on the upper's filesystem
//!   merged/     the default mount point: the vserver's root
//!   mount.pid   pid and mount point of the serving process (locked while it serves)
//!   control.sock  the serving process's control socket (`vskel sync` holds writes with it)
//!   mount.log   output of background servers
//! ```
//!
//! Layers, top first: `upper`, then `static/`, the skel's `local/`, the
//! skel's `global/` (kernel overlayfs would take the same stack as
//! `lowerdir=static:local:global,upperdir=upper,workdir=work`).
//!
//! A view stays on the skel generation its record names until
//! `upgrade-vs` moves it on: when `split-skel` has made a newer one, its
//! `local/` and `global/` are those kept for that generation
//! (`<skel>/generations/G.tree/`), never a mix of two.

use std::path::PathBuf;

use super::registry::{self, Kind, Record};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::mount::PidFile;
use crate::skel::Skel;
use crate::validate::validate_name;
use crate::view::LayerSpec;
use crate::view::control::{self, Hold};

pub use crate::layout::{
    CONTROL_SOCKET, LOG_FILE, MERGED, PID_FILE, STATIC, UPPER, ViewDirs, WORK,
};

/// Hold the writes of the view at `dirs` if it is mounted, for as long as
/// the returned [`Hold`] lives (see [`crate::view::control`]): every
/// change in flight is done when this returns, and new ones wait.
///
/// `Ok(None)`: the view is not served (nothing writes to it through a
/// mount). A view whose server is alive (its `mount.pid` is locked) but
/// serves no control socket is an error, not `None`: it is being
/// mounted right now, or served by a vskel too old to hold, and syncing
/// it unheld could copy a file half-written.
/// (So call it without holding the view's pid file lock yourself.)
pub fn hold_view(dirs: &ViewDirs) -> Result<Option<Hold>> {
    let socket = dirs.control_socket();
    if let Some(hold) = control::hold(&socket)? {
        return Ok(Some(hold));
    }
    match PidFile::read(&dirs.pid_file())? {
        Some((holder, true)) => Err(Error::Failed(format!(
            "{}: the view is served ({}) but not through {}: it is starting, or its              server cannot hold writes (remount it with this vskel); try again",
            dirs.dir.display(),
            holder
                .pid
                .map(|p| format!("pid {p}"))
                .unwrap_or_else(|| "another process".into()),
            socket.display()
        ))),
        _ => Ok(None),
    }
}

/// The source a view's mount shows in /proc/mounts: `SKEL:NAME`.
pub fn fsname(skel: &str, name: &str) -> String {
    format!("{skel}:{name}")
}

/// A view vserver, ready to be mounted.
#[derive(Debug, Clone)]
pub struct View {
    /// Its record.
    pub record: Record,
    /// Its skel.
    pub skel: Skel,
    /// Its directories.
    pub dirs: ViewDirs,
    /// Its layers.
    pub layers: LayerSpec,
    /// The skel generation its skel layers are (none: a skel without
    /// generations).
    pub generation: Option<u64>,
    /// Its global layer (the skel's `global/`, or a kept generation's).
    pub global: PathBuf,
}

impl View {
    /// The source its mount shows: `SKEL:NAME`.
    pub fn fsname(&self) -> String {
        fsname(&self.skel.name, &self.record.name)
    }
}

/// The view vserver `name`: its record must say it is a view, its skel
/// and its directories must be there.
pub fn open(config: &Config, name: &str) -> Result<View> {
    validate_name("vserver name", name)?;
    let Some(record) = registry::load(config, name)? else {
        let tree = Layout::new(config).vserver(name);
        return Err(Error::Usage(if tree.is_dir() {
            format!(
                "vserver \"{name}\" is a tree vskel has no record of ({}), not a view; \
                 only vservers made with `vskel create-vs --view` can be mounted",
                tree.display()
            )
        } else {
            format!("no vserver named \"{name}\"; `vskel list` shows the vservers")
        }));
    };
    if record.creating {
        return Err(Error::Failed(format!(
            "vserver \"{name}\" is being created, or its create-vs was interrupted \
             (`vskel create-vs` of {name} again, or `vskel remove-vs {name}`, clears it)"
        )));
    }
    if record.kind != Kind::View {
        return Err(Error::Usage(format!(
            "vserver \"{name}\" is a tree at {}, not a view; only vservers made with \
             `vskel create-vs --view` can be mounted",
            record.root.display()
        )));
    }
    let skel_name = record.skel.clone().ok_or_else(|| {
        Error::Failed(format!(
            "the record of view \"{name}\" names no skel; it cannot be mounted"
        ))
    })?;
    let skel = Skel::open(config, &skel_name).map_err(|e| {
        Error::Failed(format!(
            "view \"{name}\" is made from skel \"{skel_name}\", which is gone: {e}"
        ))
    })?;
    let dirs = ViewDirs::new(config, name);
    for dir in [dirs.static_dir(), dirs.upper(), dirs.work()] {
        if !dir.is_dir() {
            return Err(Error::Failed(format!(
                "view \"{name}\" is damaged: {} is missing",
                dir.display()
            )));
        }
    }
    let (generation, [local, global]) = skel_parts(&skel, name, record.generation)?;
    let lowers = [dirs.static_dir(), local, global.clone()]
        .into_iter()
        .filter(|d| d.is_dir())
        .collect();
    let layers = LayerSpec {
        upper: dirs.upper(),
        work: dirs.work(),
        lowers,
    };
    Ok(View {
        record,
        skel,
        dirs,
        layers,
        generation,
        global,
    })
}

/// The generation a view on generation `wanted` shows, and its `local/`
/// and `global/`: the skel's own when `wanted` is current, else those
/// kept for `wanted`. When they are not kept (the skel was changed in
/// place, not by `split-skel`), the skel's current ones, with a warning.
fn skel_parts(skel: &Skel, view: &str, wanted: Option<u64>) -> Result<(Option<u64>, [PathBuf; 2])> {
    let current = crate::generation::current(&skel.dirs)?;
    let own = [skel.local(), skel.global()];
    let Some(wanted) = wanted.filter(|w| Some(*w) != current) else {
        return Ok((current.or(wanted), own));
    };
    let kept = skel.dirs.generations().tree(wanted);
    let parts = [
        kept.join(crate::layout::LOCAL),
        kept.join(crate::layout::GLOBAL),
    ];
    if parts[1].is_dir() {
        return Ok((Some(wanted), parts));
    }
    tracing::warn!(
        "view {view} is on generation {wanted} of skel {}, which is not kept ({} is missing): \
         it shows the skel's current files; `vskel upgrade-vs {view}` reports what that changed",
        skel.name,
        parts[1].display()
    );
    Ok((current, own))
}

/// The paths of every generation tree of `skel` that no view uses and
/// that is not the one before the current generation, removed (the
/// previous generation stays for comparison and rollback). Views mounted
/// on a removed tree keep it open until unmounted.
pub fn prune_kept_generations(config: &Config, skel: &Skel) -> Result<Vec<PathBuf>> {
    let files = skel.dirs.generations();
    let current = crate::generation::current(&skel.dirs)?.unwrap_or(0);
    let in_use: std::collections::BTreeSet<u64> = registry::list(config)?
        .into_iter()
        .filter(|r| r.kind == Kind::View && r.skel.as_deref() == Some(skel.name.as_str()))
        .filter_map(|r| r.generation)
        .collect();
    let mut removed = Vec::new();
    for name in crate::tree::list_names(&files.dir)? {
        let Some(n) = crate::layout::GenerationFiles::tree_number(&name) else {
            continue;
        };
        if in_use.contains(&n) || n + 1 >= current {
            continue;
        }
        let path = files.tree(n);
        let dir = crate::sys::open_root(&files.dir)
            .map_err(|e| Error::io("open directory", &files.dir, e))?;
        let cname = crate::sys::cname(std::ffi::OsStr::new(&name))
            .map_err(|e| Error::io("name", &path, e))?;
        crate::tree::remove::remove_tree_at(std::os::fd::AsFd::as_fd(&dir), &cname)
            .map_err(|e| Error::io("remove", &path, e))?;
        removed.push(path);
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsname_is_skel_colon_name() {
        assert_eq!(fsname("base", "web1"), "base:web1");
    }
}
