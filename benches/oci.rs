//! Benchmark: OCI export and import of a skel (issue 16), and what the
//! next generation's export adds to the layout.
//!
//! Two cases (`VSKEL_BENCH_OCI_CASES`, comma-separated; default both):
//! `minbase`, a skel of the Debian minbase fixture (`VSKEL_ROOTFS`,
//! default `/var/tmp/vskel-fixtures/rootfs-bookworm`, made if missing),
//! and `usr`, a skel of the ~130k-entry `/usr` copy
//! (`$VSKEL_FIXTURES/usr-copy`, made if missing). For each, in a
//! temporary directory under `CARGO_TARGET_TMPDIR`:
//!
//! 1. `build-skel` (untimed);
//! 2. `export-skel SKEL oci:LAYOUT:g1`, timed: the layout's disk usage
//!    and the sum of its blob sizes;
//! 3. `import-skel oci:LAYOUT:g1 SKEL` into a second vservers root, timed;
//! 4. 100 files under the skel's doc directory rewritten (every k-th of
//!    them in path order, so the same files each time) and a generation
//!    recorded (untimed), then `export-skel SKEL oci:LAYOUT:g2` into the
//!    same layout, timed: the bytes of g2's blobs the layout did not
//!    have (what a push after g1 uploads) against all of g2's.
//!
//! One run per case (each writes the whole tree more than once). A
//! measurement, not a test: nothing fails on a slow or big result. Until
//! vskel has `export-skel` and `import-skel` it stops with a message
//! saying so. Run as root: `cargo bench --bench oci`.

mod common;
#[path = "../tests/common/oci.rs"]
mod oci;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Setup, run_checked, timed, tree_stats};
use vskel::generation::{self, Kind, Part};
use vskel::layout::SkelDirs;
use vskel::progress::Progress;

/// Environment variable choosing the cases.
const CASES_ENV: &str = "VSKEL_BENCH_OCI_CASES";
/// Files rewritten for the second generation.
const CHANGED_FILES: usize = 100;
/// The skel's name in both roots.
const SKEL: &str = "bench";
/// Bytes per MB in the table.
const MB: f64 = 1e6;
/// The subcommands this benchmark needs.
const COMMANDS: [&str; 2] = ["export-skel", "import-skel"];

/// One tree to benchmark: a name, its source and where its docs are
/// (relative to the skel's global/).
struct Case {
    name: &'static str,
    source: fn() -> PathBuf,
    docs: &'static str,
}

const CASES: [Case; 2] = [
    Case {
        name: "minbase",
        source: common::rootfs,
        docs: "usr/share/doc",
    },
    Case {
        name: "usr",
        source: common::usr_copy,
        docs: "share/doc",
    },
];

/// What one case measured.
struct Row {
    case: &'static str,
    entries: u64,
    tree_bytes: u64,
    export: Duration,
    layout_disk: u64,
    blob_total: u64,
    import: Duration,
    export2: Duration,
    new_bytes: u64,
    g2_bytes: u64,
}

fn main() {
    if !rustix::process::geteuid().is_root() {
        println!("oci benchmark: needs root; skipped");
        return;
    }
    require_commands();
    let wanted: Vec<String> = std::env::var(CASES_ENV)
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_else(|_| CASES.iter().map(|c| c.name.to_string()).collect());
    for name in &wanted {
        assert!(
            CASES.iter().any(|c| c.name == name),
            "{CASES_ENV}: unknown case {name:?} (known: minbase, usr)"
        );
    }
    let rows: Vec<Row> = CASES
        .iter()
        .filter(|c| wanted.iter().any(|w| w == c.name))
        .map(bench_case)
        .collect();
    let load = common::load_average();
    println!("OCI export/import of a skel (one run each; load average {load})");
    println!(
        "{:<8}{:>9}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>10}{:>8}",
        "case",
        "entries",
        "tree MB",
        "export s",
        "disk MB",
        "blobs MB",
        "import s",
        "next s",
        "new MB",
        "new %"
    );
    for r in &rows {
        println!(
            "{:<8}{:>9}{:>9.1}{:>10.2}{:>10.1}{:>10.1}{:>10.2}{:>10.2}{:>10.2}{:>7.2}%",
            r.case,
            r.entries,
            r.tree_bytes as f64 / MB,
            r.export.as_secs_f64(),
            r.layout_disk as f64 / MB,
            r.blob_total as f64 / MB,
            r.import.as_secs_f64(),
            r.export2.as_secs_f64(),
            r.new_bytes as f64 / MB,
            100.0 * r.new_bytes as f64 / r.g2_bytes.max(1) as f64,
        );
    }
    println!(
        "(export: export-skel of generation 1; disk: du of the layout; next: export-skel of \
         the generation after {CHANGED_FILES} files changed, into the same layout; new: its \
         blobs the layout did not have, as a share of all of its blobs)"
    );
}

/// Stop with a clear message when this vskel lacks the OCI commands.
fn require_commands() {
    for sub in COMMANDS {
        let out = Command::new(env!("CARGO_BIN_EXE_vskel"))
            .args([sub, "--help"])
            .output()
            .unwrap_or_else(|e| panic!("run vskel: {e}"));
        if !out.status.success() {
            eprintln!(
                "oci benchmark: this vskel has no `{sub}` subcommand yet (`vskel {sub} --help`: \
                 {}); it runs once the OCI export/import is built",
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .next()
                    .unwrap_or("failed")
            );
            std::process::exit(1);
        }
    }
}

/// A vskel setup below `dir` whose skel files may be rewritten in place.
fn setup(dir: &Path) -> Setup {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let setup = Setup::new(dir);
    let mut config = fs::read_to_string(&setup.config).unwrap();
    config.push_str("protect = \"none\"\ncontent_store = false\n");
    fs::write(&setup.config, config).unwrap();
    setup
}

fn bench_case(case: &Case) -> Row {
    let source = (case.source)();
    println!("case {}: {}", case.name, source.display());
    let tmp = tempfile::Builder::new()
        .prefix("vskel-bench-oci-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir under CARGO_TARGET_TMPDIR");
    let from = setup(&tmp.path().join("from"));
    let into = setup(&tmp.path().join("into"));
    let layout = tmp.path().join("layout");
    let image = |tag: &str| format!("oci:{}:{tag}", layout.display());

    let mut build = from.vskel();
    build.args(["build-skel", SKEL, "--from"]).arg(&source);
    run_checked(&mut build, "vskel build-skel");
    let skel = SkelDirs {
        dir: from.root.join(".skel").join(SKEL),
    };
    let (entries, tree_bytes) = tree_stats(&skel.dir);

    let export = vskel_timed(&from, &["export-skel", SKEL, &image("g1")]);
    let layout_disk = disk_usage(&layout);
    let blob_total = oci::blob_bytes(&layout).values().sum();
    let import = vskel_timed(&into, &["import-skel", &image("g1"), SKEL]);
    let imported = tree_stats(&into.root.join(".skel").join(SKEL)).0;
    if imported != entries {
        println!("  note: the import has {imported} entries, the skel {entries}");
    }

    let before = oci::blob_bytes(&layout);
    change_docs(&skel, case.docs);
    let export2 = vskel_timed(&from, &["export-skel", SKEL, &image("g2")]);
    let new_bytes = oci::new_blob_bytes(&layout, "g2", &before);
    let all = oci::blob_bytes(&layout);
    let g2_bytes = oci::tag_blobs(&layout, "g2").iter().map(|d| all[d]).sum();

    drop(from); // clear any immutable attribute before the removal
    drop(into);
    tmp.close().expect("remove the benchmark's temp dir");
    Row {
        case: case.name,
        entries,
        tree_bytes,
        export,
        layout_disk,
        blob_total,
        import,
        export2,
        new_bytes,
        g2_bytes,
    }
}

fn vskel_timed(setup: &Setup, args: &[&str]) -> Duration {
    let mut cmd = setup.vskel();
    cmd.args(args);
    timed(&mut cmd, &format!("vskel {}", args.join(" ")))
}

/// Rewrite `CHANGED_FILES` regular files below `DOCS` of global/ or
/// local/ (a tree that is not a root file system puts it there) (every k-th
/// in path order: the same files for the same tree), each replaced by
/// rename with its mode and owner, then record the new generation.
fn change_docs(skel: &SkelDirs, docs: &str) {
    let progress = Progress::hidden();
    let n = generation::ensure(skel, "bench", &progress, generation::Store::Skip).unwrap();
    let current = generation::load(skel, n).unwrap();
    let packaged = package_files(skel);
    let regular = |e: &&generation::Entry| e.part != Part::Static && e.kind == Kind::File;
    let files: Vec<&generation::Entry> = match &packaged {
        Some(listed) => {
            let global: std::collections::HashMap<&Path, &generation::Entry> = current
                .entries()
                .iter()
                .filter(regular)
                .filter(|e| e.part == Part::Global)
                .map(|e| (e.path.as_path(), e))
                .collect();
            let mut seen = std::collections::HashSet::new();
            listed
                .iter()
                .filter_map(|p| global.get(p.as_path()).copied())
                .filter(|e| seen.insert(e.path.clone()))
                .collect()
        }
        None => current
            .entries()
            .iter()
            .filter(regular)
            .filter(|e| e.path.starts_with(docs))
            .collect(),
    };
    assert!(
        files.len() >= CHANGED_FILES,
        "{}: only {} files below {docs}",
        skel.dir.display(),
        files.len()
    );
    // A package upgrade's files are the first ones of its packages; other
    // trees get every k-th file of their doc directory.
    let step = if packaged.is_some() {
        1
    } else {
        files.len() / CHANGED_FILES
    };
    for e in files.iter().step_by(step).take(CHANGED_FILES) {
        let path = skel.dir.join(e.part.dir_name()).join(&e.path);
        let mut data = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        data.extend_from_slice(b"\nchanged for the OCI benchmark\n");
        let tmp = path.with_file_name(".vskel-bench-new");
        fs::write(&tmp, data).unwrap();
        fs::set_permissions(&tmp, fs::Permissions::from_mode(e.mode)).unwrap();
        std::os::unix::fs::lchown(&tmp, Some(e.uid), Some(e.gid)).unwrap();
        fs::rename(&tmp, &path).unwrap();
    }
    let recorded = generation::record(skel, "bench", &progress, generation::Store::Skip).unwrap();
    assert!(recorded.new, "no new generation after the change");
}

/// The files of dpkg's packages from the first at or after "m" on, in
/// package order then list order (what an upgrade of a few packages
/// changes), from `local/var/lib/dpkg/info/*.list`; none without dpkg.
fn package_files(skel: &SkelDirs) -> Option<Vec<PathBuf>> {
    let info = skel.local().join("var/lib/dpkg/info");
    let mut lists: Vec<PathBuf> = fs::read_dir(&info)
        .ok()?
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "list"))
        .collect();
    lists.sort();
    let at = lists
        .iter()
        .position(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().as_ref() >= "m")
        })
        .unwrap_or(0);
    lists.rotate_left(at);
    let mut out = Vec::new();
    for list in lists {
        for line in fs::read_to_string(&list).unwrap().lines() {
            out.push(PathBuf::from(line.trim_start_matches('/')));
        }
    }
    Some(out)
}

/// Bytes on disk below `dir` (like `du -s`; each inode once).
fn disk_usage(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let meta = fs::symlink_metadata(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        if seen.insert((meta.dev(), meta.ino())) {
            total += meta.blocks() * 512;
        }
        if meta.is_dir() {
            for entry in fs::read_dir(&d).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
    }
    total
}
