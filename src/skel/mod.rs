//! Skels on disk: their layout, building a new one (`build-skel`),
//! changing one through its temporary vserver (`merge-skel`, `split-skel`),
//! going back to an earlier generation (`rollback-skel`), and removing one
//! (`remove-skel`).
//!
//! A skel is `<root>/.skel/<name>/` holding `global/` (hard-linked into
//! every vserver), `local/` (copied), `static/` (copied with tokens
//! replaced), `scripts/post-create-vs/` and `configfile` (the paths come
//! from [`crate::layout`]).

mod accounts;
pub mod build;
pub mod devnodes;
mod journal;
pub mod lifecycle;
pub mod merge;
pub mod oci;
pub mod policy;
pub mod remove;
pub mod rollback;
pub mod split;

use std::path::PathBuf;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{Layout, SkelDirs};
use crate::validate::validate_name;

pub use crate::layout::{CONFIGFILE, GLOBAL, LOCAL, POST_CREATE_DIR, STATIC};

/// One skel: its name and its paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skel {
    /// The skel's name.
    pub name: String,
    /// Its directories, `<root>/.skel/<name>/...`.
    pub dirs: SkelDirs,
}

impl Skel {
    /// The skel called `name` (validated), whether or not it exists.
    pub fn named(config: &Config, name: &str) -> Result<Self> {
        validate_name("skel name", name)?;
        Ok(Skel {
            name: name.to_string(),
            dirs: Layout::new(config).skel(name),
        })
    }

    /// The existing skel called `name`.
    pub fn open(config: &Config, name: &str) -> Result<Self> {
        let skel = Self::named(config, name)?;
        if !skel.global().is_dir() {
            return Err(Error::Usage(format!(
                "no skel named \"{name}\" (looked for {}); `vskel list --skels` shows the skels, \
                 `vskel build-skel {name}` makes one",
                skel.global().display()
            )));
        }
        Ok(skel)
    }

    /// `global/`.
    pub fn global(&self) -> PathBuf {
        self.dirs.global()
    }

    /// `local/`.
    pub fn local(&self) -> PathBuf {
        self.dirs.local()
    }

    /// `static/`.
    pub fn static_dir(&self) -> PathBuf {
        self.dirs.static_dir()
    }

    /// `scripts/post-create-vs/`.
    pub fn post_create_dir(&self) -> PathBuf {
        self.dirs.post_create_dir()
    }

    /// `configfile`.
    pub fn configfile(&self) -> PathBuf {
        self.dirs.configfile()
    }
}

/// The names of all skels, sorted.
pub fn list_skels(config: &Config) -> Result<Vec<String>> {
    crate::tree::list_names(&Layout::new(config).skels())
}
