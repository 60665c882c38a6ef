//! Where vskel keeps things on disk: every path of its layout, built here
//! and nowhere else.
//!
//! ```text
//! <root>/                         the vservers root (config `root`)
//!   NAME/                         a vserver's tree
//!   .skel/SKEL/                   a skel ([`SkelDirs`])
//!     global/ local/ static/        its three parts
//!     scripts/post-create-vs/       scripts run after create-vs
//!     configfile                    the vserver config-file template
//!     generations/                  its recorded generations ([`GenerationFiles`])
//!       N.record N.changes .lock
//!       N.tree/{global,local}       generation N's parts, kept for views on it
//!   .views/NAME/                  a view vserver's state ([`ViewDirs`])
//!     static/ upper/ work/ merged/  layers, scratch space, mount point
//!     mount.pid control.sock mount.log
//!   .vskel/                       vskel's private state
//!     staging/                      trees being built
//!     sync/NAME.{manifest,journal,lock}
//!     unlocked/                     records of lifted immutable flags
//!     vservers/NAME.toml            the registry's records
//! <etc>/                          vserver configuration (config `etc`)
//!   NAME.conf
//!   contexts/{nextid,.lock,ID}    context IDs ([`ContextFiles`])
//! <defaults>/                     vskel's defaults (config `defaults`)
//!   scripts/ configfile.default
//! ```
//!
//! A [`Layout`] is built from a [`Config`]; it only joins paths and never
//! touches the disk.

use std::path::{Path, PathBuf};

use crate::config::Config;

/// Where skels live, under the root.
pub const SKELS_DIR: &str = ".skel";
/// vskel's private state, under the root.
pub const STATE_DIR: &str = ".vskel";
/// Where views are kept, under the root.
pub const VIEWS_DIR: &str = ".views";
/// vskel's directories directly in the root (closed by the barrier).
pub const PRIVATE_DIRS: [&str; 3] = [SKELS_DIR, STATE_DIR, VIEWS_DIR];

/// Trees being built, under the state directory.
const STAGING_DIR: &str = "staging";
/// Sync state, under the state directory.
const SYNC_DIR: &str = "sync";
/// Records of lifted immutable flags, under the state directory.
const UNLOCKED_DIR: &str = "unlocked";
/// The registry's records, under the state directory.
const RECORDS_DIR: &str = "vservers";
/// Extension of a registry record.
const RECORD_EXT: &str = "toml";

/// Extension of a vserver's configuration file under `etc`.
const VSERVER_CONF_EXT: &str = "conf";
/// Directory of context allocations, under `etc`.
const CONTEXTS_DIR: &str = "contexts";
/// File holding the next context ID to try, in the contexts directory.
pub const NEXTID: &str = "nextid";
/// Lock file serialising context allocations, in the contexts directory.
const CONTEXTS_LOCK: &str = ".lock";

/// Directory of scripts, under `defaults`.
const SCRIPTS_DIR: &str = "scripts";
/// The default vserver configuration file, under `defaults`.
const CONFIGFILE_DEFAULT: &str = "configfile.default";

/// A skel's shared files (hard-linked into every vserver).
pub const GLOBAL: &str = "global";
/// A skel's copied files.
pub const LOCAL: &str = "local";
/// A skel's files copied with tokens replaced; also a view's rendered copy.
pub const STATIC: &str = "static";
/// Where post-create scripts live inside a skel.
pub const POST_CREATE_DIR: &str = "scripts/post-create-vs";
/// The vserver config-file template inside a skel.
pub const CONFIGFILE: &str = "configfile";
/// Where a skel's generations are recorded, inside the skel.
const GENERATIONS_DIR: &str = "generations";
/// Extension of a generation's full record.
pub const GENERATION_RECORD_EXT: &str = "record";
/// Extension of a generation's changes against the one before.
pub const GENERATION_CHANGES_EXT: &str = "changes";
/// Extension of a generation's kept global/ and local/ trees.
pub const GENERATION_TREE_EXT: &str = "tree";
/// Lock file serialising the recording of a skel's generations.
const GENERATIONS_LOCK: &str = ".lock";
/// A merged skel's snapshot of global/ (`merge-skel`).
const GLOBAL_BAK: &str = "global.bak";
/// A merged skel's snapshot of local/ (`merge-skel`).
const LOCAL_BAK: &str = "local.bak";
/// Marks a skel as merged into its temporary vserver.
const MERGED_MARKER: &str = "merged";
/// The lock of `merge-skel` and `split-skel`.
const LIFECYCLE_LOCK: &str = "lifecycle.lock";
/// Where `split-skel` builds the new parts.
const SPLIT_DIR: &str = "split.new";
/// The prefix of a skel's temporary vserver: `tmp_skel_SKEL` (VSkel's name).
pub const TEMP_VSERVER_PREFIX: &str = "tmp_skel_";

/// A view's writable layer.
pub const UPPER: &str = "upper";
/// A view's scratch space, on the upper's filesystem.
pub const WORK: &str = "work";
/// A view's default mount point.
pub const MERGED: &str = "merged";
/// The pid file of a view's server.
pub const PID_FILE: &str = "mount.pid";
/// The output of a view's background server.
pub const LOG_FILE: &str = "mount.log";
/// A view's control socket.
pub const CONTROL_SOCKET: &str = "control.sock";

/// Every path of vskel's layout under one configuration's directories.
#[derive(Debug, Clone, Copy)]
pub struct Layout<'a> {
    root: &'a Path,
    etc: &'a Path,
    defaults: &'a Path,
}

impl<'a> Layout<'a> {
    /// The layout of `config`'s `root`, `etc` and `defaults`.
    pub fn new(config: &'a Config) -> Self {
        Layout {
            root: &config.root,
            etc: &config.etc,
            defaults: &config.defaults,
        }
    }

    /// The vservers root.
    pub fn root(&self) -> &'a Path {
        self.root
    }

    /// One vserver's tree: `<root>/NAME`.
    pub fn vserver(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where skels live: `<root>/.skel`.
    pub fn skels(&self) -> PathBuf {
        self.root.join(SKELS_DIR)
    }

    /// One skel's directories: `<root>/.skel/SKEL`.
    pub fn skel(&self, name: &str) -> SkelDirs {
        SkelDirs {
            dir: self.skels().join(name),
        }
    }

    /// Where views are kept: `<root>/.views`.
    pub fn views(&self) -> PathBuf {
        self.root.join(VIEWS_DIR)
    }

    /// One view's directories: `<root>/.views/NAME`.
    pub fn view(&self, name: &str) -> ViewDirs {
        ViewDirs {
            dir: self.views().join(name),
        }
    }

    /// The name of skel `skel`'s temporary vserver: `tmp_skel_SKEL`.
    pub fn temp_vserver_name(skel: &str) -> String {
        format!("{TEMP_VSERVER_PREFIX}{skel}")
    }

    /// vskel's private state: `<root>/.vskel`.
    pub fn state(&self) -> PathBuf {
        self.root.join(STATE_DIR)
    }

    /// Where trees are built before they are published: `<root>/.vskel/staging`.
    pub fn staging(&self) -> PathBuf {
        self.state().join(STAGING_DIR)
    }

    /// The sync state of vserver `name`: `<root>/.vskel/sync/NAME.*`.
    pub fn sync_files(&self, name: &str) -> SyncFiles {
        SyncFiles {
            dir: self.state().join(SYNC_DIR),
            name: name.to_owned(),
        }
    }

    /// Records of lifted immutable flags: `<root>/.vskel/unlocked`.
    pub fn unlocked(&self) -> PathBuf {
        self.state().join(UNLOCKED_DIR)
    }

    /// The registry's records: `<root>/.vskel/vservers`.
    pub fn records(&self) -> PathBuf {
        self.state().join(RECORDS_DIR)
    }

    /// The record of vserver `name`: `<root>/.vskel/vservers/NAME.toml`.
    pub fn record(&self, name: &str) -> PathBuf {
        self.records().join(Self::record_file(name))
    }

    /// The file name of vserver `name`'s record: `NAME.toml`.
    pub fn record_file(name: &str) -> String {
        format!("{name}.{RECORD_EXT}")
    }

    /// The vserver a record's file name (`NAME.toml`) is of.
    pub fn record_name(file: &str) -> Option<&str> {
        file.strip_suffix(RECORD_EXT)?.strip_suffix('.')
    }

    /// One vserver's configuration file: `<etc>/NAME.conf`.
    pub fn vserver_conf(&self, name: &str) -> PathBuf {
        self.etc.join(format!("{name}.{VSERVER_CONF_EXT}"))
    }

    /// Context allocations: `<etc>/contexts`.
    pub fn contexts(&self) -> PathBuf {
        self.etc.join(CONTEXTS_DIR)
    }

    /// Scripts: `<defaults>/scripts`.
    pub fn scripts(&self) -> PathBuf {
        self.defaults.join(SCRIPTS_DIR)
    }

    /// The default vserver configuration: `<defaults>/configfile.default`.
    pub fn configfile_default(&self) -> PathBuf {
        self.defaults.join(CONFIGFILE_DEFAULT)
    }
}

/// The paths of one skel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkelDirs {
    /// `<root>/.skel/SKEL`.
    pub dir: PathBuf,
}

impl SkelDirs {
    /// `global/`.
    pub fn global(&self) -> PathBuf {
        self.dir.join(GLOBAL)
    }

    /// `local/`.
    pub fn local(&self) -> PathBuf {
        self.dir.join(LOCAL)
    }

    /// `static/`.
    pub fn static_dir(&self) -> PathBuf {
        self.dir.join(STATIC)
    }

    /// `scripts/post-create-vs/`.
    pub fn post_create_dir(&self) -> PathBuf {
        self.dir.join(POST_CREATE_DIR)
    }

    /// `configfile`.
    pub fn configfile(&self) -> PathBuf {
        self.dir.join(CONFIGFILE)
    }

    /// `global.bak/`: global/ as it was at the last `merge-skel`.
    pub fn global_bak(&self) -> PathBuf {
        self.dir.join(GLOBAL_BAK)
    }

    /// `local.bak/`: local/ as it was at the last `merge-skel`.
    pub fn local_bak(&self) -> PathBuf {
        self.dir.join(LOCAL_BAK)
    }

    /// `merged`: present while the skel is merged into its temporary
    /// vserver (`merge-skel` wrote it, `split-skel` removes it).
    pub fn merged_marker(&self) -> PathBuf {
        self.dir.join(MERGED_MARKER)
    }

    /// `lifecycle.lock`: held by `merge-skel` and `split-skel`.
    pub fn lifecycle_lock(&self) -> PathBuf {
        self.dir.join(LIFECYCLE_LOCK)
    }

    /// `split.new/`: where `split-skel` builds the new global/ and local/
    /// (and its journal, `split.new/COMMIT`) before swapping them in.
    pub fn split_dir(&self) -> PathBuf {
        self.dir.join(SPLIT_DIR)
    }

    /// `generations/`: the skel's recorded generations.
    pub fn generations(&self) -> GenerationFiles {
        GenerationFiles {
            dir: self.dir.join(GENERATIONS_DIR),
        }
    }
}

/// The files of one skel's generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationFiles {
    /// `<root>/.skel/SKEL/generations`.
    pub dir: PathBuf,
}

impl GenerationFiles {
    /// `N.record`: generation `n`'s full record.
    pub fn record(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n}.{GENERATION_RECORD_EXT}"))
    }

    /// `N.changes`: generation `n`'s changes against `n - 1`.
    pub fn changes(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n}.{GENERATION_CHANGES_EXT}"))
    }

    /// `.lock`: held while a generation is recorded.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(GENERATIONS_LOCK)
    }

    /// `N.tree/`: generation `n`'s global/ and local/ as they were, kept
    /// when `split-skel` replaced them (hard links, so only directories
    /// cost space) for the views still on it.
    pub fn tree(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{n}.{GENERATION_TREE_EXT}"))
    }

    /// The generation number a kept tree's name `N.tree` is of.
    pub fn tree_number(file: &str) -> Option<u64> {
        canonical_number(file.strip_suffix(GENERATION_TREE_EXT)?.strip_suffix('.')?)
    }

    /// The generation number a file name `N.record` is of.
    pub fn record_number(file: &str) -> Option<u64> {
        canonical_number(
            file.strip_suffix(GENERATION_RECORD_EXT)?
                .strip_suffix('.')?,
        )
    }
}

/// `n` as a number if it is written canonically: decimal digits, no
/// sign, no leading zero.
fn canonical_number(n: &str) -> Option<u64> {
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) || !n.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    n.parse().ok()
}

/// The paths of one view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewDirs {
    /// `<root>/.views/NAME`.
    pub dir: PathBuf,
}

impl ViewDirs {
    /// The view directory of vserver `name` (not checked).
    pub fn new(config: &Config, name: &str) -> Self {
        Layout::new(config).view(name)
    }

    /// `static/`.
    pub fn static_dir(&self) -> PathBuf {
        self.dir.join(STATIC)
    }

    /// `upper/`.
    pub fn upper(&self) -> PathBuf {
        self.dir.join(UPPER)
    }

    /// `work/`.
    pub fn work(&self) -> PathBuf {
        self.dir.join(WORK)
    }

    /// `merged/`, the default mount point.
    pub fn merged(&self) -> PathBuf {
        self.dir.join(MERGED)
    }

    /// `mount.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join(PID_FILE)
    }

    /// `control.sock`, served while the view is mounted.
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join(CONTROL_SOCKET)
    }

    /// `mount.log`.
    pub fn log_file(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }
}

/// The sync state files of one vserver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFiles {
    /// `<root>/.vskel/sync`.
    pub dir: PathBuf,
    /// The vserver's name.
    pub name: String,
}

impl SyncFiles {
    fn file(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{}.{ext}", self.name))
    }

    /// `NAME.manifest`.
    pub fn manifest(&self) -> PathBuf {
        self.file("manifest")
    }

    /// `NAME.journal`.
    pub fn journal(&self) -> PathBuf {
        self.file("journal")
    }

    /// `NAME.lock`.
    pub fn lock(&self) -> PathBuf {
        self.file("lock")
    }
}

/// The files of a context-ID directory (`<etc>/contexts`, or any other
/// given one).
#[derive(Debug, Clone, Copy)]
pub struct ContextFiles<'a> {
    /// The directory.
    pub dir: &'a Path,
}

impl<'a> ContextFiles<'a> {
    /// The files of `dir`.
    pub fn new(dir: &'a Path) -> Self {
        ContextFiles { dir }
    }

    /// `nextid`, the next ID to try.
    pub fn nextid(&self) -> PathBuf {
        self.dir.join(NEXTID)
    }

    /// `.lock`, held while allocating.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(CONTEXTS_LOCK)
    }

    /// `ID`, the symlink that marks `id` taken.
    pub fn link(&self, id: u32) -> PathBuf {
        self.dir.join(id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path() {
        let config = Config {
            root: PathBuf::from("/vs"),
            ..Config::default()
        };
        let l = Layout::new(&config);
        let skel = l.skel("deb");
        let view = l.view("web1");
        let sync = l.sync_files("web1");
        let contexts = l.contexts();
        let ctx = ContextFiles::new(&contexts);
        let cases: &[(PathBuf, &str)] = &[
            (l.root().to_path_buf(), "/vs"),
            (l.vserver("web1"), "/vs/web1"),
            (l.skels(), "/vs/.skel"),
            (skel.dir.clone(), "/vs/.skel/deb"),
            (skel.global(), "/vs/.skel/deb/global"),
            (skel.local(), "/vs/.skel/deb/local"),
            (skel.static_dir(), "/vs/.skel/deb/static"),
            (
                skel.post_create_dir(),
                "/vs/.skel/deb/scripts/post-create-vs",
            ),
            (skel.configfile(), "/vs/.skel/deb/configfile"),
            (skel.generations().dir, "/vs/.skel/deb/generations"),
            (
                skel.generations().record(2),
                "/vs/.skel/deb/generations/2.record",
            ),
            (
                skel.generations().changes(2),
                "/vs/.skel/deb/generations/2.changes",
            ),
            (skel.generations().lock(), "/vs/.skel/deb/generations/.lock"),
            (l.views(), "/vs/.views"),
            (view.dir.clone(), "/vs/.views/web1"),
            (view.static_dir(), "/vs/.views/web1/static"),
            (view.upper(), "/vs/.views/web1/upper"),
            (view.work(), "/vs/.views/web1/work"),
            (view.merged(), "/vs/.views/web1/merged"),
            (view.pid_file(), "/vs/.views/web1/mount.pid"),
            (view.control_socket(), "/vs/.views/web1/control.sock"),
            (view.log_file(), "/vs/.views/web1/mount.log"),
            (l.state(), "/vs/.vskel"),
            (l.staging(), "/vs/.vskel/staging"),
            (sync.manifest(), "/vs/.vskel/sync/web1.manifest"),
            (sync.journal(), "/vs/.vskel/sync/web1.journal"),
            (sync.lock(), "/vs/.vskel/sync/web1.lock"),
            (l.unlocked(), "/vs/.vskel/unlocked"),
            (l.records(), "/vs/.vskel/vservers"),
            (l.record("web1"), "/vs/.vskel/vservers/web1.toml"),
            (l.vserver_conf("web1"), "/etc/vservers/web1.conf"),
            (contexts.clone(), "/etc/vservers/contexts"),
            (ctx.nextid(), "/etc/vservers/contexts/nextid"),
            (ctx.lock(), "/etc/vservers/contexts/.lock"),
            (ctx.link(50), "/etc/vservers/contexts/50"),
            (l.scripts(), "/etc/vskel/scripts"),
            (l.configfile_default(), "/etc/vskel/configfile.default"),
            (ViewDirs::new(&config, "web1").dir, "/vs/.views/web1"),
        ];
        for (got, want) in cases {
            assert_eq!(got, Path::new(want));
        }
        assert_eq!(Layout::record_file("web1"), "web1.toml");
        assert_eq!(Layout::record_name("web1.toml"), Some("web1"));
        assert_eq!(Layout::record_name("web1.conf"), None);
        assert_eq!(Layout::record_name("toml"), None);
        assert_eq!(GenerationFiles::record_number("12.record"), Some(12));
        for bad in [
            "012.record",
            "+1.record",
            ".record",
            "1.changes",
            "x.record",
        ] {
            assert_eq!(GenerationFiles::record_number(bad), None, "{bad}");
        }
        let private: Vec<_> = PRIVATE_DIRS.iter().map(|d| l.root().join(d)).collect();
        assert_eq!(private, [l.skels(), l.state(), l.views()]);
    }
}
