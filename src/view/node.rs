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
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use rustix::fs::FileType;

/// The kernel's ID of the root directory.
pub const ROOT_ID: u64 = 1;

/// Where a node's lower content is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lower {
    /// Path relative to the lower layers' roots (differs from the node's
    /// own path below a renamed directory, through its redirect).
    pub path: PathBuf,
    /// The lower layers (indices into the lower list, top first) holding
    /// it: for a directory every one merged; for anything else the one
    /// shown.
    pub layers: Vec<usize>,
}

/// One inode of the view.
#[derive(Debug, Clone)]
pub struct Node {
    /// The parent directory's node ID (the root is its own parent).
    pub parent: u64,
    /// The name in the parent under which it was last looked up.
    pub name: OsString,
    /// Other names of a hard-linked inode seen by lookups (the kernel may
    /// ask about the inode after its last-used name is gone).
    pub aliases: Vec<(u64, OsString)>,
    /// Its type.
    pub kind: FileType,
    /// Exists in the upper layer at its path.
    pub upper: bool,
    /// Lower content, if any (absent once hidden by an opaque directory).
    pub lower: Option<Lower>,
    /// Lookups the kernel holds.
    pub lookups: u64,
    /// Generation reported with the node ID.
    pub generation: u64,
}

/// The table of nodes.
#[derive(Debug)]
pub struct Nodes {
    map: HashMap<u64, Node>,
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
                name: OsString::new(),
                aliases: Vec::new(),
                kind: FileType::Directory,
                upper: true,
                lower: root_lower,
                lookups: 1,
                generation: 0,
            },
        );
        Nodes {
            map,
            next_generation: 1,
        }
    }

    /// The node `id`.
    pub fn get(&self, id: u64) -> Option<&Node> {
        self.map.get(&id)
    }

    /// The node `id`, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Node> {
        self.map.get_mut(&id)
    }

    /// The path of node `id` relative to the view's root (the same in the
    /// upper layer). `None` for an unknown node.
    pub fn path(&self, id: u64) -> Option<PathBuf> {
        let mut names: Vec<&OsStr> = Vec::new();
        let mut at = id;
        while at != ROOT_ID {
            let node = self.map.get(&at)?;
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
        let next_generation = &mut self.next_generation;
        let node = self.map.entry(id).or_insert_with(|| Node {
            parent,
            name: name.to_os_string(),
            aliases: Vec::new(),
            kind: found.kind,
            upper: found.upper,
            lower: found.lower.clone(),
            lookups: 0,
            generation: 0,
        });
        if fresh && node.lookups > 0 {
            node.generation = *next_generation;
            *next_generation += 1;
        }
        if id != ROOT_ID && (node.parent != parent || node.name != name) {
            let old = (
                node.parent,
                std::mem::replace(&mut node.name, name.to_os_string()),
            );
            node.parent = parent;
            node.aliases.retain(|(p, n)| !(*p == parent && n == name));
            if found.kind != FileType::Directory
                && !fresh
                && node.lookups > 0
                && node.aliases.len() < MAX_ALIASES
            {
                node.aliases.push(old);
            }
        }
        node.kind = found.kind;
        node.upper = found.upper;
        node.lower = found.lower;
        node.lookups += 1;
        node.generation
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
        if let Some(node) = self.map.get_mut(&id) {
            node.aliases.retain(|(p, n)| {
                let gone = *p == old_parent && n == old_name;
                let replaced = *p == parent && n == name;
                !(gone || replaced)
            });
            node.parent = parent;
            node.name = name.to_os_string();
        }
    }

    /// The name `parent`/`name` of node `id` is gone (unlinked, or renamed
    /// over): another known name of it becomes the one used.
    pub fn drop_name(&mut self, id: u64, parent: u64, name: &OsStr) {
        let Some(node) = self.map.get_mut(&id) else {
            return;
        };
        node.aliases.retain(|(p, n)| !(*p == parent && n == name));
        if node.parent == parent
            && node.name == name
            && let Some((p, n)) = node.aliases.pop()
        {
            node.parent = p;
            node.name = n;
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
            nodes.path(10).unwrap(),
            Path::new("b"),
            "no name left to use"
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
