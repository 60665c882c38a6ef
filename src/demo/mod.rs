//! `vskel demo`: the whole loop on the built-in example tree, in a
//! directory of its own, printed section by section as text: build a skel
//! ([`crate::example`]), create a tree vserver and change a file in it and
//! `diff` it, create a view, mount it, change files in it, `diff`, `sync`
//! (the tree's hard links to the skel), `materialize`, then clean up.
//!
//! It calls the same op functions the commands call, with its own
//! configuration: every place inside its directory, `protect = "none"`
//! (shared files are not made immutable, so the directory can simply be
//! removed; the output says so). The view is mounted in the background,
//! as `vskel mount` does: this binary started again with `--config` naming
//! the demo's file. Where FUSE is not available (not root, no
//! `/dev/fuse`, the mount fails) it says so and goes on without the
//! mount.
//!
//! The directory is removed at the end, and on an error or Ctrl-C
//! ([`interrupt`]) too, after the view is unmounted ([`workdir`]); with
//! `--keep DIR` it is kept.

pub mod interrupt;
pub mod show;
pub mod workdir;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::ViewDirs;
use crate::mount::How;
use crate::progress::Progress;
use crate::skel::build::{BuildReport, build_skel};
use crate::validate::Loopback;
use crate::vserver::create::{CreateRequest, Created, create_view_vs, create_vs};
use crate::vserver::diff::{Change, Diffed, diff};
use crate::vserver::registry::Kind;
use interrupt::Interrupt;
use show::{count_entries, ls_line, sharing};
use workdir::Workdir;

/// The demo's skel.
const SKEL: &str = "demo";
/// The tree vserver.
const TREE_VS: &str = "web1";
/// The view vserver.
const VIEW_VS: &str = "web2";
/// What the demo writes into the view's `/etc/motd`.
const VIEW_MOTD: &str = "Welcome to web2: this line was written in its view.\n";
/// What the demo writes into the tree's `/etc/motd`.
const TREE_MOTD: &str = "Welcome to web1: this line was written in its tree.\n";
/// A file the demo adds in the view.
const VIEW_ADDED: &str = "srv/www/index.html";
/// A file of the skel's global part the demo removes in the view.
const VIEW_REMOVED: &str = "usr/bin/ping";
/// Global files shown with their inodes, to show the sharing.
const SHOWN_GLOBAL: &[&str] = &["bin/hello", "bin/hello-again", "lib/libdemo.so.1"];
/// Hard links of the synced tree listed by name.
const LINKS_LISTED: usize = 4;

/// Where the demo runs and how.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Run in this directory (missing or empty) and keep it.
    pub keep: Option<PathBuf>,
}

/// Run the demo, printing to `out`.
pub fn run(options: &Options, out: &mut dyn Write) -> Result<()> {
    let interrupt = Interrupt::catch()?;
    let dir = Workdir::make(options.keep.as_deref())?;
    let mut p = Printer { out };
    p.line(format!(
        "vskel demo: the whole loop in {}",
        dir.path.display()
    ))?;
    p.line(format!("configuration {}:", dir.config_file.display()))?;
    p.text(&dir.config_text)?;
    p.line(
        "(protect = \"none\": a demo leaves the shared files writable so that its directory \
         can simply be removed; a host's default makes them immutable)",
    )?;
    let config = dir.config.clone();
    crate::barrier::enforce(&config)?;
    let _unlock = crate::protect::begin(&config);
    let progress = Progress::hidden();

    p.section("1. build-skel: a skel from the built-in example tree")?;
    let source = dir.path.join("example-root");
    crate::example::make_example_root(&source).map_err(|e| Error::io("write", &source, e))?;
    let built = build_skel(&config, SKEL, &source, &progress)?;
    show_skel(&mut p, &built)?;
    interrupt.check()?;

    p.section(&format!("2. create-vs: {TREE_VS}, a tree vserver"))?;
    let tree = create_vs(&config, &request(TREE_VS, "192.0.2.10"), &progress)?;
    show_created(&mut p, &tree)?;
    show_global(&mut p, &tree.root, &built.path, "the tree")?;
    interrupt.check()?;

    p.section(&format!("3. diff {TREE_VS}: a file changed in the tree"))?;
    write(&tree.root.join("etc/motd"), TREE_MOTD)?;
    p.line(format!("wrote /etc/motd in {}", tree.root.display()))?;
    show_diff(&mut p, &diff(&config, TREE_VS)?)?;
    interrupt.check()?;

    p.section(&format!("4. create-vs --view: {VIEW_VS}, a view vserver"))?;
    let view = create_view_vs(&config, &request(VIEW_VS, "192.0.2.11"), &progress)?;
    show_created(&mut p, &view)?;
    let dirs = ViewDirs::new(&config, VIEW_VS);
    p.line(format!(
        "its layers: {} (writable, empty), {} (the skel's static/ rendered), the skel's \
         local/ and global/ (read-only)",
        dirs.upper().display(),
        dirs.static_dir().display()
    ))?;
    interrupt.check()?;

    p.section(&format!("5. mount {VIEW_VS}"))?;
    let mountpoint = match mount(&dir) {
        Ok(mounted) => {
            p.line(format!(
                "mounted view {VIEW_VS} at {} (fuse.vskel from {}), served by pid {} \
                 in the background, log {}",
                mounted.mountpoint.display(),
                mounted.fsname,
                mounted.pid,
                dirs.log_file().display()
            ))?;
            Some(mounted.mountpoint)
        }
        Err(why) => {
            p.line(format!(
                "FUSE is not available here ({why}): the view is not mounted, so the demo \
                 skips changing files in it; diff, sync and materialize still run"
            ))?;
            None
        }
    };
    interrupt.check()?;

    p.section(&format!("6. change files in the mounted view {VIEW_VS}"))?;
    match &mountpoint {
        Some(mp) => change_view(&mut p, mp, &dirs, &built)?,
        None => p.line("skipped: the view is not mounted")?,
    }
    interrupt.check()?;

    p.section(&format!(
        "7. diff {VIEW_VS}: what the view changed against its skel"
    ))?;
    show_diff(&mut p, &diff(&config, VIEW_VS)?)?;
    interrupt.check()?;

    p.section(&format!("8. sync {VIEW_VS}: the view written into a tree"))?;
    let synced = crate::vserver::sync::sync_view(&config, VIEW_VS, false, &progress)?;
    p.line(synced.to_string())?;
    show_links(&mut p, &synced.tree.root, &built.path)?;
    show_synced_changes(&mut p, &synced.tree.root, mountpoint.is_some())?;
    interrupt.check()?;

    p.section(&format!(
        "9. materialize {VIEW_VS}: the view becomes a tree"
    ))?;
    let done = crate::vserver::materialize::materialize(&config, VIEW_VS, &progress)?;
    p.line(done.to_string())?;
    let record = crate::vserver::registry::load(&config, VIEW_VS)?;
    p.line(format!(
        "{VIEW_VS} is now recorded as a {}; {} exists: {}",
        record.map_or_else(|| "nothing".to_string(), |r| kind_name(r.kind).to_string()),
        dirs.dir.display(),
        dirs.dir.symlink_metadata().is_ok()
    ))?;
    show_links(&mut p, &done.root, &built.path)?;
    interrupt.check()?;

    p.section("10. cleanup")?;
    let kept = dir.kept();
    for line in dir.finish()? {
        p.line(line)?;
    }
    if kept {
        p.line("(everything made is there; `VSKEL_CONFIG=DIR/vskel.toml vskel list` shows it)")?;
    }
    Ok(())
}

/// A create request for the demo's skel.
fn request(name: &str, ip: &str) -> CreateRequest {
    CreateRequest {
        skel: SKEL.into(),
        name: name.into(),
        fqdn: format!("{name}.example.org"),
        ip: ip.into(),
        loopback: Loopback::Refuse,
        shared_ip: false,
    }
}

/// Mount the view in the background (this binary started again, with the
/// demo's configuration); the reason when FUSE is not available.
fn mount(dir: &Workdir) -> std::result::Result<crate::vserver::mount::Mounted, String> {
    if !crate::sys::is_root() {
        return Err("vskel does not run as root".to_string());
    }
    if let Err(e) = fs::metadata("/dev/fuse") {
        return Err(format!("/dev/fuse: {e}"));
    }
    let how = How::Background {
        global_args: vec!["--config".into(), dir.config_file.clone().into()],
    };
    let mounted = crate::vserver::mount::mount_view(&dir.config, VIEW_VS, None, how)
        .map_err(|e| format!("mounting failed: {e}"))?;
    Ok(mounted)
}

/// Change, add and remove a file through the mount; show where the
/// changes went (the upper layer) and that the skel is as it was.
fn change_view(p: &mut Printer<'_>, mp: &Path, dirs: &ViewDirs, built: &BuildReport) -> Result<()> {
    write(&mp.join("etc/motd"), VIEW_MOTD)?;
    p.line("wrote /etc/motd (the skel's local/ file is copied up first)")?;
    let added = mp.join(VIEW_ADDED);
    if let Some(parent) = added.parent() {
        fs::create_dir_all(parent).map_err(|e| Error::io("make", parent, e))?;
    }
    write(&added, "<h1>web2</h1>\n")?;
    p.line(format!("added /{VIEW_ADDED}"))?;
    let removed = mp.join(VIEW_REMOVED);
    fs::remove_file(&removed).map_err(|e| Error::io("remove", &removed, e))?;
    p.line(format!(
        "removed /{VIEW_REMOVED} (a global file: the view records a whiteout)"
    ))?;
    p.line("the view and its upper layer:")?;
    p.ls(&mp.join("etc/motd"), "/etc/motd (in the view)")?;
    p.ls(&dirs.upper().join("etc/motd"), "upper/etc/motd")?;
    p.ls(
        &dirs.upper().join(VIEW_REMOVED),
        &format!("upper/{VIEW_REMOVED} (the whiteout)"),
    )?;
    let skel_motd = built.path.join("local/etc/motd");
    p.line(format!(
        "the skel's local/etc/motd still says: {}",
        read(&skel_motd)?.trim_end()
    ))
}

/// The skel just built: where, its counts and parts.
fn show_skel(p: &mut Printer<'_>, built: &BuildReport) -> Result<()> {
    let c = &built.counts;
    p.line(format!(
        "built skel {} at {} from {}: {} entries copied ({} bytes), {} directories, \
         generation {}",
        built.skel,
        built.path.display(),
        built.from.display(),
        c.copied,
        c.bytes,
        c.dirs,
        built.generation
    ))?;
    p.line(
        "its parts: global/ (hard-linked into every vserver), local/ (copied), static/ (rendered):",
    )?;
    for part in ["global", "local", "static"] {
        let dir = built.path.join(part);
        let entries = count_entries(&dir).map_err(|e| Error::io("walk", &dir, e))?;
        p.line(format!("  {part}/: {entries} entries besides directories"))?;
    }
    Ok(())
}

/// A vserver just created.
fn show_created(p: &mut Printer<'_>, created: &Created) -> Result<()> {
    p.line(format!(
        "created {} vserver {} at {} (context {}, config file {}): {} linked to the skel, \
         {} copied, {} rendered",
        kind_name(created.kind),
        created.name,
        created.root.display(),
        created.context,
        created.config_file.display(),
        created.counts.linked,
        created.counts.copied,
        created.counts.rendered
    ))?;
    let hosts = created.root.join("etc/hosts");
    if hosts.exists() {
        p.line("its /etc/hosts, rendered from the skel's static/etc/hosts:")?;
        for line in read(&hosts)?.lines() {
            p.line(format!("  | {line}"))?;
        }
    }
    Ok(())
}

/// Global files of a vserver beside the skel's: the same inode.
fn show_global(p: &mut Printer<'_>, vs: &Path, skel: &Path, what: &str) -> Result<()> {
    p.line(format!(
        "the skel's global files and {what}'s (same inode, link count counts every vserver):"
    ))?;
    for rel in SHOWN_GLOBAL {
        p.ls(
            &skel.join("global").join(rel),
            &format!("skel global/{rel}"),
        )?;
        p.ls(&vs.join(rel), &format!("{what} /{rel}"))?;
    }
    Ok(())
}

/// A diff's lines and summary, as `vskel diff` prints them.
fn show_diff(p: &mut Printer<'_>, d: &Diffed) -> Result<()> {
    for change in d.changes.iter().flatten() {
        p.line(format!("  {}", diff_line(change)))?;
    }
    let s = &d.summary;
    p.line(format!(
        "{}: {} added, {} modified, {} removed against skel {}{}",
        d.name,
        s.added,
        s.modified,
        s.removed,
        d.skel,
        d.generation
            .map(|g| format!(" generation {g}"))
            .unwrap_or_default()
    ))
}

/// One changed path: letter, path, size, what changed.
fn diff_line(c: &Change) -> String {
    let size = c.size.map_or_else(|| "-".to_string(), |s| s.to_string());
    let what = match (c.content, c.metadata) {
        (true, true) => "  (content, metadata)",
        (true, false) => "  (content)",
        (false, true) => "  (metadata)",
        (false, false) => "",
    };
    format!("{} {}  {size}{what}", c.status.letter(), c.path)
}

/// How many of a tree's entries are hard links to the skel's global
/// inodes, with a few of them.
fn show_links(p: &mut Printer<'_>, tree: &Path, skel: &Path) -> Result<()> {
    let global = skel.join("global");
    let found = sharing(tree, &global).map_err(|e| Error::io("walk", tree, e))?;
    p.line(format!(
        "{}: {} of its {} entries besides directories are hard links to the skel's global \
         inodes, e.g.:",
        tree.display(),
        found.linked,
        found.entries
    ))?;
    for rel in found.linked_paths.iter().take(LINKS_LISTED) {
        let shown = format!("/{}", rel.display());
        p.ls(&tree.join(rel), &shown)?;
    }
    Ok(())
}

/// What the view's changes became in the synced tree.
fn show_synced_changes(p: &mut Printer<'_>, tree: &Path, changed: bool) -> Result<()> {
    if !changed {
        return Ok(());
    }
    p.line(format!(
        "in the tree: /etc/motd says: {}",
        read(&tree.join("etc/motd"))?.trim_end()
    ))?;
    p.ls(&tree.join(VIEW_ADDED), &format!("/{VIEW_ADDED}"))?;
    let gone = tree.join(VIEW_REMOVED).symlink_metadata().is_err();
    p.line(format!("/{VIEW_REMOVED} is absent: {gone}"))
}

/// A vserver's kind as `vskel list` names it.
fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Tree => "tree",
        Kind::View => "view",
        Kind::Unregistered => "unregistered",
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).map_err(|e| Error::io("write", path, e))
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// The demo's output: sections and lines.
struct Printer<'a> {
    out: &'a mut dyn Write,
}

impl Printer<'_> {
    fn line(&mut self, text: impl AsRef<str>) -> Result<()> {
        writeln!(self.out, "{}", text.as_ref()).map_err(|e| Error::io("write", "stdout", e))
    }

    fn text(&mut self, text: &str) -> Result<()> {
        write!(self.out, "{text}").map_err(|e| Error::io("write", "stdout", e))
    }

    fn section(&mut self, title: &str) -> Result<()> {
        self.line(format!("\n== {title}"))
    }

    fn ls(&mut self, path: &Path, shown: &str) -> Result<()> {
        let line = ls_line(path, shown).map_err(|e| Error::io("look at", path, e))?;
        self.line(format!("  {line}"))
    }
}
