//! vskel's configuration: a TOML file plus drop-ins.
//!
//! The main file is `/etc/vskel/vskel.toml` unless the caller names another
//! one (from `--config` or [`CONFIG_ENV`]). Drop-ins `conf.d/*.toml` in the
//! main file's directory are applied after it, in file-name order; each key
//! in a later file overrides the earlier value, except that the `tokens`
//! table merges per key. Every error names the file, and where it can the
//! line and the key.
//!
//! This module only loads: what the rules in `global` and `exclude` select
//! is [`rules`]'s business, and the paths below `root`, `etc` and
//! `defaults` are the layout module's.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub mod rules;

pub use rules::GlobalRules;
use rules::Rule;

use crate::validate::{
    CONTEXT_MAX, CONTEXT_MIN, validate_context, validate_root, validate_token_key,
};

/// Where the main configuration file is when nobody says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/vskel/vskel.toml";
/// Environment variable that overrides the config path.
pub const CONFIG_ENV: &str = "VSKEL_CONFIG";

/// Default for [`Config::root`].
pub const DEFAULT_ROOT: &str = "/vservers";
/// Default for [`Config::etc`].
pub const DEFAULT_ETC: &str = "/etc/vservers";
/// Default for [`Config::defaults`].
pub const DEFAULT_DEFAULTS: &str = "/etc/vskel";
/// Default for [`Config::context_start`].
pub const DEFAULT_CONTEXT_START: u32 = 50;

/// Directory of drop-ins, beside the main file.
const DROPIN_DIR: &str = "conf.d";
/// Extension a drop-in must have.
const DROPIN_EXT: &str = "toml";
/// Token keys starting with this are vskel's own.
const RESERVED_TOKEN_PREFIX: &str = "VS_";

/// Keys allowed at the top level of a configuration file.
const KEYS: &[&str] = &[
    "root",
    "etc",
    "defaults",
    "context_start",
    "protect",
    "global",
    "exclude",
    "tokens",
    "content_store",
    "daemon",
];

/// The keys of the `[daemon]` table.
const DAEMON_KEYS: &[&str] = &["socket", "views"];

/// The default control socket of `vskel daemon`.
pub const DEFAULT_DAEMON_SOCKET: &str = "/run/vskel/vskel.sock";

/// Present on a Linux-VServer kernel (which has the immutable-unlink
/// attribute).
pub const VSERVER_PROC: &str = "/proc/virtual";

/// How files hard-linked from a skel into vservers are protected.
///
/// The default is the safe one for the running kernel
/// ([`Protect::host_default`]): no vserver's root can change a file that
/// other vservers or the skel share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protect {
    /// No protection: every vserver's root can change every shared file.
    None,
    /// Set the immutable attribute.
    Immutable,
    /// Set the immutable-unlink (copy-on-write) attribute.
    Iunlink,
}

impl Default for Protect {
    fn default() -> Self {
        Protect::host_default()
    }
}

impl Protect {
    /// Is a global non-directory shared by hard link between the skel and
    /// its tree vservers under this protection? Every one under `none`;
    /// under `immutable` and `iunlink` only regular files, since Linux
    /// has no such attribute for a symlink, device node, FIFO or socket
    /// and a shared one could be changed (`chown -h`, `touch -h`,
    /// `setfattr -h`) by any vserver's root for the skel and every other
    /// vserver: each vserver gets its own copy of those. Directories are
    /// never linked. [`crate::protect::shared_by_link`] asks this by
    /// entry kind.
    pub fn shares_by_link(self, regular_file: bool) -> bool {
        regular_file || self == Protect::None
    }

    /// The safe protection on this kernel: `iunlink` on a Linux-VServer
    /// kernel (a vserver's write breaks the link: copy-on-write), else
    /// `immutable` (shared inodes cannot be changed at all; vskel lifts the
    /// flag only for its own link and unlink calls).
    pub fn host_default() -> Protect {
        if std::path::Path::new(VSERVER_PROC).exists() {
            Protect::Iunlink
        } else {
            Protect::Immutable
        }
    }

    /// Every value, in the order they are documented.
    pub const ALL: [Protect; 3] = [Protect::None, Protect::Immutable, Protect::Iunlink];

    /// The name used in the configuration file.
    pub fn as_str(self) -> &'static str {
        match self {
            Protect::None => "none",
            Protect::Immutable => "immutable",
            Protect::Iunlink => "iunlink",
        }
    }
}

impl fmt::Display for Protect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protect {
    type Err = String;

    /// Parses "none", "immutable" or "iunlink".
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protect::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<String> = Protect::ALL
                    .iter()
                    .map(|p| format!("{:?}", p.as_str()))
                    .collect();
                format!("invalid value {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// A configuration error, naming the file and, where known, line and key.
///
/// Displays as `{file}:{line}: key `{key}`: {message}`, leaving out the
/// parts that are not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file the error is in.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: Option<usize>,
    /// The key, dotted for nested keys (`tokens.FOO`).
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigError {
    /// An error about a whole file (no line, no key).
    fn file(file: &Path, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// An I/O error on `file` while doing `action`.
    fn io(file: &Path, action: &str, err: &io::Error) -> Self {
        Self::file(file, format!("{action}: {}", io_message(err)))
    }
}

/// The message of an I/O error without the "(os error N)" suffix.
fn io_message(err: &io::Error) -> String {
    let text = err.to_string();
    match (text.rfind(" (os error "), err.raw_os_error()) {
        (Some(at), Some(_)) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

/// vskel's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where vservers, skels, views and state live (default /vservers).
    pub root: PathBuf,
    /// Where vserver configuration lives (default /etc/vservers).
    pub etc: PathBuf,
    /// Where vskel's defaults and scripts live (default /etc/vskel).
    pub defaults: PathBuf,
    /// The first context ID to hand out (default 50).
    pub context_start: u32,
    /// How hard-linked files are protected (default: [`Protect::host_default`]).
    pub protect: Protect,
    /// Which paths go to a skel's global/ (default bin, lib*, sbin, usr,
    /// !usr/local).
    pub global: GlobalRules,
    /// Paths `build-skel` leaves out of a skel, same rule syntax as
    /// `global` (default: apt's downloaded package lists and caches, which
    /// are regenerated by `apt-get update` and would go stale in every
    /// vserver).
    pub exclude: GlobalRules,
    /// User-defined %%KEY%% values (default empty).
    pub tokens: BTreeMap<String, String>,
    /// Keep a copy of each global file's content when a generation is
    /// recorded, for `repair` (default true): the skel's content store,
    /// `generations/objects/`.
    pub content_store: bool,
    /// `vskel daemon`'s settings (`[daemon]`).
    pub daemon: DaemonConfig,
    /// The files actually read, in order (empty when none existed).
    pub files: Vec<PathBuf>,
}

/// The `[daemon]` table: where `vskel daemon` listens and which views it
/// serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Its control socket (default [`DEFAULT_DAEMON_SOCKET`]); the command
    /// line looks for a running daemon there.
    pub socket: PathBuf,
    /// The views it mounts at start and keeps mounted (default: every
    /// registered view, `["*"]`).
    pub views: DaemonViews,
}

impl Default for DaemonConfig {
    fn default() -> Self {
        DaemonConfig {
            socket: PathBuf::from(DEFAULT_DAEMON_SOCKET),
            views: DaemonViews::All,
        }
    }
}

/// Which views `vskel daemon` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonViews {
    /// Every registered view (`["*"]`).
    All,
    /// These vservers (`["web1", "web2"]`; `[]` for none).
    Named(Vec<String>),
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from(DEFAULT_ROOT),
            etc: PathBuf::from(DEFAULT_ETC),
            defaults: PathBuf::from(DEFAULT_DEFAULTS),
            context_start: DEFAULT_CONTEXT_START,
            protect: Protect::default(),
            global: GlobalRules::default(),
            exclude: GlobalRules::parse(&GlobalRules::default_exclude())
                .expect("the default exclude rules are valid"),
            tokens: BTreeMap::new(),
            content_store: true,
            daemon: DaemonConfig::default(),
            files: Vec::new(),
        }
    }
}

/// Reads a file as UTF-8 text; `Ok(None)` when it does not exist and is not
/// `required`.
fn read_text(file: &Path, required: bool) -> Result<Option<String>, ConfigError> {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(ConfigError::io(file, "cannot read", &e)),
    };
    String::from_utf8(bytes).map(Some).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        ConfigError {
            line: Some(line_of(e.as_bytes(), valid)),
            ..ConfigError::file(file, "not valid UTF-8")
        }
    })
}

/// The drop-ins in `dir`, sorted by file name; none when `dir` does not
/// exist. Hidden files are skipped.
fn dropins(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::io(dir, "cannot read directory", &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ConfigError::io(dir, "cannot read directory", &e))?;
        let name = entry.file_name();
        let path = Path::new(&name);
        let hidden = name.as_encoded_bytes().first() == Some(&b'.');
        if !hidden && path.extension().is_some_and(|ext| ext == DROPIN_EXT) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// 1-based line of byte offset `at` in `text`.
fn line_of(text: &[u8], at: usize) -> usize {
    let end = at.min(text.len());
    text[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Where in which file a value is, for error messages.
struct Ctx<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    /// An error at byte offset `at`, about `key`.
    fn err(&self, at: usize, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line_of(self.text.as_bytes(), at)),
            key: Some(key.to_owned()),
            message: message.into(),
        }
    }

    /// A TOML syntax error, with the key taken from the error's line: the
    /// text before '=', or the name in a `[table]` header.
    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        let message = e.message().trim().replace('\n', "; ");
        let Some(span) = e.span() else {
            return ConfigError::file(self.file, message);
        };
        let line = line_of(self.text.as_bytes(), span.start);
        let text = self.text.lines().nth(line - 1).unwrap_or("").trim();
        let key = if text.starts_with('[') {
            let name = text.trim_start_matches('[');
            name.split_once(']').map(|(name, _)| name)
        } else {
            text.split_once('=').map(|(key, _)| key)
        }
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('#'))
        .map(str::to_owned);
        ConfigError {
            file: self.file.to_path_buf(),
            line: Some(line),
            key,
            message,
        }
    }

    /// The value as a string, or a type error at `at`.
    fn string<'v>(
        &self,
        value: &'v DeValue<'_>,
        at: usize,
        key: &str,
    ) -> Result<&'v str, ConfigError> {
        value
            .as_str()
            .ok_or_else(|| self.type_error(value, "a string", at, key))
    }

    fn type_error(&self, value: &DeValue<'_>, want: &str, at: usize, key: &str) -> ConfigError {
        self.err(
            at,
            key,
            format!("expected {want}, found {}", value.type_str()),
        )
    }

    /// A path value, resolved against the file's directory when relative.
    fn path(&self, value: &DeValue<'_>, at: usize, key: &str) -> Result<PathBuf, ConfigError> {
        let text = self.string(value, at, key)?;
        if text.is_empty() {
            return Err(self.err(at, key, "path must not be empty"));
        }
        if text.contains('\0') {
            return Err(self.err(
                at,
                key,
                format!("path {text:?} contains a NUL byte, which no path can hold"),
            ));
        }
        let path = Path::new(text);
        Ok(if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new("")).join(path)
        })
    }

    /// The vservers root: a path (see [`Ctx::path`]) that is not `/` nor a
    /// system directory once symlinks and `..` are resolved.
    fn root(&self, value: &DeValue<'_>, at: usize, key: &str) -> Result<PathBuf, ConfigError> {
        let path = self.path(value, at, key)?;
        let absolute = std::path::absolute(&path)
            .map_err(|e| self.err(at, key, format!("cannot resolve {}: {e}", path.display())))?;
        validate_root(&absolute)
            .and_then(|()| validate_root(&resolve_existing(&absolute)))
            .map_err(|e| self.err(at, key, e.0))?;
        Ok(path)
    }

    fn context(&self, value: &DeValue<'_>, at: usize, key: &str) -> Result<u32, ConfigError> {
        let Some(int) = value.as_integer() else {
            return Err(self.type_error(value, "an integer", at, key));
        };
        let out_of_range = || {
            self.err(
                at,
                key,
                format!(
                    "invalid context ID {int}: must be between {CONTEXT_MIN} and {CONTEXT_MAX}"
                ),
            )
        };
        let wide = i128::from_str_radix(int.as_str(), int.radix()).map_err(|_| out_of_range())?;
        let id = u32::try_from(wide).map_err(|_| out_of_range())?;
        validate_context(id).map_err(|e| self.err(at, key, e.0))?;
        Ok(id)
    }

    fn global(
        &self,
        value: &DeValue<'_>,
        at: usize,
        key: &str,
    ) -> Result<GlobalRules, ConfigError> {
        let Some(items) = value.as_array() else {
            return Err(self.type_error(value, "an array of strings", at, key));
        };
        let mut rules = Vec::with_capacity(items.len());
        for item in items.iter() {
            let item_at = item.span().start;
            let text = self.string(item.get_ref(), item_at, key)?;
            rules.push(Rule::parse(text).map_err(|e| self.err(item_at, key, e))?);
        }
        Ok(GlobalRules::from(rules))
    }

    /// The `[daemon]` table, on top of `into` (a drop-in may set one key).
    fn daemon(
        &self,
        value: &DeValue<'_>,
        at: usize,
        key: &str,
        into: &mut DaemonConfig,
    ) -> Result<(), ConfigError> {
        let Some(table) = value.as_table() else {
            return Err(self.type_error(value, "a table", at, key));
        };
        for (name, item) in in_source_order(table) {
            let name_at = name.span().start;
            let name: &str = name.get_ref();
            let full = format!("{key}.{name}");
            let item_at = item.span().start;
            let item = item.get_ref();
            match name {
                "socket" => into.socket = self.path(item, item_at, &full)?,
                "views" => into.views = self.daemon_views(item, item_at, &full)?,
                _ => {
                    return Err(self.err(
                        name_at,
                        &full,
                        format!("unknown key; the keys are {}", DAEMON_KEYS.join(", ")),
                    ));
                }
            }
        }
        Ok(())
    }

    /// `views`: `["*"]`, or a list of vserver names.
    fn daemon_views(
        &self,
        value: &DeValue<'_>,
        at: usize,
        key: &str,
    ) -> Result<DaemonViews, ConfigError> {
        let want = "a list of vserver names, or [\"*\"] for every view";
        let Some(items) = value.as_array() else {
            return Err(self.type_error(value, want, at, key));
        };
        let mut names = Vec::new();
        for item in items {
            let name = self.string(item.get_ref(), item.span().start, key)?;
            if name == "*" {
                if items.len() != 1 {
                    return Err(self.err(at, key, "\"*\" (every view) stands alone in the list"));
                }
                return Ok(DaemonViews::All);
            }
            crate::validate::validate_name("vserver name", name)
                .map_err(|e| self.err(item.span().start, key, e.to_string()))?;
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        Ok(DaemonViews::Named(names))
    }

    fn tokens(
        &self,
        value: &DeValue<'_>,
        at: usize,
        key: &str,
        into: &mut BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        let Some(table) = value.as_table() else {
            return Err(self.type_error(value, "a table of strings", at, key));
        };
        for (name, item) in in_source_order(table) {
            let name_at = name.span().start;
            let name: &str = name.get_ref();
            let full = format!("{key}.{name}");
            validate_token_key(name).map_err(|e| self.err(name_at, &full, e.0))?;
            if name.starts_with(RESERVED_TOKEN_PREFIX) {
                return Err(self.err(
                    name_at,
                    &full,
                    format!(
                        "token keys starting with {RESERVED_TOKEN_PREFIX:?} are reserved for vskel"
                    ),
                ));
            }
            let text = self.string(item.get_ref(), item.span().start, &full)?;
            into.insert(name.to_owned(), text.to_owned());
        }
        Ok(())
    }
}

/// The absolute `path` resolved one component at a time: a component
/// that exists is resolved (symlinks: `std::fs::canonicalize`), one that
/// does not is taken as written, and `..` goes up from what the path
/// before it resolved to (as creating the missing parts and then
/// following the path would).
fn resolve_existing(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => {
                let next = out.join(name);
                out = match std::fs::canonicalize(&next) {
                    Ok(resolved) => resolved,
                    Err(e) => {
                        if e.kind() != io::ErrorKind::NotFound {
                            tracing::debug!("cannot resolve {}: {e}", next.display());
                        }
                        next
                    }
                };
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// A table's entries in the order their keys appear in the text.
fn in_source_order<'t, 'i>(
    table: &'t DeTable<'i>,
) -> Vec<(&'t Spanned<Cow<'i, str>>, &'t Spanned<DeValue<'i>>)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    entries
}

impl Config {
    /// Loads the configuration.
    ///
    /// `explicit`: the path from --config or VSKEL_CONFIG (the caller
    /// resolves which). When Some, the file must exist (error otherwise).
    /// When None, DEFAULT_CONFIG_PATH is used if it exists, else pure
    /// defaults (drop-ins in /etc/vskel/conf.d still apply if that dir
    /// exists).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match explicit {
            Some(path) => Self::load_from(path, true),
            None => Self::load_from(Path::new(DEFAULT_CONFIG_PATH), false),
        }
    }

    /// Loads `main` (which must exist when `required`) and its drop-ins.
    fn load_from(main: &Path, required: bool) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        match read_text(main, required)? {
            Some(text) => config.apply_file(&text, main)?,
            None => tracing::debug!("no config file at {}", main.display()),
        }
        let dir = main.parent().unwrap_or(Path::new("")).join(DROPIN_DIR);
        for file in dropins(&dir)? {
            if let Some(text) = read_text(&file, true)? {
                config.apply_file(&text, &file)?;
            }
        }
        Ok(config)
    }

    /// Applies one file's text and records that it was read.
    fn apply_file(&mut self, text: &str, file: &Path) -> Result<(), ConfigError> {
        tracing::debug!("applying config file {}", file.display());
        self.apply_toml(text, file)?;
        self.files.push(file.to_path_buf());
        Ok(())
    }

    /// Parse one file's text on top of `self` (used for the main file and
    /// each drop-in). `file` is only used for messages and for resolving
    /// relative paths. On error `self` is left unchanged.
    pub fn apply_toml(&mut self, text: &str, file: &Path) -> Result<(), ConfigError> {
        let ctx = Ctx { file, text };
        let doc = DeTable::parse(text).map_err(|e| ctx.syntax(&e))?;
        let mut next = self.clone();
        for (key, value) in in_source_order(doc.get_ref()) {
            let at = key.span().start;
            let name: &str = key.get_ref();
            let value = value.get_ref();
            match name {
                "root" => next.root = ctx.root(value, at, name)?,
                "etc" => next.etc = ctx.path(value, at, name)?,
                "defaults" => next.defaults = ctx.path(value, at, name)?,
                "context_start" => next.context_start = ctx.context(value, at, name)?,
                "protect" => {
                    let text = ctx.string(value, at, name)?;
                    next.protect = text.parse().map_err(|e: String| ctx.err(at, name, e))?;
                }
                "global" => next.global = ctx.global(value, at, name)?,
                "exclude" => next.exclude = ctx.global(value, at, name)?,
                "tokens" => ctx.tokens(value, at, name, &mut next.tokens)?,
                "daemon" => ctx.daemon(value, at, name, &mut next.daemon)?,
                "content_store" => {
                    next.content_store = value
                        .as_bool()
                        .ok_or_else(|| ctx.type_error(value, "true or false", at, name))?;
                }
                _ => {
                    return Err(ctx.err(
                        at,
                        name,
                        format!("unknown key; the keys are {}", KEYS.join(", ")),
                    ));
                }
            }
        }
        *self = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn defaults() {
        let c = Config::default();
        assert_eq!(c.root, Path::new("/vservers"));
        assert_eq!(c.etc, Path::new("/etc/vservers"));
        assert_eq!(c.defaults, Path::new("/etc/vskel"));
        assert_eq!(c.context_start, 50);
        assert_eq!(c.protect, Protect::host_default());
        assert_ne!(
            c.protect,
            Protect::None,
            "the default protects shared files"
        );
        assert_eq!(c.global.as_strings(), GlobalRules::default_rules());
        assert_eq!(c.exclude.as_strings(), GlobalRules::default_exclude());
        assert!(c.tokens.is_empty());
        assert!(c.content_store);
        assert_eq!(c.daemon.socket, Path::new(DEFAULT_DAEMON_SOCKET));
        assert_eq!(c.daemon.views, DaemonViews::All);
        assert!(c.files.is_empty());
    }

    #[test]
    fn daemon_table() {
        let mut c = Config::default();
        c.apply_toml(
            "[daemon]\nsocket = \"s.sock\"\nviews = [\"web1\", \"web2\", \"web1\"]\n",
            Path::new("/conf/vskel.toml"),
        )
        .expect("valid");
        assert_eq!(c.daemon.socket, Path::new("/conf/s.sock"));
        assert_eq!(
            c.daemon.views,
            DaemonViews::Named(strings(&["web1", "web2"]))
        );
        c.apply_toml("[daemon]\nviews = [\"*\"]\n", Path::new("/c.toml"))
            .expect("valid");
        assert_eq!(c.daemon.views, DaemonViews::All);
        assert_eq!(c.daemon.socket, Path::new("/conf/s.sock"), "kept");
        let cases: &[(&str, &str)] = &[
            (
                "[daemon]\nviews = \"*\"\n",
                "expected a list of vserver names",
            ),
            ("[daemon]\nviews = [\"*\", \"a\"]\n", "stands alone"),
            ("[daemon]\nviews = [\"../x\"]\n", "vserver name"),
            (
                "[daemon]\nport = 1\n",
                "unknown key; the keys are socket, views",
            ),
            ("daemon = 1\n", "expected a table"),
        ];
        for (text, part) in cases {
            let err = Config::default()
                .apply_toml(text, Path::new("/c.toml"))
                .expect_err(text);
            assert!(err.to_string().contains(part), "{text:?}: {err}");
        }
    }

    #[test]
    fn protect_names() {
        let cases: &[(&str, Option<Protect>)] = &[
            ("none", Some(Protect::None)),
            ("immutable", Some(Protect::Immutable)),
            ("iunlink", Some(Protect::Iunlink)),
            ("x", None),
            ("None", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(text.parse::<Protect>().ok(), *want, "{text:?}");
            if let Some(p) = want {
                assert_eq!(p.to_string(), *text);
            }
        }
    }

    const FULL: &str = r#"
# a full file
root = "/srv/vservers"
etc = "/srv/etc"
defaults = "/srv/vskel"
context_start = 1000
protect = "iunlink"
global = ["bin", "usr", "!usr/local", "lib*"]
content_store = false

[tokens]
ADMIN = "root@example.com"
_X1 = "y"
"#;

    #[test]
    fn full_valid_file() {
        let mut c = Config::default();
        c.apply_toml(FULL, Path::new("/conf/vskel.toml"))
            .expect("valid");
        assert_eq!(c.root, Path::new("/srv/vservers"));
        assert_eq!(c.etc, Path::new("/srv/etc"));
        assert_eq!(c.defaults, Path::new("/srv/vskel"));
        assert_eq!(c.context_start, 1000);
        assert!(!c.content_store);
        assert_eq!(c.protect, Protect::Iunlink);
        assert_eq!(
            c.global.as_strings(),
            strings(&["bin", "usr", "!usr/local", "lib*"])
        );
        let tokens: Vec<_> = c
            .tokens
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tokens, [("ADMIN", "root@example.com"), ("_X1", "y")]);
        assert!(c.files.is_empty(), "apply_toml does not record files");
    }

    #[test]
    fn relative_paths_resolve_against_the_file() {
        let text = "root = \"vs\"\netc = \"../etc\"\ndefaults = \"/abs\"\n";
        let cases: &[(&str, &str, &str)] = &[
            ("/conf/vskel.toml", "/conf/vs", "/conf/../etc"),
            (
                "/conf/conf.d/10.toml",
                "/conf/conf.d/vs",
                "/conf/conf.d/../etc",
            ),
            ("vskel.toml", "vs", "../etc"),
        ];
        for (file, root, etc) in cases {
            let mut c = Config::default();
            c.apply_toml(text, Path::new(file)).expect("valid");
            assert_eq!(c.root, Path::new(root), "{file}");
            assert_eq!(c.etc, Path::new(etc), "{file}");
            assert_eq!(c.defaults, Path::new("/abs"), "{file}");
        }
    }

    #[test]
    fn error_cases() {
        // (text, line, key, part of the message)
        let cases: &[(&str, usize, &str, &str)] = &[
            ("root = \"/x\"\nbogus = 1\n", 2, "bogus", "unknown key"),
            ("\n\n[extra]\nx = 1\n", 3, "extra", "unknown key"),
            (
                "protect = \"x\"\n",
                1,
                "protect",
                r#"invalid value "x"; expected one of"#,
            ),
            (
                "protect = 1\n",
                1,
                "protect",
                "expected a string, found integer",
            ),
            (
                "\ncontext_start = 1\n",
                2,
                "context_start",
                "invalid context ID 1",
            ),
            (
                "context_start = 50000\n",
                1,
                "context_start",
                "between 2 and 49151",
            ),
            (
                "context_start = -5\n",
                1,
                "context_start",
                "invalid context ID -5",
            ),
            (
                "context_start = 99999999999\n",
                1,
                "context_start",
                "invalid context ID",
            ),
            (
                "context_start = \"50\"\n",
                1,
                "context_start",
                "expected an integer, found string",
            ),
            ("root = 5\n", 1, "root", "expected a string, found integer"),
            (
                "content_store = \"no\"\n",
                1,
                "content_store",
                "expected true or false, found string",
            ),
            ("etc = \"\"\n", 1, "etc", "path must not be empty"),
            (
                "defaults = [\"/a\"]\n",
                1,
                "defaults",
                "expected a string, found array",
            ),
            (
                "global = \"usr\"\n",
                1,
                "global",
                "expected an array of strings",
            ),
            ("global = [\"usr\", \"/abs\"]\n", 1, "global", "is absolute"),
            (
                "global = [\n  \"usr\",\n  \"\",\n]\n",
                3,
                "global",
                "is empty",
            ),
            ("global = [\n  \"usr/../etc\",\n]\n", 2, "global", "'..'"),
            (
                "global = [\"lib[\"]\n",
                1,
                "global",
                "not a valid glob pattern",
            ),
            (
                "global = [\"usr\", 3]\n",
                1,
                "global",
                "expected a string, found integer",
            ),
            (
                "[tokens]\nGOOD = \"1\"\nlower = \"x\"\n",
                3,
                "tokens.lower",
                "invalid token key",
            ),
            ("[tokens]\n1X = \"x\"\n", 2, "tokens.1X", "must start with"),
            (
                "[tokens]\nVS_NAME = \"x\"\n",
                2,
                "tokens.VS_NAME",
                "reserved",
            ),
            (
                "[tokens]\nA = \"x\"\nB = 2\n",
                3,
                "tokens.B",
                "expected a string",
            ),
            (
                "tokens = \"x\"\n",
                1,
                "tokens",
                "expected a table of strings",
            ),
            (
                "tokens.A = \"x\"\ntokens.b = \"y\"\n",
                2,
                "tokens.b",
                "invalid token key",
            ),
            ("root = \"/a\"\nroot = \"/b\"\n", 2, "root", "duplicate key"),
            ("\nroot = \"/\"\n", 2, "root", "it is the root directory /"),
            ("root = \"//\"\n", 1, "root", "it is the root directory /"),
            ("root = \"/vservers/..\"\n", 1, "root", "root directory /"),
            (
                "root = \"/usr/\"\n",
                1,
                "root",
                "/usr is a system directory",
            ),
            (
                "root = \"/usr/lib/../bin\"\n",
                1,
                "root",
                "/usr/bin is a system",
            ),
            (
                "root = \"/home\"\n",
                1,
                "root",
                "/home is a system directory",
            ),
            (
                "root = \"/lib64\"\n",
                1,
                "root",
                "/lib64 is a system directory",
            ),
            ("root = \"/var/lib\"\n", 1, "root", "/var/lib is a system"),
            (
                "root = \"/./etc\"\n",
                1,
                "root",
                "/etc is a system directory",
            ),
            (
                "root = \"/tmp\"\n",
                1,
                "root",
                "cannot be the vservers root",
            ),
            ("etc = \"/a\\u0000b\"\n", 1, "etc", "contains a NUL byte"),
            ("root = \"/vs\\u0000\"\n", 1, "root", "contains a NUL byte"),
            ("defaults = \"\\u0000\"\n", 1, "defaults", "NUL byte"),
            ("root = \"/a\"\n\nroot = /b\n", 3, "root", "must be quoted"),
            (
                "[tokens]\nA = \"1\"\n[tokens]\n",
                3,
                "tokens",
                "duplicate key",
            ),
            ("x = 1\n[[root]]\n", 1, "x", "unknown key"),
            ("root = \"abc\n", 1, "root", "invalid basic string"),
        ];
        for (text, line, key, part) in cases {
            let file = Path::new("/conf/vskel.toml");
            let mut c = Config::default();
            let err = c.apply_toml(text, file).expect_err(text);
            let shown = err.to_string();
            let head = format!("/conf/vskel.toml:{line}: key `{key}`: ");
            assert!(
                shown.starts_with(&head),
                "{text:?}: {shown:?} lacks {head:?}"
            );
            assert!(shown.contains(part), "{text:?}: {shown:?} lacks {part:?}");
            assert_eq!(err.line, Some(*line));
            assert_eq!(err.key.as_deref(), Some(*key));
            assert_eq!(
                c,
                Config::default(),
                "{text:?}: a failed file changed the config"
            );
        }
    }

    #[test]
    fn a_root_is_judged_after_resolving_symlinks() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::symlink("/", dir.path().join("slash")).expect("symlink");
        std::os::unix::fs::symlink("/usr", dir.path().join("usr-link")).expect("symlink");
        let cases: &[(&str, Option<&str>)] = &[
            ("slash", Some("it is the root directory /")),
            ("slash/.", Some("it is the root directory /")),
            ("slash/var/../home", Some("/home is a system directory")),
            ("usr-link", Some("/usr is a system directory")),
            ("usr-link/../etc", Some("/etc is a system directory")),
            ("slash/vservers-not-there/..", Some("root directory /")),
            ("usr-link/vservers", None),
            ("vservers", None),
            ("new/vservers", None),
        ];
        let file = dir.path().join("vskel.toml");
        for (rel, want) in cases {
            let text = format!("root = {:?}\n", dir.path().join(rel));
            let mut c = Config::default();
            match (c.apply_toml(&text, &file), want) {
                (Ok(()), None) => assert_eq!(c.root, dir.path().join(rel)),
                (Err(e), Some(part)) => {
                    assert_eq!(e.key.as_deref(), Some("root"), "{rel}");
                    assert_eq!(e.line, Some(1), "{rel}");
                    assert!(e.message.contains(part), "{rel}: {e}");
                }
                (got, want) => panic!("{rel}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn error_display_leaves_out_unknown_parts() {
        let base = ConfigError {
            file: PathBuf::from("/f.toml"),
            line: None,
            key: None,
            message: "boom".to_owned(),
        };
        let cases: &[(Option<usize>, Option<&str>, &str)] = &[
            (None, None, "/f.toml: boom"),
            (Some(3), None, "/f.toml:3: boom"),
            (None, Some("k"), "/f.toml: key `k`: boom"),
            (Some(3), Some("k"), "/f.toml:3: key `k`: boom"),
        ];
        for (line, key, want) in cases {
            let e = ConfigError {
                line: *line,
                key: key.map(str::to_owned),
                ..base.clone()
            };
            assert_eq!(e.to_string(), *want);
        }
    }

    /// (relative path, contents) of files to write.
    type Files<'a> = &'a [(&'a str, &'a str)];

    /// Writes `files` (relative path, contents) under a fresh directory.
    fn tree(files: Files<'_>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write");
        }
        dir
    }

    #[test]
    fn load_with_dropins_in_order() {
        let dir = tree(&[
            (
                "vskel.toml",
                "root = \"/main\"\ncontext_start = 100\n[tokens]\nA = \"main\"\nB = \"main\"\n",
            ),
            (
                "conf.d/20-b.toml",
                "root = \"/twenty\"\n[tokens]\nB = \"twenty\"\n",
            ),
            (
                "conf.d/10-a.toml",
                "root = \"/ten\"\nprotect = \"immutable\"\n[tokens]\nC = \"ten\"\n",
            ),
            ("conf.d/30-c.toml", "global = [\"opt\"]\netc = \"rel\"\n"),
            ("conf.d/README", "not toml at all = = ="),
            ("conf.d/.hidden.toml", "bogus = 1"),
        ]);
        let main = dir.path().join("vskel.toml");
        let c = Config::load(Some(&main)).expect("valid");
        let d = dir.path().join("conf.d");
        assert_eq!(
            c.files,
            [
                main.clone(),
                d.join("10-a.toml"),
                d.join("20-b.toml"),
                d.join("30-c.toml")
            ]
        );
        assert_eq!(c.root, Path::new("/twenty"));
        assert_eq!(c.etc, d.join("rel"));
        assert_eq!(c.context_start, 100);
        assert_eq!(c.protect, Protect::Immutable);
        assert_eq!(c.global.as_strings(), ["opt"]);
        let tokens: Vec<_> = c
            .tokens
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(tokens, [("A", "main"), ("B", "twenty"), ("C", "ten")]);
    }

    #[test]
    fn load_missing_explicit_file_is_an_error() {
        let dir = tree(&[]);
        let main = dir.path().join("nope.toml");
        let err = Config::load(Some(&main)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: cannot read: No such file or directory", main.display())
        );
    }

    #[test]
    fn load_from_absent_default_gives_defaults() {
        let dir = tree(&[]);
        let c = Config::load_from(&dir.path().join("vskel.toml"), false).expect("defaults");
        assert_eq!(c, Config::default());

        let dir = tree(&[("conf.d/1.toml", "context_start = 7\n")]);
        let c = Config::load_from(&dir.path().join("vskel.toml"), false).expect("valid");
        assert_eq!(c.context_start, 7);
        assert_eq!(c.files, [dir.path().join("conf.d/1.toml")]);
    }

    #[test]
    fn load_errors_name_the_file() {
        let cases: &[(Files<'_>, &str, &str)] = &[
            (
                &[
                    ("vskel.toml", "root = \"/x\"\n"),
                    ("conf.d/5.toml", "\n\nprotect = \"no\"\n"),
                ],
                "conf.d/5.toml:3: key `protect`",
                "invalid value",
            ),
            (&[("vskel.toml", "a\u{0}")], "vskel.toml:1", ""),
        ];
        for (files, head, part) in cases {
            let dir = tree(files);
            let err = Config::load(Some(&dir.path().join("vskel.toml"))).unwrap_err();
            let shown = err.to_string();
            let want = format!("{}/{head}", dir.path().display());
            assert!(shown.starts_with(&want), "{shown:?} lacks {want:?}");
            assert!(shown.contains(part), "{shown:?} lacks {part:?}");
        }
    }

    #[test]
    fn load_rejects_non_utf8() {
        let dir = tempfile::tempdir().expect("tempdir");
        let main = dir.path().join("vskel.toml");
        std::fs::write(&main, b"root = \"/x\"\n# \xff\n").expect("write");
        let err = Config::load(Some(&main)).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}:2: not valid UTF-8", main.display())
        );
    }
}
