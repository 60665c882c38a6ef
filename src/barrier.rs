//! The barrier between host users and the vservers: nobody but root (the
//! user vskel runs as) may enter `<root>`, as util-vserver closes
//! `/vservers` (mode 000 and its barrier attribute).
//!
//! A vserver's root may leave a setuid-root program anywhere in its tree
//! or its view. Inside the vserver that is its own business; but a host
//! user who could reach the file by its host path (`<root>/NAME/tmp/x`)
//! would run it as root of the host. So `<root>`, and vskel's directories
//! in it (`.skel`, `.vskel`, `.views` and each `.views/NAME`, above every
//! view's default mount point), are owned by root and closed to group and
//! others (made 0700; 0000 is fine too). Processes inside a vserver are
//! not hindered: they were chrooted into its tree or view by root and
//! never pass through `<root>` again.
//!
//! Every command (except `overlay`, which serves directories of the
//! caller's choice) checks these directories first and closes any that is
//! open, with a warning naming it. A view mounted elsewhere than below
//! `<root>` must have a closed directory above it ([`require_closed_above`]).

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::layout::{PRIVATE_DIRS, VIEWS_DIR};
use crate::sys;
use crate::validate::validate_root;

/// Permission bits that let users other than the owner in.
const OPEN_BITS: u32 = 0o077;
/// Search permission for group or others: what passing through needs.
const SEARCH_BITS: u32 = 0o011;

/// Close `<root>` and vskel's directories in it to everyone but root,
/// each one found open with a warning. A missing `<root>` is left to be
/// made (0700) by the command that needs it.
pub fn enforce(config: &Config) -> Result<()> {
    let root = &config.root;
    let root_fd = match sys::open_root(root) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("open the vservers root", root, e)),
    };
    // The config refused / and system directories; a symlink swapped in
    // since must not make vskel close /usr.
    let resolved = std::fs::canonicalize(root).map_err(|e| Error::io("resolve", root, e))?;
    validate_root(&resolved)?;
    close(root_fd.as_fd(), root)?;
    for name in PRIVATE_DIRS {
        let path = root.join(name);
        let cname = sys::cname(name.as_ref()).map_err(|e| Error::io("name", &path, e))?;
        let Some(dir) = open_private(root_fd.as_fd(), &cname, &path)? else {
            continue;
        };
        close(dir.as_fd(), &path)?;
        // each view has a private directory of its own
        if name == VIEWS_DIR {
            close_entries(dir.as_fd(), &path)?;
        }
    }
    Ok(())
}

/// Close every directory in `dir` (the views' state directories).
fn close_entries(dir: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let entries = sys::read_dir(dir).map_err(|e| Error::io("read", path, e))?;
    for entry in entries {
        let entry_path = path.join(sys::os_name(&entry.name));
        if let Some(sub) = open_private(dir, &entry.name, &entry_path)? {
            close(sub.as_fd(), &entry_path)?;
        }
    }
    Ok(())
}

/// Open the directory `name` in `dir` (never a symlink); `None` when it is
/// missing or is no directory (then nothing can be reached through it).
fn open_private(dir: BorrowedFd<'_>, name: &CStr, path: &Path) -> Result<Option<OwnedFd>> {
    match sys::open_subdir(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {
            warn!(
                "{} is not a directory; vskel expected one of its own there",
                path.display()
            );
            Ok(None)
        }
        Err(e) => Err(Error::io("open directory", path, e)),
    }
}

/// Make the open directory `fd` owned by vskel's user and closed to group
/// and others, saying so when it was not.
fn close(fd: BorrowedFd<'_>, path: &Path) -> Result<()> {
    let st = sys::fstat(fd).map_err(|e| Error::io("stat", path, e))?;
    let me = sys::euid();
    if st.st_uid != me {
        sys::fchown(fd, me, st.st_gid).map_err(|e| Error::io("chown", path, e))?;
        warn!(
            "{} belonged to user {}; it is vskel's user's now (whoever owns it can open it \
             to every host user)",
            path.display(),
            st.st_uid
        );
    }
    let mode = st.st_mode & 0o7777;
    if mode & OPEN_BITS != 0 {
        let closed = mode & 0o700;
        sys::fchmod(fd, closed).map_err(|e| Error::io("chmod", path, e))?;
        warn!(
            "closed {} to users other than root (mode {mode:04o} -> {closed:04o}): through \
             it, host users could reach the vservers' files and run their setuid programs",
            path.display()
        );
    }
    Ok(())
}

/// Refuse to mount a view at `mountpoint` unless a directory above it
/// keeps host users out (owned by vskel's user, no search permission for
/// group or others), as `<root>` does.
pub fn require_closed_above(mountpoint: &Path) -> Result<()> {
    let parent = mountpoint.parent().unwrap_or(Path::new("/"));
    let mut dir = sys::open_root(parent).map_err(|e| Error::io("open directory", parent, e))?;
    let mut at = PathBuf::from(parent);
    loop {
        let st = sys::fstat(dir.as_fd()).map_err(|e| Error::io("stat", &at, e))?;
        if st.st_uid == sys::euid() && st.st_mode & SEARCH_BITS == 0 {
            return Ok(());
        }
        let up = sys::open_parent(dir.as_fd()).map_err(|e| Error::io("open parent of", &at, e))?;
        let up_st = sys::fstat(up.as_fd()).map_err(|e| Error::io("stat", &at, e))?;
        if (up_st.st_dev, up_st.st_ino) == (st.st_dev, st.st_ino) {
            return Err(Error::Usage(format!(
                "no directory above {} is closed to host users, who could then run the \
                 view's setuid programs as root; mount it below a directory of mode 0700 \
                 owned by root (such as the default, <root>/.views/NAME/merged)",
                mountpoint.display()
            )));
        }
        dir = up;
        at.push("..");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn open_directories_are_closed_and_trees_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vservers");
        for sub in [".skel/base", ".vskel", ".views/web1/merged", "tree1"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
        for (rel, m) in [
            ("", 0o755),
            (".skel", 0o755),
            (".skel/base", 0o755),
            (".vskel", 0o711),
            (".views", 0o750),
            (".views/web1", 0o705),
            (".views/web1/merged", 0o755),
            ("tree1", 0o755),
        ] {
            chmod(&root.join(rel), m);
        }
        let config = Config {
            root: root.clone(),
            ..Config::default()
        };
        enforce(&config).unwrap();
        let cases = [
            ("", 0o700),
            (".skel", 0o700),
            (".vskel", 0o700),
            (".views", 0o700),
            (".views/web1", 0o700),
            // Below the barrier, as they were: a vserver's / is 0755.
            (".skel/base", 0o755),
            (".views/web1/merged", 0o755),
            ("tree1", 0o755),
        ];
        for (rel, want) in cases {
            assert_eq!(mode(&root.join(rel)), want, "{rel}");
        }
        // Already closed (util-vserver's 000 included): left as it is.
        chmod(&root, 0o000);
        enforce(&config).unwrap();
        assert_eq!(mode(&root), 0o000);
        chmod(&root, 0o700);
    }

    #[test]
    fn a_missing_root_is_no_error_and_a_symlink_to_a_system_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            root: dir.path().join("missing"),
            ..Config::default()
        };
        enforce(&config).unwrap();
        assert!(!config.root.exists());
        std::os::unix::fs::symlink("/usr", dir.path().join("usr-link")).unwrap();
        let config = Config {
            root: dir.path().join("usr-link"),
            ..Config::default()
        };
        let before = mode(Path::new("/usr"));
        let err = enforce(&config).unwrap_err().to_string();
        assert!(err.contains("system directory"), "{err}");
        assert_eq!(mode(Path::new("/usr")), before);
    }

    #[test]
    fn a_mount_point_needs_a_closed_directory_above_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("a/b");
        fs::create_dir_all(base.join("mnt")).unwrap();
        for rel in ["a", "a/b"] {
            chmod(&dir.path().join(rel), 0o755);
        }
        chmod(dir.path(), 0o700);
        require_closed_above(&base.join("mnt")).unwrap();
        // The temp dir's ancestors are open to everyone: nothing closes it.
        chmod(dir.path(), 0o755);
        let err = require_closed_above(&base.join("mnt")).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_USAGE);
        assert!(err.to_string().contains("closed to host users"), "{err}");
        chmod(&dir.path().join("a"), 0o710);
        assert!(require_closed_above(&base.join("mnt")).is_err());
        chmod(&dir.path().join("a"), 0o700);
        require_closed_above(&base.join("mnt")).unwrap();
    }
}
