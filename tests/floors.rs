//! The floors of the code go one way: `cli` -> ops (`vserver`, `skel`) ->
//! engines (`view`, `sync`, `tree`, `mount`, ...) -> the base (`config`,
//! `layout`, `sys`, `error`, ...). This test reads `src/` as text, finds
//! every `crate::top` and `super::`-reached top-level module a module uses
//! (comments left out), and fails on a use that goes up a floor, or on an
//! import circle between top-level modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its floor (higher uses lower, never the
/// reverse; modules on one floor may use each other if no circle forms).
const FLOORS: &[(&str, u8)] = &[
    ("cli", 4),
    ("daemon", 3),
    ("demo", 3),
    ("vserver", 3),
    ("skel", 3),
    ("view", 2),
    ("sync", 2),
    ("tree", 2),
    ("mount", 2),
    ("oci", 2),
    ("protect", 2),
    ("staging", 2),
    ("barrier", 2),
    ("served_socket", 2),
    ("generation", 2),
    ("example", 2),
    ("config", 1),
    ("layout", 1),
    ("tokens", 1),
    ("validate", 1),
    ("progress", 1),
    ("report_path", 1),
    ("sys", 1),
    ("error", 1),
];

fn floor_of(module: &str) -> u8 {
    FLOORS
        .iter()
        .find(|(m, _)| *m == module)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("module {module} has no floor in tests/floors.rs: add it"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without its comments (line comments and doc
/// comments, which may name modules they do not use).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level modules a file uses through `crate::NAME`.
fn uses(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
            found.insert(name);
        }
        rest = after;
    }
    found
}

#[test]
fn uses_go_down_the_floors_and_form_no_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut upward = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        let code = code_of(&std::fs::read_to_string(file).unwrap());
        for used in uses(&code) {
            if used == top {
                continue;
            }
            if floor_of(&used) > floor_of(&top) {
                upward.push(format!("{} uses {used}", rel.display()));
            }
            graph.entry(top.clone()).or_default().insert(used);
        }
    }
    assert!(
        upward.is_empty(),
        "uses that go up a floor:\n{}",
        upward.join("\n")
    );

    // A circle: some module reaches itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut todo: Vec<&String> = graph[start].iter().collect();
        while let Some(m) = todo.pop() {
            assert!(m != start, "an import circle through {start}");
            if seen.insert(m.clone())
                && let Some(next) = graph.get(m)
            {
                todo.extend(next.iter());
            }
        }
    }
    // The test reads something: the main floors are all there.
    for module in ["cli", "vserver", "view", "sync", "tree", "mount"] {
        assert!(graph.contains_key(module), "no uses found for {module}");
    }
}
