//! `build-skel`: copy a source root into a new skel.
//!
//! The skel is built in a staging directory, its generation 1 recorded
//! there ([`crate::generation`]), and renamed into `<root>/.skel/<name>`
//! at the end, so it appears whole (with its generation) or not at all.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, warn};

use super::Skel;
use super::devnodes;
use super::policy::{BuildPolicy, TO_STATIC};
use crate::config::{Config, Protect};
use crate::error::{Error, Result};
use crate::layout::{Layout, SkelDirs};
use crate::progress::Progress;
use crate::staging::{Staging, make_private_dir};
use crate::tree::copy::{CopyCounts, CopyOptions, How, Target, copy_tree};
use crate::tree::meta::Meta;
use crate::tree::{TreeRoot, require_one_filesystem};
use crate::{generation, protect, sys};

/// Executable bits: a script without any is not run.
const ANY_EXEC: u32 = 0o111;

/// The tokenised `/etc/hosts` every skel gets in `static/`.
pub const HOSTS_TEMPLATE: &str = "\
# /etc/hosts of vserver %%VS_NAME%% (written by vskel; rendered per vserver)
127.0.0.1\tlocalhost
%%VS_IP%%\t%%VS_FQDN%%\t%%VS_NAME%%

# IPv6 hosts
::1\tlocalhost ip6-localhost ip6-loopback
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
";

/// The tokenised `/etc/hostname` every skel gets in `static/`.
pub const HOSTNAME_TEMPLATE: &str = "%%VS_NAME%%\n";

/// The vserver config-file template used when
/// `<defaults>/configfile.default` does not exist (Linux-VServer's legacy
/// shell format, as VSkel wrote it).
pub const BUILTIN_CONFIGFILE: &str = "\
# Linux-VServer configuration of %%VS_NAME%%, written by vskel from skel %%VS_SKEL%%.
ONBOOT=yes
S_CONTEXT=%%VS_CONTEXT%%
S_HOSTNAME=%%VS_FQDN%%
S_DOMAINNAME=
IPROOT=%%VS_IP%%
IPROOTDEV=eth0
S_NICE=
S_FLAGS=\"lock nproc\"
ULIMIT=\"-H -u 1000\"
S_CAPS=\"\"
VSERVER_ROOT=%%VS_ROOT%%
";

/// Modes of the empty top-level directories every skel's local/ has.
const EMPTY_TOP_DIRS: &[(&str, u32)] = &[
    ("home", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
    ("sys", 0o555),
    ("run", 0o755),
];

/// What `build-skel` made.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// The skel's name.
    pub skel: String,
    /// Where it is.
    #[serde(serialize_with = "crate::report_path::path")]
    pub path: PathBuf,
    /// What it was built from.
    #[serde(serialize_with = "crate::report_path::path")]
    pub from: PathBuf,
    /// What the copy did.
    pub counts: CopyCounts,
    /// Post-create scripts linked in.
    pub scripts: Vec<String>,
    /// Whether the config file came from the defaults dir or is built in.
    pub configfile: String,
    /// Global files protected.
    pub protected: u64,
    /// Device nodes left out (building without root).
    pub devices_left_out: usize,
    /// The skel's first generation, recorded before it was put in place.
    pub generation: u64,
}

/// Build the skel `name` from the root tree `from`.
pub fn build_skel(
    config: &Config,
    name: &str,
    from: &Path,
    progress: &Progress,
) -> Result<BuildReport> {
    let skel = Skel::named(config, name)?;
    if skel.dirs.dir.symlink_metadata().is_ok() {
        return Err(Error::Failed(format!(
            "a skel named \"{name}\" exists already ({}); remove it or choose another name",
            skel.dirs.dir.display()
        )));
    }
    match std::fs::metadata(from) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::Usage(format!(
                "cannot build a skel from {}: not a directory",
                from.display()
            )));
        }
        Err(e) => {
            return Err(Error::Usage(format!(
                "cannot build a skel from {}: {}",
                from.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    "it does not exist".to_string()
                } else {
                    e.to_string()
                }
            )));
        }
    }
    protect::check_supported(config.protect)?;

    let layout = Layout::new(config);
    let skels_dir = layout.skels();
    require_one_filesystem(&[&config.root, &skels_dir, &layout.state()])?;
    let source = TreeRoot::open(from)?;
    refuse_source_in_root(config, &source)?;
    make_private_dir(&skels_dir)?; // <root> too, if missing (barrier)
    let staging = Staging::create(config, &format!("skel-{name}"))?;
    let built = SkelDirs {
        dir: staging.path().to_path_buf(),
    };
    for dir in [
        built.global(),
        built.local(),
        built.static_dir(),
        built.post_create_dir(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("make directory", &dir, e))?;
    }
    let targets = [
        Target {
            tree: TreeRoot::open(&built.global())?,
            how: How::Copy,
        },
        Target {
            tree: TreeRoot::open(&built.local())?,
            how: How::Copy,
        },
        Target {
            tree: TreeRoot::open(&built.static_dir())?,
            how: How::Copy,
        },
    ];
    let policy = BuildPolicy {
        rules: &config.global,
        exclude: &config.exclude,
        source_dev: source.dev(),
        excluded_dirs: excluded_dirs(config, &source),
    };
    progress.start(&format!("building skel {name}"));
    let report = copy_tree(
        &source,
        &targets,
        &policy,
        CopyOptions {
            protect: Protect::None,
            progress,
        },
    )?;
    let [global, local, statics] = &targets;
    let kept_times = KeptTimes::record(&source, &targets)?;
    finish_local(local)?;
    let devices_left_out = make_dev(local)?;
    write_static_etc(statics)?;
    kept_times.restore()?;
    let scripts = link_scripts(config, &built.post_create_dir())?;
    let configfile = write_configfile(config, &built.configfile())?;
    let (protected, generation) =
        publish_new_skel(config, &skel, staging, &global.tree, "build-skel", progress)?;
    info!("skel {name} built in {}", skel.dirs.dir.display());
    warn_review(&skel);
    Ok(BuildReport {
        skel: name.to_string(),
        path: skel.dirs.dir,
        from: from.to_path_buf(),
        counts: report.counts,
        scripts,
        configfile,
        protected,
        devices_left_out,
        generation,
    })
}

/// Finish a new skel built in `staging` (`global` its global/): protect
/// its global files, record its first generation, make its lifecycle lock
/// file, and rename it into place as `skel`. Returns the files protected
/// and the generation.
pub(super) fn publish_new_skel(
    config: &Config,
    skel: &Skel,
    staging: Staging,
    global: &TreeRoot,
    made_by: &str,
    progress: &Progress,
) -> Result<(u64, u64)> {
    let built = SkelDirs {
        dir: staging.path().to_path_buf(),
    };
    let protected = protect::protect_tree(global, config.protect)?;
    progress.start(&format!("recording skel {}'s generation 1", skel.name));
    let generation =
        generation::record(&built, made_by, progress, generation::Store::of(config))?.generation;
    // The lifecycle lock file exists from the start: mounting or syncing a
    // view (which take it) never changes the skel's directory.
    let lock = built.lifecycle_lock();
    drop(sys::open_locked(&lock).map_err(|e| Error::io("make", &lock, e))?);
    staging.publish(&skel.dirs.dir)?;
    Ok((protected, generation))
}

/// The source's times of the directories that the build writes into after
/// the copy (the three roots, `static/etc`), restored at the end so the
/// skel's directories keep the source's mtimes.
struct KeptTimes<'a> {
    dirs: Vec<(&'a TreeRoot, &'static str, sys::Times)>,
}

impl<'a> KeptTimes<'a> {
    fn record(source: &TreeRoot, targets: &'a [Target; 3]) -> Result<Self> {
        let times_of = |rel: &str| -> Result<Option<sys::Times>> {
            match source.open_dir(Path::new(rel)) {
                Ok(fd) => {
                    let st = sys::fstat(fd.as_fd())
                        .map_err(|e| Error::io("stat", source.display(Path::new(rel)), e))?;
                    Ok(Some(Meta::from_stat(&st).times))
                }
                Err(_) => Ok(None),
            }
        };
        let mut dirs = Vec::new();
        if let Some(times) = times_of("")? {
            dirs.extend(targets.iter().map(|t| (&t.tree, "", times)));
        }
        if let Some(times) = times_of("etc")? {
            dirs.push((&targets[TO_STATIC].tree, "etc", times));
        }
        Ok(KeptTimes { dirs })
    }

    fn restore(self) -> Result<()> {
        for (tree, rel, times) in self.dirs {
            let fd = tree.open_dir(Path::new(rel))?;
            sys::futimens(fd.as_fd(), times)
                .map_err(|e| Error::io("set times", tree.display(Path::new(rel)), e))?;
        }
        Ok(())
    }
}

/// Refuse to build from the vservers root or a directory inside it: the
/// vservers' trees and views are theirs to write (hostile), and the skels
/// and vskel's state are no template. (A source that holds the root, such
/// as `/`, is fine: the root is left out of the copy, see
/// [`excluded_dirs`].)
fn refuse_source_in_root(config: &Config, source: &TreeRoot) -> Result<()> {
    let root = match TreeRoot::open(&config.root) {
        Ok(root) => root,
        Err(Error::Io { source: e, .. }) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(()); // nothing can be inside it
        }
        Err(e) => return Err(e),
    };
    if crate::tree::ancestry::is_within(source, &root)? {
        return Err(Error::Usage(format!(
            "cannot build a skel from {}: it is inside the vservers root {}, whose \
             vserver trees, views and skels are no source for a new skel (copy what \
             you need elsewhere and build from there)",
            source.path().display(),
            config.root.display()
        )));
    }
    Ok(())
}

/// The vservers root and the vserver config dir, when they exist: never
/// copied into a skel even when they sit inside the source.
fn excluded_dirs(config: &Config, source: &TreeRoot) -> HashSet<(u64, u64)> {
    [&config.root, &config.etc, &Layout::new(config).state()]
        .into_iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .filter(|m| m.dev() == source.dev())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// Make sure the empty top-level directories exist with their usual modes
/// (`tmp` is always 1777).
fn finish_local(local: &Target) -> Result<()> {
    for (name, mode) in EMPTY_TOP_DIRS {
        let path = local.tree.path().join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                if *name == "tmp" {
                    set_mode(&path, *mode)?;
                }
            }
            Ok(_) => {} // the source has something else there; keep it
            Err(_) => {
                std::fs::create_dir(&path).map_err(|e| Error::io("make directory", &path, e))?;
                set_mode(&path, *mode)?;
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("chmod", path, e))
}

/// `local/dev` with the minimal node set.
fn make_dev(local: &Target) -> Result<usize> {
    let path = local.tree.path().join("dev");
    std::fs::create_dir(&path).map_err(|e| Error::io("make directory", &path, e))?;
    set_mode(&path, 0o755)?;
    let dev = local.tree.open_dir(Path::new("dev"))?;
    devnodes::populate(dev.as_fd()).map_err(|e| Error::io("populate", &path, e))
}

/// The tokenised `etc/hosts` and `etc/hostname` in `static/`.
fn write_static_etc(statics: &Target) -> Result<()> {
    let etc = statics.tree.path().join("etc");
    if !etc.is_dir() {
        std::fs::create_dir(&etc).map_err(|e| Error::io("make directory", &etc, e))?;
        set_mode(&etc, 0o755)?;
    }
    for (name, text) in [("hosts", HOSTS_TEMPLATE), ("hostname", HOSTNAME_TEMPLATE)] {
        let path = etc.join(name);
        std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
        set_mode(&path, 0o644)?;
    }
    Ok(())
}

/// Link each executable file of `<defaults>/scripts/` into the skel.
fn link_scripts(config: &Config, into: &Path) -> Result<Vec<String>> {
    let dir = Layout::new(config).scripts();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read directory", &dir, e)),
    };
    let mut linked = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", &dir, e))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io("stat", &path, e))?;
        let name = entry.file_name();
        if !meta.is_file() || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if meta.permissions().mode() & ANY_EXEC == 0 {
            warn!(
                "{} is not executable; not linked into the skel",
                path.display()
            );
            continue;
        }
        let link = into.join(&name);
        symlink(&path, &link).map_err(|e| Error::io("symlink", &link, e))?;
        linked.push(name.to_string_lossy().into_owned());
    }
    linked.sort();
    Ok(linked)
}

/// Copy `<defaults>/configfile.default`, or write the built-in template.
pub(super) fn write_configfile(config: &Config, to: &Path) -> Result<String> {
    let default = Layout::new(config).configfile_default();
    let (text, origin) = match std::fs::read(&default) {
        Ok(text) => (text, default.display().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
            BUILTIN_CONFIGFILE.as_bytes().to_vec(),
            "built-in".to_string(),
        ),
        Err(e) => return Err(Error::io("read", &default, e)),
    };
    std::fs::write(to, text).map_err(|e| Error::io("write", to, e))?;
    Ok(origin)
}

/// The clear warning every build ends with.
fn warn_review(skel: &Skel) {
    warn!(
        "review the skel before creating vservers from it:\n  \
         {}/ is hard-linked into every vserver (shared, never changed per vserver),\n  \
         {}/ is copied into each vserver (host-specific files under etc/ and var/ came along: \
         ssh host keys, machine-id, logs; apt's package lists were left out, so run \
         `apt-get update` in a vserver before installing packages),\n  \
         {}/etc/{{passwd,shadow,group,gshadow}} are the source's accounts (remove the users \
         a vserver should not have) and etc/hosts, etc/hostname are rendered per vserver,\n  \
         {} is the vserver config-file template.",
        skel.global().display(),
        skel.local().display(),
        skel.static_dir().display(),
        skel.configfile().display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_use_only_known_tokens() {
        let tokens = crate::tokens::Tokens::for_vserver(
            "web1",
            "10.0.0.2",
            "web1.example.org",
            50,
            Path::new("/vservers/web1"),
            "base",
            &Default::default(),
        );
        for text in [HOSTS_TEMPLATE, HOSTNAME_TEMPLATE, BUILTIN_CONFIGFILE] {
            let out = crate::tokens::render(text.as_bytes(), &tokens);
            assert!(out.unknown.is_empty(), "{:?}", out.unknown);
            assert!(!String::from_utf8(out.bytes).unwrap().contains("%%"));
        }
    }

    #[test]
    fn hosts_names_the_vserver() {
        let mut tokens = crate::tokens::Tokens::new();
        tokens.insert("VS_NAME", "web1");
        tokens.insert("VS_IP", "10.0.0.2");
        tokens.insert("VS_FQDN", "web1.example.org");
        let out = crate::tokens::render(HOSTS_TEMPLATE.as_bytes(), &tokens);
        let text = String::from_utf8(out.bytes).unwrap();
        assert!(
            text.contains("10.0.0.2\tweb1.example.org\tweb1\n"),
            "{text}"
        );
    }
}
