//! What `merge-skel` and `split-skel` share: the skel's lifecycle lock,
//! whether its temporary vserver's name is taken, the merged state, and
//! durable small files.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::Skel;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::sys;
use crate::validate::validate_name;

/// Hold the skel's lifecycle lock (released when the file is dropped).
pub fn lock(skel: &Skel) -> Result<File> {
    let path = skel.dirs.lifecycle_lock();
    sys::open_locked(&path).map_err(|e| Error::io("open and lock", &path, e))
}

/// Does anything (not followed) exist at `path`? Only ENOENT means no.
pub fn exists(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("stat", path, e)),
    }
}

/// Is skel `skel` merged (its marker and its temporary vserver exist)?
pub fn is_merged(config: &Config, skel: &Skel) -> Result<bool> {
    let temp = Layout::new(config).vserver(&Layout::temp_vserver_name(&skel.name));
    Ok(exists(&skel.dirs.merged_marker())? && exists(&temp)?)
}

/// Why skel `name`'s temporary vserver name cannot be used now, if it
/// cannot: a tree, a registered vserver or a view of that name.
pub fn temp_is_taken(config: &Config, name: &str) -> Result<Option<String>> {
    let layout = Layout::new(config);
    let temp = Layout::temp_vserver_name(name);
    validate_name("temporary vserver name", &temp)?;
    let tree = layout.vserver(&temp);
    if exists(&tree)? {
        return Ok(Some(format!(
            "{} exists already (a vserver or a stray directory)",
            tree.display()
        )));
    }
    let record = layout.record(&temp);
    if exists(&record)? {
        return Ok(Some(format!(
            "a vserver named \"{temp}\" is registered ({})",
            record.display()
        )));
    }
    let view = layout.view(&temp).dir;
    if exists(&view)? {
        return Ok(Some(format!("a view {} exists", view.display())));
    }
    Ok(None)
}

/// If `vserver` is a merged skel's temporary vserver, the reason
/// `create-vs`/`remove-vs` refuse it.
pub fn refuse_temp_vserver(config: &Config, vserver: &str) -> Result<()> {
    let Some(skel) = vserver.strip_prefix(crate::layout::TEMP_VSERVER_PREFIX) else {
        return Ok(());
    };
    Err(Error::Usage(format!(
        "\"{vserver}\" is the name of skel \"{skel}\"'s temporary vserver (vskel merge-skel \
         {skel} makes it, vskel split-skel {skel} removes it){}; choose another name",
        match Skel::named(config, skel) {
            Ok(s) if exists(&s.dirs.merged_marker()).unwrap_or(false) => ", merged now",
            _ => "",
        }
    )))
}

/// Write `path` whole and durably (temporary name, fsync, rename, fsync
/// of the directory).
pub fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(data)
        .map_err(|e| Error::io("write", &tmp, e))?;
    sys::fsync(file.as_fd()).map_err(|e| Error::io("flush to disk", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename into place", path, e))?;
    let parent = path.parent().unwrap_or(Path::new("/"));
    let dir = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
    sys::fsync(dir.as_fd()).map_err(|e| Error::io("flush to disk", parent, e))
}
