//! The demo's directory: made fresh (a temporary one, or the `--keep`
//! directory, missing or empty), holding the demo's own configuration and
//! everything it makes; removed at the end unless kept, and on an error,
//! a panic or an interrupt too, after unmounting whatever is mounted in
//! it (the demo's view), so no mount is left behind.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::mount::mountinfo::mounts_below;

/// Mode of the demo's directory: closed to other users, as `<root>` is.
const DIR_MODE: u32 = 0o700;
/// Prefix of a temporary demo directory's name.
const TEMP_PREFIX: &str = "vskel-demo-";
/// Hex digits of randomness in a temporary directory's name.
const TEMP_SUFFIX_LEN: usize = 12;
/// The demo's configuration file, in its directory.
pub const CONFIG_FILE: &str = "vskel.toml";

/// The demo's directory and the configuration naming its places.
pub struct Workdir {
    /// The directory (absolute).
    pub path: PathBuf,
    /// Its configuration file.
    pub config_file: PathBuf,
    /// The configuration file's text.
    pub config_text: String,
    /// The configuration.
    pub config: Config,
    /// Keep the directory at the end.
    keep: bool,
    /// Cleaned up already (by [`Workdir::finish`]).
    done: bool,
}

impl Workdir {
    /// Make the demo's directory: `keep` (missing or empty; kept at the
    /// end), or a new temporary one. Writes its configuration there.
    pub fn make(keep: Option<&Path>) -> Result<Workdir> {
        let made = match keep {
            Some(dir) => fresh_kept(dir)?,
            None => fresh_temp()?,
        };
        // As the mount table spells it, to find the mounts below it.
        let path = fs::canonicalize(&made).map_err(|e| Error::io("resolve", &made, e))?;
        // From here on the directory is ours: removed if anything fails.
        let mut workdir = Workdir {
            config_file: path.join(CONFIG_FILE),
            path,
            config_text: String::new(),
            config: Config::default(),
            keep: keep.is_some(),
            done: false,
        };
        workdir.configure()?;
        Ok(workdir)
    }

    /// Write the configuration (every place inside the directory; shared
    /// files left writable, see the module docs of `demo`) and load it.
    fn configure(&mut self) -> Result<()> {
        let p = &self.path;
        let root = p.join("vservers");
        let text = format!(
            "root = {:?}\netc = {:?}\ndefaults = {:?}\nprotect = \"none\"\n\n\
             [daemon]\nsocket = {:?}\n",
            root,
            p.join("etc-vservers"),
            p.join("etc-vskel"),
            p.join("vskel.sock")
        );
        for dir in [&root, &p.join("etc-vservers"), &p.join("etc-vskel")] {
            fs::DirBuilder::new()
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| Error::io("make", dir, e))?;
        }
        fs::write(&self.config_file, &text)
            .map_err(|e| Error::io("write", &self.config_file, e))?;
        let mut config = Config::default();
        config.apply_toml(&text, &self.config_file)?;
        self.config = config;
        self.config_text = text;
        Ok(())
    }

    /// Whether the directory is kept at the end.
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// Clean up: unmount what is mounted in the directory, remove it
    /// unless kept. Returns what was done, one line each.
    pub fn finish(mut self) -> Result<Vec<String>> {
        self.done = true;
        let mut lines = self.unmount_all()?;
        if self.keep {
            lines.push(format!("kept {}", self.path.display()));
        } else {
            fs::remove_dir_all(&self.path).map_err(|e| Error::io("remove", &self.path, e))?;
            lines.push(format!("removed {}", self.path.display()));
        }
        Ok(lines)
    }

    /// Unmount every mount at or below the directory (the demo's view,
    /// should it still be mounted), deepest first: plainly, waiting for
    /// its server, else detached. Fails if any is left.
    fn unmount_all(&self) -> Result<Vec<String>> {
        let mut lines = Vec::new();
        for entry in mounts_below(&self.path)?.into_iter().rev() {
            let mp = entry.mount_point;
            let target = mp.to_string_lossy();
            if let Err(e) = crate::vserver::mount::unmount(&self.config, &target, false) {
                warn!("unmounting {}: {e}; detaching it", mp.display());
                crate::mount::stale::detach(&mp)?;
            }
            lines.push(format!("unmounted {}", mp.display()));
        }
        if let Some(left) = mounts_below(&self.path)?.first() {
            return Err(Error::Failed(format!(
                "{} is still mounted ({}); the demo's directory {} is left as it is",
                left.mount_point.display(),
                left.describe(),
                self.path.display()
            )));
        }
        Ok(lines)
    }
}

/// Cleans up when the demo did not get to [`Workdir::finish`] (an error,
/// a panic, an interrupt): every failure is logged, and the directory is
/// removed only once nothing is mounted in it.
impl Drop for Workdir {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        match self.unmount_all() {
            Ok(lines) => {
                for line in lines {
                    warn!("the demo stopped early: {line}");
                }
            }
            Err(e) => {
                warn!("the demo stopped early: {e}");
                return;
            }
        }
        if self.keep {
            return;
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => warn!("the demo stopped early: removed {}", self.path.display()),
            Err(e) => warn!(
                "the demo stopped early: removing {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// A new directory (mode 0700) below the temporary directory (`$TMPDIR`,
/// else /tmp), named so that nobody can have made it in advance.
fn fresh_temp() -> Result<PathBuf> {
    let base = std::path::absolute(std::env::temp_dir())
        .map_err(|e| Error::io("resolve", std::env::temp_dir(), e))?;
    let suffix = crate::sys::unguessable_suffix()
        .map_err(|e| Error::io("draw random bytes for", &base, e))?;
    let path = base.join(format!("{TEMP_PREFIX}{}", &suffix[..TEMP_SUFFIX_LEN]));
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(&path)
        .map_err(|e| Error::io("make", &path, e))?;
    Ok(path)
}

/// The `--keep` directory: made (0700) if missing, else it must be an
/// empty directory (nothing is written otherwise).
fn fresh_kept(dir: &Path) -> Result<PathBuf> {
    let path = std::path::absolute(dir).map_err(|e| Error::io("resolve", dir, e))?;
    match fs::DirBuilder::new().mode(DIR_MODE).create(&path) {
        Ok(()) => return Ok(path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io("make", &path, e)),
    }
    let mut entries = fs::read_dir(&path).map_err(|e| Error::io("read", &path, e))?;
    if entries.next().is_some() {
        return Err(Error::Usage(format!(
            "--keep {}: the directory is not empty; give a missing or empty directory",
            path.display()
        )));
    }
    Ok(path)
}
