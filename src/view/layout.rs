//! Whether a stack of layers may be served: the rules kernel overlayfs
//! enforces when it mounts (`fs/overlayfs/super.c`), and a little more.
//!
//! * Every layer (upper, work, each lower) is a directory of its own: no
//!   two are the same directory and none is inside another. The kernel
//!   refuses all of these except a work or upper directory inside a lower
//!   one (which it only catches on lookup); vskel refuses those too.
//! * The work directory is on the upper layer's mount (scratch entries are
//!   renamed from one to the other).
//!
//! Both are decided on the opened directories, by device and inode: each
//! layer's ancestors are found by walking `..` from its descriptor up to
//! `/` (`tree::ancestry`), so `..` or symlinks in the given paths, and bind mounts of one
//! directory in two places, cannot hide that two layers overlap. A work
//! directory equal to, inside or above another layer would let vskel's
//! scratch space clean-up reach that layer's files.

use crate::error::{Error, Result};
use crate::sys;
use crate::tree::TreeRoot;
use crate::tree::ancestry::ancestry;

/// One layer, named as on kernel overlayfs' command line.
struct Named<'a> {
    /// `upperdir`, `workdir` or `lowerdir`.
    option: &'static str,
    tree: &'a TreeRoot,
}

impl Named<'_> {
    fn show(&self) -> String {
        format!("{}={}", self.option, self.tree.path().display())
    }
}

/// Refuse a stack whose layers overlap (see the module doc) or whose work
/// directory is not on the upper's mount, with a usage error naming both
/// directories.
pub fn check(upper: &TreeRoot, work: &TreeRoot, lowers: &[TreeRoot]) -> Result<()> {
    let mut layers = vec![
        Named {
            option: "upperdir",
            tree: upper,
        },
        Named {
            option: "workdir",
            tree: work,
        },
    ];
    layers.extend(lowers.iter().map(|tree| Named {
        option: "lowerdir",
        tree,
    }));
    let chains = layers
        .iter()
        .map(|layer| ancestry(layer.tree))
        .collect::<Result<Vec<_>>>()?;
    for (i, a) in layers.iter().enumerate() {
        for (j, b) in layers.iter().enumerate() {
            if i == j {
                continue;
            }
            let (a_id, b_chain) = (chains[i][0], &chains[j]);
            if a_id == b_chain[0] {
                if i < j {
                    return Err(overlap(format!(
                        "{} and {} are the same directory",
                        a.show(),
                        b.show()
                    )));
                }
            } else if b_chain[1..].contains(&a_id) {
                return Err(overlap(format!("{} is inside {}", b.show(), a.show())));
            }
        }
    }
    same_mount(upper, work)
}

fn overlap(what: String) -> Error {
    Error::Usage(format!(
        "{what}: the layers of an overlay must be separate directories, none inside \
         another (nothing was mounted or changed)"
    ))
}

/// Refuse a work directory on another mount than the upper layer.
fn same_mount(upper: &TreeRoot, work: &TreeRoot) -> Result<()> {
    let id = |tree: &TreeRoot| {
        sys::mount_id(tree.fd()).map_err(|e| Error::io("find the mount of", tree.path(), e))
    };
    if id(upper)? != id(work)? {
        return Err(Error::Usage(format!(
            "upperdir={} and workdir={} are on different mounts; the work directory \
             must be on the upper directory's filesystem and mount",
            upper.path().display(),
            work.path().display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn open(base: &Path, rel: &str) -> TreeRoot {
        let path = base.join(rel);
        std::fs::create_dir_all(&path).unwrap();
        TreeRoot::open(&path).unwrap()
    }

    #[test]
    fn overlapping_layers_are_refused() {
        // (lowers, upper, work, expected part of the message; None: accepted)
        let cases: &[(&[&str], &str, &str, Option<&str>)] = &[
            (&["low"], "up", "wk", None),
            (&["low", "low2"], "up", "wk", None),
            (&["low"], "up", "", Some("workdir=")),
            (&["low"], "up", "up", Some("are the same directory")),
            (&["low"], "up", "low", Some("are the same directory")),
            (&["low"], "up", "up/in", Some("is inside upperdir=")),
            (&["low"], "up", "low/in", Some("is inside lowerdir=")),
            (&["low"], "low/in", "wk", Some("upperdir=")),
            (&["up/in"], "up", "wk", Some("lowerdir=")),
            (&["low", "low"], "up", "wk", Some("are the same directory")),
            (&["low", "low/in"], "up", "wk", Some("is inside lowerdir=")),
            (&["low/in", "low"], "up", "wk", Some("is inside lowerdir=")),
            (&[""], "up", "wk", Some("is inside lowerdir=")),
            (&["low"], "", "wk", Some("is inside upperdir=")),
            (&["low"], "up", "up/../wk/..", Some("workdir=")),
        ];
        for (lowers, upper, work, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            let lowers: Vec<_> = lowers.iter().map(|l| open(dir.path(), l)).collect();
            let upper_tree = open(dir.path(), upper);
            let work_tree = open(dir.path(), work);
            let got = check(&upper_tree, &work_tree, &lowers);
            match (got, want) {
                (Ok(()), None) => {}
                (Err(e), Some(part)) => {
                    let text = e.to_string();
                    assert!(text.contains(part), "{upper} {work} {lowers:?}: {text}");
                    assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{text}");
                }
                (got, want) => panic!("{upper} {work}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_symlinked_path_is_seen_through() {
        let dir = tempfile::tempdir().unwrap();
        let upper = open(dir.path(), "up");
        let low = open(dir.path(), "low");
        std::os::unix::fs::symlink(dir.path(), dir.path().join("alias")).unwrap();
        let work = TreeRoot::open(&dir.path().join("alias")).unwrap();
        let err = check(&upper, &work, &[low]).unwrap_err().to_string();
        assert!(err.contains("is inside workdir="), "{err}");
    }
}
