//! What the demo prints about the files it made: `ls -l`-style lines
//! (with inode numbers, to show sharing) and how many of a tree's files
//! are hard links to its skel's inodes.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// File type bits of `st_mode`.
const TYPE_MASK: u32 = 0o170_000;
/// The `ls -l` letter of each file type.
const TYPE_LETTERS: &[(u32, char)] = &[
    (0o040_000, 'd'),
    (0o120_000, 'l'),
    (0o100_000, '-'),
    (0o020_000, 'c'),
    (0o060_000, 'b'),
    (0o010_000, 'p'),
    (0o140_000, 's'),
];

/// `mode` as `ls -l` writes it (`-rwsr-xr-x`).
pub fn mode_string(mode: u32) -> String {
    let kind = TYPE_LETTERS
        .iter()
        .find(|(bits, _)| mode & TYPE_MASK == *bits)
        .map_or('?', |(_, c)| *c);
    let mut s = String::from(kind);
    // (read, write, execute bit, special bit, special letter) per class
    let classes = [
        (0o400, 0o200, 0o100, 0o4000, 's'),
        (0o040, 0o020, 0o010, 0o2000, 's'),
        (0o004, 0o002, 0o001, 0o1000, 't'),
    ];
    for (r, w, x, special, letter) in classes {
        s.push(if mode & r != 0 { 'r' } else { '-' });
        s.push(if mode & w != 0 { 'w' } else { '-' });
        s.push(match (mode & x != 0, mode & special != 0) {
            (true, true) => letter,
            (false, true) => letter.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// One `ls -li`-style line for `path`, shown as `shown`: inode, mode,
/// link count, owner, group, size, name (and a symlink's target).
pub fn ls_line(path: &Path, shown: &str) -> io::Result<String> {
    let meta = fs::symlink_metadata(path)?;
    let target = if meta.file_type().is_symlink() {
        format!(" -> {}", fs::read_link(path)?.display())
    } else {
        String::new()
    };
    Ok(format!(
        "{:>9} {} {:>2} {:>4} {:>4} {:>6} {shown}{target}",
        meta.ino(),
        mode_string(meta.mode()),
        meta.nlink(),
        meta.uid(),
        meta.gid(),
        meta.len()
    ))
}

/// How a tree's entries relate to its skel's global part.
#[derive(Debug, Default)]
pub struct Sharing {
    /// Entries that are not directories.
    pub entries: u64,
    /// Of those, hard links to the skel's global inodes.
    pub linked: u64,
    /// Paths (relative) of the linked ones, in walk order.
    pub linked_paths: Vec<PathBuf>,
}

/// Walk `tree` (not following symlinks) and count its non-directory
/// entries that share the inode of the same path in `global`.
pub fn sharing(tree: &Path, global: &Path) -> io::Result<Sharing> {
    let mut found = Sharing::default();
    walk(tree, Some(global), Path::new(""), &mut found)?;
    Ok(found)
}

/// How many entries below `dir` are not directories.
pub fn count_entries(dir: &Path) -> io::Result<u64> {
    let mut found = Sharing::default();
    walk(dir, None, Path::new(""), &mut found)?;
    Ok(found.entries)
}

fn walk(tree: &Path, global: Option<&Path>, rel: &Path, found: &mut Sharing) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(tree.join(rel))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()?;
    names.sort();
    for name in names {
        let rel = rel.join(name);
        let meta = fs::symlink_metadata(tree.join(&rel))?;
        if meta.is_dir() {
            walk(tree, global, &rel, found)?;
            continue;
        }
        found.entries += 1;
        let Some(global) = global else {
            continue;
        };
        let shared = match fs::symlink_metadata(global.join(&rel)) {
            Ok(g) => g.ino() == meta.ino() && g.dev() == meta.dev(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        if shared {
            found.linked += 1;
            found.linked_paths.push(rel);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings() {
        for (mode, text) in [
            (0o100_644, "-rw-r--r--"),
            (0o104_755, "-rwsr-xr-x"),
            (0o041_777, "drwxrwxrwt"),
            (0o041_776, "drwxrwxrwT"),
            (0o102_640, "-rw-r-S---"),
            (0o120_777, "lrwxrwxrwx"),
            (0o020_600, "crw-------"),
        ] {
            assert_eq!(mode_string(mode), text, "{mode:o}");
        }
    }

    #[test]
    fn sharing_counts_hard_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let (tree, global) = (dir.path().join("tree"), dir.path().join("global"));
        fs::create_dir_all(tree.join("bin")).unwrap();
        fs::create_dir_all(global.join("bin")).unwrap();
        fs::write(global.join("bin/a"), "a").unwrap();
        fs::hard_link(global.join("bin/a"), tree.join("bin/a")).unwrap();
        fs::write(global.join("bin/b"), "b").unwrap();
        fs::write(tree.join("bin/b"), "b").unwrap();
        fs::write(tree.join("c"), "c").unwrap();
        let found = sharing(&tree, &global).unwrap();
        assert_eq!((found.entries, found.linked), (3, 1));
        assert_eq!(found.linked_paths, [PathBuf::from("bin/a")]);
    }
}
