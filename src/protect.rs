//! Protection of shared inodes (config `protect`).
//!
//! * `none`: nothing.
//! * `immutable`: `chattr +i` on every regular file of a skel's global
//!   tree. Linux refuses to link or unlink an immutable inode, so vskel
//!   unlocks it for exactly that call (see `tree::copy` and `tree::remove`).
//! * `iunlink`: Linux-VServer's immutable-unlink attribute (a file may be
//!   unlinked and linked, not changed), set with util-vserver's `setattr
//!   --iunlink`. It needs a Linux-VServer kernel (`/proc/virtual`); without
//!   one vskel refuses up front.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use rustix::fs::FileType;

use crate::config::Protect;
use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::walk::par_walk;

/// Present only on a Linux-VServer kernel.
const VSERVER_PROC: &str = "/proc/virtual";
/// util-vserver's attribute tool.
const SETATTR: &str = "setattr";
/// Files handed to one `setattr` run.
const SETATTR_BATCH: usize = 512;

/// Refuse a protection mode this machine cannot give.
pub fn check_supported(protect: Protect) -> Result<()> {
    if protect == Protect::Iunlink && !Path::new(VSERVER_PROC).exists() {
        return Err(Error::Failed(format!(
            "protect = \"iunlink\" needs a Linux-VServer kernel, and this kernel has none \
             ({VSERVER_PROC} is missing); set protect = \"immutable\" or \"none\" in the config"
        )));
    }
    Ok(())
}

/// Protect every regular file below `tree` as `protect` says; returns how
/// many files were protected.
pub fn protect_tree(tree: &TreeRoot, protect: Protect) -> Result<u64> {
    match protect {
        Protect::None => Ok(0),
        Protect::Immutable => {
            let files = regular_files(tree)?;
            for (dir_rel, name) in &files {
                let dir = tree.open_dir(dir_rel)?;
                let rel = dir_rel.join(sys::os_name(name));
                let file = sys::open_file_read(dir.as_fd(), name)
                    .map_err(|e| Error::io("open", tree.display(&rel), e))?;
                sys::set_immutable(file.as_fd(), true)
                    .map_err(|e| Error::io("set immutable attribute", tree.display(&rel), e))?;
            }
            Ok(files.len() as u64)
        }
        Protect::Iunlink => {
            check_supported(protect)?;
            let files = regular_files(tree)?;
            let paths: Vec<PathBuf> = files
                .iter()
                .map(|(dir, name)| tree.display(&dir.join(sys::os_name(name))))
                .collect();
            for batch in paths.chunks(SETATTR_BATCH) {
                let status = Command::new(SETATTR)
                    .arg("--iunlink")
                    .arg("--")
                    .args(batch)
                    .status()
                    .map_err(|e| Error::io("run", SETATTR, e))?;
                if !status.success() {
                    return Err(Error::Failed(format!(
                        "`{SETATTR} --iunlink` failed ({status}) on files of {}",
                        tree.path().display()
                    )));
                }
            }
            Ok(paths.len() as u64)
        }
    }
}

/// Every regular file below `tree` as (directory, name).
fn regular_files(tree: &TreeRoot) -> Result<Vec<(PathBuf, std::ffi::CString)>> {
    let found = Mutex::new(Vec::new());
    par_walk(PathBuf::new(), &|rel: PathBuf| {
        let dir = tree.open_dir(&rel)?;
        let mut subdirs = Vec::new();
        let entries = sys::read_dir(dir.as_fd())
            .map_err(|e| Error::io("read directory", tree.display(&rel), e))?;
        let mut files = Vec::new();
        for entry in entries {
            let mut ft = entry.file_type;
            if ft == FileType::Unknown {
                let st = sys::stat_at(dir.as_fd(), &entry.name)
                    .map_err(|e| Error::io("stat", tree.display(&rel), e))?;
                ft = FileType::from_raw_mode(st.st_mode as _);
            }
            match ft {
                FileType::Directory => subdirs.push(rel.join(sys::os_name(&entry.name))),
                FileType::RegularFile => files.push((rel.clone(), entry.name)),
                _ => {}
            }
        }
        found
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(files);
        Ok(subdirs)
    })?;
    Ok(found.into_inner().unwrap_or_else(|p| p.into_inner()))
}
