//! The view's inode table: one entry per inode the kernel knows, with the
//! lookup count the kernel holds on it.
//!
//! What the kernel relies on:
//! * a node ID names one inode for as long as the kernel holds lookups on
//!   it (every `entry` reply is one lookup; `forget` gives them back); all
//!   names of a hard-linked file are the same node;
//! * node IDs are the view's inode numbers, which are stable: a file's
//!   lower inode number (also after copy-up, through the origin xattr), or
//!   the upper inode number for files made in the view. The root is 1;
//! * a node ID reused for a different file (an upper inode number freed and
//!   handed out again while the kernel still holds the old one) gets a new
//!   generation, so the kernel does not confuse the two.
//!
//! Nodes hold no open file descriptors: a node knows its name and parent
//! (the path is rebuilt from them), whether it exists in the upper layer,
//! and where its lower content lives.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

/// The kernel's ID of the root directory.
pub const ROOT_ID: u64 = 1;

/// Where a node's lower content is: each lower layer holding it (indices
/// into the lower list, top first; for a directory every one merged, for
/// anything else the one shown) and its path there, relative to that
/// layer's root. The path differs from the node's own below a renamed
/// directory (through its redirect), and from one layer to the next where
/// a lower layer's directory redirects the layers below it (a lower that
/// was once an upper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lower {
    /// `(layer, path)`, top first; never empty.
    pub at: Vec<(usize, PathBuf)>,
}

impl Lower {
    /// `path` in each of `layers`.
    pub fn one(path: PathBuf, layers: impl IntoIterator<Item = usize>) -> Lower {
        Lower {
            at: layers.into_iter().map(|l| (l, path.clone())).collect(),
        }
    }

    /// The top layer holding it (the one shown for a non-directory).
    pub fn top_layer(&self) -> usize {
        self.at[0].0
    }

    /// Its path in the top layer: what a redirect records, and where a
    /// non-directory is read from.
    pub fn path(&self) -> &Path {
        &self.at[0].1
    }

    /// The layers holding it, top first.
    pub fn layers(&self) -> Vec<usize> {
        self.at.iter().map(|(l, _)| *l).collect()
    }

    /// Its path in layer `layer`, if that layer holds it.
    pub fn path_in(&self, layer: usize) -> Option<&Path> {
        self.at
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, p)| p.as_path())
    }

    /// One path serves every layer.
    fn single_path(&self) -> Option<&Path> {
        let first = self.path();
        self.at.iter().all(|(_, p)| p == first).then_some(first)
    }
}

/// A node's lower paths, where they cannot be derived from its parent's.
#[derive(Debug)]
enum LowerPaths {
    /// One path in every layer holding it.
    One(Box<Path>),
    /// One path per layer holding it, in layer order.
    PerLayer(Box<[PathBuf]>),
}

/// One inode of the view. Only the table changes it (its lookup count
/// above all), so it is neither `Clone` nor open for writing.
#[derive(Debug)]
pub struct Node {
    /// The parent directory's node ID (the root is its own parent).
    parent: u64,
    /// The name in the parent under which it was last looked up.
    name: Box<OsStr>,
    /// `name` still names it. False once that name is gone (unlinked or
    /// renamed over) and no other name of it is known: the file lives on
    /// only through open handles, and nothing may be done by its old name,
    /// which may now hold anything (a symlink a user put there, say).
    linked: bool,
    /// Its type.
    kind: FileType,
    /// Exists in the upper layer at its path.
    upper: bool,
    /// The lower layers holding it, one bit each (0: no lower content).
    lower_layers: u32,
    /// Where its lower content is, when that is not its parent's lower
    /// path plus its name (below a redirect); most nodes need none, which
    /// keeps a table of 100,000s of nodes small.
    lower_path: Option<LowerPaths>,
    /// Lookups the kernel holds.
    lookups: u64,
    /// Generation reported with the node ID.
    generation: u64,
}

impl Node {
    /// Has lower content.
    pub fn has_lower(&self) -> bool {
        self.lower_layers != 0
    }

    /// Its type.
    pub fn kind(&self) -> FileType {
        self.kind
    }

    /// Exists in the upper layer at its path.
    pub fn upper(&self) -> bool {
        self.upper
    }

    /// The parent directory's node ID (the root is its own parent).
    pub fn parent(&self) -> u64 {
        self.parent
    }

    /// Generation reported with the node ID.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Lookups the kernel holds.
    pub fn lookups(&self) -> u64 {
        self.lookups
    }
}

/// The table of nodes.
#[derive(Debug)]
pub struct Nodes {
    map: HashMap<u64, Node>,
    /// Other names of hard-linked inodes seen by lookups (the kernel may
    /// ask about an inode after its last-used name is gone); kept apart,
    /// as few nodes have any.
    aliases: HashMap<u64, Vec<(u64, Box<OsStr>)>>,
    /// The upper inode numbers of copied-up non-directories (their node ID
    /// is the lower inode's), so that checking where one is shown needs no
    /// read of its origin xattr; kept apart, as most nodes are not copied.
    copies: HashMap<u64, u64>,
    next_generation: u64,
}

/// What a lookup found, to be entered into the table.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its type.
    pub kind: FileType,
    /// Exists in the upper layer.
    pub upper: bool,
    /// Lower content.
    pub lower: Option<Lower>,
}

impl Nodes {
    /// A table holding only the root.
    pub fn new(root_lower: Option<Lower>) -> Self {
        let mut map = HashMap::new();
        map.insert(
            ROOT_ID,
            Node {
                parent: ROOT_ID,
                name: OsStr::new("").into(),
                linked: true,
                kind: FileType::Directory,
                upper: true,
                lower_layers: root_lower.as_ref().map_or(0, |l| layer_mask(&l.layers())),
                lower_path: None,
                lookups: 1,
                generation: 0,
            },
        );
        Nodes {
            map,
            aliases: HashMap::new(),
            copies: HashMap::new(),
            next_generation: 1,
        }
    }

    /// The node `id`.
    pub fn get(&self, id: u64) -> Option<&Node> {
        self.map.get(&id)
    }

    /// Node `id` now exists in the upper layer (copied up).
    pub fn mark_upper(&mut self, id: u64) {
        if let Some(node) = self.map.get_mut(&id) {
            node.upper = true;
        }
    }

    /// Node `id` (not a directory, its ID not its upper inode's) is the
    /// upper inode `ino` now (copied up, or checked by its origin).
    pub fn set_upper_copy(&mut self, id: u64, ino: u64) {
        if self.map.contains_key(&id) {
            self.copies.insert(id, ino);
        }
    }

    /// The upper inode number of node `id`, if it is a copied-up
    /// non-directory (see [`Nodes::set_upper_copy`]).
    pub fn upper_copy(&self, id: u64) -> Option<u64> {
        self.copies.get(&id).copied()
    }

    /// The directory and name by which node `id` is shown, if it still has
    /// one (see [`Node::linked`]).
    pub fn name_of(&self, id: u64) -> Option<(u64, &OsStr)> {
        let node = self.map.get(&id)?;
        node.linked.then_some((node.parent, &*node.name))
    }

    /// The path of node `id` relative to the view's root (the same in the
    /// upper layer). `None` for an unknown node, or one that (or one of
    /// whose parents) lost its name.
    pub fn path(&self, id: u64) -> Option<PathBuf> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = id;
        while at != ROOT_ID {
            let node = self.map.get(&at)?;
            if !node.linked {
                return None;
            }
            names.push(&node.name);
            at = node.parent;
            if names.len() > MAX_DEPTH {
                return None; // a cycle would be a bug; never loop forever
            }
        }
        let mut path = PathBuf::new();
        for name in names.iter().rev() {
            path.push(name);
        }
        Some(path)
    }

    /// Enter a looked-up inode (one more lookup held by the kernel); returns
    /// its generation. `fresh` says the inode was just made: an existing
    /// node with that ID is then a dead file whose inode number was reused.
    pub fn enter(&mut self, id: u64, parent: u64, name: &OsStr, found: Found, fresh: bool) -> u64 {
        let (lower_layers, lower_path) = match &found.lower {
            None => (0, None),
            Some(lower) => {
                let mask = layer_mask(&lower.layers());
                let derived = self.lower_of(parent).and_then(|p| derive(&p, mask, name));
                let explicit = (derived.as_ref() != Some(lower)).then(|| stored(lower));
                (mask, explicit)
            }
        };
        let next_generation = &mut self.next_generation;
        let aliases_table = &mut self.aliases;
        let node = self.map.entry(id).or_insert_with(|| Node {
            parent,
            name: name.into(),
            linked: true,
            kind: found.kind,
            upper: found.upper,
            lower_layers,
            lower_path: None,
            lookups: 0,
            generation: 0,
        });
        if fresh && node.lookups > 0 {
            node.generation = *next_generation;
            *next_generation += 1;
        }
        if id != ROOT_ID && (node.parent != parent || *node.name != *name) {
            let old = (node.parent, std::mem::replace(&mut node.name, name.into()));
            node.parent = parent;
            let keep_old = found.kind != FileType::Directory && !fresh && node.lookups > 0;
            let aliases = aliases_table.entry(id).or_default();
            aliases.retain(|(p, n)| !(*p == parent && **n == *name));
            if keep_old && aliases.len() < MAX_ALIASES {
                aliases.push(old);
            }
            if aliases.is_empty() {
                aliases_table.remove(&id);
            }
        }
        node.linked = true;
        node.kind = found.kind;
        node.upper = found.upper;
        node.lower_layers = lower_layers;
        node.lower_path = lower_path;
        node.lookups += 1;
        node.generation
    }

    /// The lower content of node `id`, if any: its own recorded paths, or
    /// its parent's plus its name in each of its layers.
    pub fn lower_of(&self, id: u64) -> Option<Lower> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = id;
        let base = loop {
            let node = self.map.get(&at)?;
            if node.lower_layers == 0 {
                return None;
            }
            match &node.lower_path {
                Some(LowerPaths::One(path)) => {
                    break Lower::one(path.to_path_buf(), mask_layers(node.lower_layers));
                }
                Some(LowerPaths::PerLayer(paths)) => {
                    let layers = mask_layers(node.lower_layers);
                    break Lower {
                        at: layers.into_iter().zip(paths.iter().cloned()).collect(),
                    };
                }
                None if at == ROOT_ID => {
                    break Lower::one(PathBuf::new(), mask_layers(node.lower_layers));
                }
                None => {}
            }
            names.push(&node.name);
            at = node.parent;
            if names.len() > MAX_DEPTH {
                return None;
            }
        };
        let mask = self.map.get(&id)?.lower_layers;
        let mut lower = base;
        for name in names.iter().rev() {
            lower = Lower {
                at: lower
                    .at
                    .into_iter()
                    .map(|(l, p)| (l, child_path(&p, name)))
                    .collect(),
            };
        }
        lower.at.retain(|(l, _)| mask & (1 << l) != 0);
        (!lower.at.is_empty()).then_some(lower)
    }

    /// The kernel gives back `n` lookups of `id`; the node goes at zero.
    pub fn forget(&mut self, id: u64, n: u64) {
        if id == ROOT_ID {
            return;
        }
        if let Some(node) = self.map.get_mut(&id) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 {
                self.map.remove(&id);
                self.aliases.remove(&id);
                self.copies.remove(&id);
            }
        }
    }

    /// Move node `id` from `old_parent`/`old_name` to `parent`/`name`
    /// (after a rename).
    pub fn rename(
        &mut self,
        id: u64,
        old_parent: u64,
        old_name: &OsStr,
        parent: u64,
        name: &OsStr,
    ) {
        // Its lower content stays where it is: record the path, which can no
        // longer be derived from the new parent and name.
        let pinned = self.lower_of(id).map(|l| stored(&l));
        if let Some(aliases) = self.aliases.get_mut(&id) {
            aliases.retain(|(p, n)| {
                let gone = *p == old_parent && **n == *old_name;
                let replaced = *p == parent && **n == *name;
                !(gone || replaced)
            });
        }
        if let Some(node) = self.map.get_mut(&id) {
            if node.lower_layers != 0 {
                node.lower_path = pinned;
            }
            node.parent = parent;
            node.name = name.into();
            node.linked = true;
        }
    }

    /// The name `parent`/`name` of node `id` is gone (unlinked, or renamed
    /// over): another known name of it becomes the one used, and with none
    /// left the node is no longer linked (it lives on for its open
    /// handles, but its old name is never used again).
    pub fn drop_name(&mut self, id: u64, parent: u64, name: &OsStr) {
        let Some(node) = self.map.get_mut(&id) else {
            return;
        };
        let aliases = self.aliases.get_mut(&id);
        let mut other = None;
        if let Some(aliases) = aliases {
            aliases.retain(|(p, n)| !(*p == parent && **n == *name));
            if node.parent == parent && *node.name == *name {
                other = aliases.pop();
            }
            if aliases.is_empty() {
                self.aliases.remove(&id);
            }
        }
        if node.parent == parent && *node.name == *name {
            match other {
                Some((p, n)) => {
                    node.parent = p;
                    node.name = n;
                }
                None => node.linked = false,
            }
        }
    }

    /// Number of nodes held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Only the root is held.
    pub fn is_empty(&self) -> bool {
        self.map.len() <= 1
    }
}

/// `parent`'s lower content plus `name`, in the layers of `mask`, if the
/// parent holds all of them.
fn derive(parent: &Lower, mask: u32, name: &OsStr) -> Option<Lower> {
    let at: Vec<(usize, PathBuf)> = mask_layers(mask)
        .into_iter()
        .map(|l| parent.path_in(l).map(|p| (l, child_path(p, name))))
        .collect::<Option<_>>()?;
    (!at.is_empty()).then_some(Lower { at })
}

/// How `lower` is recorded when it cannot be derived.
fn stored(lower: &Lower) -> LowerPaths {
    match lower.single_path() {
        Some(path) => LowerPaths::One(path.into()),
        None => LowerPaths::PerLayer(lower.at.iter().map(|(_, p)| p.clone()).collect()),
    }
}

/// One bit per lower layer (layers past the 32nd are not recorded; the
/// view refuses more lower layers than that).
pub fn layer_mask(layers: &[usize]) -> u32 {
    layers
        .iter()
        .filter(|l| **l < MAX_LOWERS) // more are refused by `Overlay::open_layers`
        .fold(0, |mask, l| mask | 1 << l)
}

/// The layers of a mask, top first.
pub fn mask_layers(mask: u32) -> Vec<usize> {
    (0..MAX_LOWERS).filter(|l| mask & (1 << l) != 0).collect()
}

/// Most lower layers a view may have.
pub const MAX_LOWERS: usize = 32;

/// Names of a hard-linked inode remembered besides the last one used.
const MAX_ALIASES: usize = 16;

/// Deepest path the table rebuilds (a guard against a corrupt cycle).
const MAX_DEPTH: usize = 4096;

/// Join a relative directory path and a name.
pub fn child_path(dir: &Path, name: &OsStr) -> PathBuf {
    if dir.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(kind: FileType) -> Found {
        Found {
            kind,
            upper: false,
            lower: None,
        }
    }

    #[test]
    fn paths_follow_parents_and_renames() {
        let mut nodes = Nodes::new(None);
        nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("usr"),
            found(FileType::Directory),
            false,
        );
        nodes.enter(11, 10, OsStr::new("bin"), found(FileType::Directory), false);
        nodes.enter(
            12,
            11,
            OsStr::new("ls"),
            found(FileType::RegularFile),
            false,
        );
        assert_eq!(nodes.path(12).unwrap(), Path::new("usr/bin/ls"));
        nodes.rename(11, 10, OsStr::new("bin"), ROOT_ID, OsStr::new("sbin"));
        assert_eq!(nodes.path(12).unwrap(), Path::new("sbin/ls"));
        assert_eq!(nodes.path(ROOT_ID).unwrap(), Path::new(""));
        assert!(nodes.path(99).is_none());
    }

    #[test]
    fn a_hard_linked_inode_is_found_through_its_other_names() {
        let mut nodes = Nodes::new(None);
        let file = || found(FileType::RegularFile);
        nodes.enter(10, ROOT_ID, OsStr::new("a"), file(), true);
        nodes.enter(10, ROOT_ID, OsStr::new("b"), file(), false);
        nodes.enter(10, ROOT_ID, OsStr::new("c"), file(), false);
        assert_eq!(nodes.path(10).unwrap(), Path::new("c"));
        nodes.drop_name(10, ROOT_ID, OsStr::new("c"));
        assert_eq!(nodes.path(10).unwrap(), Path::new("b"));
        nodes.drop_name(10, ROOT_ID, OsStr::new("a"));
        nodes.drop_name(10, ROOT_ID, OsStr::new("b"));
        assert_eq!(
            nodes.path(10),
            None,
            "no name left: the old one is not used"
        );
        assert_eq!(nodes.name_of(10), None);
        assert!(nodes.get(10).is_some(), "the node lives on for its handles");
        nodes.enter(10, ROOT_ID, OsStr::new("d"), file(), false);
        assert_eq!(
            nodes.path(10).unwrap(),
            Path::new("d"),
            "found again by a lookup"
        );
    }

    /// A file renamed over, or a directory removed, takes its old name with
    /// it: nothing below it is reached by that name any more (what holds
    /// the name now may be anything).
    #[test]
    fn a_name_that_is_gone_is_never_used_again() {
        let mut nodes = Nodes::new(None);
        nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("f"),
            found(FileType::RegularFile),
            true,
        );
        nodes.drop_name(10, ROOT_ID, OsStr::new("f"));
        assert_eq!(nodes.name_of(10), None);
        assert_eq!(nodes.path(10), None);
        nodes.enter(
            20,
            ROOT_ID,
            OsStr::new("d"),
            found(FileType::Directory),
            true,
        );
        nodes.enter(21, 20, OsStr::new("x"), found(FileType::RegularFile), true);
        nodes.drop_name(20, ROOT_ID, OsStr::new("d"));
        assert_eq!(nodes.path(21), None, "below a removed directory");
        assert_eq!(nodes.name_of(21), Some((20, OsStr::new("x"))));
        // Dropping a name the node is not known by changes nothing.
        nodes.enter(
            30,
            ROOT_ID,
            OsStr::new("g"),
            found(FileType::RegularFile),
            true,
        );
        nodes.drop_name(30, ROOT_ID, OsStr::new("other"));
        assert_eq!(nodes.path(30).unwrap(), Path::new("g"));
    }

    #[test]
    fn lower_paths_are_derived_unless_redirected() {
        let root = Lower::one(PathBuf::new(), [0, 1]);
        let mut nodes = Nodes::new(Some(root));
        let dir = |path: &str, layers: Vec<usize>| Found {
            kind: FileType::Directory,
            upper: true,
            lower: Some(Lower::one(PathBuf::from(path), layers)),
        };
        nodes.enter(10, ROOT_ID, OsStr::new("usr"), dir("usr", vec![1]), false);
        nodes.enter(
            11,
            10,
            OsStr::new("share"),
            dir("usr/share", vec![1]),
            false,
        );
        // A renamed directory: its lower content stays where it was.
        nodes.enter(
            12,
            ROOT_ID,
            OsStr::new("moved"),
            dir("usr/share/doc", vec![0, 1]),
            false,
        );
        nodes.enter(
            13,
            12,
            OsStr::new("a"),
            dir("usr/share/doc/a", vec![1]),
            false,
        );
        assert_eq!(nodes.lower_of(11).unwrap().path(), Path::new("usr/share"));
        assert_eq!(nodes.lower_of(12).unwrap().layers(), [0, 1]);
        assert_eq!(
            nodes.lower_of(13).unwrap().path(),
            Path::new("usr/share/doc/a")
        );
        assert!(
            nodes.get(11).unwrap().lower_path.is_none(),
            "derivable, not stored"
        );
        assert!(nodes.get(12).unwrap().lower_path.is_some());
        nodes.enter(14, 12, OsStr::new("new"), found(FileType::Directory), false);
        assert!(nodes.lower_of(14).is_none());
        // Renaming keeps the lower content where it is, for it and below.
        nodes.rename(11, 10, OsStr::new("share"), ROOT_ID, OsStr::new("s2"));
        assert_eq!(nodes.lower_of(11).unwrap().path(), Path::new("usr/share"));
        let man = dir("usr/share/man", vec![1]);
        nodes.enter(15, 11, OsStr::new("man"), man, false);
        assert_eq!(
            nodes.lower_of(15).unwrap().path(),
            Path::new("usr/share/man")
        );
        // A lower layer's own redirect: each layer has its own path, and
        // the children follow each.
        let split_dir = Found {
            kind: FileType::Directory,
            upper: true,
            lower: Some(Lower {
                at: vec![(0, PathBuf::from("a/new")), (1, PathBuf::from("b/old"))],
            }),
        };
        nodes.enter(16, ROOT_ID, OsStr::new("x"), split_dir, false);
        let child = Found {
            kind: FileType::Directory,
            upper: false,
            lower: Some(Lower {
                at: vec![(0, PathBuf::from("a/new/c")), (1, PathBuf::from("b/old/c"))],
            }),
        };
        nodes.enter(17, 16, OsStr::new("c"), child.clone(), false);
        assert!(
            nodes.get(17).unwrap().lower_path.is_none(),
            "derived per layer"
        );
        assert_eq!(nodes.lower_of(17), child.lower);
        assert_eq!(
            nodes.lower_of(16).unwrap().path_in(1),
            Some(Path::new("b/old"))
        );
    }

    #[test]
    fn forget_drops_a_node_at_zero_lookups() {
        let mut nodes = Nodes::new(None);
        nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("a"),
            found(FileType::RegularFile),
            false,
        );
        nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("a"),
            found(FileType::RegularFile),
            false,
        );
        nodes.forget(10, 1);
        assert!(nodes.get(10).is_some());
        nodes.forget(10, 1);
        assert!(nodes.get(10).is_none());
        nodes.forget(ROOT_ID, 100);
        assert!(nodes.get(ROOT_ID).is_some(), "the root is never forgotten");
    }

    #[test]
    fn a_reused_inode_number_gets_a_new_generation() {
        let mut nodes = Nodes::new(None);
        let g1 = nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("a"),
            found(FileType::RegularFile),
            true,
        );
        let g2 = nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("a"),
            found(FileType::RegularFile),
            false,
        );
        assert_eq!(g1, g2, "a second lookup of the same file");
        let g3 = nodes.enter(
            10,
            ROOT_ID,
            OsStr::new("b"),
            found(FileType::RegularFile),
            true,
        );
        assert_ne!(g1, g3, "a new file on a reused inode number");
    }
}
