//! `create-vs`: make a vserver from a skel as a real hard-linked tree.
//!
//! Order of work, chosen so that a failure or a kill at any point leaves
//! no half-made vserver, or one the next run clears:
//! 1. check every input (names, FQDN, IP, skel, no such vserver yet, one
//!    filesystem) before writing anything;
//! 2. take the vserver's lock (the one `sync` and `remove-vs` take); if an
//!    earlier `create-vs` of the name was killed (its record still says
//!    `creating`), remove what it made, with a warning;
//! 3. make a staging directory and reserve a context ID (its
//!    `contexts/<id>` link; released on failure, and taken back by the next
//!    allocation if this run is killed: a link to a vserver that has no
//!    record, or whose record names another ID, belongs to nobody);
//! 4. save the record, marked `creating`: from here on a killed run is
//!    found and cleared by the next `create-vs` or `remove-vs` of the name;
//! 5. record the skel's generation ([`crate::generation::record`]: a new
//!    one only if the skel changed since its current one, so the tree's
//!    global links are exactly the inodes its generation records) and keep
//!    its number in the record; a view takes the current one (recording
//!    one only for a skel that has none yet), as a view shows the live
//!    skel; then build the tree in the staging directory: `proc/`, then global
//!    hard-linked, local copied, static rendered, each layer replacing what
//!    the one below put at the same place; flush it to disk (`syncfs`);
//! 6. write `<etc>/<name>.conf` (removed again if the next step fails);
//! 7. rename the tree into `<root>/<name>`: it appears whole;
//! 8. save the record without the mark (the vserver exists), let go of the
//!    lock, then run the post-create scripts. A failing script leaves the
//!    (complete) vserver in place and says so.
//!
//! `create-vs --view` ([`create_view_vs`]) keeps the same order but builds
//! a view's directory instead of a tree: `static/` rendered, empty
//! `upper/`, `work/` and `merged/`, renamed into `<root>/.views/<name>`.
//! Its post-create scripts then run against the view, mounted for them
//! ([`view_scripts`]): their writes land in its upper layer. Until they
//! have run the record marks them pending; a view that cannot be mounted
//! (no FUSE) leaves them so, and the first `vskel sync` runs them against
//! the tree.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tracing::warn;

use super::context::{self, remove_leftovers, write_new};
use super::registry::{self, Kind, Record};
use super::remove::remove_locked;
use super::view::{MERGED, STATIC, UPPER, ViewDirs, WORK};
use super::{scripts, view_scripts};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{ContextFiles, Layout};
use crate::progress::Progress;
use crate::protect;
use crate::skel::Skel;
use crate::staging::{Staging, make_private_dir, split_parent};
use crate::sync::state::StateFiles;
use crate::sys;
use crate::tokens::{Tokens, render};
use crate::tree::copy::{CopyCounts, CopyOptions, CopyReport, Everything, How, Target, copy_tree};
use crate::tree::meta::Meta;
use crate::tree::{TreeRoot, require_one_filesystem, require_same_filesystem};
use crate::validate::{Loopback, is_loopback, parse_vserver_ip, validate_fqdn, validate_name};

/// Mode of a vserver's `/proc` mount point.
const PROC_MODE: u32 = 0o555;
/// Mode of a view's `upper/`, `work/` and `merged/` when made, and of
/// `static/` when the skel has none.
const VIEW_LAYER_MODE: u32 = 0o755;

/// What to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    /// The skel to create it from.
    pub skel: String,
    /// The vserver's name.
    pub name: String,
    /// Its FQDN.
    pub fqdn: String,
    /// Its IP address.
    pub ip: String,
    /// Whether a loopback IP address is meant (refused otherwise).
    pub loopback: Loopback,
    /// Let it have an IP address another vserver has (refused otherwise).
    pub shared_ip: bool,
}

/// What `create-vs` made.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The vserver's name.
    pub name: String,
    /// The skel it came from.
    pub skel: String,
    /// Its root directory.
    #[serde(serialize_with = "crate::report_path::path")]
    pub root: PathBuf,
    /// Its context ID.
    pub context: u32,
    /// Its config file.
    #[serde(serialize_with = "crate::report_path::path")]
    pub config_file: PathBuf,
    /// What the three layers did together.
    pub counts: CopyCounts,
    /// How it exists: a tree or a view.
    pub kind: Kind,
    /// Post-create scripts run.
    pub scripts: Vec<String>,
    /// Post-create scripts left for the first `vskel sync` (views).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_scripts: Vec<String>,
    /// Unknown `%%TOKENS%%` left in rendered files.
    pub unknown_tokens: Vec<String>,
    /// The skel generation it was made from.
    pub generation: u64,
}

/// Refuse `ip` when a vserver other than `name` has it already (two
/// vservers on one address is a mistake unless asked for).
fn refuse_taken_ip(config: &Config, name: &str, ip: std::net::IpAddr) -> Result<()> {
    let taken = registry::list(config)?.into_iter().find(|r| {
        r.name != name
            && r.ip
                .as_deref()
                .and_then(|theirs| theirs.parse::<std::net::IpAddr>().ok())
                .is_some_and(|theirs| theirs == ip)
    });
    match taken {
        Some(other) => Err(Error::Usage(format!(
            "IP address {ip} is vserver \"{}\"'s already; choose another, or give \
             --shared-ip to let both have it",
            other.name
        ))),
        None => Ok(()),
    }
}

/// Check a request completely, writing nothing; returns the skel.
pub fn check(config: &Config, request: &CreateRequest) -> Result<Skel> {
    validate_name("vserver name", &request.name)?;
    crate::skel::lifecycle::refuse_temp_vserver(config, &request.name)?;
    validate_fqdn(&request.fqdn)?;
    let ip = parse_vserver_ip(&request.ip, request.loopback)?;
    if is_loopback(ip) {
        warn!(
            "{ip} is a loopback address: vserver \"{}\" can be reached from the host only",
            request.name
        );
    }
    if !request.shared_ip {
        refuse_taken_ip(config, &request.name, ip)?;
    }
    let skel = Skel::open(config, &request.skel)?;
    let name = &request.name;
    if registry::load(config, name)?.is_some_and(|r| r.creating) {
        // What an interrupted create-vs left: cleared once the lock is held.
        require_one_filesystem(&[&config.root, &skel.global(), &Layout::new(config).state()])?;
        return Ok(skel);
    }
    let existing = [
        Layout::new(config).vserver(name),
        Layout::new(config).vserver_conf(name),
        Layout::new(config).view(name).dir,
    ]
    .into_iter()
    .find(|p| p.symlink_metadata().is_ok());
    if let Some(path) = existing {
        return Err(Error::Failed(format!(
            "vserver \"{name}\" exists already ({} is there); `vskel remove-vs {name}` removes it",
            path.display()
        )));
    }
    if registry::load(config, name)?.is_some() {
        return Err(Error::Failed(format!(
            "vserver \"{name}\" is recorded already; `vskel remove-vs {name}` removes it"
        )));
    }
    protect::check_supported(config.protect)?;
    require_one_filesystem(&[&config.root, &skel.global(), &Layout::new(config).state()])?;
    Ok(skel)
}

/// Create the vserver `request` describes.
pub fn create_vs(config: &Config, request: &CreateRequest, progress: &Progress) -> Result<Created> {
    check(config, request)?;
    if config.protect == crate::config::Protect::None {
        warn!(
            "protect = \"none\": the root of vserver \"{}\" can change every file it shares \
             with the skel and the other vservers (and so every one of them); the default \
             protection prevents it (README, \"Protection\")",
            request.name
        );
    }
    let name = &request.name;
    let root_dir = Layout::new(config).vserver(name);
    let (skel, mut creation) =
        Creation::begin(config, request, &staging_label(name), &root_dir, Kind::Tree)?;
    progress.start(&format!("recording skel {}'s generation", skel.name));
    let generation = crate::generation::record(
        &skel.dirs,
        &format!("create-vs {name}"),
        progress,
        crate::generation::Store::of(config),
    )?
    .generation;
    creation.record.generation = Some(generation);
    let vs_root = TreeRoot::open(&config.root)?;
    let global = TreeRoot::open(&skel.global())?;
    require_same_filesystem(&vs_root, &global)?;
    let layers = [
        (Some(global), LayerHow::Link),
        (open_if_present(&skel.local())?, LayerHow::Copy),
        (open_if_present(&skel.static_dir())?, LayerHow::Render),
    ];
    let staging = creation.staging_path();

    make_proc(&staging.join("proc"), &skel)?;
    progress.start(&format!("creating {name}"));
    let mut counts = CopyCounts::default();
    let mut unknown = BTreeSet::new();
    for (layer, how) in layers {
        let Some(layer) = layer else { continue };
        let how = match how {
            LayerHow::Link => How::Share,
            LayerHow::Copy => How::Copy,
            LayerHow::Render => How::Render(creation.tokens.clone()),
        };
        let report = copy_tree(
            &layer,
            &[Target {
                tree: TreeRoot::open(&staging)?,
                how,
            }],
            &Everything,
            CopyOptions {
                protect: config.protect,
                progress,
            },
        )?;
        counts += report.counts;
        warn_unknown_tokens(&report, &mut unknown);
    }
    let staged = TreeRoot::open(&staging)?;
    sys::syncfs(staged.fd()).map_err(|e| Error::io("flush to disk", &staging, e))?;

    let tokens = creation.tokens.clone();
    let config_file = Layout::new(config).vserver_conf(name);
    let context = creation.commit(&skel, &root_dir, false)?;
    progress.finish();

    let scripts = scripts::scripts_in(&skel.post_create_dir())?;
    let ran = scripts::run_all(&scripts, name, &tokens).map_err(|failure| {
        Error::Failed(format!(
            "post-create script {} of skel {} failed ({}){}\n\
             vserver {name} was created and is left in place: tree {}, config file {}, \
             context ID {context} ({}). Fix the script and run the remaining ones by hand, \
             or remove the vserver with `vskel remove-vs {name}`.",
            failure.script,
            skel.name,
            failure.status,
            if failure.stderr_tail.is_empty() {
                String::new()
            } else {
                format!("; its stderr ended with:\n{}", failure.stderr_tail)
            },
            root_dir.display(),
            config_file.display(),
            ContextFiles::new(&Layout::new(config).contexts())
                .link(context)
                .display(),
        ))
    })?;

    Ok(Created {
        name: name.clone(),
        skel: skel.name,
        root: root_dir,
        context,
        config_file,
        counts,
        kind: Kind::Tree,
        scripts: ran,
        pending_scripts: Vec::new(),
        unknown_tokens: unknown.into_iter().collect(),
        generation,
    })
}

/// Run a new view's post-create scripts in the view, mounted for them
/// ([`view_scripts`]), and clear the record's pending mark; returns those
/// that ran and those left pending. A view that cannot be mounted leaves
/// them to the first `vskel sync` (against the tree), with a warning. A
/// failing script is an error; the view stays.
fn run_view_scripts(
    config: &Config,
    name: &str,
    list: &[PathBuf],
    tokens: &Tokens,
    skel: &str,
    root: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let outcome = match view_scripts::run_in_view(config, name, list, tokens) {
        Ok(outcome) => outcome,
        Err(e) => {
            warn!(
                "cannot mount view {name} to run its post-create scripts ({e}); \
                 the first `vskel sync` runs them, against its tree"
            );
            let names = list
                .iter()
                .map(|p| {
                    p.file_name()
                        .unwrap_or(p.as_os_str())
                        .to_string_lossy()
                        .into_owned()
                })
                .collect();
            return Ok((Vec::new(), names));
        }
    };
    // They have run (or one failed): not again at the first sync.
    if let Some(mut record) = registry::load(config, name)? {
        record.post_create_pending = false;
        registry::save(config, &record)?;
    }
    match outcome {
        view_scripts::Outcome::Ran(ran) => Ok((ran, Vec::new())),
        view_scripts::Outcome::Failed(failure) => Err(Error::Failed(format!(
            "post-create script {} of skel {skel} failed ({}){}\n\
             view {name} was created and is left in place; its scripts ran in the view \
             mounted at {}. Fix the script, `vskel mount {name}` and run the remaining ones \
             by hand, or remove the vserver with `vskel remove-vs {name}`.",
            failure.script,
            failure.status,
            if failure.stderr_tail.is_empty() {
                String::new()
            } else {
                format!("; its stderr ended with:\n{}", failure.stderr_tail)
            },
            root.display(),
        ))),
    }
}

/// Create the vserver `request` describes as a view: `<root>/.views/<name>/`
/// with `static/` rendered from the skel's and empty `upper/`, `work/`
/// and `merged/`; same checks, context ID, config file and record as
/// [`create_vs`]. The post-create scripts are left pending (see the module
/// docs).
pub fn create_view_vs(
    config: &Config,
    request: &CreateRequest,
    progress: &Progress,
) -> Result<Created> {
    create_view_vs_filled(config, request, progress, None)
}

/// Fills a new view's upper layer (`import-vs`: with the vserver's own
/// changes), before the view is put in place.
pub type FillUpper<'f> = &'f dyn Fn(&TreeRoot) -> Result<()>;

/// [`create_view_vs`], with the upper layer filled by `fill` while the
/// view is still being made (a failure leaves nothing). A filled view is a
/// vserver that exists already elsewhere: its post-create scripts ran
/// there, and do not run again.
pub fn create_view_vs_filled(
    config: &Config,
    request: &CreateRequest,
    progress: &Progress,
    fill: Option<FillUpper<'_>>,
) -> Result<Created> {
    let skel = check(config, request)?;
    let name = &request.name;
    let dirs = ViewDirs::new(config, name);
    let views = Layout::new(config).views();
    make_private_dir(&views)?;
    require_one_filesystem(&[&views, &skel.global(), &Layout::new(config).state()])?;
    let root_dir = dirs.merged();
    let (skel, mut creation) = Creation::begin(
        config,
        request,
        &view_staging_label(name),
        &root_dir,
        Kind::View,
    )?;
    let generation = crate::generation::ensure(
        &skel.dirs,
        &format!("create-vs --view {name}"),
        progress,
        crate::generation::Store::of(config),
    )?;
    creation.record.generation = Some(generation);
    let skel_static = open_if_present(&skel.static_dir())?;
    let staging = creation.staging_path();

    progress.start(&format!("creating view {name}"));
    let mut counts = CopyCounts::default();
    let mut unknown = BTreeSet::new();
    for layer in [STATIC, UPPER, WORK, MERGED] {
        let path = staging.join(layer);
        std::fs::create_dir(&path).map_err(|e| Error::io("make directory", &path, e))?;
        set_mode(&path, VIEW_LAYER_MODE)?;
    }
    // The vserver's /proc mount point, in the per-vserver static layer
    // (made first: rendering then gives the layer's root the skel's times).
    make_proc(&staging.join(STATIC).join("proc"), &skel)?;
    if let Some(source) = &skel_static {
        let report = copy_tree(
            source,
            &[Target {
                tree: TreeRoot::open(&staging.join(STATIC))?,
                how: How::Render(creation.tokens.clone()),
            }],
            &Everything,
            CopyOptions {
                protect: config.protect,
                progress,
            },
        )?;
        counts += report.counts;
        warn_unknown_tokens(&report, &mut unknown);
    }
    // The view's root shows the upper root's attributes: give it those a
    // created tree's root gets (the top layer's).
    let rendered_root = TreeRoot::open(&staging.join(STATIC))?;
    let root_meta = Meta::from_stat(
        &sys::fstat(rendered_root.fd()).map_err(|e| Error::io("stat", rendered_root.path(), e))?,
    );
    let upper_root = TreeRoot::open(&staging.join(UPPER))?;
    root_meta
        .apply_to_fd(upper_root.fd())
        .map_err(|e| Error::io("set metadata", upper_root.path(), e))?;
    if let Some(fill) = fill {
        fill(&upper_root)?;
    }
    let staged = TreeRoot::open(&staging)?;
    sys::syncfs(staged.fd()).map_err(|e| Error::io("flush to disk", &staging, e))?;

    let config_file = Layout::new(config).vserver_conf(name);
    let list = if fill.is_some() {
        Vec::new()
    } else {
        scripts::scripts_in(&skel.post_create_dir())?
    };
    let tokens = creation.tokens.clone();
    // Pending until they have run in the view (a create-vs killed meanwhile
    // leaves them to the first sync).
    let context = creation.commit(&skel, &dirs.dir, !list.is_empty())?;
    progress.finish();
    let (ran, pending) = if list.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        run_view_scripts(config, name, &list, &tokens, &skel.name, &root_dir)?
    };
    Ok(Created {
        name: name.clone(),
        skel: skel.name,
        root: root_dir,
        context,
        config_file,
        counts,
        kind: Kind::View,
        scripts: ran,
        pending_scripts: pending,
        unknown_tokens: unknown.into_iter().collect(),
        generation,
    })
}

/// A creation in progress (steps 2 to 4 of the module docs done): undone
/// on drop unless committed, the vserver's lock let go last.
struct Creation<'a> {
    config: &'a Config,
    staging: Option<Staging>,
    reservation: Option<context::Reservation>,
    /// The record, saved marked `creating`.
    record: Record,
    /// The vserver's tokens.
    tokens: Tokens,
    /// The tree or view directory is in place: keep everything.
    published: bool,
    _lock: std::fs::File,
}

impl<'a> Creation<'a> {
    /// Take the lock, clear an interrupted creation of the name, check the
    /// request again (under the lock), make the staging directory, reserve
    /// a context ID pointing at `root_dir` and save the record marked
    /// `creating`.
    fn begin(
        config: &'a Config,
        request: &CreateRequest,
        label: &str,
        root_dir: &Path,
        kind: Kind,
    ) -> Result<(Skel, Creation<'a>)> {
        let name = &request.name;
        let lock = StateFiles::new(config, name).lock()?;
        if let Some(old) = registry::load(config, name)?.filter(|r| r.creating) {
            warn!("an earlier create-vs of {name} was interrupted; removing what it made first");
            remove_locked(config, name, Some(&old))?;
        }
        let skel = check(config, request)?;
        let staging = Staging::create(config, label)?;
        let reservation = context::allocate(
            &Layout::new(config).contexts(),
            config.context_start,
            root_dir,
            |id, target| is_stale_link(config, name, id, target),
        )?;
        let tokens = Tokens::for_vserver(
            name,
            &request.ip,
            &request.fqdn,
            reservation.id,
            &Layout::new(config).vserver(name),
            &skel.name,
            &config.tokens,
        );
        let mut record = record(request, &skel, reservation.id, kind, root_dir, false);
        record.creating = true;
        registry::save(config, &record)?;
        Ok((
            skel,
            Creation {
                config,
                staging: Some(staging),
                reservation: Some(reservation),
                record,
                tokens,
                published: false,
                _lock: lock,
            },
        ))
    }

    /// Where the tree is being built.
    fn staging_path(&self) -> PathBuf {
        self.staging
            .as_ref()
            .map(|s| s.path().to_path_buf())
            .unwrap_or_default()
    }

    /// Write the config file, put the staging directory in place at `dest`
    /// and save the record unmarked (steps 6 to 8); returns the context ID.
    fn commit(mut self, skel: &Skel, dest: &Path, post_create_pending: bool) -> Result<u32> {
        let name = self.record.name.clone();
        let conf_guard = write_config_file(
            skel,
            &Layout::new(self.config).vserver_conf(&name),
            &self.tokens,
        )?;
        let staging = self
            .staging
            .take()
            .ok_or_else(|| Error::Failed(format!("creation of {name} committed twice")))?;
        staging.publish(dest)?;
        self.published = true;
        conf_guard.keep();
        let id = self
            .reservation
            .take()
            .map(|r| r.keep())
            .unwrap_or_default();
        self.record.creating = false;
        self.record.post_create_pending = post_create_pending;
        registry::save(self.config, &self.record).map_err(|e| {
            Error::Failed(format!(
                "{e}\nvserver {name} is in place but its record still says it is being \
                 created; `vskel create-vs` of {name} again, or `vskel remove-vs {name}`, \
                 removes it"
            ))
        })?;
        Ok(id)
    }
}

impl Drop for Creation<'_> {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Not in place: the staging directory and the context link go
        // with their guards; the record goes now (before the lock).
        if let Err(e) = registry::remove(self.config, &self.record.name) {
            warn!(
                "{e}; the next create-vs or remove-vs of {} removes it",
                self.record.name
            );
        }
    }
}

/// Does the context link `<id> -> target`, found while `creating` is
/// being created (its lock held), belong to no vserver? So it is when it
/// points at `creating` itself (which has no record now), at a vserver
/// whose record names another ID, and, while no command holds that
/// vserver's lock, at an interrupted creation or (dangling) at a vserver
/// without a record. A link whose owner vskel cannot tell (another
/// tool's, or to a tree without a record) is kept.
fn is_stale_link(config: &Config, creating: &str, id: u32, target: &Path) -> bool {
    let Some(owner) = registry::owner_of_root(config, target) else {
        return false;
    };
    if owner == creating {
        return true;
    }
    let idle = || {
        StateFiles::new(config, &owner)
            .is_held()
            .is_ok_and(|held| !held)
    };
    match registry::load(config, &owner) {
        Ok(Some(record)) if !record.creating => record.context.is_some_and(|c| c != id),
        Ok(Some(_)) => idle(),
        Ok(None) => target.symlink_metadata().is_err() && idle(),
        Err(_) => false,
    }
}

/// The registry record of a vserver just made.
fn record(
    request: &CreateRequest,
    skel: &Skel,
    context: u32,
    kind: Kind,
    root: &Path,
    post_create_pending: bool,
) -> Record {
    Record {
        name: request.name.clone(),
        skel: Some(skel.name.clone()),
        fqdn: Some(request.fqdn.clone()),
        ip: Some(request.ip.clone()),
        context: Some(context),
        kind,
        root: root.to_path_buf(),
        created: now_secs(),
        post_create_pending,
        creating: false,
        generation: None,
        tree_generation: None,
        detached: Vec::new(),
    }
}

fn now_secs() -> Option<u64> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Make a vserver's `/proc` mount point, with the skel's times (not the
/// time of creation: a tree and a synced view come out the same).
fn make_proc(proc: &Path, skel: &Skel) -> Result<()> {
    std::fs::create_dir(proc).map_err(|e| Error::io("make directory", proc, e))?;
    set_mode(proc, PROC_MODE)?;
    let global = skel.global();
    let meta = std::fs::metadata(&global).map_err(|e| Error::io("stat", &global, e))?;
    let mtime = filetime::FileTime::from_last_modification_time(&meta);
    filetime::set_file_times(proc, mtime, mtime).map_err(|e| Error::io("set times", proc, e))
}

/// The staging label of a vserver being created.
fn staging_label(name: &str) -> String {
    format!("vs-{name}")
}

/// The staging label of a view being created.
fn view_staging_label(name: &str) -> String {
    format!("view-{name}")
}

#[derive(Debug, Clone, Copy)]
enum LayerHow {
    Link,
    Copy,
    Render,
}

fn open_if_present(path: &Path) -> Result<Option<TreeRoot>> {
    if path.is_dir() {
        TreeRoot::open(path).map(Some)
    } else {
        Ok(None)
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

fn warn_unknown_tokens(report: &CopyReport, seen: &mut BTreeSet<String>) {
    for (token, files) in &report.unknown_tokens {
        let list: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        warn!(
            "unknown token %%{token}%% left as it is in {} (define it under [tokens] in the config)",
            list.join(", ")
        );
        seen.insert(token.clone());
    }
}

/// A file removed on drop unless kept.
struct RemoveOnDrop {
    path: PathBuf,
    kept: bool,
}

impl RemoveOnDrop {
    fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if !self.kept
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            warn!("could not remove {}: {e}", self.path.display());
        }
    }
}

/// Render the skel's config-file template into `<etc>/<name>.conf`, never
/// replacing an existing file.
fn write_config_file(skel: &Skel, to: &Path, tokens: &Tokens) -> Result<RemoveOnDrop> {
    let template_path = skel.configfile();
    let template = match std::fs::read(&template_path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::skel::build::BUILTIN_CONFIGFILE.as_bytes().to_vec()
        }
        Err(e) => return Err(Error::io("read", &template_path, e)),
    };
    let rendered = render(&template, tokens);
    for token in &rendered.unknown {
        warn!(
            "unknown token %%{token}%% left as it is in {}",
            template_path.display()
        );
    }
    let (dir, name) = split_parent(to)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("make directory", dir, e))?;
    // Under the vserver's lock: temporaries of an interrupted run can go.
    remove_leftovers(dir, &name.to_string_lossy());
    write_new(to, &rendered.bytes)?;
    Ok(RemoveOnDrop {
        path: to.to_path_buf(),
        kept: false,
    })
}
