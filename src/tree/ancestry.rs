//! Where a directory sits: the identities (device, inode) of an opened
//! directory and of each of its ancestors up to `/`, found by walking `..`
//! from its descriptor. Deciding "is A inside B" on these, not on path
//! strings, leaves no way around it by `..`, symlinks or bind mounts.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::TreeRoot;
use crate::error::{Error, Result};
use crate::sys;

/// Most ancestors followed (a path of 4096 bytes has at most 2048
/// components; a longer chain means the walk is not ending).
const MAX_DEPTH: usize = 4096;

/// Device and inode: the identity of a directory.
pub type DirId = (u64, u64);

/// The identity of the open directory `fd`.
pub fn dir_id(fd: BorrowedFd<'_>) -> std::io::Result<DirId> {
    let st = sys::fstat(fd)?;
    Ok((sys::dev_of(&st), sys::ino_of(&st)))
}

/// The identities of `tree`'s root and of each of its ancestors up to `/`,
/// nearest first (so `[0]` is the root itself).
pub fn ancestry(tree: &TreeRoot) -> Result<Vec<DirId>> {
    let failed = |e| Error::io("find the parent directories of", tree.path(), e);
    let mut chain = vec![dir_id(tree.fd()).map_err(failed)?];
    let mut current: Option<OwnedFd> = None;
    while chain.len() <= MAX_DEPTH {
        let dir = current.as_ref().map_or(tree.fd(), |fd| fd.as_fd());
        let parent = sys::open_parent(dir).map_err(failed)?;
        let id = dir_id(parent.as_fd()).map_err(failed)?;
        if Some(&id) == chain.last() {
            return Ok(chain); // `..` of `/` is `/`
        }
        chain.push(id);
        current = Some(parent);
    }
    Err(Error::Failed(format!(
        "{}: more than {MAX_DEPTH} parent directories",
        tree.path().display()
    )))
}

/// Is `inner` the directory `outer` or inside it?
pub fn is_within(inner: &TreeRoot, outer: &TreeRoot) -> Result<bool> {
    let outer_id = dir_id(outer.fd()).map_err(|e| Error::io("stat", outer.path(), e))?;
    Ok(ancestry(inner)?.contains(&outer_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn ancestry_ends_at_the_root() {
        let root = TreeRoot::open(Path::new("/")).unwrap();
        assert_eq!(ancestry(&root).unwrap().len(), 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b/c")).unwrap();
        let deep = TreeRoot::open(&dir.path().join("a/b/c")).unwrap();
        let chain = ancestry(&deep).unwrap();
        assert_eq!(chain.last(), ancestry(&root).unwrap().last());
        assert!(chain.len() >= 4);
    }

    #[test]
    fn within_sees_through_symlinks_and_dotdot() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("outer/inner")).unwrap();
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("outer/inner"), dir.path().join("ln")).unwrap();
        let open = |rel: &str| TreeRoot::open(&dir.path().join(rel)).unwrap();
        let outer = open("outer");
        assert!(is_within(&open("ln"), &outer).unwrap());
        assert!(is_within(&open("other/../outer/inner"), &outer).unwrap());
        assert!(is_within(&open("outer"), &outer).unwrap());
        assert!(!is_within(&open("other"), &outer).unwrap());
        assert!(!is_within(&open(""), &outer).unwrap());
    }
}
