//! Holes stay holes (issue 9, finding 5): wherever vskel copies a file
//! (build-skel, create-vs, copy-up in a mounted view, sync), a sparse file
//! costs no more blocks in the copy than in its source, and reads the same.
//!
//! The files: 1 GiB with a few data extents and a long trailing hole,
//! 16 MiB with data only at the start, and a small dense one. They go
//! through build-skel (global and local parts), create-vs (the local copy),
//! a mounted view (a global file opened for writing and one chmodded, both
//! copied up; a file made sparse with `truncate` in the view) and sync
//! (full, then incremental). On ext4 (the test directory), before the fix
//! every copy of the 1 GiB file took 1 GiB.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{MountGuard, Setup, require_root};

const MIB: u64 = 1 << 20;
/// Extra blocks a copy may take over its source (512-byte units): block
/// rounding and allocation granularity; a filled hole costs thousands.
const SLACK_BLOCKS: u64 = 2 * MIB / 512;

/// A file's data extents (offset, length); the rest is holes.
type Extents = &'static [(u64, u64)];

/// The sparse files: name, length, data extents.
const FILES: &[(&str, u64, Extents)] = &[
    (
        "big",
        1024 * MIB,
        &[(0, 4096), (300 * MIB, 64 * 1024), (700 * MIB + 4096, 4096)],
    ),
    ("tail", 16 * MIB, &[(0, 8192)]),
    ("dense", 256 * 1024, &[(0, 256 * 1024)]),
];

/// Write `path` as one of [`FILES`]: its extents filled with a pattern
/// that names the offset, the rest holes.
fn make_sparse(path: &Path, len: u64, extents: &[(u64, u64)]) {
    let file = fs::File::create(path).unwrap();
    for &(at, n) in extents {
        let data: Vec<u8> = (0..n).map(|i| ((at + i) % 251) as u8 + 1).collect();
        file.write_all_at(&data, at).unwrap();
    }
    file.set_len(len).unwrap();
    file.sync_all().unwrap();
}

/// Do `a` and `b` hold the same bytes?
fn same_content(a: &Path, b: &Path) -> bool {
    let (mut fa, mut fb) = (fs::File::open(a).unwrap(), fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; MIB as usize], vec![0u8; MIB as usize]);
    loop {
        let n = read_full(&mut fa, &mut ba);
        let m = read_full(&mut fb, &mut bb);
        if n != m || ba[..n] != bb[..m] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).unwrap() {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// Check that `copy` reads as `source` and takes at most its blocks (plus
/// slack); returns the blocks of the copy.
fn check_copy(what: &str, source: &Path, copy: &Path, report: &mut Vec<String>) {
    let (s, c) = (fs::metadata(source).unwrap(), fs::metadata(copy).unwrap());
    report.push(format!(
        "{what}: {} has {} KiB on disk, its source {} KiB",
        copy.display(),
        c.blocks() / 2,
        s.blocks() / 2
    ));
    assert_eq!(
        c.len(),
        s.len(),
        "{what}: {} has another length",
        copy.display()
    );
    assert!(
        c.blocks() <= s.blocks() + SLACK_BLOCKS,
        "{what}: {} takes {} KiB, its source {} KiB: holes were filled",
        copy.display(),
        c.blocks() / 2,
        s.blocks() / 2
    );
    assert!(
        same_content(source, copy),
        "{what}: {} does not read as {}",
        copy.display(),
        source.display()
    );
}

#[test]
fn sparse_files_stay_sparse_through_every_copy() {
    if !require_root("sparse_files_stay_sparse_through_every_copy") {
        return;
    }
    let mut report = Vec::new();
    let setup = Setup::new("");
    let src = setup.example_source();
    for dir in ["usr/share/sparse", "var/lib/sparse"] {
        fs::create_dir_all(src.join(dir)).unwrap();
        for (name, len, extents) in FILES {
            make_sparse(&src.join(dir).join(name), *len, extents);
        }
    }
    let big = src.join("usr/share/sparse/big");
    assert!(
        fs::metadata(&big).unwrap().blocks() < 4 * MIB / 512,
        "the test directory's filesystem keeps no holes: cannot test"
    );

    // build-skel: global (usr) and local (var) parts are copies.
    let skel = setup.build_example_skel("base");
    let parts = [
        ("usr/share/sparse", skel.join("global")),
        ("var/lib/sparse", skel.join("local")),
    ];
    for (dir, part) in &parts {
        for (name, _, _) in FILES {
            let rel = Path::new(dir).join(name);
            check_copy("build-skel", &src.join(&rel), &part.join(&rel), &mut report);
        }
    }

    // create-vs: the local part is copied into the tree.
    let vs1 = setup.create("base", "vs1", "10.0.0.3");
    for (name, _, _) in FILES {
        let rel = Path::new("var/lib/sparse").join(name);
        check_copy(
            "create-vs",
            &skel.join("local").join(&rel),
            &vs1.join(&rel),
            &mut report,
        );
    }

    // A mounted view: copy-up on open for writing and on chmod, and a
    // file made sparse in the view.
    let view = setup.create_view("base", "web1", "10.0.0.2");
    let upper = view.join("upper");
    let merged = view.join("merged");
    let _guard = MountGuard(merged.clone());
    setup.vskel().args(["mount", "web1"]).assert().success();
    let global = skel.join("global");
    drop(
        fs::OpenOptions::new()
            .write(true)
            .open(merged.join("usr/share/sparse/big"))
            .unwrap(),
    );
    fs::set_permissions(
        merged.join("usr/share/sparse/tail"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    for name in ["big", "tail"] {
        let rel = Path::new("usr/share/sparse").join(name);
        check_copy(
            "copy-up",
            &global.join(&rel),
            &upper.join(&rel),
            &mut report,
        );
    }
    let made_in_view = |name: &str| -> PathBuf {
        let path = merged.join("var").join(name);
        let file = fs::File::create(&path).unwrap();
        file.set_len(1024 * MIB).unwrap(); // truncate -s 1G
        file.write_all_at(b"middle", 512 * MIB).unwrap();
        file.sync_all().unwrap();
        upper.join("var").join(name)
    };
    let first = made_in_view("made-sparse");
    assert!(fs::metadata(&first).unwrap().blocks() < 4 * MIB / 512);

    // sync: the first (full), then an incremental one.
    setup.vskel().args(["sync", "web1"]).assert().success();
    let tree = setup.root.join("web1");
    check_copy(
        "full sync",
        &first,
        &tree.join("var/made-sparse"),
        &mut report,
    );
    for name in ["big", "tail"] {
        let rel = Path::new("usr/share/sparse").join(name);
        check_copy(
            "full sync",
            &upper.join(&rel),
            &tree.join(&rel),
            &mut report,
        );
    }
    for (name, _, _) in FILES {
        let rel = Path::new("var/lib/sparse").join(name);
        check_copy(
            "full sync",
            &skel.join("local").join(&rel),
            &tree.join(&rel),
            &mut report,
        );
    }
    let second = made_in_view("made-sparse-2");
    fs::OpenOptions::new()
        .write(true)
        .open(merged.join("usr/share/sparse/dense"))
        .unwrap()
        .write_all_at(b"changed", 0)
        .unwrap();
    let out = setup
        .vskel()
        .args(["sync", "web1", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let synced: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(synced["mode"], "incremental", "{synced}");
    check_copy(
        "incremental sync",
        &second,
        &tree.join("var/made-sparse-2"),
        &mut report,
    );
    let dense = Path::new("usr/share/sparse/dense");
    check_copy(
        "incremental sync",
        &upper.join(dense),
        &tree.join(dense),
        &mut report,
    );
    setup.vskel().args(["unmount", "web1"]).assert().success();
    for line in report {
        eprintln!("{line}");
    }
}
