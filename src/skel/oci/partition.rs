//! Which global/ entries go into which layer of a skel's image, so that a
//! small change of the skel (a package upgrade) changes a small part of
//! the image.
//!
//! * All directories are one layer (small: a changed file changes its
//!   directory's time, and directories are shared by many packages).
//! * Files a Debian package owns (its `var/lib/dpkg/info/PKG.list`) are
//!   the package's layer; with more than [`PACKAGE_LAYERS`] packages, a
//!   package goes to the layer its name hashes to, so adding a package
//!   moves no other.
//! * The other files (a skel that is not Debian's, files no package
//!   owns) are cut by directory: a directory whose subtree is larger than
//!   the target size is split (its files are one unit, each subdirectory
//!   is cut the same way); a smaller subtree is one unit. Units of at
//!   least a quarter of the target are layers of their own; runs of
//!   smaller ones are joined, with a cut after each unit whose path hashes
//!   to 0 mod 8, so that where a run is cut depends on paths, not sizes.
//!   The target is a power of two, doubled until at most
//!   [`MAX_LAYERS`] layers remain in all.
//! * Layers that share an inode are joined (OCI keeps hard links only
//!   inside one layer).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::generation::{Entry, Kind};

/// At most this many layers for global/.
pub const MAX_LAYERS: usize = 64;
/// At most this many layers of package files.
pub const PACKAGE_LAYERS: usize = 40;
/// The smallest target size of a layer.
const MIN_TARGET: u64 = 1 << 20;
/// What one entry costs besides its data (a tar header).
const ENTRY_COST: u64 = 512;
/// A run of small units is cut after a unit whose path hash is 0 mod this.
const CUT_MODULUS: u8 = 8;

/// One layer: its entries' paths (sorted) and the units it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The paths of its entries, sorted by bytes.
    pub paths: Vec<PathBuf>,
    /// The roots of its units, for the layer's annotation.
    pub units: Vec<PathBuf>,
}

/// Cut `entries` (one part's, sorted by path bytes) into layers;
/// `owners` maps a path to the package that owns it.
pub fn partition(entries: &[Entry], owners: &HashMap<PathBuf, String>) -> Vec<Group> {
    let dirs: Vec<&Entry> = entries.iter().filter(|e| e.kind == Kind::Dir).collect();
    let mut packages: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    let mut rest: Vec<Entry> = Vec::new();
    for e in entries.iter().filter(|e| e.kind != Kind::Dir) {
        match owners.get(&e.path) {
            Some(p) => packages.entry(p.clone()).or_default().push(e),
            None => rest.push(e.clone()),
        }
    }
    let mut groups = Vec::new();
    if !dirs.is_empty() {
        groups.push(group_of(&dirs, vec![PathBuf::from("(directories)")]));
    }
    // Packages: one layer each, or hashed into PACKAGE_LAYERS bins.
    let mut bins: BTreeMap<usize, (Vec<&Entry>, Vec<PathBuf>)> = BTreeMap::new();
    let hashed = packages.len() > PACKAGE_LAYERS;
    for (i, (name, files)) in packages.into_iter().enumerate() {
        let bin = if hashed {
            blake3::hash(name.as_bytes()).as_bytes()[0] as usize % PACKAGE_LAYERS
        } else {
            i
        };
        let slot = bins.entry(bin).or_default();
        slot.0.extend(files);
        slot.1.push(PathBuf::from(format!("(package {name})")));
    }
    for (_, (files, names)) in bins {
        groups.push(group_of(&files, names));
    }
    // The rest, by directory, in the layers left.
    let room = MAX_LAYERS.saturating_sub(groups.len()).max(1);
    let dir_paths: HashSet<&Path> = dirs.iter().map(|e| e.path.as_path()).collect();
    if !rest.is_empty() {
        let total: u64 = rest.iter().map(cost).sum();
        let mut target = (total / 32).next_power_of_two().max(MIN_TARGET);
        loop {
            let cut_groups = cut(&rest, &dir_paths, target);
            if cut_groups.len() <= room {
                groups.extend(cut_groups);
                break;
            }
            target *= 2;
        }
    }
    join_shared_inodes(entries, groups)
}

fn group_of(entries: &[&Entry], units: Vec<PathBuf>) -> Group {
    Group {
        paths: entries.iter().map(|e| e.path.clone()).collect(),
        units,
    }
}

/// Join the groups that hold names of one inode (the first keeps its
/// place); each group's paths sorted.
fn join_shared_inodes(entries: &[Entry], groups: Vec<Group>) -> Vec<Group> {
    let inode: HashMap<&Path, (u64, u64)> = entries
        .iter()
        .filter(|e| e.kind != Kind::Dir)
        .map(|e| (e.path.as_path(), e.inode()))
        .collect();
    let mut owner: Vec<usize> = (0..groups.len()).collect();
    fn find(owner: &mut [usize], mut x: usize) -> usize {
        while owner[x] != x {
            owner[x] = owner[owner[x]];
            x = owner[x];
        }
        x
    }
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    for (g, group) in groups.iter().enumerate() {
        for p in &group.paths {
            if let Some(&ino) = inode.get(p.as_path()) {
                let at = *first.entry(ino).or_insert(g);
                let (a, b) = (find(&mut owner, at), find(&mut owner, g));
                if a != b {
                    owner[a.max(b)] = a.min(b);
                }
            }
        }
    }
    let mut joined: Vec<Option<Group>> = vec![None; groups.len()];
    for (g, group) in groups.into_iter().enumerate() {
        let into = find(&mut owner, g);
        match &mut joined[into] {
            Some(j) => {
                j.paths.extend(group.paths);
                j.units.extend(group.units);
            }
            slot => *slot = Some(group),
        }
    }
    joined
        .into_iter()
        .flatten()
        .map(|mut g| {
            g.paths
                .sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
            g
        })
        .collect()
}

fn cost(e: &Entry) -> u64 {
    ENTRY_COST + if e.kind == Kind::File { e.size } else { 0 }
}

fn cut(entries: &[Entry], is_dir: &HashSet<&Path>, target: u64) -> Vec<Group> {
    // Subtree sizes of directories.
    let mut subtree: HashMap<&Path, u64> = HashMap::new();
    for e in entries {
        let c = cost(e);
        for a in e.path.ancestors() {
            *subtree.entry(a).or_default() += c;
        }
    }
    // A directory is split when its subtree is over the target and its
    // parent is split (or it is the root).
    let split = |p: &Path| subtree.get(p).copied().unwrap_or(0) > target;
    let unit_of = |e: &Entry| -> PathBuf {
        let mut at = Path::new("");
        if !split(at) {
            return PathBuf::new();
        }
        let mut rest = e.path.components();
        loop {
            let Some(next) = rest.next() else {
                return at.to_path_buf(); // e is a split directory itself
            };
            let child = at.join(next);
            let child_is_dir = is_dir.contains(child.as_path());
            if !child_is_dir {
                return at.to_path_buf(); // a file of a split directory
            }
            if !split(&child) {
                return child; // a whole subtree
            }
            at = subtree
                .get_key_value(child.as_path())
                .map_or(at, |(k, _)| k);
        }
    };
    // Units, sorted by root.
    let mut units: Vec<(PathBuf, Vec<usize>, u64)> = Vec::new();
    let mut index: HashMap<PathBuf, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let root = unit_of(e);
        let at = *index.entry(root.clone()).or_insert_with(|| {
            units.push((root, Vec::new(), 0));
            units.len() - 1
        });
        units[at].1.push(i);
        units[at].2 += cost(e);
    }
    units.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
    // Layers of units.
    let mut layers: Vec<Vec<usize>> = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    for (u, (root, _, size)) in units.iter().enumerate() {
        if *size >= target / 4 {
            if !run.is_empty() {
                layers.push(std::mem::take(&mut run));
            }
            layers.push(vec![u]);
            continue;
        }
        run.push(u);
        if blake3::hash(root.as_os_str().as_bytes()).as_bytes()[0] % CUT_MODULUS == 0 {
            layers.push(std::mem::take(&mut run));
        }
    }
    if !run.is_empty() {
        layers.push(run);
    }
    layers
        .into_iter()
        .map(|us| Group {
            paths: us
                .iter()
                .flat_map(|&u| units[u].1.iter().map(|&i| entries[i].path.clone()))
                .collect(),
            units: us.iter().map(|&u| units[u].0.clone()).collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::Part;

    fn entry(path: &str, kind: Kind, size: u64, ino: u64) -> Entry {
        Entry {
            part: Part::Global,
            path: PathBuf::from(path),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            size,
            mtime: (0, 0),
            ctime: (0, 0),
            rdev: 0,
            dev: 1,
            ino,
            xattrs: Vec::new(),
            hash: None,
        }
    }

    /// A tree of `dirs` top directories with `files` files of `size` each.
    fn tree(dirs: usize, files: usize, size: u64) -> Vec<Entry> {
        let mut out = vec![entry("", Kind::Dir, 0, 1)];
        let mut ino = 2;
        for d in 0..dirs {
            out.push(entry(&format!("d{d:03}"), Kind::Dir, 0, ino));
            ino += 1;
            for f in 0..files {
                out.push(entry(&format!("d{d:03}/f{f:04}"), Kind::File, size, ino));
                ino += 1;
            }
        }
        out.sort_by(|a, b| {
            a.path
                .as_os_str()
                .as_bytes()
                .cmp(b.path.as_os_str().as_bytes())
        });
        out
    }

    #[test]
    fn every_entry_is_in_exactly_one_layer_and_there_are_at_most_64() {
        let entries = tree(200, 50, 40_000);
        let groups = partition(&entries, &HashMap::new());
        assert!(
            groups.len() > 1 && groups.len() <= MAX_LAYERS,
            "{}",
            groups.len()
        );
        let mut seen: Vec<&PathBuf> = groups.iter().flat_map(|g| &g.paths).collect();
        seen.sort();
        let mut all: Vec<&PathBuf> = entries.iter().map(|e| &e.path).collect();
        all.sort();
        assert_eq!(seen, all);
    }

    #[test]
    fn a_small_change_moves_few_layers() {
        let entries = tree(100, 40, 30_000);
        let before = partition(&entries, &HashMap::new());
        let mut changed = entries.clone();
        for e in changed.iter_mut().filter(|e| e.path.starts_with("d042")) {
            e.size += 1000;
        }
        let after = partition(&changed, &HashMap::new());
        let moved = after.iter().filter(|g| !before.contains(g)).count();
        assert!(moved <= 2, "{moved} of {} layers changed", after.len());
    }

    #[test]
    fn hard_link_groups_stay_in_one_layer() {
        let mut entries = tree(100, 40, 30_000);
        // d000/f0000 and d099/f0039 share an inode.
        let ino = entries
            .iter()
            .find(|e| e.path == Path::new("d000/f0000"))
            .unwrap()
            .ino;
        entries
            .iter_mut()
            .find(|e| e.path == Path::new("d099/f0039"))
            .unwrap()
            .ino = ino;
        let groups = partition(&entries, &HashMap::new());
        let holder = |p: &str| {
            groups
                .iter()
                .position(|g| g.paths.contains(&PathBuf::from(p)))
        };
        assert_eq!(holder("d000/f0000"), holder("d099/f0039"));
    }
}
