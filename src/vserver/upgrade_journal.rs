//! The upgrade journal `<root>/.vskel/sync/NAME.upgrade`: written durably
//! before an upgrade changes the first path (which generations it goes
//! between, with which strategy), then appended with every random name it
//! is about to use inside the tree; removed once the vserver's record says
//! the new generation. A run that finds one finishes that upgrade (same
//! generations, same strategy) after removing the random names it lists.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;

/// First line of a journal of this format.
const HEADER: &str = "vskel-upgrade-journal 1";
/// Mode of the journal.
const MODE: u32 = 0o600;

/// An upgrade under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Begun {
    /// The generation the vserver had.
    pub from: u64,
    /// The generation it is brought to.
    pub to: u64,
    /// The conflict strategy, by name.
    pub strategy: String,
    /// Random names inside the tree the upgrade may have left.
    pub temps: Vec<PathBuf>,
}

/// One vserver's upgrade journal.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
    path: PathBuf,
}

impl Journal {
    /// The journal of vserver `name`.
    pub fn new(config: &Config, name: &str) -> Self {
        let files = Layout::new(config).sync_files(name);
        let path = files.dir.join(format!("{name}.upgrade"));
        Journal {
            dir: files.dir,
            path,
        }
    }

    /// What an interrupted upgrade recorded, if one did.
    pub fn load(&self) -> Result<Option<Begun>> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("read", &self.path, e)),
        };
        let damaged = || Error::Failed(format!("{}: damaged upgrade journal", self.path.display()));
        let mut lines = text.split(|&b| b == b'\n');
        if lines.next() != Some(HEADER.as_bytes()) {
            return Err(damaged());
        }
        let mut field = |key: &str| -> Result<String> {
            let line = lines.next().ok_or_else(damaged)?;
            let line = std::str::from_utf8(line).map_err(|_| damaged())?;
            line.strip_prefix(key)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(damaged)
        };
        let from = field("from")?.parse().map_err(|_| damaged())?;
        let to = field("to")?.parse().map_err(|_| damaged())?;
        let strategy = field("strategy")?;
        let mut temps = Vec::new();
        for line in lines {
            // A torn last line was not acted on yet.
            if let Some(hex) = line.strip_prefix(b"temp ")
                && let Some(bytes) = unhex(hex)
            {
                temps.push(PathBuf::from(std::ffi::OsStr::from_bytes(&bytes)));
            }
        }
        Ok(Some(Begun {
            from,
            to,
            strategy,
            temps,
        }))
    }

    /// Record, durably, the upgrade about to start.
    pub fn begin(&self, from: u64, to: u64, strategy: &str) -> Result<()> {
        crate::staging::make_private_dir(&self.dir)?;
        let text = format!("{HEADER}\nfrom {from}\nto {to}\nstrategy {strategy}\n");
        let tmp = self.dir.join(format!(
            ".{}.tmp",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(MODE)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            std::fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| Error::io("write", &self.path, e))
    }

    /// Record, durably and before it is used, a random name `rel` inside
    /// the tree.
    pub fn note_temp(&self, rel: &Path) -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path)?;
        file.write_all(format!("temp {}\n", hex(rel.as_os_str().as_bytes())).as_bytes())?;
        file.sync_data()
    }

    /// The upgrade is complete: forget it.
    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("remove", &self.path, e))
            }
            _ => Ok(()),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &[u8]) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    text.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
        .collect()
}
